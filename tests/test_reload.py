"""Live reload (issue 24): the running daemon rebuilds its knowledge base when files change or when
asked, swaps the new index in between turns, and keeps the old one answering when a build fails.

Real index builds (HashEmbedder, no synthetic questions unless a test asks for them with a fake LLM),
a real daemon with fake speech engines; files are watched every 50 ms."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import errno
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from daemon_support import collect, hello, open_client, running_daemon
from fakes import FakeLanguageModel, FakeSynthesizer, FakeTranscriber
from kb_support import HashEmbedder, settings_in

from assistant import kb, registry
from assistant.config import Settings
from assistant.daemon import Daemon
from assistant.errors import AssistantError
from assistant.kb.search import IndexRetriever
from assistant.reload import LoopModel, scan
from assistant.session import Session
from assistant.sharing import FairRetriever, with_retriever
from assistant.stages import Engines, Message, Passage, Retriever

BADGE_Q = "Where do visitors get a badge?"
OLD_BADGE = "Badges are handed out at reception."
NEW_BADGE = "Badges are handed out at the security desk."
DOG_Q = "Can I bring my dog to the office?"
DOG_A = "Only service dogs are allowed in the office."
ROWS = [
    ("badge", BADGE_Q, OLD_BADGE),
    ("wifi", "What is the guest wifi password?", "The guest network is Acme-Guest."),
    ("park", "Where can I park my car?", "Visitor parking is behind building B."),
]


def write_faq(folder: Path, rows: list[tuple[str, str, str]], name: str = "faq.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tmp = folder / f".{name}.tmp"  # written whole, then renamed: as an editor saves
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "question", "answer"])
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def reload_settings(tmp: Path, **kb_keys: object) -> Settings:
    s = settings_in(tmp, paths=[str(tmp / "kb")], english_view="", watch_interval_s=0.05, watch_quiet_s=0.1)
    for key, value in kb_keys.items():
        setattr(s.kb, key, value)
    s.queue.record = False
    s.answer.verify_faq_below = 0.0
    s.ahead.prefill = "off"
    return s


def built(tmp: Path, settings: Settings) -> IndexRetriever:
    write_faq(tmp / "kb", ROWS)
    embedder = HashEmbedder()
    kb.build_index(settings, embedder=embedder, progress=False)
    return kb.open_retriever(settings, embedder=embedder, view_for=lambda name: embedder)


def engines_on(retriever: Retriever, llm: FakeLanguageModel | None = None) -> Engines:
    return Engines.of(
        retriever=retriever,
        llm=llm or FakeLanguageModel(),
        transcriber=FakeTranscriber(),
        synthesizer=FakeSynthesizer(),
    )


async def answer(daemon: Daemon, question: str, session: Session | None = None) -> str:
    s = session or daemon.open_session(speak=False)
    await s.ask(question)
    assert s.task is not None
    await s.task
    return s.results[-1].reply


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not within the time")


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Daemon, Settings, Path]]:
    settings = reload_settings(tmp_path)
    retriever = built(tmp_path, settings)
    source = registry.index_source(settings, retriever)
    async with running_daemon(engines_on(retriever), settings, index=source) as d:
        yield d.daemon, settings, tmp_path / "kb"


async def test_a_saved_file_is_answered_without_a_restart(live: tuple[Daemon, Settings, Path]) -> None:
    daemon, _, folder = live
    assert await answer(daemon, BADGE_Q) == OLD_BADGE
    first = daemon.healthy()["kb_generation"]
    write_faq(folder, [*ROWS[1:], ("badge", BADGE_Q, NEW_BADGE), ("dog", DOG_Q, DOG_A)])
    assert daemon.reloader is not None
    await until(lambda: daemon.healthy()["kb_generation"] != first)
    assert await answer(daemon, BADGE_Q) == NEW_BADGE
    assert await answer(daemon, DOG_Q) == DOG_A
    assert daemon.reloader.builds == 1
    # the kiosk session and the sessions already open search the new index too
    assert await answer(daemon, DOG_Q, daemon.kiosk) == DOG_A


async def test_a_burst_of_saves_is_one_build(tmp_path: Path) -> None:
    settings = reload_settings(tmp_path, watch_quiet_s=1.0)
    retriever = built(tmp_path, settings)
    folder = tmp_path / "kb"
    async with running_daemon(engines_on(retriever), settings, index=registry.index_source(settings, retriever)) as d:
        reloader = d.daemon.reloader
        assert reloader is not None
        for n in range(5):  # much less than watch_quiet_s apart, over several polls
            write_faq(folder, [*ROWS, ("dog", DOG_Q, f"{DOG_A} ({n})")])
            await asyncio.sleep(0.08)
        await until(lambda: reloader.builds > 0)
        await asyncio.sleep(0.5)  # several more polls: nothing left to build
        assert reloader.builds == 1
        assert await answer(d.daemon, DOG_Q) == f"{DOG_A} (4)"


async def test_reload_on_request_and_generation_on_healthz(tmp_path: Path) -> None:
    settings = reload_settings(tmp_path, watch=False)
    retriever = built(tmp_path, settings)
    source = registry.index_source(settings, retriever)
    assert source is not None
    async with running_daemon(engines_on(retriever), settings, index=source) as d:
        async with httpx.AsyncClient(base_url=d.http_url) as http:
            health = (await http.get("/healthz")).json()
        assert health["kb_generation"] == retriever.kb.generation.name
        assert health["kb_reload_error"] is None
        write_faq(tmp_path / "kb", [*ROWS, ("dog", DOG_Q, DOG_A)])
        await asyncio.sleep(0.4)  # [kb] watch = false: a saved file changes nothing by itself
        assert d.daemon.reloader is not None and d.daemon.reloader.builds == 0
        assert await answer(d.daemon, DOG_Q) != DOG_A
        result = await d.daemon.reload_kb()
        assert result.ok and result.report["entries"] == 4 and result.report["reused_files"] == 0
        async with httpx.AsyncClient(base_url=d.http_url) as http:
            health = (await http.get("/healthz")).json()
        assert health["kb_generation"] == result.generation != retriever.kb.generation.name
        assert health["kb_reload"] == "idle"
        assert await answer(d.daemon, DOG_Q) == DOG_A


async def test_watchers_hear_kb_updated(tmp_path: Path) -> None:
    settings = reload_settings(tmp_path, watch=False)
    retriever = built(tmp_path, settings)
    async with running_daemon(engines_on(retriever), settings, index=registry.index_source(settings, retriever)) as d:
        ws = await open_client(d.ws_url)
        await hello(ws)
        write_faq(tmp_path / "kb", [*ROWS, ("dog", DOG_Q, DOG_A)])
        result = await d.daemon.reload_kb()
        got = await collect(ws, until="kb-updated")
        await ws.close()
    event = got.of("kb-updated")[0]
    assert event == {
        "type": "kb-updated",
        "turn": 0,
        "t_ms": event["t_ms"],
        "generation": result.generation,
        "entries": 4,
        "chunks": 0,
        "build_ms": event["build_ms"],
    }
    assert 0 < event["build_ms"] < 30_000  # on the wire in ms: a build of a few entries takes ~50


async def test_a_bad_file_keeps_the_old_index_answering_and_is_reported(tmp_path: Path) -> None:
    settings = reload_settings(tmp_path, watch=False)
    write_faq(tmp_path / "kb", [("dog", DOG_Q, DOG_A)], name="pets.csv")
    retriever = built(tmp_path, settings)
    async with running_daemon(engines_on(retriever), settings, index=registry.index_source(settings, retriever)) as d:
        ws = await open_client(d.ws_url)
        await hello(ws)
        (tmp_path / "kb" / "faq.csv").write_bytes(b"\x00\xff\xfe garbage \x00")  # a table that cannot be read
        result = await d.daemon.reload_kb()
        got = await collect(ws, until="kb-update-failed")
        await ws.close()
        assert not result.ok and result.code == "kb-skipped" and "faq.csv" in result.message
        health = d.daemon.healthy()
        assert health["kb_generation"] == retriever.kb.generation.name
        assert str(health["kb_reload_error"]).startswith("kb-skipped: ")
        assert got.of("kb-update-failed")[0]["generation"] == retriever.kb.generation.name
        assert await answer(d.daemon, BADGE_Q) == OLD_BADGE  # the entries of that file still answer
        # fixed and saved again: the next reload goes live and the error is cleared
        write_faq(tmp_path / "kb", [*ROWS[1:], ("badge", BADGE_Q, NEW_BADGE)])
        assert (await d.daemon.reload_kb()).ok
        assert d.daemon.healthy()["kb_reload_error"] is None
        assert await answer(d.daemon, BADGE_Q) == NEW_BADGE


async def test_a_full_disk_keeps_the_old_index_answering(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = reload_settings(tmp_path, watch=False)
    retriever = built(tmp_path, settings)
    source = registry.index_source(settings, retriever)
    assert source is not None

    def full(llm: object) -> dict[str, object]:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "index"))

    async with running_daemon(engines_on(retriever), settings, index=dataclasses.replace(source, build=full)) as d:
        write_faq(tmp_path / "kb", [*ROWS, ("dog", DOG_Q, DOG_A)])
        result = await d.daemon.reload_kb()
        assert not result.ok and result.code == "kb-write" and "No space left" in result.message
        assert "reload failed" in caplog.text and "keeps answering" in caplog.text
        assert d.daemon.healthy()["kb_generation"] == retriever.kb.generation.name
        assert await answer(d.daemon, BADGE_Q) == OLD_BADGE


class HeldRetriever:
    """The live index, with the first search held until ``release`` (a turn caught mid-retrieval)."""

    def __init__(self, inner: Retriever) -> None:
        self.inner = inner
        self.searching = asyncio.Event()
        self.release = asyncio.Event()

    async def search(self, query: str, *, k: int) -> list[Passage]:
        self.searching.set()
        await self.release.wait()
        return await self.inner.search(query, k=k)


async def test_a_turn_in_flight_finishes_on_the_index_it_started_with(tmp_path: Path) -> None:
    settings = reload_settings(tmp_path, watch=False)
    retriever = built(tmp_path, settings)
    held = HeldRetriever(retriever)
    async with running_daemon(engines_on(held), settings, index=registry.index_source(settings, retriever)) as d:
        early = d.daemon.open_session(speak=False)
        await early.ask(BADGE_Q)
        await asyncio.wait_for(held.searching.wait(), 5)
        write_faq(tmp_path / "kb", [*ROWS[1:], ("badge", BADGE_Q, NEW_BADGE)])
        assert (await d.daemon.reload_kb()).ok
        # a turn started after the swap queues at the same search gate, behind the one in flight,
        # and then searches the new index; the one in flight finishes on the old
        late = d.daemon.open_session(speak=False)
        await late.ask(BADGE_Q)
        held.release.set()
        assert early.task is not None and late.task is not None
        await asyncio.wait_for(asyncio.gather(early.task, late.task), 10)
        assert early.results[-1].reply == OLD_BADGE
        assert late.results[-1].reply == NEW_BADGE
        # and the session's next turn is on the new index
        assert await answer(d.daemon, BADGE_Q, early) == NEW_BADGE


async def test_synthesis_uses_the_daemons_llm_after_the_visitors(tmp_path: Path) -> None:
    settings = reload_settings(tmp_path, watch=False)
    retriever = built(tmp_path, settings)
    settings.kb.synthesize = True  # the reload's build writes questions for the records that have none
    llm = FakeLanguageModel(reply="1. Where is the badge desk?\n2. Who gives out badges?")
    async with running_daemon(
        engines_on(retriever, llm), settings, index=registry.index_source(settings, retriever)
    ) as d:
        write_faq(tmp_path / "kb", [*ROWS, ("dog", DOG_Q, DOG_A)])
        result = await d.daemon.reload_kb()
    assert result.ok, result.message
    assert llm.calls and set(llm.temperatures) == {0.0}  # greedy, through the daemon's shared model
    assert any(DOG_A in m.content for call in llm.calls for m in call)


async def test_loop_model_waits_for_the_visitors_and_runs_on_the_daemons_loop() -> None:
    llm = FakeLanguageModel(reply="written")
    idle = asyncio.Event()

    async def wait_idle() -> None:
        await idle.wait()

    model = LoopModel(llm, asyncio.get_running_loop(), wait_idle=wait_idle)

    def in_thread() -> str:
        async def ask() -> str:
            return "".join([d async for d in model.stream([Message("user", "q")], max_tokens=8, temperature=0.0)])

        return asyncio.run(ask())

    work = asyncio.create_task(asyncio.to_thread(in_thread))
    await asyncio.sleep(0.1)
    assert not llm.calls and not work.done()  # a visitor's turn is running
    idle.set()
    assert await asyncio.wait_for(work, 5) == "written"
    assert len(llm.calls) == 1


def test_scan_sees_added_changed_and_removed_files_but_not_the_index(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    write_faq(folder, ROWS)
    (folder / "index").mkdir()
    (folder / "index" / "CURRENT").write_text("gen-1\n")
    (folder / ".swp").write_text("editor state")
    first = scan([folder], [folder / "index"])
    assert list(first) == [str(folder / "faq.csv")]
    write_faq(folder, [*ROWS, ("dog", DOG_Q, DOG_A)])
    assert scan([folder], [folder / "index"]) != first
    (folder / "more.md").write_text("# More\n")
    assert len(scan([folder], [folder / "index"])) == 2
    (folder / "faq.csv").unlink()
    assert list(scan([folder, tmp_path / "missing"], [folder / "index"])) == [str(folder / "more.md")]


async def test_a_swapped_retriever_keeps_its_gate_and_catalog(tmp_path: Path) -> None:
    settings = reload_settings(tmp_path)
    retriever = built(tmp_path, settings)
    daemon = Daemon(settings, engines_on(retriever))
    try:
        before = daemon.engines
        assert isinstance(before.retriever, FairRetriever)
        other = kb.open_retriever(settings, embedder=retriever.kb.embedder, view_for=lambda name: retriever.kb.embedder)
        after = with_retriever(before, other)
        assert isinstance(after.retriever, FairRetriever)
        assert after.retriever.gate is before.retriever.gate and after.retriever.inner is other
        assert after.catalog is other and before.retriever.inner is retriever  # the old engines are unchanged
        with pytest.raises(AssistantError) as err:
            await daemon.reload_kb()  # no index source: nothing to rebuild
        assert err.value.code == "kb-reload-off"
    finally:
        await daemon.close()


def test_the_index_source_rebuilds_with_the_live_embedder(tmp_path: Path) -> None:
    settings = reload_settings(tmp_path)
    retriever = built(tmp_path, settings)
    source = registry.index_source(settings, retriever)
    assert source is not None and source.paths == (tmp_path / "kb",) and source.ignore == (tmp_path / "index",)
    write_faq(tmp_path / "kb", [*ROWS, ("dog", DOG_Q, DOG_A)])
    report = source.build(None)
    assert report["embedder"] == "hash-test-64" and report["entries"] == 4
    opened = source.open()
    assert opened.entries == 4 and opened.generation != retriever.kb.generation.name
    assert isinstance(opened.retriever, IndexRetriever) and opened.retriever.kb.embedder is retriever.kb.embedder
    manifest = json.loads((tmp_path / "index" / opened.generation / "manifest.json").read_text())
    assert manifest["counts"]["entries"] == 4
    assert registry.index_source(settings, FakeRetrieverLike()) is None


class FakeRetrieverLike:
    async def search(self, query: str, *, k: int) -> list[Passage]:
        return []
