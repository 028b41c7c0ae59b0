"""The Wyoming server (Home Assistant's protocol), driven by the wyoming package's own async client
against the daemon composed with fake engines: describe, asr, tts (whole and streamed), handle, and
bad input that must cost nobody else anything."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from audio_data import recording
from daemon_support import EnergyDetector
from fakes import FakeLanguageModel, FakeSynthesizer, FakeTranscriber, fake_engines, settings_for_tests
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncClient, AsyncTcpClient, AsyncUnixClient
from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.handle import Handled, HandledChunk, HandledStart, NotHandled
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice

from assistant import prompts
from assistant.cli import build_parser
from assistant.commands.wyoming import wyoming_server
from assistant.config import load
from assistant.daemon import Daemon
from assistant.errors import ConfigError
from assistant.server.wyoming import WyomingServer
from assistant.stages import Engines

FAQ_QUESTION = "请问商旅的出差制度"
FAQ_ANSWER = "出差需提前三个工作日在OA提交申请。住宿标准为一线城市每晚600元。"


@dataclass
class Running:
    daemon: Daemon
    server: WyomingServer
    engines: Engines

    def client(self) -> AsyncTcpClient:
        return AsyncTcpClient("127.0.0.1", self.server.port, read_timeout=10.0)


@contextlib.asynccontextmanager
async def running(engines: Engines | None = None, uri: str = "tcp://127.0.0.1:0") -> AsyncIterator[Running]:
    settings = settings_for_tests()
    settings.wyoming.uri = uri
    engines = engines or fake_engines()
    daemon = Daemon(settings, engines, detector_factory=EnergyDetector)
    server = wyoming_server(settings, daemon)  # the composition `assistant run` uses
    await server.start()
    try:
        yield Running(daemon, server, engines)
    finally:
        await server.close()
        await daemon.close()


async def read_until(client: AsyncClient, *types: str) -> list[Event]:
    """Events up to and including the first of ``types``."""
    out: list[Event] = []
    while True:
        event = await client.read_event()
        assert event is not None, f"the server closed the connection after {[e.type for e in out]}"
        out.append(event)
        if event.type in types:
            return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pcm_bytes(seconds: float, rate_hz: int = 16_000, channels: int = 1) -> bytes:
    n = int(seconds * rate_hz)
    mono = (np.sin(2 * np.pi * 220 * np.arange(n) / rate_hz) * 8000).astype("<i2")
    return np.repeat(mono[:, None], channels, axis=1).tobytes()


async def send_audio(client: AsyncClient, audio: bytes, *, rate: int, width: int = 2, channels: int = 1) -> None:
    await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
    step = max(320, rate * width * channels // 10)  # 100 ms chunks
    for i in range(0, len(audio), step):
        await client.write_event(AudioChunk(rate=rate, width=width, channels=channels, audio=audio[i : i + step]).event())
    await client.write_event(AudioStop().event())


def error_of(events: list[Event]) -> Error:
    errors = [Error.from_event(e) for e in events if Error.is_type(e.type)]
    assert errors, [e.type for e in events]
    return errors[0]


# -- describe --------------------------------------------------------------------------------


async def test_describe_lists_real_models_voices_and_languages_at_once() -> None:
    async with running() as r, r.client() as client:
        started = time.monotonic()
        await client.write_event(Describe().event())
        event = await client.read_event()
        elapsed_s = time.monotonic() - started
    assert event is not None and Info.is_type(event.type)
    assert elapsed_s < 0.5  # Home Assistant gives up after 1 s
    info = Info.from_event(event)
    (asr,) = info.asr
    assert [m.name for m in asr.models] == ["whisper-base"]
    assert asr.models[0].languages == ["zh", "en"]
    assert "faster-whisper" in asr.models[0].attribution.url
    (tts,) = info.tts
    assert tts.supports_synthesize_streaming
    voices = {v.name: v for v in tts.voices}
    assert {"joe", "zh-default"} <= set(voices)  # the voice folders under voices/
    assert voices["joe"].languages == ["en"] and "piper" in voices["joe"].attribution.url
    assert voices["zh-default"].languages == ["zh"]
    (handle,) = info.handle
    assert handle.supports_handled_streaming
    assert handle.models[0].languages == ["zh", "en"]
    assert "knowledge base" in (handle.models[0].description or "")


async def test_a_unix_socket_serves_too(tmp_path: Path) -> None:
    path = tmp_path / "wyoming.sock"
    async with running(uri=f"unix://{path}") as r, AsyncUnixClient(path, read_timeout=10.0) as client:
        assert r.server.url == f"unix://{path}"
        await client.write_event(Transcript(text=FAQ_QUESTION).event())
        assert Handled.from_event((await read_until(client, "handled"))[-1]).text == FAQ_ANSWER
    assert not path.exists()  # removed when the server closes


async def test_describe_leaves_out_what_is_not_loaded() -> None:
    async with running(fake_engines(speak=False)) as r, r.client() as client:
        await client.write_event(Describe().event())
        event = await client.read_event()
        assert event is not None
        info = Info.from_event(event)
        assert info.tts == [] and len(info.asr) == 1 and len(info.handle) == 1
        await client.write_event(Synthesize(text="Hello.").event())
        assert error_of(await read_until(client, "error")).code == "tts-unavailable"


# -- asr ---------------------------------------------------------------------------------------


async def test_transcribe_16khz_mono() -> None:
    transcriber = FakeTranscriber(text="How do I download the DiDi app?")
    async with running(fake_engines(transcriber=transcriber)) as r, r.client() as client:
        await client.write_event(Transcribe(language="en").event())
        await send_audio(client, pcm_bytes(1.0), rate=16_000)
        (event,) = await read_until(client, "transcript")
    transcript = Transcript.from_event(event)
    assert transcript.text == "How do I download the DiDi app?"
    assert transcript.language == "en"
    (utterance,) = transcriber.calls
    assert utterance.pcm.dtype == np.int16 and len(utterance.pcm) == 16_000
    assert utterance.language == "en"


async def test_transcribe_converts_48khz_stereo_to_16khz_mono() -> None:
    transcriber = FakeTranscriber()
    async with running(fake_engines(transcriber=transcriber)) as r, r.client() as client:
        await client.write_event(Transcribe(language="zh-CN").event())
        await send_audio(client, pcm_bytes(0.5, rate_hz=48_000, channels=2), rate=48_000, channels=2)
        (event,) = await read_until(client, "transcript")
    assert Transcript.from_event(event).text == FAQ_QUESTION
    (utterance,) = transcriber.calls
    assert len(utterance.pcm) == 8_000 and utterance.sample_rate_hz == 16_000
    assert utterance.language == "zh"  # Home Assistant's zh-CN, as the transcriber's codes go
    # the tone survives the resampler: same loudness, not noise or silence
    rms = float(np.sqrt(np.mean(utterance.pcm.astype(np.float64) ** 2)))
    assert 5_000 < rms < 6_000


@pytest.mark.parametrize(
    ("rate", "width", "channels"),
    [(96_000, 2, 1), (4_000, 2, 1), (16_000, 4, 1), (16_000, 1, 1), (16_000, 2, 0)],
)
async def test_unsupported_audio_gets_an_error_and_the_connection_goes_on(rate: int, width: int, channels: int) -> None:
    transcriber = FakeTranscriber()
    async with running(fake_engines(transcriber=transcriber)) as r, r.client() as client:
        await client.write_event(Transcribe().event())
        await send_audio(client, b"\x00" * 3200, rate=rate, width=width, channels=channels)
        error = error_of(await read_until(client, "error"))
        assert error.code == "audio-format"
        assert transcriber.calls == []
        # the same connection transcribes the next, good stream
        await client.write_event(Transcribe().event())
        await send_audio(client, pcm_bytes(0.5), rate=16_000)
        events = await read_until(client, "transcript", "error")
    assert events[-1].type == "transcript", [e.type for e in events]
    assert len(transcriber.calls) == 1


async def test_empty_audio_gets_an_error() -> None:
    transcriber = FakeTranscriber()
    async with running(fake_engines(transcriber=transcriber)) as r, r.client() as client:
        await client.write_event(Transcribe().event())
        await send_audio(client, b"", rate=16_000)
        assert error_of(await read_until(client, "error")).code == "audio-empty"
        await client.write_event(AudioStop().event())  # a stop with no stream at all
        assert error_of(await read_until(client, "error")).code == "audio-empty"
    assert transcriber.calls == []


async def test_audio_longer_than_allowed_gets_an_error() -> None:
    async with running() as r, r.client() as client:
        r.server.max_audio_s = 1.0
        await send_audio(client, pcm_bytes(1.5), rate=16_000)
        assert error_of(await read_until(client, "error")).code == "audio-format"


# -- tts ---------------------------------------------------------------------------------------


async def test_synthesize_speaks_sentence_by_sentence() -> None:
    synth = FakeSynthesizer(rate_hz=22_050)
    async with running(fake_engines(synthesizer=synth)) as r, r.client() as client:
        await client.write_event(Synthesize(text="Welcome to Acme. The guest Wi-Fi is Acme-Guest.").event())
        events = await read_until(client, "audio-stop")
    types = [e.type for e in events]
    assert types[0] == "audio-start" and types[-1] == "audio-stop"
    assert set(types[1:-1]) == {"audio-chunk"} and len(types) == 2 + 2 * 2  # two sentences, two chunks each
    start = AudioStart.from_event(events[0])
    assert (start.rate, start.width, start.channels) == (22_050, 2, 1)
    chunks = [AudioChunk.from_event(e) for e in events[1:-1]]
    assert all(c.rate == 22_050 and len(c.audio) > 0 for c in chunks)
    assert synth.calls == [("Welcome to Acme.", "fake-en"), ("The guest Wi-Fi is Acme-Guest.", "fake-en")]


async def test_synthesize_in_a_named_voice_and_an_unknown_one() -> None:
    synth = FakeSynthesizer()
    async with running(fake_engines(synthesizer=synth)) as r, r.client() as client:
        await client.write_event(Synthesize(text="Hello there.", voice=SynthesizeVoice(name="joe")).event())
        await read_until(client, "audio-stop")
        await client.write_event(Synthesize(text="你好。", voice=SynthesizeVoice(language="zh")).event())
        await read_until(client, "audio-stop")
        await client.write_event(Synthesize(text="Hello.", voice=SynthesizeVoice(name="nobody")).event())
        error = error_of(await read_until(client, "error"))
    assert error.code == "tts-voice-missing" and "joe" in error.text
    assert synth.calls == [("Hello there.", "joe"), ("你好。", "fake-zh")]


async def test_streaming_synthesis_starts_before_the_text_ends() -> None:
    synth = FakeSynthesizer()
    text = ["Welcome to Acme, where visitors", " get a badge at reception. The guest", " Wi-Fi is Acme-Guest."]
    async with running(fake_engines(synthesizer=synth)) as r, r.client() as client:
        await client.write_event(SynthesizeStart(voice=SynthesizeVoice(language="en")).event())
        for piece in text[:2]:
            await client.write_event(SynthesizeChunk(text=piece).event())
        # the first sentence is heard while the client is still sending the rest
        first = await read_until(client, "audio-chunk")
        assert [e.type for e in first] == ["audio-start", "audio-chunk"]
        await client.write_event(SynthesizeChunk(text=text[2]).event())
        # Home Assistant also sends the whole text for servers that do not stream: not spoken twice
        await client.write_event(Synthesize(text="".join(text)).event())
        await client.write_event(SynthesizeStop().event())
        rest = await read_until(client, "synthesize-stopped")
    assert [e.type for e in rest][-2:] == ["audio-stop", "synthesize-stopped"]
    assert [s for s, _ in synth.calls] == [
        "Welcome to Acme, where visitors get a badge at reception.",
        "The guest Wi-Fi is Acme-Guest.",
    ]


# -- handle ------------------------------------------------------------------------------------


async def test_handle_answers_an_faq_question_with_the_stored_answer() -> None:
    llm = FakeLanguageModel()
    async with running(fake_engines(llm=llm)) as r, r.client() as client:
        await client.write_event(Transcript(text=FAQ_QUESTION, language="zh").event())
        events = await read_until(client, "handled", "not-handled")
    types = [e.type for e in events]
    assert types[0] == "handled-start" and types[-2:] == ["handled-stop", "handled"]
    assert set(types[1:-2]) == {"handled-chunk"}
    assert "".join(HandledChunk.from_event(e).text for e in events[1:-2]) == FAQ_ANSWER
    handled = Handled.from_event(events[-1])
    assert handled.text == FAQ_ANSWER
    assert handled.context is not None and handled.context["route"] == "faq"
    assert handled.context["sources"][0]["id"] == "travel-policy"
    # the start names no sources: a decline would withdraw them after its first words
    assert HandledStart.from_event(events[0]).context == {
        "conversation_id": handled.context["conversation_id"],
        "route": "faq",
    }
    assert llm.calls == []  # a stored answer, verbatim: no model


async def test_handle_says_the_fallback_line_when_nothing_is_relevant() -> None:
    llm = FakeLanguageModel()
    async with running(fake_engines(llm=llm)) as r, r.client() as client:
        await client.write_event(Transcript(text="What is the tallest mountain on Mars?").event())
        events = await read_until(client, "handled", "not-handled")
    handled = Handled.from_event(events[-1])
    assert handled.text == prompts.fallback_line("en")
    assert handled.context is not None and handled.context["route"] == "fallback"
    assert llm.calls == []


async def test_handle_keeps_each_conversations_history() -> None:
    llm = FakeLanguageModel()
    async with running(fake_engines(llm=llm)) as r:
        async with r.client() as client:
            await client.write_event(Transcript(text="Where do visitors get a badge?").event())
            first = Handled.from_event((await read_until(client, "handled"))[-1])
            assert first.context is not None and first.context["route"] == "generated"
            assert first.text == llm.reply
            await client.write_event(Transcript(text="And the Wi-Fi for visitors?").event())
            await read_until(client, "handled")
            # the second question was asked with the first turn as history
            assert any(m.content == "Where do visitors get a badge?" for m in llm.calls[1])
            assert any(m.content == llm.reply for m in llm.calls[1])
        async with r.client() as other:  # a new client starts afresh
            await other.write_event(Transcript(text="Is there Wi-Fi for visitors?").event())
            await read_until(other, "handled")
            assert not any(m.content == "Where do visitors get a badge?" for m in llm.calls[2])
        async with r.client() as again:  # unless it names the conversation it had
            context = {"conversation_id": first.context["conversation_id"]}
            await again.write_event(Transcript(text="Is there Wi-Fi for visitors?", context=context).event())
            await read_until(again, "handled")
            assert any(m.content == "Where do visitors get a badge?" for m in llm.calls[3])


async def test_handle_reports_a_failed_turn_as_not_handled() -> None:
    llm = FakeLanguageModel(fail_after=1)
    async with running(fake_engines(llm=llm)) as r, r.client() as client:
        await client.write_event(Transcript(text="Where do visitors get a badge?").event())
        events = await read_until(client, "handled", "not-handled")
        assert [e.type for e in events][-2:] == ["handled-stop", "not-handled"]
        not_handled = NotHandled.from_event(events[-1])
        assert not_handled.context is not None and not_handled.context["code"] == "llm-failed"
        await client.write_event(Transcript(text=FAQ_QUESTION).event())  # the connection goes on
        assert Handled.from_event((await read_until(client, "handled"))[-1]).text == FAQ_ANSWER


async def test_a_client_that_leaves_mid_answer_stops_its_turn() -> None:
    llm = FakeLanguageModel(delay_s=0.05)
    async with running(fake_engines(llm=llm)) as r:
        async with r.client() as client:
            await client.write_event(Transcript(text="Where do visitors get a badge?").event())
            await read_until(client, "handled-chunk")
        for _ in range(100):
            if llm.stopped_early:
                break
            await asyncio.sleep(0.02)
        assert llm.stopped_early and llm.pieces_sent < len(llm.reply) // llm.piece_chars
        assert not any(s.busy for s in r.daemon.sessions.values())


async def test_conversations_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant import services

    monkeypatch.setattr(services, "MAX_CONVERSATIONS", 2)
    async with running() as r, r.client() as client:
        for n in range(4):
            await client.write_event(Transcript(text=FAQ_QUESTION, context={"conversation_id": f"c{n}"}).event())
            await read_until(client, "handled")
        await asyncio.sleep(0.05)  # dropped sessions close in the background
        assert len(r.daemon.sessions) == 1 + 2  # the kiosk and the latest two conversations


# -- bad input ---------------------------------------------------------------------------------


async def raw(r: Running, data: bytes, *, close_write: bool = False) -> list[Event]:
    """Send bytes that are not what a wyoming client writes; the events back until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", r.server.port)
    writer.write(data)
    await writer.drain()
    if close_write:
        writer.write_eof()
    events: list[Event] = []
    try:
        while (event := await asyncio.wait_for(async_read_event(reader), 5)) is not None:
            events.append(event)
    finally:
        writer.close()
    return events


async def describes(r: Running) -> bool:
    async with r.client() as client:
        await client.write_event(Describe().event())
        event = await client.read_event()
        return event is not None and Info.is_type(event.type)



async def test_a_declined_reply_names_no_sources_from_start_to_end() -> None:
    # the passages were found and the model asked, but its reply is the decline line: neither the
    # start nor the end of the answer may cite what it did not use
    llm = FakeLanguageModel(reply=prompts.decline_line("en"))
    async with running(fake_engines(llm=llm)) as r, r.client() as client:
        await client.write_event(Transcript(text="How many visitors came last year?", language="en").event())
        events = await read_until(client, "handled", "not-handled")
    assert llm.calls
    start, handled = HandledStart.from_event(events[0]), Handled.from_event(events[-1])
    assert start.context is not None and "sources" not in start.context
    assert handled.context is not None and handled.context["route"] == "generated"
    assert handled.context["sources"] == []


DESCRIBE = b'{"type": "describe"}\n'


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"this is not json\n" + DESCRIBE, "wyoming-bad-header"),
        (b'{"data": {"text": "no type"}}\n', "wyoming-bad-header"),
        (b'["describe"]\n', "wyoming-bad-header"),
        (b'{"type": "synthesize", "data": "text"}\n', "wyoming-bad-data"),
        (b'{"type": "audio-chunk", "payload_length": -5}\n', "wyoming-bad-header"),
        (b'{"type": "synthesize", "data_length": 5}\n[1,2]', "wyoming-bad-data"),
        # a payload length that lies short: the rest of the payload is read as the next header
        (b'{"type": "audio-chunk", "data": {"rate": 16000, "width": 2, "channels": 1}, "payload_length": 4}\n'
         b"\x01\x02\x03\x04\x05\x06\x07\x08" + DESCRIBE, "wyoming-bad-header"),
        # one that claims more than any event may hold is refused before anything is buffered
        (b'{"type": "audio-chunk", "payload_length": 1000000000000}\n', "wyoming-too-large"),
    ],
)
async def test_malformed_events_close_only_their_connection(data: bytes, code: str) -> None:
    async with running() as r:
        async with r.client() as bystander:  # connected before, served after
            events = await raw(r, data)
            assert [e.type for e in events] == ["error"]
            assert Error.from_event(events[0]).code == code
            await bystander.write_event(Describe().event())
            event = await bystander.read_event()
            assert event is not None and Info.is_type(event.type)
        assert await describes(r)


async def test_a_payload_length_that_lies_long_ends_with_the_stream() -> None:
    async with running() as r:
        header = b'{"type": "audio-chunk", "data": {"rate": 16000, "width": 2, "channels": 1}, "payload_length": 64000}\n'
        events = await raw(r, header + b"\x00" * 100, close_write=True)
        assert events == []  # the client left mid-payload: nothing to answer, nothing broken
        assert await describes(r)


async def test_a_well_formed_event_with_bad_fields_gets_an_error_and_the_connection_goes_on() -> None:
    async with running() as r, r.client() as client:
        await client.write_event(Event(type="synthesize", data={"text": 42}))
        assert error_of(await read_until(client, "error")).code == "wyoming-bad-data"
        await client.write_event(Event(type="synthesize-chunk", data={"text": "no start"}))
        assert error_of(await read_until(client, "error")).code == "wyoming-bad-order"
        await client.write_event(Event(type="something-new", data={"x": 1}))  # unknown events are ignored
        await client.write_event(Synthesize(text="Hello.").event())
        events = await read_until(client, "audio-stop")
        assert events[0].type == "audio-start"


async def test_a_client_that_leaves_mid_stream_costs_nobody_else() -> None:
    synth = FakeSynthesizer(delay_s=0.05)
    async with running(fake_engines(synthesizer=synth)) as r:
        async with r.client() as leaver:
            await leaver.write_event(SynthesizeStart().event())
            await leaver.write_event(SynthesizeChunk(text="A first sentence to speak. And a second one.").event())
            await leaver.write_event(AudioStart(rate=16_000, width=2, channels=1).event())
            await leaver.write_event(AudioChunk(rate=16_000, width=2, channels=1, audio=pcm_bytes(0.2)).event())
            await leaver.read_event()  # speech has begun
        # gone mid-synthesis and mid-audio: the next client is served, and no gate stays held
        async with r.client() as client:
            await client.write_event(Synthesize(text="Still here.").event())
            events = await read_until(client, "audio-stop")
        assert events[0].type == "audio-start"
        for _ in range(100):
            if not any(g.busy for g in r.daemon.gates):
                break
            await asyncio.sleep(0.02)
        assert not any(g.busy for g in r.daemon.gates)


async def test_clients_at_once_share_the_engines() -> None:
    synth = FakeSynthesizer(delay_s=0.01)
    async with running(fake_engines(synthesizer=synth)) as r:

        async def speak(n: int) -> list[str]:
            async with r.client() as client:
                await client.write_event(Synthesize(text=f"Client {n} speaks. Then again.").event())
                return [e.type for e in await read_until(client, "audio-stop")]

        async def ask() -> str | None:
            async with r.client() as client:
                await client.write_event(Transcript(text=FAQ_QUESTION).event())
                return Handled.from_event((await read_until(client, "handled"))[-1]).text

        results = await asyncio.gather(*(speak(n) for n in range(4)), ask(), ask())
    for types in results[:4]:
        assert isinstance(types, list) and types[0] == "audio-start" and types[-1] == "audio-stop"
    assert results[4:] == [FAQ_ANSWER, FAQ_ANSWER]
    assert sorted(s for s, _ in synth.calls) == sorted(
        s for n in range(4) for s in (f"Client {n} speaks.", "Then again.")
    )


# -- turning it on -----------------------------------------------------------------------------


async def test_assistant_run_serves_wyoming_beside_the_websocket(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``assistant run --wyoming``'s composition: the shared engines, a real recording transcribed, a
    sentence spoken and a question handled, then a clean stop."""
    from assistant import registry
    from assistant.commands import daemon as command

    speech = recording("librivox/sense_and_sensibility_01_austen_64kb-0930.wav")
    transcriber = FakeTranscriber(text="How do I download the DiDi app?")
    engines = fake_engines(transcriber=transcriber)
    monkeypatch.setattr(registry, "engines", lambda settings: engines)
    settings = settings_for_tests()
    args = build_parser().parse_args(["run", "--port", str(free_port()), "--wyoming", f"tcp://127.0.0.1:{free_port()}"])
    monkeypatch.setattr(command.asyncio, "run", lambda coro: coro)  # run() hands us serve()'s coroutine
    task = asyncio.create_task(command.run(args, settings))  # type: ignore[arg-type]
    printed = ""
    for _ in range(200):
        printed += capsys.readouterr().out
        if "Wyoming on tcp://" in printed:
            break
        await asyncio.sleep(0.02)
    port = int(printed.split("Wyoming on tcp://127.0.0.1:")[1].split()[0])
    try:
        async with AsyncTcpClient("127.0.0.1", port, read_timeout=10.0) as client:
            await client.write_event(Transcribe(language="en").event())
            await send_audio(client, speech.astype("<i2").tobytes(), rate=16_000)
            (event,) = await read_until(client, "transcript")
            assert Transcript.from_event(event).text == "How do I download the DiDi app?"
            assert np.array_equal(transcriber.calls[-1].pcm, speech)  # 16 kHz mono: passed on untouched
            await client.write_event(Synthesize(text="Welcome to Acme.").event())
            assert [e.type for e in await read_until(client, "audio-stop")][-1] == "audio-stop"
            await client.write_event(Transcript(text="How do I download the DiDi app?").event())
            handled = Handled.from_event((await read_until(client, "handled"))[-1])
            assert handled.context is not None and handled.context["route"] == "faq"
    finally:
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 5) == 0
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)  # the Wyoming port is closed with the daemon


def test_config_section_and_command_line(tmp_path: Path) -> None:
    assert load(environ={}).wyoming.enabled is False  # the shipped assistant.toml: off by default
    path = tmp_path / "assistant.toml"
    path.write_text('[wyoming]\nenabled = true\nuri = "tcp://0.0.0.0:10700"\n')
    settings = load(path, environ={})
    assert settings.wyoming.enabled and settings.wyoming.uri == "tcp://0.0.0.0:10700"
    for bad in ('uri = "http://x:1"', 'uri = "tcp://nohost"', "max_audio_s = 0.1", "port = 1"):
        path.write_text(f"[wyoming]\n{bad}\n")
        with pytest.raises(ConfigError, match=r"\[wyoming\]"):
            load(path, environ={})
    args = build_parser().parse_args(["run", "--wyoming", "tcp://127.0.0.1:10700"])
    assert args.wyoming == "tcp://127.0.0.1:10700"


def test_events_are_json_lines_the_package_reads() -> None:
    from assistant.server.wyoming_wire import frame

    data = frame(Handled(text="好的", context={"route": "faq"}).event())
    header, rest = data.split(b"\n", 1)
    assert json.loads(header)["type"] == "handled" and json.loads(rest) == {"text": "好的", "context": {"route": "faq"}}
