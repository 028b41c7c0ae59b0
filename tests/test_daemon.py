"""Whole turns through the daemon over a real WebSocket client, with fake engines: the event sequences
a browser sees are pinned (faq, generated, fallback, barge-in, error), plus sessions, fairness,
vanishing clients, the echo filter and shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
from daemon_support import (
    collect,
    hello,
    mic_frames,
    open_client,
    running_daemon,
    silence_pcm,
    speech_pcm,
)
from fakes import FakeLanguageModel, FakeRetriever, FakeSynthesizer, FakeTranscriber, fake_engines, settings_for_tests
from websockets.exceptions import ConnectionClosed

from assistant.stages import RetrieveError, Transcript, Utterance

FAQ_TURN = [
    "state:thinking",
    "sources",
    "reply-start",
    "reply-delta",
    "reply-end",
    "sentence",
    "state:speaking",
    "audio-start",
    "audio",
    "audio-end",
    # the stored answer is spoken in units (two sentences here), like a generated one
    "sentence",
    "audio-start",
    "audio",
    "audio-end",
    "trace",
    "state:idle",
]

pytestmark = pytest.mark.virtual_time


async def test_faq_turn_over_websocket_is_pinned() -> None:
    async with running_daemon() as d, await open_client(d.ws_url + "?role=visitor") as ws:
        greeting = await hello(ws)
        assert greeting["role"] == "visitor" and greeting["protocol"] == 2 and greeting["session"].startswith("s-")
        await ws.send(json.dumps({"type": "text", "text": "请问商旅的出差制度"}))
        got = await collect(ws)
        assert got.types() == FAQ_TURN
        assert {e["turn"] for e in got.events} == {1}
        assert got.of("reply-end")[0]["route"] == "faq"
        assert got.of("sources")[0]["sources"][0]["id"] == "travel-policy"
        # audio frames carry the turn, a gapless sequence from 0, the sentence and the mouth envelope
        assert [f.sequence for f in got.audio] == list(range(len(got.audio)))
        assert all(f.turn == 1 and f.chunk.envelope for f in got.audio)
        assert sorted({f.sentence for f in got.audio}) == [0, 1]
        times = [e["t_ms"] for e in got.events]
        assert times == sorted(times)


async def test_generated_turn_streams_sentences_and_audio_in_order() -> None:
    async with running_daemon() as d, await open_client(d.ws_url + "?role=visitor") as ws:
        await hello(ws)
        await ws.send(json.dumps({"type": "text", "text": "Where do visitors get a badge?"}))
        got = await collect(ws)
        types = got.types()
        assert types[:3] == ["state:thinking", "sources", "reply-start"]
        assert types[-2:] == ["trace", "state:idle"]
        assert got.of("reply-start")[0]["route"] == "generated"
        sentences = got.of("sentence")
        assert [s["index"] for s in sentences] == list(range(len(sentences))) and len(sentences) >= 2
        # every sentence's audio is framed by audio-start/-stop of the same index, in order
        starts = [e["sentence"] for e in got.of("audio-start")]
        stops = [e["sentence"] for e in got.of("audio-end")]
        assert starts == stops == [s["index"] for s in sentences]
        assert sorted({f.sentence for f in got.audio}) == starts
        trace = got.of("trace")[0]
        assert trace["first_token_ms"] is not None and trace["first_audio_ms"] is not None
        assert trace["retrieve_ms"] <= trace["first_token_ms"] <= trace["first_audio_ms"] <= trace["total_ms"]
        assert "".join(e["text"] for e in got.of("reply-delta")) == got.of("reply-end")[0]["text"]


async def test_fallback_turn_says_it_does_not_know() -> None:
    async with running_daemon() as d, await open_client(d.ws_url + "?role=visitor") as ws:
        await hello(ws)
        await ws.send(json.dumps({"type": "text", "text": "What is the airspeed of a swallow?"}))
        got = await collect(ws)
        assert got.types() == FAQ_TURN  # the same shape: a stored line, spoken in two units
        assert got.of("sources")[0]["sources"] == []
        assert got.of("reply-start")[0]["route"] == "fallback"
        assert d.engines.llm.calls == []  # type: ignore[attr-defined]


async def test_error_turn_reports_a_stable_code_and_the_daemon_keeps_serving() -> None:
    retriever = FakeRetriever(fail=RetrieveError("kb-missing", "no index"))
    async with (
        running_daemon(fake_engines(retriever=retriever)) as d,
        await open_client(d.ws_url + "?role=visitor") as ws,
    ):
        await hello(ws)
        await ws.send(json.dumps({"type": "text", "text": "hello?"}))
        got = await collect(ws)
        assert got.types() == ["state:thinking", "error", "state:idle"]
        assert got.of("error")[0]["code"] == "kb-missing"
        retriever.fail = None
        await ws.send(json.dumps({"type": "text", "text": "请问商旅的出差制度"}))
        again = await collect(ws)
        assert again.types() == FAQ_TURN and again.events[0]["turn"] == 2


async def test_voice_turn_from_microphone_frames() -> None:
    settings = settings_for_tests()
    settings.asr.partials = False  # the plain path: transcribe after the endpoint
    async with running_daemon(settings=settings) as d, await open_client(d.ws_url + "?role=visitor") as ws:
        await hello(ws)
        for frame in mic_frames(np.concatenate([silence_pcm(100), speech_pcm(600), silence_pcm(700)])):
            await ws.send(frame)
        got = await collect(ws)
        assert got.types()[:6] == [
            "speech-start",
            "state:listening",
            "speech-end",
            "state:transcribing",
            "transcript",
            "state:thinking",
        ]
        assert got.types()[-2:] == ["trace", "state:idle"]
        assert {e["turn"] for e in got.events} == {1}
        assert got.of("transcript")[0]["final"] is True
        assert 550 <= got.of("speech-end")[0]["duration_ms"] <= 700
        trace = got.of("trace")[0]
        # the endpoint decision waited for [vad] silence_ms, and the trace says so
        assert settings.vad.silence_ms - 40 <= trace["endpoint_ms"] <= settings.vad.silence_ms + 100
        assert trace["endpoint_ms"] <= trace["transcript_ms"] <= trace["first_audio_ms"]
        utterance = d.engines.transcriber.calls[0]  # type: ignore[attr-defined]
        assert 0.55 <= utterance.duration_s <= 1.2


async def test_a_dropped_utterance_uses_up_its_turn_number() -> None:
    # issue 23, item 6: after an utterance that was dropped ended with `state: idle` (turn 1), the next
    # question was turn 1 again: events of a turn came after its final `state: idle` (guarantee 6)
    settings = settings_for_tests()
    settings.asr.partials = False
    transcriber = FakeTranscriber(text="")
    async with (
        running_daemon(fake_engines(transcriber=transcriber), settings=settings) as d,
        await open_client(d.ws_url + "?role=visitor") as ws,
    ):
        await hello(ws)
        for frame in mic_frames(np.concatenate([speech_pcm(600), silence_pcm(700)])):
            await ws.send(frame)
        dropped = await collect(ws)
        assert dropped.types()[-1] == "state:idle" and {e["turn"] for e in dropped.events} == {1}
        assert "sources" not in dropped.types()
        await ws.send(json.dumps({"type": "text", "text": "请问商旅的出差制度"}))
        answered = await collect(ws)
        assert answered.types() == FAQ_TURN and {e["turn"] for e in answered.events} == {2}
        # and push-to-talk released with no audio uses up its number the same way
        await ws.send(json.dumps({"type": "talk-start"}))
        await ws.send(json.dumps({"type": "talk-end"}))
        empty = await collect(ws)
        assert empty.of("error")[0]["code"] == "asr-empty" and {e["turn"] for e in empty.events} == {3}
        await ws.send(json.dumps({"type": "text", "text": "请问商旅的出差制度"}))
        assert {e["turn"] for e in (await collect(ws)).events} == {4}


async def test_partial_transcripts_while_talking() -> None:
    settings = settings_for_tests()
    settings.asr.partial_interval_ms = 300
    async with running_daemon(settings=settings) as d, await open_client(d.ws_url + "?role=visitor") as ws:
        await hello(ws)
        frames = mic_frames(np.concatenate([speech_pcm(1600), silence_pcm(700)]))
        for frame in frames:  # in real time: partials are made while the visitor is still talking
            await ws.send(frame)
            await asyncio.sleep(0.02)
        got = await collect(ws)
        types = got.types()
        partials = [e for e in got.of("transcript") if not e["final"]]
        assert partials and types.index("transcript") < types.index("speech-end")
        final = got.of("transcript")[-1]
        assert final["final"] is True and final["text"] == d.engines.transcriber.text  # type: ignore[attr-defined]
        last_transcript = max(i for i, t in enumerate(types) if t == "transcript")
        assert last_transcript < types.index("state:thinking")  # the final transcript, then the thinking
        assert got.of("reply-end")[0]["route"] == "faq"


async def test_push_to_talk_uses_the_button_not_the_vad() -> None:
    async with running_daemon() as d, await open_client(d.ws_url + "?role=visitor") as ws:
        await hello(ws)
        await ws.send(json.dumps({"type": "mode", "mode": "push-to-talk"}))
        await ws.send(json.dumps({"type": "talk-start"}))
        # quiet speech the energy VAD would ignore still counts while the button is down
        for frame in mic_frames(speech_pcm(500, amplitude=100)):
            await ws.send(frame)
        await ws.send(json.dumps({"type": "talk-end"}))
        got = await collect(ws)
        assert got.types()[:5] == ["speech-start", "state:listening", "speech-end", "state:transcribing", "transcript"]
        assert got.of("trace")[0]["endpoint_ms"] == 0.0


async def test_barge_in_by_interrupt_keeps_only_what_was_heard() -> None:
    llm = FakeLanguageModel(
        reply="First sentence is short. The second one takes longer to say. A third follows it.", delay_s=0.03
    )
    synth = FakeSynthesizer(delay_s=0.05)
    async with (
        running_daemon(fake_engines(llm=llm, synthesizer=synth)) as d,
        await open_client(d.ws_url + "?role=visitor") as ws,
    ):
        await hello(ws)
        await ws.send(json.dumps({"type": "text", "text": "Tell me about the visitor badge"}))
        got = await collect(ws, "audio-end")
        first = got.of("sentence")[0]["text"]
        played = got.of("audio-end")[0]["duration_ms"]  # the listener heard exactly the first sentence
        await ws.send(json.dumps({"type": "playback", "turn": 1, "played_ms": played}))
        t0 = time.monotonic()
        await ws.send(json.dumps({"type": "interrupt", "turn": 1}))
        rest = await collect(ws, "state:idle")
        assert (time.monotonic() - t0) < 0.2
        assert rest.types()[-2:] == ["interrupted", "state:idle"]
        assert "trace" not in rest.types() and "reply-end" not in rest.types()
        assert rest.of("interrupted")[0]["heard_text"] == first
        session = d.daemon.sessions[next(iter(d.daemon.sessions.keys() - {"kiosk"}))]
        assert [m.content for m in session.history] == ["Tell me about the visitor badge", first]
        assert llm.stopped_early
        # nothing more of turn 1 arrives after interrupted
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.3)
        assert d.daemon.metrics.turns.value(outcome="interrupted") == 1


async def test_interrupt_after_all_audio_was_sent_trims_the_history_to_what_was_heard() -> None:
    async with running_daemon() as d, await open_client(d.ws_url + "?role=visitor") as ws:
        await hello(ws)
        await ws.send(json.dumps({"type": "text", "text": "Where do visitors get a badge?"}))
        got = await collect(ws)  # the whole turn was sent; the page is still playing it
        first = got.of("sentence")[0]["text"]
        played = got.of("audio-end")[0]["duration_ms"]
        await ws.send(json.dumps({"type": "interrupt", "turn": 1, "played_ms": played}))
        session = d.daemon.sessions[next(iter(d.daemon.sessions.keys() - {"kiosk"}))]
        for _ in range(50):
            if session.history[-1].content == first:
                break
            await asyncio.sleep(0.01)
        assert [m.content for m in session.history] == ["Where do visitors get a badge?", first]


async def test_a_late_interrupt_for_an_earlier_turn_does_not_cut_the_current_one() -> None:
    synth = FakeSynthesizer(delay_s=0.05, chunks_per_sentence=4)
    async with (
        running_daemon(fake_engines(synthesizer=synth)) as d,
        await open_client(d.ws_url + "?role=visitor") as ws,
    ):
        await hello(ws)
        await ws.send(json.dumps({"type": "text", "text": "请问商旅的出差制度"}))
        await collect(ws)
        await ws.send(json.dumps({"type": "text", "text": "Where do visitors get a badge?"}))
        await collect(ws, "audio-start")
        await ws.send(json.dumps({"type": "interrupt", "turn": 1, "played_ms": 100}))
        rest = await collect(ws, "state:idle")
        assert "interrupted" not in rest.types()
        assert rest.types()[-2:] == ["trace", "state:idle"]


async def test_barge_in_by_speech_while_speaking() -> None:
    synth = FakeSynthesizer(delay_s=0.1, chunks_per_sentence=4)
    async with (
        running_daemon(fake_engines(synthesizer=synth)) as d,
        await open_client(d.ws_url + "?role=visitor") as ws,
    ):
        await hello(ws)
        await ws.send(json.dumps({"type": "text", "text": "Where do visitors get a badge?"}))
        await collect(ws, "audio-start")
        await ws.send(json.dumps({"type": "playback", "turn": 1, "played_ms": 0}))
        # [vad] min_speech_ms (250) of voice makes it speech, not a cough; sent at once, so the
        # clock below measures detection -> cancelled turn
        for frame in mic_frames(speech_pcm(300)):
            await ws.send(frame)
        t0 = time.monotonic()
        got = await collect(ws, "state:listening")
        assert time.monotonic() - t0 < 0.2
        assert got.types()[-4:] == ["speech-start", "interrupted", "state:idle", "state:listening"]
        assert got.of("interrupted")[0]["heard_text"] == ""  # played_ms 0: nothing was heard
        session = next(s for s in d.daemon.sessions.values() if s.kind == "visitor")
        assert session.history == []


async def test_a_new_question_interrupts_the_running_turn() -> None:
    llm = FakeLanguageModel(delay_s=0.05)
    async with running_daemon(fake_engines(llm=llm)) as d, await open_client(d.ws_url + "?role=visitor") as ws:
        await hello(ws)
        await ws.send(json.dumps({"type": "text", "text": "Where do visitors get a badge?"}))
        await collect(ws, "reply-start")
        await ws.send(json.dumps({"type": "text", "text": "请问商旅的出差制度"}))
        got = await collect(ws, "state:idle", after=2)
        assert got.of("interrupted")[0]["turn"] == 1
        second = [e for e in got.events if e["turn"] == 2]
        assert [e["type"] for e in second][-2:] == ["trace", "state"]


async def test_watchers_follow_the_kiosk_and_text_makes_a_visitor() -> None:
    async with running_daemon() as d, await open_client(d.ws_url) as watcher, await open_client(d.ws_url) as ws:
        first = await hello(watcher)
        assert first["role"] == "watcher" and first["session"] == "kiosk"
        await hello(ws)
        await ws.send(json.dumps({"type": "text", "text": "请问商旅的出差制度"}))
        again = await hello(ws)
        assert again["role"] == "visitor" and again["session"] != "kiosk"
        await collect(ws)
        # the watcher follows the kiosk session, not the visitor's
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(watcher.recv(), 0.3)
        # a kiosk turn reaches the watcher
        await d.daemon.kiosk.ask("请问商旅的出差制度")
        got = await collect(watcher)
        assert got.types() == FAQ_TURN


async def test_concurrent_sessions_queue_fairly_and_never_mix_replies() -> None:
    n = 12
    llm = FakeLanguageModel(delay_s=0.002)
    async with running_daemon(fake_engines(llm=llm)) as d:
        clients = [await open_client(d.ws_url + "?role=visitor") for _ in range(n)]
        try:
            for ws in clients:
                await hello(ws)
            questions = ["请问商旅的出差制度" if i % 2 else "Where do visitors get a badge?" for i in range(n)]
            await asyncio.gather(
                *(ws.send(json.dumps({"type": "text", "text": q})) for ws, q in zip(clients, questions, strict=True))
            )
            results = await asyncio.gather(*(collect(ws, timeout_s=30) for ws in clients))
        finally:
            for ws in clients:
                await ws.close()
        for q, got in zip(questions, results, strict=True):
            assert "error" not in got.types()
            end = got.of("reply-end")[0]
            assert end["route"] == ("faq" if q.startswith("请问") else "generated")
            assert end["text"] == (
                "出差需提前三个工作日在OA提交申请。住宿标准为一线城市每晚600元。" if q.startswith("请问") else llm.reply
            )
            assert [f.sequence for f in got.audio] == list(range(len(got.audio)))
        llm_gate = next(g for g in d.daemon.gates if g.name == "llm")
        assert llm_gate.entries == n // 2 and llm_gate.waiting == 0


async def test_a_client_that_vanishes_mid_turn_leaves_the_daemon_serving() -> None:
    llm = FakeLanguageModel(delay_s=0.05)
    async with running_daemon(fake_engines(llm=llm)) as d:
        ws = await open_client(d.ws_url + "?role=visitor")
        await hello(ws)
        await ws.send(json.dumps({"type": "text", "text": "Where do visitors get a badge?"}))
        await collect(ws, "reply-start")
        ws.transport.abort()  # gone without a close frame
        for _ in range(50):
            if len(d.daemon.sessions) == 1:
                break
            await asyncio.sleep(0.02)
        assert set(d.daemon.sessions) == {"kiosk"}
        await asyncio.sleep(0.1)
        assert llm.stopped_early
        async with await open_client(d.ws_url + "?role=visitor") as other:
            await hello(other)
            await other.send(json.dumps({"type": "text", "text": "请问商旅的出差制度"}))
            assert (await collect(other)).types() == FAQ_TURN


async def test_shutdown_cancels_turns_and_closes_clients_with_1001() -> None:
    llm = FakeLanguageModel(delay_s=0.05)
    async with running_daemon(fake_engines(llm=llm)) as d:
        ws = await open_client(d.ws_url + "?role=visitor")
        await hello(ws)
        await ws.send(json.dumps({"type": "text", "text": "Where do visitors get a badge?"}))
        await collect(ws, "reply-start")
        t0 = time.monotonic()
        await d.daemon.close()
        await d.server.close()
        with pytest.raises(Exception):  # noqa: B017 - ConnectionClosed, whichever subclass
            while True:
                await asyncio.wait_for(ws.recv(), 3)
        assert ws.close_code == 1001
        assert time.monotonic() - t0 < 3
        assert llm.stopped_early


class _Local:
    """A fake kiosk sound card: a microphone fed by the test and a speaker that 'plays' instantly."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[np.ndarray] = asyncio.Queue()
        self.played: list[int] = []
        self.playing = False
        self.played_ms = 0.0
        self.stopped = 0

    async def frames(self):  # type: ignore[no-untyped-def]
        while True:
            yield await self.queue.get()

    def play(self, chunk) -> None:  # type: ignore[no-untyped-def]
        self.played.append(len(chunk.pcm))
        self.played_ms += chunk.duration_ms

    def stop(self) -> None:
        self.stopped += 1

    def end(self) -> None:
        pass

    def new_reply(self) -> None:
        self.played_ms = 0.0

    async def aclose(self) -> None:
        pass


async def _speak_into(local: _Local, pcm: np.ndarray, frame_ms: int = 20) -> None:
    """Feed the kiosk's microphone in real time (frame by frame), as a sound card does: the session
    maps stream time to its clock by that pace, and the echo guard compares the two."""
    step = 16 * frame_ms
    for i in range(0, len(pcm), step):
        await local.queue.put(pcm[i : i + step])
        await asyncio.sleep(frame_ms / 1000)


async def test_kiosk_drops_transcripts_of_its_own_voice() -> None:
    # full duplex (no gating): the microphone hears the speaker while it plays, and the fake ASR
    # "hears" the kiosk's own FAQ answer, as a microphone beside the speaker would
    transcriber = FakeTranscriber(text="出差需提前三个工作日在OA提交申请")
    async with running_daemon(fake_engines(transcriber=transcriber)) as d, await open_client(d.ws_url) as watcher:
        await hello(watcher)
        local = _Local()
        d.daemon.attach_local_audio(local)
        d.daemon.kiosk.half_duplex = False
        await d.daemon.kiosk.ask("请问商旅的出差制度")
        await collect(watcher)
        assert local.played  # the reply went to the speaker
        local.playing = True  # ... and still sounds from it while the microphone hears it
        await _speak_into(local, np.concatenate([speech_pcm(600), silence_pcm(700)]))
        local.playing = False
        got = await collect(watcher, "state:idle")
        assert "error" not in got.types() and "sources" not in got.types()
        assert d.daemon.metrics.echo_dropped.value() == 1
        assert d.daemon.metrics.turns.value(outcome="echo") == 1


@pytest.mark.parametrize("after_s", [0.5, 1.0, 14.5])
async def test_a_real_question_asked_after_the_answer_is_never_an_echo(after_s: float) -> None:
    # issue 23, item 2: "How often does the shuttle run?", asked 14.5 s after the shuttle answer, was
    # dropped as an echo (0.80 on the words alone); so was "出差住酒店的标准是多少". A question
    # asked once the speaker is quiet is a visitor's, whatever words it shares with the answer.
    transcriber = FakeTranscriber(text="出差住宿标准是多少")  # shares 0.67 of its characters with the answer
    async with running_daemon(fake_engines(transcriber=transcriber)) as d, await open_client(d.ws_url) as watcher:
        await hello(watcher)
        local = _Local()
        d.daemon.attach_local_audio(local)
        kiosk = d.daemon.kiosk
        await kiosk.ask("请问商旅的出差制度")
        local.playing = True
        await _speak_into(local, silence_pcm(1000))  # the answer sounds from the speaker
        local.playing = False
        await collect(watcher)
        await _speak_into(local, silence_pcm(after_s * 1000))
        await _speak_into(local, np.concatenate([speech_pcm(1200), silence_pcm(700)]))
        got = await collect(watcher, "state:idle")
        assert d.daemon.metrics.echo_dropped.value() == 0
        assert got.of("transcript") and got.of("reply-end") and got.events[-1]["turn"] == 2


async def test_kiosk_microphone_is_gated_while_the_speaker_plays() -> None:
    async with running_daemon() as d:
        local = _Local()
        d.daemon.attach_local_audio(local)
        kiosk = d.daemon.kiosk
        local.playing = True
        for pcm in (speech_pcm(600), silence_pcm(700)):
            await kiosk.hear(pcm)
        await asyncio.sleep(0.1)
        assert not kiosk.busy and d.engines.transcriber.calls == []  # type: ignore[attr-defined]
        local.playing = False
        await asyncio.sleep(0.45)  # the echo tail
        for pcm in (speech_pcm(600), silence_pcm(700)):
            await kiosk.hear(pcm)
        for _ in range(50):
            if kiosk.results:
                break
            await asyncio.sleep(0.02)
        assert kiosk.results and kiosk.results[-1].route == "faq"


async def test_run_serves_until_sigterm_then_stops_cleanly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import signal

    from assistant import registry
    from assistant.commands import daemon as command

    engines = fake_engines()
    monkeypatch.setattr(registry, "engines", lambda settings: engines)
    settings = settings_for_tests()
    settings.server.port = 0
    urls: list[str] = []
    task = asyncio.create_task(command.serve(settings, on_ready=urls.append, local_audio=False))
    for _ in range(100):
        if urls:
            break
        await asyncio.sleep(0.02)
    assert urls and urls[0].startswith("http://127.0.0.1:")
    assert "serving http://127.0.0.1:" in capsys.readouterr().out
    ws_url = urls[0].replace("http://", "ws://") + "ws?role=visitor"
    ws = await open_client(ws_url)
    await hello(ws)
    await ws.send(json.dumps({"type": "text", "text": "请问商旅的出差制度"}))
    await collect(ws)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 5) == 0
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 3)
    assert ws.close_code == 1001
    # the warm-up went through every engine once
    assert engines.transcriber.calls and engines.llm.calls  # type: ignore[union-attr, attr-defined]


async def test_run_stops_before_serving_when_a_voice_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # issue 23, item 8: a missing voice passed start-up, then every turn failed with tts-voice-missing
    from assistant import registry
    from assistant.commands import daemon as command
    from assistant.errors import AssistantError
    from assistant.tts.router import VoiceRouter

    settings = settings_for_tests()
    settings.server.port = 0
    settings.tts.voices_dir = str(tmp_path / "voices")  # empty: neither configured voice is there
    settings.general.cache_dir = str(tmp_path / "cache")
    router = VoiceRouter(settings, engine_factory=lambda name: FakeSynthesizer())
    closed: list[str] = []
    monkeypatch.setattr(registry, "engines", lambda settings: fake_engines(synthesizer=router))  # type: ignore[arg-type]

    async def close(engines: object) -> None:
        closed.append("engines")

    monkeypatch.setattr(command, "close_engines", close)
    urls: list[str] = []
    with pytest.raises(AssistantError) as err:
        await asyncio.wait_for(command.serve(settings, on_ready=urls.append, local_audio=False), 5)
    assert err.value.code == "tts-voice-missing" and settings.tts.voice in err.value.message
    assert urls == [] and closed == ["engines"]


async def test_run_says_in_one_line_when_its_port_is_taken_or_impossible(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 23, item 7: a port already in use, or `--port 70000`, ended in a traceback
    import socket

    from assistant import registry
    from assistant.cli import main

    monkeypatch.setattr(registry, "engines", lambda settings: fake_engines())
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        assert await asyncio.to_thread(main, ["run", "--port", str(port)]) == 1
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1 port {port}" in err and "[server-port]" in err and "Traceback" not in err
    assert await asyncio.to_thread(main, ["run", "--port", "70000"]) == 1
    err = capsys.readouterr().err
    assert "[server] port must be within 1..65535, found 70000" in err and "Traceback" not in err


async def test_a_watcher_interrupts_the_browser_only_kiosk_with_its_playback_position() -> None:
    llm = FakeLanguageModel(reply="First sentence is short. The second one takes longer to say.", delay_s=0.03)
    synth = FakeSynthesizer(delay_s=0.05)
    async with running_daemon(fake_engines(llm=llm, synthesizer=synth)) as d, await open_client(d.ws_url) as watcher:
        await hello(watcher)
        await d.daemon.kiosk.ask("Tell me about the visitor badge")
        got = await collect(watcher, "audio-end")
        first = got.of("sentence")[0]["text"]
        await watcher.send(
            json.dumps({"type": "playback", "turn": 1, "played_ms": got.of("audio-end")[0]["duration_ms"]})
        )
        await watcher.send(json.dumps({"type": "interrupt"}))
        rest = await collect(watcher)
        assert rest.of("interrupted")[0]["heard_text"] == first
        assert [m.content for m in d.daemon.kiosk.history] == ["Tell me about the visitor badge", first]
        # the watcher is still a watcher: interrupting is not asking
        assert set(d.daemon.sessions) == {"kiosk"}


async def test_playback_reports_keep_one_position_for_the_current_turn_only() -> None:
    # issue 23, item 3: 400,000 `playback` messages with new turn numbers from one watcher raised
    # resident memory by ~50 MiB (a position kept per turn number, pruned only by a new kiosk turn)
    from assistant.events import PlaybackMessage

    async with running_daemon() as d, await open_client(d.ws_url) as watcher:
        await hello(watcher)
        kiosk = d.daemon.kiosk
        client = next(iter(kiosk.clients))
        for turn in range(1, 5_001):
            await d.daemon.handle(client, PlaybackMessage(turn, 10.0))
        assert kiosk.played_ms == {}  # no kiosk turn yet: nothing to keep
        await kiosk.ask("请问商旅的出差制度")
        await collect(watcher)
        for turn in range(5_000):
            await d.daemon.handle(client, PlaybackMessage(turn, float(turn)))
        await d.daemon.handle(client, PlaybackMessage(1, 1234.0))
        assert kiosk.played_ms == {1: 1234.0}


async def test_push_to_talk_held_past_the_longest_utterance_ends_by_itself() -> None:
    # a client that sends talk-start and then audio forever (never talk-end) must not grow memory
    settings = settings_for_tests()
    settings.vad.max_utterance_s = 2.0
    async with running_daemon(settings=settings) as d, await open_client(d.ws_url + "?role=visitor") as ws:
        await hello(ws)
        await ws.send(json.dumps({"type": "mode", "mode": "push-to-talk"}))
        await ws.send(json.dumps({"type": "talk-start"}))
        for frame in mic_frames(speech_pcm(5000)):
            await ws.send(frame)
        got = await collect(ws)
        assert got.of("reply-end") and len(d.engines.transcriber.calls) == 1  # type: ignore[attr-defined]
        assert d.engines.transcriber.calls[0].duration_s == pytest.approx(2.0, abs=0.05)  # type: ignore[attr-defined]


async def test_speech_stops_the_local_speaker_even_after_the_turn_finished() -> None:
    # full duplex (no gating): the reply was sent long ago but the speaker is still playing it
    async with running_daemon() as d:
        local = _Local()
        d.daemon.attach_local_audio(local)
        kiosk = d.daemon.kiosk
        kiosk.half_duplex = False
        local.playing = True
        before = local.stopped
        await kiosk.hear(speech_pcm(400))
        for _ in range(50):
            if local.stopped > before:
                break
            await asyncio.sleep(0.02)
        assert local.stopped > before and kiosk.state == "listening"


async def test_run_warms_the_prompt_cache_with_every_passage_when_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import httpx

    from assistant import ahead, prompts, registry
    from assistant.commands import daemon as command

    @dataclasses.dataclass
    class CachingModel(FakeLanguageModel):
        caches_prompts: bool = True
        warmed: list[list[object]] = dataclasses.field(default_factory=list)
        busy_seen: list[bool] = dataclasses.field(default_factory=list)

        async def warm(self, prompts_: object, *, yield_while: object = None, again: bool = False) -> int:
            batch = list(prompts_)  # type: ignore[call-overload]
            self.busy_seen.append(yield_while())  # type: ignore[operator]
            self.warmed.extend(batch)
            return len(batch)

    class ListingRetriever(FakeRetriever):
        def all_passages(self) -> list[object]:
            return list(self.passages)

    monkeypatch.setattr(ahead, "REWARM_QUIET_S", 0.1)
    llm = CachingModel()
    retriever = ListingRetriever()
    engines = fake_engines(llm=llm, retriever=retriever, speak=False)
    monkeypatch.setattr(registry, "engines", lambda settings: engines)
    settings = settings_for_tests()
    settings.server.port = 0
    urls: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(command.serve(settings, stop=stop, on_ready=urls.append, local_audio=False))
    try:
        for _ in range(100):
            if urls:
                break
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=urls[0]) as http:
            for _ in range(100):
                health = (await http.get("/healthz")).json()
                if health.get("prompt_cache") == "ready":
                    break
                await asyncio.sleep(0.02)
        assert health["prompt_cache"] == "ready"
        # one prompt beginning per passage, and a document (this one is English) once more for
        # questions in the other language; sorted, so each shares the most with the one before
        expected = [prompts.passage_prefix(p) for p in retriever.passages]
        expected += [prompts.passage_prefix(p, language="zh") for p in retriever.passages if p.kind == "document"]
        assert llm.warmed == sorted(expected, key=lambda messages: [m.content for m in messages])
        assert llm.busy_seen and not any(llm.busy_seen)  # nobody was being served meanwhile
        # after a reply, once the daemon is quiet again, the beginnings are warmed once more
        first_pass = list(llm.warmed)
        ws = await open_client(urls[0].replace("http://", "ws://") + "ws?role=visitor")
        await hello(ws)
        await ws.send(json.dumps({"type": "text", "text": "Tell me about the visitor badge"}))
        await collect(ws)
        for _ in range(200):
            if len(llm.warmed) >= 2 * len(first_pass):
                break
            await asyncio.sleep(0.02)
        assert llm.warmed == first_pass + first_pass
        await ws.close()
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 5) == 0


async def test_the_daemons_own_wrapped_transcriber_gets_what_was_said_before() -> None:
    """The daemon shares every engine behind a fair gate (assistant.sharing). What the listener
    committed of a long question must still reach the engine as context for the rest: it travels
    in the Utterance (``previous_text``), so no wrapper can drop it."""

    @dataclasses.dataclass
    class ContextTranscriber(FakeTranscriber):
        contexts: list[str] = dataclasses.field(default_factory=list)

        async def transcribe(self, utterance: Utterance) -> Transcript:
            self.contexts.append(utterance.previous_text)
            return await super().transcribe(utterance)

    transcriber = ContextTranscriber(text="where do visitors", language="en")
    async with running_daemon(fake_engines(transcriber=transcriber)) as d:
        assert d.daemon.engines.transcriber is not transcriber  # the wrapped one
        kiosk = d.daemon.kiosk
        # a question with a real pause inside it: the first part is committed at the pause
        for pcm in (speech_pcm(1200), silence_pcm(300), speech_pcm(1200), silence_pcm(800)):
            for i in range(0, len(pcm), 320):
                await kiosk.hear(pcm[i : i + 320])
                await asyncio.sleep(0.02)
        for _ in range(100):
            if kiosk.results:
                break
            await asyncio.sleep(0.02)
    assert "where do visitors" in transcriber.contexts  # the rest was transcribed with the first part
    assert kiosk.results and kiosk.results[-1].question == "where do visitors where do visitors"


async def test_each_session_listener_gets_the_turn_model_and_waits_for_it() -> None:
    from daemon_support import EnergyDetector

    from assistant.daemon import Daemon

    class Judge:
        async def judge(self, pcm: np.ndarray) -> float:
            return 0.5

    settings = settings_for_tests()
    engines = dataclasses.replace(fake_engines(), turn_detector=Judge())
    daemon = Daemon(settings, engines, detector_factory=EnergyDetector)
    try:
        listener = daemon.make_listener(daemon.kiosk)
        assert listener is not None and listener.turn_detector is engines.turn_detector  # not wrapped: no gate
        # the endpointer's own silence limit moves out to [turn] wait_ms; the end-of-turn rule ends sooner
        assert listener.endpointer.settings.silence_ms == settings.turn.wait_ms
        settings.asr.partials = False  # no transcript at the pause: the silence rule alone
        plain = daemon.make_listener(daemon.kiosk)
        assert plain is not None and plain.turn_detector is None
        assert plain.endpointer.settings.silence_ms == settings.vad.silence_ms
    finally:
        await daemon.close()
