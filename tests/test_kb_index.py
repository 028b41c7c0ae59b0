"""The index folder: incremental and atomic builds, refusal of a foreign embedder, bad files skipped."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kb_support import HashEmbedder, minimal_pdf, settings_in

from assistant.kb import domain_terms
from assistant.kb.store import current_generation
from assistant.registry import build_index, open_retriever
from assistant.stages import RetrieveError

TESTS = Path(__file__).resolve().parent


def write_faq(folder: Path, rows: list[tuple[str, str, str]], name: str = "faq.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    with p.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "question", "answer"])
        writer.writerows(rows)
    return p


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    folder = tmp_path / "kb"
    write_faq(folder, [("wifi", "guest wifi password", "HB-Guest, ask the desk"), ("park", "visitor parking fee", "2 hours free")])
    (folder / "guide.md").write_text("# Guide\n\n## Fire\n\nThe assembly point is the lawn across the road.\n", encoding="utf-8")
    return folder


def test_build_then_search(tmp_path: Path, kb: Path) -> None:
    s = settings_in(tmp_path)
    emb = HashEmbedder()
    report = build_index(s, [kb], progress=False, embedder=emb)
    assert (report.files, report.entries, report.chunks, report.skipped) == (2, 2, 1, [])
    retriever = open_retriever(s, embedder=emb)
    top = retriever.search_sync("what is the guest wifi password", k=3)[0]
    assert (top.id, top.kind, top.answer) == ("wifi", "faq", "HB-Guest, ask the desk")
    doc = retriever.search_sync("fire assembly point lawn", k=3)[0]
    assert (doc.kind, doc.source, doc.title, doc.section) == ("document", "kb/guide.md", "Guide", "Fire")
    assert 0.0 <= doc.score <= 1.0


async def test_async_search_matches_sync(tmp_path: Path, kb: Path) -> None:
    s = settings_in(tmp_path)
    emb = HashEmbedder()
    build_index(s, [kb], progress=False, embedder=emb)
    retriever = open_retriever(s, embedder=emb)
    assert await retriever.search("visitor parking", k=2) == retriever.search_sync("visitor parking", k=2)


def test_incremental_rebuild_embeds_only_changed_files(tmp_path: Path, kb: Path) -> None:
    s = settings_in(tmp_path)
    emb = HashEmbedder()
    build_index(s, [kb], progress=False, embedder=emb)
    first_calls = len(emb.calls)
    assert first_calls == 3

    emb.calls.clear()
    again = build_index(s, [kb], progress=False, embedder=emb)
    assert emb.calls == [] and again.reused_files == 2 and again.embedded_files == 0

    write_faq(kb, [("wifi", "guest wifi password", "HB-Guest, ask the desk"), ("canteen", "canteen hours", "11:30 to 13:30")])
    emb.calls.clear()
    changed = build_index(s, [kb], progress=False, embedder=emb)
    # only the changed table is read, and in it only the new entry is embedded (wifi kept its vectors)
    assert emb.calls == ["canteen hours"]
    assert (changed.embedded_files, changed.reused_files, changed.reused_records) == (1, 1, 1)
    retriever = open_retriever(s, embedder=emb)
    assert retriever.search_sync("canteen hours", k=1)[0].id == "canteen"
    assert all(p.id != "park" for p in retriever.search_sync("visitor parking fee", k=5))
    # reused vectors are the same vectors: the guide still answers exactly as before
    assert retriever.search_sync("assembly point lawn", k=1)[0].source == "kb/guide.md"

    (kb / "guide.md").unlink()
    removed = build_index(s, [kb], progress=False, embedder=emb)
    assert removed.removed_files == ["kb/guide.md"] and removed.chunks == 0


def test_one_edited_entry_in_a_large_table_embeds_that_entry_only(tmp_path: Path) -> None:
    # An owner edits one answer of a long table and inserts a row at the top, which shifts every
    # other entry's position: only the edited and the new entry are embedded again, and every kept
    # entry still answers under its own id with its own answer.
    s = settings_in(tmp_path)
    emb = HashEmbedder()
    words = ["parking", "canteen", "badge", "printer", "locker", "shuttle", "library", "gym", "clinic", "mail"]
    rows = [(f"e{i}", f"where is the {w} {i}", f"{w} answer {i}") for i, w in enumerate(words * 3)]
    write_faq(tmp_path / "kb", rows)
    build_index(s, [tmp_path / "kb"], progress=False, embedder=emb)
    emb.calls.clear()
    edited = [(i, q, "moved to building C" if i == "e15" else a) for i, q, a in rows]
    write_faq(tmp_path / "kb", [("new", "who cleans the fridge", "the team, on Fridays"), *edited])
    report = build_index(s, [tmp_path / "kb"], progress=False, embedder=emb)
    assert (report.embedded_files, report.reused_records, report.entries) == (1, 29, 31)
    changed = {"where is the shuttle 15", "moved to building C", "who cleans the fridge", "the team, on Fridays"}
    assert emb.calls and set(emb.calls) <= changed
    retriever = open_retriever(s, embedder=emb)
    top = retriever.search_sync("where is the shuttle 15", k=1)[0]
    assert (top.id, top.answer) == ("e15", "moved to building C")
    top = retriever.search_sync("where is the gym 27", k=1)[0]
    assert (top.id, top.answer) == ("e27", "gym answer 27")


def test_changed_chunk_settings_reembed(tmp_path: Path, kb: Path) -> None:
    s = settings_in(tmp_path)
    emb = HashEmbedder()
    # long enough that 100-character chunks differ from the default ones
    text = " ".join(f"The assembly point for floor {n} is the lawn across the road by gate {n}." for n in range(1, 9))
    (kb / "guide.md").write_text(f"# Guide\n\n## Fire\n\n{text}\n", encoding="utf-8")
    build_index(s, [kb], progress=False, embedder=emb)
    s.kb.chunk_chars, s.kb.chunk_overlap_chars = 100, 10
    emb.calls.clear()
    report = build_index(s, [kb], progress=False, embedder=emb)
    assert report.embedded_files == 1 and any("assembly point" in c for c in emb.calls)


def test_documents_chunked_by_an_older_chunker_are_read_again(tmp_path: Path, kb: Path) -> None:
    from assistant.kb.store import current_generation

    s = settings_in(tmp_path)
    emb = HashEmbedder()
    build_index(s, [kb], progress=False, embedder=emb)
    manifest_path = current_generation(tmp_path / "index") / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for info in manifest["files"].values():
        if info.get("chunking"):
            info["chunking"].pop("format")  # as an index built before chunking.CHUNK_FORMAT existed
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    emb.calls.clear()
    report = build_index(s, [kb], progress=False, embedder=emb)
    assert (report.embedded_files, report.reused_files) == (1, 1)  # the guide again, the FAQ table reused
    # read again; its chunks came out the same, so they keep their vectors
    assert report.reused_records == report.chunks == 1 and emb.calls == []


def test_index_from_another_embedder_is_refused(tmp_path: Path, kb: Path) -> None:
    s = settings_in(tmp_path)
    build_index(s, [kb], progress=False, embedder=HashEmbedder(name="model-a"))
    with pytest.raises(RetrieveError) as err:
        open_retriever(s, embedder=HashEmbedder(name="model-b"))
    assert err.value.code == "kb-embedder-mismatch"
    assert "model-a" in err.value.message and "assistant kb build" in err.value.message
    # by configured name too, before any model is loaded
    s.kb.embedder = "sentence-transformers"
    with pytest.raises(RetrieveError, match="built with the embedder"):
        open_retriever(s)
    # a build with the new embedder embeds everything again instead of mixing vectors
    s.kb.embedder = "use-multilingual"
    b = HashEmbedder(name="model-b")
    report = build_index(s, [kb], progress=False, embedder=b)
    assert report.embedded_files == 2 and any("everything is embedded again" in w for w in report.warnings)
    assert open_retriever(s, embedder=b).search_sync("guest wifi", k=1)[0].id == "wifi"


def test_missing_index_names_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(RetrieveError) as err:
        open_retriever(settings_in(tmp_path), embedder=HashEmbedder())
    assert err.value.code == "kb-missing" and "assistant kb build" in err.value.message
    assert domain_terms(settings_in(tmp_path)) == []


def test_bad_files_are_skipped_and_good_ones_answer(tmp_path: Path, kb: Path) -> None:
    docx = pytest.importorskip("docx")
    (kb / "broken.pdf").write_bytes(b"%PDF-1.7 this is not really a pdf")
    docx.Document().save(kb / "empty.docx")
    (kb / "gbk.txt").write_bytes("班车每15分钟一班，从张江高科站2号口出发。".encode("gbk"))
    (kb / "policy.pdf").write_bytes(minimal_pdf(["Hotels are capped at 600 yuan per night."]))
    s = settings_in(tmp_path)
    emb = HashEmbedder()
    report = build_index(s, [kb], progress=False, embedder=emb)
    skipped = {sk.file: sk.reason for sk in report.skipped}
    assert set(skipped) == {"kb/broken.pdf", "kb/empty.docx"}
    assert "PDF" in skipped["kb/broken.pdf"] and "empty" in skipped["kb/empty.docx"]
    retriever = open_retriever(s, embedder=emb)
    assert retriever.search_sync("班车从张江高科站出发", k=1)[0].source == "kb/gbk.txt"
    assert retriever.search_sync("hotels capped per night", k=1)[0].page == 1
    with pytest.raises(RetrieveError) as err:
        build_index(s, [kb], progress=False, embedder=emb, strict=True)
    assert err.value.code == "kb-skipped" and "broken.pdf" in err.value.message
    manifest = json.loads((current_generation(tmp_path / "index") / "manifest.json").read_text())  # type: ignore[operator]
    assert {sk["file"] for sk in manifest["skipped"]} == {"kb/broken.pdf", "kb/empty.docx"}


def test_nothing_readable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "x.pdf").write_bytes(b"junk")
    with pytest.raises(RetrieveError) as err:
        build_index(settings_in(tmp_path), [tmp_path / "kb"], progress=False, embedder=HashEmbedder())
    assert err.value.code == "kb-empty" and "x.pdf" in err.value.message


def test_interrupted_build_leaves_the_old_index(tmp_path: Path, kb: Path) -> None:
    s = settings_in(tmp_path)
    emb = HashEmbedder()
    build_index(s, [kb], progress=False, embedder=emb)
    live = current_generation(tmp_path / "index")
    write_faq(kb, [("new", "brand new question", "new answer")], name="more.csv")

    def ctrl_c(_tmp: Path) -> None:
        raise KeyboardInterrupt

    from assistant.kb import build as index_mod

    with pytest.raises(KeyboardInterrupt):
        index_mod.build(
            [kb], tmp_path / "index", embedder=emb, embedder_name="use-multilingual", root=tmp_path,
            chunk_chars=400, overlap_chars=80, progress=False, before_publish=ctrl_c,
        )  # fmt: skip
    assert current_generation(tmp_path / "index") == live
    assert not list((tmp_path / "index").glob(".build-*"))
    retriever = open_retriever(s, embedder=emb)
    assert retriever.search_sync("guest wifi password", k=1)[0].id == "wifi"


def test_killed_build_process_leaves_the_old_index(tmp_path: Path, kb: Path) -> None:
    s = settings_in(tmp_path)
    build_index(s, [kb], progress=False, embedder=HashEmbedder())
    live = current_generation(tmp_path / "index")
    write_faq(kb, [(f"n{i}", f"question number {i}", "x") for i in range(200)], name="big.csv")
    marker = tmp_path / "embedding-started"
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(TESTS)!r})
        from pathlib import Path
        from kb_support import HashEmbedder, settings_in
        from assistant.registry import build_index

        class Slow(HashEmbedder):
            def embed(self, texts):
                Path({str(marker)!r}).touch()
                time.sleep(30)
                return super().embed(texts)

        build_index(settings_in(Path({str(tmp_path)!r})), [Path({str(kb)!r})], progress=False, embedder=Slow())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert current_generation(tmp_path / "index") == live
    emb = HashEmbedder()
    assert open_retriever(s, embedder=emb).search_sync("guest wifi password", k=1)[0].id == "wifi"
    # the next build cleans up what the killed one left and publishes normally
    report = build_index(s, [kb], progress=False, embedder=emb)
    assert report.entries == 202 and not list((tmp_path / "index").glob(".build-*"))
    assert len(list((tmp_path / "index").glob("gen-*"))) == 1


def test_domain_terms_come_from_the_index(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    write_faq(folder, [("a", "如何下载滴滴APP", "在应用商店搜索滴滴出行，绑定企业邮箱"), ("b", "访客Wi-Fi", "连接HB-Guest网络，密码在前台")])
    s = settings_in(tmp_path)
    build_index(s, [folder], progress=False, embedder=HashEmbedder())
    terms = domain_terms(s, limit=20)
    assert "滴滴" in terms and "HB-Guest" in terms
    assert len(domain_terms(s, limit=2)) == 2


def _classifier_kb(folder: Path) -> Path:
    """A small FAQ whose index trains the entry classifier (so classifier.npz and answers.npy exist)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"id": "refund", "question": "refund", "answer": "a", "alternates": ["money back please", "get a refund"]},
        {"id": "card", "question": "card arrival", "answer": "b", "alternates": ["my card has not arrived", "card delivery"]},
        {"id": "pin", "question": "change pin", "answer": "c", "alternates": ["new pin code", "reset my pin"]},
    ]
    (folder / "faq.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    (folder / "guide.md").write_text("# Guide\n\nThe assembly point is the lawn.\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def classifier_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One built index (with its classifier), copied by each test that damages it."""
    root = tmp_path_factory.mktemp("built")
    build_index(settings_in(root), [_classifier_kb(root / "kb")], progress=False, embedder=HashEmbedder())
    return root


@pytest.mark.parametrize(
    ("file", "cut"),
    [
        ("vectors.faiss", 0.5),
        ("records.jsonl", 0.5),
        ("classifier.npz", 0.5),
        ("answers.npy", 0.5),
        ("manifest.json", 0.5),
        ("records.jsonl", -1),  # cut at the last line's end: it still parses, but a record is gone
        ("lexical/params.index.json", 0.3),
    ],
)
def test_a_damaged_index_says_which_file_and_what_to_do(
    tmp_path: Path, classifier_index: Path, file: str, cut: float
) -> None:
    # issue 23, item 7: a truncated vectors.faiss, records.jsonl or classifier.npz, or a broken
    # manifest.json, each gave a raw traceback (JSONDecodeError, BadZipFile, faiss's RuntimeError)
    import shutil

    shutil.copytree(classifier_index, tmp_path, dirs_exist_ok=True)
    s = settings_in(tmp_path)
    emb = HashEmbedder()
    generation = current_generation(tmp_path / "index")
    assert generation is not None and (generation / "classifier.npz").exists()
    path = generation / file
    data = path.read_bytes()
    if cut < 0:
        lines = data.decode().splitlines(keepends=True)
        path.write_text("".join(lines[:-1]), encoding="utf-8")
    else:
        path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(RetrieveError) as err:
        open_retriever(s, embedder=emb)
    assert err.value.code == "kb-corrupt", err.value.message
    assert f"{generation.name}/{file}" in err.value.message and "assistant kb build" in err.value.message
    # the Whisper prompt's terms are only a hint: a damaged manifest gives none, never a traceback
    assert isinstance(domain_terms(s), list)
    if file == "vectors.faiss":  # a rebuild replaces the damaged generation
        build_index(s, [tmp_path / "kb"], progress=False, embedder=emb)
        assert open_retriever(s, embedder=emb).search_sync("money back", k=1)[0].id == "refund"


def test_a_full_disk_during_a_build_is_one_clear_error_and_the_index_stays(
    tmp_path: Path, kb: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 23, item 7: a full disk during `kb build` left the previous index, but said so in a traceback
    import errno

    from assistant.cli import main
    from assistant.kb import build as index_mod

    s = settings_in(tmp_path)
    emb = HashEmbedder()
    build_index(s, [kb], progress=False, embedder=emb)
    live = current_generation(tmp_path / "index")
    write_faq(kb, [("new", "brand new question", "new answer")], name="more.csv")

    def full(tmp: Path, manifest: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "manifest.json"))

    monkeypatch.setattr(index_mod, "_write_manifest", full)
    with pytest.raises(RetrieveError) as err:
        build_index(s, [kb], progress=False, embedder=emb)
    assert err.value.code == "kb-write" and "No space left on device" in err.value.message
    assert "previous index is unchanged" in err.value.message
    assert current_generation(tmp_path / "index") == live
    assert open_retriever(s, embedder=emb).search_sync("guest wifi password", k=1)[0].id == "wifi"
    # the command line says it in one line
    monkeypatch.setattr("assistant.registry.kb_embedder", lambda settings: emb)
    config = tmp_path / "assistant.toml"
    config.write_text(f'[kb]\nindex_dir = "{tmp_path / "index"}"\npaths = ["{kb}"]\nsynthesize = false\n', encoding="utf-8")
    assert main(["kb", "build", "--config", str(config)]) == 1
    printed = capsys.readouterr().err
    assert "[kb-write]" in printed and "Traceback" not in printed
