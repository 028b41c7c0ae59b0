"""The unanswered queue through the daemon, over a real WebSocket, with fake engines: which turns are
recorded and with what, the ``not-helpful`` message (good and malformed), privacy off, a broken
database that never breaks a turn, and the /metrics counts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from daemon_support import Running, collect, hello, open_client, running_daemon
from fakes import FakeLanguageModel, FakeSynthesizer, fake_engines, settings_for_tests
from websockets.asyncio.client import ClientConnection

from assistant import prompts
from assistant.config import Settings
from assistant.kb.queue import QueueStore
from assistant.kb.queue_writer import QueueWriter
from assistant.stages import Engines, QueueRecord

FAQ = "请问商旅的出差制度"  # the fake retriever's FAQ entry: route faq, 0.95
DOC = "Where do visitors get a badge?"  # the fake document at 0.6: route generated, under faq_threshold
UNKNOWN = "What is the airspeed of a swallow?"  # nothing relevant: route fallback


@asynccontextmanager
async def visitor(
    tmp_path: Path, engines: Engines | None = None, settings: Settings | None = None
) -> AsyncIterator[tuple[Running, ClientConnection, QueueWriter]]:
    writer = QueueWriter(tmp_path / "queue.sqlite", retention_days=30)
    if settings is None:
        settings = settings_for_tests()
        settings.queue.record = True
    try:
        async with (
            running_daemon(engines, settings, recorder=writer) as d,
            await open_client(d.ws_url + "?role=visitor") as ws,
        ):
            await hello(ws)
            yield d, ws, writer
    finally:
        writer.close()


def stored(writer: QueueWriter) -> list[QueueRecord]:
    assert writer.flush()
    store = QueueStore(writer.path, create=False)
    try:
        return list(reversed(store.records()))  # oldest first, as asked
    finally:
        store.close()


async def ask(ws: ClientConnection, text: str):
    await ws.send(json.dumps({"type": "text", "text": text}))
    return await collect(ws)


async def test_fallback_weak_and_declined_turns_are_recorded_and_an_faq_answer_is_not(tmp_path: Path) -> None:
    declining = FakeLanguageModel(reply=prompts.decline_line("en"))
    async with visitor(tmp_path) as (_, ws, writer):
        await ask(ws, FAQ)
        await ask(ws, UNKNOWN)
        await ask(ws, DOC)
    async with visitor(tmp_path, fake_engines(llm=declining)) as (_, ws, writer):
        declined = await ask(ws, "Can I bring my dog to the visitor area?")
    got = stored(writer)
    assert [(r.reason, r.question, r.route) for r in got] == [
        ("fallback", UNKNOWN, "fallback"),
        ("weak", DOC, "generated"),
        ("declined", "Can I bring my dog to the visitor area?", "generated"),
    ]
    fallback, weak, decline = got
    assert fallback.language == "en" and fallback.reply == prompts.fallback_line("en")
    # the candidates are what retrieval offered, best first, even on the fallback route
    assert [c.score for c in fallback.candidates] == sorted((c.score for c in fallback.candidates), reverse=True)
    assert weak.candidates[0].id == "kb/docs/visitor-guide.md#2" and weak.candidates[0].score == pytest.approx(0.6)
    assert weak.candidates[0].title == "Visitor guide"
    assert weak.reply.startswith("Visitors get a badge")
    assert decline.reply == prompts.decline_line("en")
    assert len({r.turn_id for r in got}) == 3 and all(r.time_s > 0 for r in got)
    # a decline withdraws its sources before a word of it is spoken: the page shows none
    sources = declined.of("sources")
    assert sources[0]["sources"] and sources[1]["sources"] == []
    assert declined.order.index("sources", declined.order.index("reply-start")) < declined.order.index("sentence")


async def test_a_reply_cut_short_soon_after_it_began_is_recorded(tmp_path: Path) -> None:
    slow = fake_engines(synthesizer=FakeSynthesizer(delay_s=0.05, chunks_per_sentence=4))
    async with visitor(tmp_path, slow) as (_, ws, writer):
        await ws.send(json.dumps({"type": "text", "text": FAQ}))
        await collect(ws, "audio-start")
        await ws.send(json.dumps({"type": "interrupt", "turn": 1, "played_ms": 900}))
        await collect(ws, "state:idle")
        # all audio sent, then cut by the page after 1.2 s of listening: recorded too
        await ask(ws, FAQ)
        await ws.send(json.dumps({"type": "interrupt", "turn": 2, "played_ms": 1200}))
        await ask(ws, FAQ)  # turn 3, heard to the end: not recorded
    got = stored(writer)
    assert [(r.reason, r.question, r.route) for r in got] == [("interrupted", FAQ, "faq"), ("interrupted", FAQ, "faq")]
    assert all(r.reply.startswith("出差需提前三个工作日") for r in got)  # the stored answer is written at once


async def test_a_reply_heard_past_the_window_is_not_recorded_as_interrupted(tmp_path: Path) -> None:
    settings = settings_for_tests()
    settings.queue.record = True
    settings.queue.interrupted_within_s = 0.5
    async with visitor(tmp_path, settings=settings) as (d, ws, writer):
        await ask(ws, FAQ)
        await ws.send(json.dumps({"type": "interrupt", "turn": 1, "played_ms": 800}))
        await ask(ws, FAQ)
    assert stored(writer) == []
    assert d.daemon.metrics.queued.value(reason="interrupted") == 0


async def test_not_helpful_records_the_turn_once(tmp_path: Path) -> None:
    async with visitor(tmp_path) as (d, ws, writer):
        faq = await ask(ws, FAQ)
        await ws.send(json.dumps({"type": "not-helpful", "turn": 1}))
        await ws.send(json.dumps({"type": "not-helpful", "turn": 1}))  # a double click
        await ws.send(json.dumps({"type": "not-helpful", "turn": 7}))  # a turn the session never had: ignored
        later = await ask(ws, FAQ)
        assert later.of("error") == []
    got = stored(writer)
    assert [(r.reason, r.question, r.route) for r in got] == [("not-helpful", FAQ, "faq")]
    assert got[0].reply == faq.of("reply-end")[0]["text"]
    assert got[0].candidates[0].id == "travel-policy"
    assert d.daemon.metrics.queued.value(reason="not-helpful") == 1


@pytest.mark.parametrize(
    "message",
    [
        {"type": "not-helpful"},
        {"type": "not-helpful", "turn": "1"},
        {"type": "not-helpful", "turn": 0},
        {"type": "not-helpful", "turn": -3},
        {"type": "not-helpful", "turn": True},
    ],
)
async def test_a_malformed_not_helpful_is_a_bad_message_and_records_nothing(tmp_path: Path, message: dict) -> None:
    async with visitor(tmp_path) as (_, ws, writer):
        await ask(ws, FAQ)
        await ws.send(json.dumps(message))
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error["type"] == "error" and error["code"] == "bad-message"
        again = await ask(ws, FAQ)  # the connection goes on
        assert again.of("reply-end")
    assert stored(writer) == []


async def test_privacy_off_records_nothing_but_still_counts(tmp_path: Path) -> None:
    settings = settings_for_tests()
    settings.queue.record = False
    async with visitor(tmp_path, settings=settings) as (d, ws, writer):
        await ask(ws, UNKNOWN)
        await ws.send(json.dumps({"type": "not-helpful", "turn": 1}))
        await ask(ws, DOC)
    assert stored(writer) == []
    assert writer.written == 0
    assert d.daemon.metrics.queued.value(reason="fallback") == 1
    assert d.daemon.metrics.unanswered.value(route="fallback", language="en") == 1


async def test_a_broken_database_never_breaks_a_turn(tmp_path: Path) -> None:
    (tmp_path / "queue.sqlite").mkdir()  # the path is a folder: sqlite cannot open it
    async with visitor(tmp_path) as (d, ws, writer):
        for question in (UNKNOWN, DOC, UNKNOWN):
            got = await ask(ws, question)
            assert got.of("error") == [] and got.types()[-2:] == ["trace", "state:idle"]
        assert writer.flush()
        assert writer.failing and writer.written == 0 and writer.dropped == 3
        assert d.daemon.metrics.turns.value(outcome="answered") == 3


async def test_a_recorder_that_raises_never_breaks_a_turn(tmp_path: Path) -> None:
    class Raising:
        def record(self, entry: QueueRecord) -> None:
            raise RuntimeError("a bug in a recorder")

    settings = settings_for_tests()
    settings.queue.record = True
    async with (
        running_daemon(settings=settings, recorder=Raising()) as d,
        await open_client(d.ws_url + "?role=visitor") as ws,
    ):
        await hello(ws)
        for _ in range(2):
            got = await ask(ws, UNKNOWN)
            assert got.of("error") == [] and got.types()[-2:] == ["trace", "state:idle"]
        assert d.daemon.metrics.turns.value(outcome="answered") == 2


async def test_metrics_count_unanswered_turns_by_route_and_language(tmp_path: Path) -> None:
    declining = FakeLanguageModel(reply=prompts.decline_line("zh"))
    async with visitor(tmp_path, fake_engines(llm=declining)) as (d, ws, _):
        await ask(ws, UNKNOWN)
        await ask(ws, "天上的星星有多少颗？")  # nothing relevant, in Chinese: fallback
        await ask(ws, "访客可以带宠物吗？")  # the document is relevant ("访客"); the model declines
        await ask(ws, FAQ)  # answered
        async with httpx.AsyncClient(base_url=d.http_url) as http:
            text = (await http.get("/metrics")).text
    assert 'assistant_unanswered_turns_total{route="fallback",language="en"} 1' in text
    assert 'assistant_unanswered_turns_total{route="fallback",language="zh"} 1' in text
    assert 'assistant_unanswered_turns_total{route="generated",language="zh"} 1' in text
    assert 'route="faq"' not in "".join(line for line in text.splitlines() if "unanswered" in line)
    assert 'assistant_queued_turns_total{reason="declined"} 1' in text
    assert 'assistant_queued_turns_total{reason="fallback"} 2' in text


async def test_run_opens_the_configured_queue_and_writes_it_before_it_stops(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from assistant import registry
    from assistant.commands import daemon as command

    monkeypatch.setattr(registry, "engines", lambda settings: fake_engines())
    settings = settings_for_tests()
    settings.root = tmp_path
    settings.server.port = 0
    settings.queue.record = True
    settings.queue.path = "var/queue.sqlite"
    urls: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(command.serve(settings, stop=stop, on_ready=urls.append, local_audio=False))
    for _ in range(200):
        if urls:
            break
        await asyncio.sleep(0.02)
    async with await open_client(urls[0].replace("http://", "ws://") + "ws?role=visitor") as ws:
        await hello(ws)
        await ask(ws, UNKNOWN)
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
    store = QueueStore(tmp_path / "var" / "queue.sqlite", create=False)
    assert [(r.reason, r.question) for r in store.records()] == [("fallback", UNKNOWN)]
    store.close()


async def test_every_finished_turn_is_counted_by_day_for_the_unanswered_rate(tmp_path: Path) -> None:
    async with visitor(tmp_path) as (_, ws, writer):
        await ask(ws, FAQ)
        await ask(ws, UNKNOWN)
        await ask(ws, DOC)
    assert writer.flush()
    store = QueueStore(writer.path, create=False)
    try:
        assert sum(store.turns_per_day().values()) == 3 and store.count() == 2
    finally:
        store.close()
    settings = settings_for_tests()
    settings.queue.record = False  # privacy: not even the totals
    async with visitor(tmp_path / "off", settings=settings) as (_, ws, writer):
        await ask(ws, FAQ)
    assert writer.flush()
    store = QueueStore(writer.path, create=False)
    try:
        assert store.turns_per_day() == {}
    finally:
        store.close()
