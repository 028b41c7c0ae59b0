"""The persistent index folder: layout, atomic publication, incremental build.

Layout of ``index_dir``::

    CURRENT                 the name of the live generation (replaced atomically with os.replace)
    gen-<time>-<pid>/       one complete, immutable index
        manifest.json       format, embedder identity and dimensions, per-file sha256, counts,
                            skipped files, calibration, domain terms
        records.jsonl       one record per line (FAQ entry or document chunk), in key order
        vectors.faiss       one vector per key (flat inner product, or HNSW above HNSW_MIN_KEYS)
        lexical/            bm25s index over the same keys + document frequencies
        classifier.npz      the FAQ entry classifier, when one is trained (see ``classifier``)
        answers.npy         the FAQ answers' vectors, one row per record (zeros for chunks), kept
                            with the classifier it trains so a rebuild re-embeds only new answers
        answers_lexical/    bm25s index over the FAQ answers (one document per FAQ entry, in
                            record order), beside answers.npy
        view.npz            the English view's vectors (``views``) of the FAQ entries' phrasings
                            (``keys``, in key order) and answers (``answers``, one row per entry),
                            when the classifier reads that view; zeros for non-English text
    .build-<pid>-<n>/       a build in progress (removed by the next build if it was killed)
    .lock                   held (flock) while a build runs

A build writes a whole new generation beside the live one and only then points CURRENT at it, so
a crash, Ctrl-C or kill at any moment leaves the previous index answering. Files whose sha256 (and
chunking settings) did not change keep their records and vectors: only changed files are embedded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.kb import calibration, views
from assistant.kb.chunking import CHUNK_FORMAT
from assistant.kb.ingest import Record, SkipFile, discover, read_file
from assistant.stages import AssistantError, Embedder, RetrieveError

FORMAT = 1
HNSW_MIN_KEYS = 50_000
"""Exact (flat) search below this many keys; HNSW above, where a flat scan would cost > ~10 ms."""
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
EMBED_BATCH = 256


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Skip:
    file: str
    reason: str


@dataclass
class BuildReport:
    """What a build did; ``to_json`` is what ``assistant kb build --json`` prints."""

    index_dir: str
    files: int = 0
    entries: int = 0
    chunks: int = 0
    keys: int = 0
    embedded_files: int = 0
    reused_files: int = 0
    removed_files: list[str] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    embedder: str = ""
    index_type: str = "flat"
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "index_dir": self.index_dir,
            "files": self.files,
            "entries": self.entries,
            "chunks": self.chunks,
            "keys": self.keys,
            "embedded_files": self.embedded_files,
            "reused_files": self.reused_files,
            "removed_files": self.removed_files,
            "skipped": [{"file": s.file, "reason": s.reason} for s in self.skipped],
            "warnings": self.warnings,
            "embedder": self.embedder,
            "index_type": self.index_type,
            "seconds": round(self.seconds, 3),
        }


# --------------------------------------------------------------------------------------------
# Reading a generation
# --------------------------------------------------------------------------------------------


def current_generation(index_dir: Path) -> Path | None:
    pointer = index_dir / "CURRENT"
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    gen = index_dir / name
    return gen if (gen / "manifest.json").is_file() else None


def read_manifest(generation: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((generation / "manifest.json").read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise RetrieveError(
            "kb-format",
            f"the index at {generation.parent} has format {data.get('format')}, this version reads {FORMAT}; "
            f"rebuild it with `assistant kb build --index {generation.parent}`",
        )
    return data


def read_records(generation: Path) -> list[Record]:
    with (generation / "records.jsonl").open(encoding="utf-8") as f:
        return [Record.from_json(json.loads(line)) for line in f if line.strip()]


def read_vectors(generation: Path) -> Any:
    import faiss

    return faiss.read_index(str(generation / "vectors.faiss"))


def flat_view(index: Any) -> np.ndarray:
    """The stored vectors of a flat or HNSW-flat faiss index as a (n, d) numpy view (no copy)."""
    import faiss

    storage: Any = faiss.downcast_index(index.storage) if hasattr(index, "storage") else index
    n, d = storage.ntotal, storage.d
    if n == 0:
        return np.zeros((0, d), dtype=np.float32)
    return faiss.rev_swig_ptr(storage.get_xb(), n * d).reshape(n, d)


def check_embedder(manifest: dict[str, Any], where: Path, *, name: str, identity: str | None = None, dimensions: int | None = None) -> None:
    """Refuse an index built with a different embedder (its vectors live in another space).

    Checked twice by ``open_retriever``: by configured name before loading the model (cheap), then by
    the loaded model's identity and dimensions.
    """
    built = manifest.get("embedder", {})
    same = (
        built.get("name") == name
        and (identity is None or built.get("identity") == identity)
        and (dimensions is None or built.get("dimensions") == dimensions)
    )
    if not same:
        raise RetrieveError(
            "kb-embedder-mismatch",
            f"the index at {where} was built with the embedder '{built.get('identity', built.get('name'))}', "
            f"but [kb] embedder is now '{identity or name}'; vectors from two embedders cannot be "
            f"compared. Rebuild it with `assistant kb build --index {where}` (or switch the embedder back).",
        )


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _build_lock(index_dir: Path) -> Iterator[None]:
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / ".lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise RetrieveError("kb-busy", f"another `assistant kb build` is writing {index_dir}; wait for it") from err
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _source_name(path: Path, root: Path) -> str:
    resolved = path.resolve()
    try:
        return resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def _make_faiss(vectors: np.ndarray, dimensions: int) -> Any:
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)  # a search process may have lowered it to 1
    index: Any
    if len(vectors) >= HNSW_MIN_KEYS:
        index = faiss.IndexHNSWFlat(dimensions, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    else:
        index = faiss.IndexFlatIP(dimensions)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


_NOT_TERMS = frozenset(
    "https http com www example 怎么 什么 哪里 多少 如何 可以 需要 请问 公司 员工 每天 每个 之后 以后 以上 之前".split()
)


def _domain_terms(records: Sequence[Record], limit: int = 200) -> list[str]:
    """Words of this knowledge base that general language rarely uses (jieba's TF-IDF keywords):
    names, places, products. Whisper, prompted with them, spells them as the knowledge base does."""
    import jieba.analyse

    parts: list[str] = []
    # Keyword extraction reads every character; on a large knowledge base an even sample of
    # records finds the same distinctive words in a bounded time.
    step = max(1, len(records) // 2000)
    for r in records[::step]:
        parts.append(r.text)
        parts.extend(r.alternates[:3])
        if r.answer:
            parts.append(r.answer)
        if r.section:
            parts.append(r.section)
    text = "\n".join(parts)
    terms = jieba.analyse.extract_tags(text, topK=limit * 4)
    out = []
    for t in terms:
        t = t.strip()
        if len(t) < 2 or t.isdigit() or t.lower() in _NOT_TERMS:
            continue
        if t.isascii():
            # Latin words: only names and codes (DiDi, WeCom, HB-Guest, OA, 8:30), not "How" or "desk".
            if not (any(c.isupper() for c in t[1:]) or any(c.isdigit() or c in "-_" for c in t)):
                continue
        out.append(t)
    # jieba splits "HB-Guest" into "HB", "-", "Guest": put hyphenated names back whole, where their
    # first part ranked, so the prompt spells them as the knowledge base does.
    compounds: dict[str, str] = {}
    for name in re.findall(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+", text):
        compounds.setdefault(name.split("-")[0], name)
    merged: list[str] = []
    for t in out:
        whole = compounds.pop(t, None)
        if whole and whole not in merged:
            merged.append(whole)
        if t not in merged:
            merged.append(t)
    return merged[:limit]


def build(
    paths: Sequence[Path],
    index_dir: Path,
    *,
    embedder: Embedder,
    embedder_name: str,
    root: Path,
    chunk_chars: int,
    overlap_chars: int,
    progress: bool = True,
    before_publish: Callable[[Path], None] | None = None,
    view: views.ViewLoader | None = None,
) -> BuildReport:
    """Build (or update) the index in ``index_dir`` from ``paths``; see the module docstring.

    ``before_publish`` is called with the finished temporary folder just before it goes live (tests
    use it to kill a build at the worst moment). ``view`` is the classifier's English view
    (``views``), loaded only when the classifier trains on English phrasings; when loading raises
    ``AssistantError`` (its model is not fetched) the build goes on without the view and says so
    in ``warnings``.
    """
    started = time.perf_counter()
    report = BuildReport(index_dir=str(index_dir), embedder=embedder.identity)
    with _build_lock(index_dir):
        for stale in index_dir.glob(".build-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed build; we hold the lock
        old_gen = current_generation(index_dir)
        old_manifest: dict[str, Any] = {}
        old_records: list[Record] = []
        old_index: Any = None
        chunking = {"chunk_chars": chunk_chars, "overlap_chars": overlap_chars, "format": CHUNK_FORMAT}
        if old_gen is not None:
            try:
                old_manifest = read_manifest(old_gen)
                if old_manifest.get("embedder", {}).get("identity") != embedder.identity:
                    report.warnings.append(
                        f"the old index was built with '{old_manifest.get('embedder', {}).get('identity')}': "
                        "everything is embedded again"
                    )
                    old_manifest = {}
                else:
                    old_records = read_records(old_gen)
                    old_index = read_vectors(old_gen)
            except (RetrieveError, OSError, ValueError, KeyError, RuntimeError) as err:
                report.warnings.append(f"the old index could not be read ({err}): everything is embedded again")
                old_manifest, old_records, old_index = {}, [], None
        old_files: dict[str, Any] = old_manifest.get("files", {})
        old_vectors = flat_view(old_index) if old_index is not None else None
        old_answers = _read_answers(old_gen, len(old_records)) if old_vectors is not None and old_gen else None
        old_view = _read_view(old_gen, old_records) if old_vectors is not None and old_gen else None
        old_view_identity = (old_manifest.get("view") or {}).get("identity")
        # key offset and position of each old record, to copy its vectors
        old_offsets: dict[str, list[tuple[Record, int, int]]] = {}
        offset = 0
        for position, rec in enumerate(old_records):
            old_offsets.setdefault(rec.source, []).append((rec, offset, position))
            offset += len(rec.keys)

        files, missing = discover(paths)
        for p, why in missing:
            report.skipped.append(Skip(str(p), why))

        records: list[Record] = []
        per_record: list[np.ndarray | None] = []  # reused vectors, or None: embed
        answer_of: list[np.ndarray | None] = []  # reused answer vectors, or None
        view_of: list[tuple[np.ndarray, np.ndarray] | None] = []  # reused view vectors (keys, answer), or None
        manifest_files: dict[str, Any] = {}
        bar = _progress(files, progress)
        for path in bar:
            source = _source_name(path, root)
            if source in manifest_files:
                continue
            try:
                sha = file_sha256(path)
            except OSError as err:
                report.skipped.append(Skip(source, f"cannot read: {err.strerror or err}"))
                continue
            old = old_files.get(source)
            if (
                old is not None
                and old.get("sha256") == sha
                and old.get("chunking") in (None, chunking)
                and source in old_offsets
                and old_vectors is not None
            ):
                for rec, off, position in old_offsets[source]:
                    records.append(rec)
                    per_record.append(old_vectors[off : off + len(rec.keys)])
                    answer_of.append(old_answers[position] if old_answers is not None else None)
                    view_of.append(old_view[position] if old_view is not None else None)
                manifest_files[source] = old
                report.reused_files += 1
                continue
            try:
                result = read_file(path, source, chunk_chars=chunk_chars, overlap_chars=overlap_chars)
            except SkipFile as err:
                report.skipped.append(Skip(source, str(err)))
                continue
            except Exception as err:  # a parser bug must not end the build; report it like a skip
                report.skipped.append(Skip(source, f"unexpected {type(err).__name__}: {err}"))
                continue
            report.warnings.extend(f"{source}: {w}" for w in result.warnings)
            records.extend(result.records)
            per_record.extend([None] * len(result.records))
            answer_of.extend([None] * len(result.records))
            view_of.extend([None] * len(result.records))
            manifest_files[source] = {
                "sha256": sha,
                "size": path.stat().st_size,
                "kind": result.kind,
                "records": len(result.records),
                # chunking settings only shape documents; an FAQ table is reused whatever they are
                "chunking": chunking if result.kind == "document" else None,
            }
            report.embedded_files += 1

        report.removed_files = sorted(set(old_files) - set(manifest_files))
        # Embed the fresh records' keys in one batched pass, then lay all vectors out in key order.
        fresh_keys = [k for r, v in zip(records, per_record, strict=True) if v is None for k in r.keys]
        fresh_vectors = _embed_all(embedder, fresh_keys, progress)
        ordered: list[np.ndarray] = []
        cursor = 0
        for r, v in zip(records, per_record, strict=True):
            if v is None:
                v = fresh_vectors[cursor : cursor + len(r.keys)]
                cursor += len(r.keys)
            ordered.append(v)
        dims = embedder.dimensions
        matrix = np.concatenate(ordered) if ordered else np.zeros((0, dims), dtype=np.float32)
        n_keys_total = sum(len(r.keys) for r in records)
        assert matrix.shape == (n_keys_total, dims), (matrix.shape, n_keys_total)

        report.files = len(manifest_files)
        report.entries = sum(1 for r in records if r.kind == "faq")
        report.chunks = sum(1 for r in records if r.kind == "document")
        report.keys = n_keys_total
        if not records:
            raise RetrieveError(
                "kb-empty",
                "nothing to index: no readable FAQ table or document in "
                + ", ".join(str(p) for p in paths)
                + (f" ({len(report.skipped)} skipped: " + "; ".join(f"{s.file}: {s.reason}" for s in report.skipped[:3]) + ")" if report.skipped else ""),
            )

        tmp = index_dir / f".build-{os.getpid()}-{time.time_ns()}"
        tmp.mkdir()
        try:
            index = _make_faiss(matrix, dims)
            report.index_type = "hnsw" if len(matrix) >= HNSW_MIN_KEYS else "flat"
            import faiss

            faiss.write_index(index, str(tmp / "vectors.faiss"))
            answers = None
            view_info: dict[str, Any] | None = None
            view_parts: tuple[np.ndarray, np.ndarray] | None = None
            if _classifier_trains(records):
                answers = _answer_vectors(embedder, records, answer_of, progress)
                np.save(tmp / "answers.npy", answers)
                if view is not None and _english_entries(records) >= views.MIN_ENGLISH_ENTRIES:
                    try:
                        encoder = view.load()
                    except AssistantError as err:
                        report.warnings.append(f"the classifier is trained without its English view: {err}")
                    else:
                        reusable = view_of if old_view_identity == encoder.identity else [None] * len(records)
                        view_parts = _view_vectors(encoder, records, reusable, progress)
                        np.savez(tmp / "view.npz", keys=view_parts[0], answers=view_parts[1])
                        view_info = {
                            "name": view.name,
                            "identity": encoder.identity,
                            "dimensions": encoder.dimensions,
                            "weight": views.VIEW_WEIGHT,
                        }
            trained = answers is not None and _train_classifier(records, matrix, answers, tmp / "classifier.npz", view_parts)
            from assistant.kb.lexical import LexicalIndex

            LexicalIndex.build([k for r in records for k in r.keys]).save(tmp / "lexical")
            if answers is not None:
                LexicalIndex.build([str(r.answer or "") for r in records if r.kind == "faq"]).save(tmp / "answers_lexical")
            with (tmp / "records.jsonl").open("w", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
            report.seconds = time.perf_counter() - started
            manifest = {
                "format": FORMAT,
                "embedder": {"name": embedder_name, "identity": embedder.identity, "dimensions": dims},
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "index_type": report.index_type,
                "classifier": trained,
                "view": view_info,
                "counts": {"files": report.files, "entries": report.entries, "chunks": report.chunks, "keys": report.keys},
                "files": manifest_files,
                "skipped": [{"file": s.file, "reason": s.reason} for s in report.skipped],
                "calibration": calibration.for_embedder(embedder.identity).to_json(),
                "domain_terms": _domain_terms(records),
                "build_s": round(report.seconds, 3),
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
            _fsync_tree(tmp)
            if before_publish is not None:
                before_publish(tmp)
            gen = index_dir / f"gen-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{time.time_ns() % 10**6}"
            os.rename(tmp, gen)
            pointer_tmp = index_dir / f".CURRENT-{os.getpid()}"
            pointer_tmp.write_text(gen.name + "\n", encoding="utf-8")
            with pointer_tmp.open("rb") as f:
                os.fsync(f.fileno())
            os.replace(pointer_tmp, index_dir / "CURRENT")  # the one atomic step that publishes
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        # Old generations are no longer pointed at; a daemon that loaded one keeps it in memory.
        for other in index_dir.glob("gen-*"):
            if other.name != gen.name:
                shutil.rmtree(other, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _classifier_trains(records: Sequence[Record]) -> bool:
    from assistant.kb import classifier

    return classifier.should_train([len(r.keys) for r in records if r.kind == "faq"])


def _read_answers(generation: Path, n_records: int) -> np.ndarray | None:
    """The old generation's answer vectors, or None (none stored, or not one row per record)."""
    try:
        answers = np.load(generation / "answers.npy")
    except (OSError, ValueError):
        return None
    return answers if answers.ndim == 2 and len(answers) == n_records else None


def _answer_vectors(
    embedder: Embedder, records: Sequence[Record], reused: Sequence[np.ndarray | None], progress: bool
) -> np.ndarray:
    """One row per record: its FAQ answer's vector (reused when the file did not change), zeros for
    document chunks."""
    out = np.zeros((len(records), embedder.dimensions), dtype=np.float32)
    fresh = []
    for i, (r, v) in enumerate(zip(records, reused, strict=True)):
        if r.kind != "faq" or not r.answer:
            continue
        if v is not None and v.any():
            out[i] = v
        else:
            fresh.append(i)
    if fresh:
        out[fresh] = _embed_all(embedder, [str(records[i].answer) for i in fresh], progress)
    return out


def _english_entries(records: Sequence[Record]) -> int:
    return sum(1 for r in records if r.kind == "faq" and any(views.is_english(k) for k in r.keys))


def _read_view(generation: Path, records: Sequence[Record]) -> list[tuple[np.ndarray, np.ndarray] | None] | None:
    """Per old record: its view vectors (key rows, answer row) for FAQ entries, None for chunks; None
    when the old generation has no view (or it does not fit its records)."""
    try:
        with np.load(generation / "view.npz") as z:
            keys, answers = z["keys"], z["answers"]
    except (OSError, ValueError, KeyError):
        return None
    faq = [r for r in records if r.kind == "faq"]
    if len(answers) != len(faq) or len(keys) != sum(len(r.keys) for r in faq):
        return None
    out: list[tuple[np.ndarray, np.ndarray] | None] = []
    row = entry = 0
    for r in records:
        if r.kind != "faq":
            out.append(None)
            continue
        out.append((keys[row : row + len(r.keys)], answers[entry]))
        row += len(r.keys)
        entry += 1
    return out


def _view_vectors(
    view: Embedder, records: Sequence[Record], reused: Sequence[tuple[np.ndarray, np.ndarray] | None], progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The view's vectors of every FAQ entry's phrasings (in key order) and answers (one row per
    entry), zeros for non-English text; reused rows where the entry's file did not change."""
    faq = [(r, v) for r, v in zip(records, reused, strict=True) if r.kind == "faq"]
    fresh = [t for r, v in faq if v is None for t in (*r.keys, str(r.answer or ""))]
    english = [t for t in fresh if views.is_english(t)]
    embedded = iter(_embed_all(view, english, progress))
    fresh_rows = iter([next(embedded) if views.is_english(t) else np.zeros(view.dimensions, dtype=np.float32) for t in fresh])
    keys: list[np.ndarray] = []
    answers: list[np.ndarray] = []
    for r, v in faq:
        if v is None:
            rows = [next(fresh_rows) for _ in range(len(r.keys) + 1)]
            v = (np.stack(rows[:-1]), rows[-1])
        keys.append(v[0])
        answers.append(v[1])
    dims = view.dimensions
    return (
        np.concatenate(keys).astype(np.float32) if keys else np.zeros((0, dims), dtype=np.float32),
        np.stack(answers).astype(np.float32) if answers else np.zeros((0, dims), dtype=np.float32),
    )


def _train_classifier(
    records: Sequence[Record],
    matrix: np.ndarray,
    answers: np.ndarray,
    path: Path,
    view: tuple[np.ndarray, np.ndarray] | None = None,
) -> bool:
    """Fit the FAQ entry classifier (see ``classifier``); True when written.

    Each entry's examples are its phrasings and its answer. The answer holds what detail questions
    ask about ("how many days of fully paid sick leave": "5 days of fully paid sick leave a year"),
    which no phrasing of the question does. On the sample knowledge base's faithfulness questions,
    with the calibration refitted for it, the passages holding the facts reached the answer for 87%
    of the dev questions instead of 82%, and 77% of the held-out ones instead of 50%
    (`bench/retrieval.py --only sample`); BANKING77 recall@1 (5 alternates) 0.780 instead of 0.776.

    ``view``: the English view's vectors of the FAQ entries' phrasings and answers (``_view_vectors``),
    set beside the main vectors (``views.classifier_input``)."""
    from assistant.kb import classifier

    faq = [i for i, r in enumerate(records) if r.kind == "faq"]
    starts = np.zeros(len(records) + 1, dtype=np.int64)
    np.cumsum([len(r.keys) for r in records], out=starts[1:])
    rows = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in faq])
    labels = np.concatenate([np.full(starts[i + 1] - starts[i], c) for c, i in enumerate(faq)])
    texts = [k for i in faq for k in records[i].keys]
    with_answer = [c for c, i in enumerate(faq) if records[i].answer]
    vectors = np.concatenate(
        [
            views.classifier_input(matrix[rows], None if view is None else view[0]),
            views.classifier_input(answers[[faq[c] for c in with_answer]], None if view is None else view[1][with_answer]),
        ]
    )
    labels = np.concatenate([labels, np.asarray(with_answer, dtype=labels.dtype)])
    texts += [str(records[faq[c]].answer) for c in with_answer]
    model = classifier.train(vectors, labels, len(faq), np.asarray(faq), texts)
    model.save(path)
    return True


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())


def _progress(items: Sequence[Path], enabled: bool) -> Any:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="reading", unit="file", file=sys.stderr, leave=False)


def _embed_all(embedder: Embedder, texts: Sequence[str], progress: bool) -> np.ndarray:
    if not texts:
        return np.zeros((0, embedder.dimensions), dtype=np.float32)
    out = np.empty((len(texts), embedder.dimensions), dtype=np.float32)
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(texts), desc="embedding", unit="text", file=sys.stderr, leave=False)
    try:
        for start in range(0, len(texts), EMBED_BATCH):
            batch = texts[start : start + EMBED_BATCH]
            out[start : start + len(batch)] = embedder.embed(batch)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    return out
