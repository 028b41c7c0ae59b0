"""The OpenAI-compatible endpoints, driven by the official ``openai`` package against the daemon
composed with fake engines: models, transcription of a real recording, speech, chat completions
(streamed and whole, with sources and history), the daemon's access rules and bad input."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import socket
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from audio_data import LIBRIVOX, recording
from daemon_support import EnergyDetector
from fakes import FakeLanguageModel, FakeSynthesizer, FakeTranscriber, fake_engines, settings_for_tests

from assistant import prompts
from assistant.cli import build_parser
from assistant.commands.openai_api import openai_server
from assistant.config import Settings, load
from assistant.daemon import Daemon
from assistant.errors import AssistantError, ConfigError
from assistant.server import openai_wire as wire
from assistant.server.openai_api import OpenAIServer
from assistant.stages import Engines

FAQ_QUESTION = "请问商旅的出差制度"
FAQ_ANSWER = "出差需提前三个工作日在OA提交申请。住宿标准为一线城市每晚600元。"
SPEECH_FILE = LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0930.wav"


@dataclass
class Running:
    daemon: Daemon
    server: OpenAIServer
    engines: Engines

    def client(self, api_key: str = "anything") -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.server.url, api_key=api_key, max_retries=0, timeout=10.0)

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.url.removesuffix("/v1"), timeout=10.0)


@contextlib.asynccontextmanager
async def running(engines: Engines | None = None, settings: Settings | None = None) -> AsyncIterator[Running]:
    settings = settings or settings_for_tests()
    settings.openai.uri = "http://127.0.0.1:0"
    engines = engines or fake_engines()
    daemon = Daemon(settings, engines, detector_factory=EnergyDetector)
    server = openai_server(settings, daemon)  # the composition `assistant run` uses
    await server.start()
    try:
        yield Running(daemon, server, engines)
    finally:
        await server.close()
        await daemon.close()


def wav_file(seconds: float, rate_hz: int = 16_000) -> bytes:
    n = int(seconds * rate_hz)
    pcm = (np.sin(2 * np.pi * 220 * np.arange(n) / rate_hz) * 8000).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def error_of(err: openai.APIStatusError) -> dict[str, object]:
    body = err.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


# -- models ----------------------------------------------------------------------------------


async def test_models_lists_the_assistant_the_transcriber_and_the_voices() -> None:
    async with running() as r, r.client() as client:
        models = {m.id: m for m in (await client.models.list()).data}
        assert set(models) == {"assistant", "whisper-base", "assistant-speech"}
        assert models["assistant"].model_extra is not None
        assert models["assistant"].model_extra["assistant"]["serves"] == "chat.completions"
        speech = models["assistant-speech"].model_extra
        assert speech is not None and {"joe", "zh-default"} <= set(speech["assistant"]["voices"])
        assert (await client.models.retrieve("assistant")).id == "assistant"
        with pytest.raises(openai.NotFoundError) as caught:
            await client.models.retrieve("gpt-4o")
        assert error_of(caught.value)["code"] == "model_not_found"


async def test_models_leaves_out_what_is_not_loaded() -> None:
    async with running(fake_engines(speak=False)) as r, r.client() as client:
        assert {m.id for m in (await client.models.list()).data} == {"assistant", "whisper-base"}
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.speech.create(model="tts-1", voice="joe", input="Hello.", response_format="wav")
        assert error_of(caught.value)["param"] == "voice"


# -- transcriptions --------------------------------------------------------------------------


async def test_transcription_of_a_real_recording_in_each_format() -> None:
    speech = recording("librivox/sense_and_sensibility_01_austen_64kb-0930.wav")
    transcriber = FakeTranscriber(text="How do I download the DiDi app?", language="en")
    async with running(fake_engines(transcriber=transcriber)) as r, r.client() as client:
        result = await client.audio.transcriptions.create(model="whisper-1", file=SPEECH_FILE, language="en")
        assert result.text == "How do I download the DiDi app?"
        heard = transcriber.calls[-1]
        assert np.array_equal(heard.pcm, speech) and heard.language == "en"  # decoded to 16 kHz mono, whole
        text = await client.audio.transcriptions.create(model="whisper-1", file=SPEECH_FILE, response_format="text")
        assert text.strip() == "How do I download the DiDi app?"
        verbose = await client.audio.transcriptions.create(
            model="whisper-1", file=SPEECH_FILE, response_format="verbose_json", prompt="DiDi"
        )
        assert verbose.text == "How do I download the DiDi app?" and verbose.language == "english"
        assert verbose.duration == pytest.approx(len(speech) / 16_000, abs=0.01)
        assert verbose.segments is not None and verbose.segments[0].end == pytest.approx(verbose.duration)
        assert transcriber.calls[-1].previous_text == "DiDi"  # the prompt, as the context Whisper is given
        srt = await client.audio.transcriptions.create(model="whisper-1", file=SPEECH_FILE, response_format="srt")
        assert "00:00:00,000 --> " in srt and "DiDi" in srt


async def test_transcription_resamples_a_44khz_upload() -> None:
    transcriber = FakeTranscriber(text="hello")
    async with running(fake_engines(transcriber=transcriber)) as r, r.client() as client:
        result = await client.audio.transcriptions.create(model="whisper-1", file=("q.wav", wav_file(1.0, 44_100)))
        assert result.text == "hello"
        assert abs(len(transcriber.calls[-1].pcm) - 16_000) <= 2


async def test_an_empty_or_unreadable_upload_gets_a_400() -> None:
    async with running() as r, r.client() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.transcriptions.create(model="whisper-1", file=("empty.wav", b""))
        error = error_of(caught.value)
        assert error["code"] == "audio-empty" and error["param"] == "file"
        assert error["type"] == "invalid_request_error"
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.transcriptions.create(model="whisper-1", file=("q.wav", b"RIFF not really a wave"))
        assert error_of(caught.value)["code"] == "audio-unreadable"
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.transcriptions.create(model="whisper-1", file=SPEECH_FILE, response_format="tsv")  # type: ignore[arg-type]
        assert error_of(caught.value)["param"] == "response_format"
        # the server goes on
        assert (await client.audio.transcriptions.create(model="whisper-1", file=SPEECH_FILE)).text


async def test_a_malformed_multipart_body_gets_a_400() -> None:
    async with running() as r, r.http() as http:
        for body, content_type in (
            (b'--xx\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc', "multipart/form-data; boundary=xx"),
            (b"garbage", "multipart/form-data; boundary=xx"),
            (b"garbage", "multipart/form-data"),
            (b"file=abc", "application/x-www-form-urlencoded"),
        ):
            response = await http.post("/v1/audio/transcriptions", content=body, headers={"Content-Type": content_type})
            assert response.status_code == 400, body
            assert response.json()["error"]["type"] == "invalid_request_error"


async def test_an_oversized_upload_gets_a_413() -> None:
    settings = settings_for_tests()
    settings.openai.max_upload_bytes = 65_536
    async with running(settings=settings) as r, r.client() as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.audio.transcriptions.create(model="whisper-1", file=("long.wav", wav_file(4.0)))  # 128 KB
        assert caught.value.status_code == 413
        assert error_of(caught.value)["code"] == "request_too_large"
        small = await client.audio.transcriptions.create(model="whisper-1", file=("short.wav", wav_file(1.0)))
        assert small.text


async def test_audio_longer_than_allowed_gets_a_400() -> None:
    settings = settings_for_tests()
    settings.openai.max_audio_s = 1.0
    async with running(settings=settings) as r, r.client() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.transcriptions.create(model="whisper-1", file=("q.wav", wav_file(2.0)))
        assert error_of(caught.value)["code"] == "audio-too-long"


# -- speech ----------------------------------------------------------------------------------


async def test_speech_as_wav_and_as_24khz_pcm() -> None:
    synthesizer = FakeSynthesizer(rate_hz=22_050)
    sentence = "Welcome to Acme. The badge desk is on your left."
    async with running(fake_engines(synthesizer=synthesizer)) as r, r.client() as client:
        response = await client.audio.speech.create(model="tts-1", voice="joe", input=sentence, response_format="wav")
        with wave.open(io.BytesIO(response.content), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (22_050, 1, 2)
            seconds = w.getnframes() / w.getframerate()
        assert seconds == pytest.approx(len(sentence) * 0.040, rel=0.05)  # the fake's 40 ms per character
        assert [name for _, name in synthesizer.calls] == ["joe", "joe"]  # sentence by sentence
        assert response.response.headers["content-type"] == "audio/wav"
        pcm = await client.audio.speech.create(model="tts-1", voice="joe", input=sentence, response_format="pcm")
        assert len(pcm.content) // 2 == pytest.approx(seconds * 24_000, rel=0.01)  # OpenAI's pcm: 24 kHz int16


async def test_speech_refuses_an_unknown_voice_a_format_it_lacks_and_empty_input() -> None:
    async with running() as r, r.client() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.speech.create(model="tts-1", voice="alloy", input="Hello.")
        error = error_of(caught.value)
        assert error["code"] == "voice_not_found" and error["param"] == "voice"
        assert "joe" in str(error["message"])  # it names the voices there are
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.speech.create(model="tts-1", voice="joe", input="Hello.", response_format="mp3")
        assert error_of(caught.value)["param"] == "response_format"
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.speech.create(model="tts-1", voice="joe", input="  ")
        assert error_of(caught.value)["param"] == "input"


# -- chat completions ------------------------------------------------------------------------


async def test_a_chat_completion_answers_from_the_knowledge_base_with_its_sources() -> None:
    llm = FakeLanguageModel()
    async with running(fake_engines(llm=llm)) as r, r.client() as client:
        completion = await client.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": FAQ_QUESTION}]
        )
    assert completion.choices[0].message.content == FAQ_ANSWER
    assert completion.choices[0].finish_reason == "stop" and completion.model == "assistant"
    extra = completion.model_extra
    assert extra is not None and extra["assistant"]["route"] == "faq" and extra["assistant"]["declined"] is False
    assert extra["assistant"]["sources"][0]["id"] == "travel-policy"
    assert llm.calls == []  # a stored answer, verbatim
    assert len(r.daemon.sessions) == 1  # the request's session ended with it: only the kiosk is left


async def test_a_streamed_chat_completion() -> None:
    llm = FakeLanguageModel()
    async with running(fake_engines(llm=llm)) as r, r.client() as client:
        stream = await client.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "Where do visitors get a badge?"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    first = chunks[0].model_extra
    assert first is not None and first["assistant"]["route"] == "generated"
    assert first["assistant"]["sources"] and first["assistant"]["sources"][0]["kind"] == "document"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == llm.reply
    assert len(chunks) > 3  # it came in pieces
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_a_decline_stands_on_no_sources() -> None:
    llm = FakeLanguageModel(reply=prompts.decline_line("en"))
    async with running(fake_engines(llm=llm)) as r, r.client() as client:
        messages = [{"role": "user", "content": "How many visitors came last year?"}]
        stream = await client.chat.completions.create(model="assistant", messages=messages, stream=True)  # type: ignore[arg-type]
        chunks = [chunk async for chunk in stream]
        whole = await client.chat.completions.create(model="assistant", messages=messages)  # type: ignore[arg-type]
    assert llm.calls  # the passages were searched and the model asked ...
    for extra in (chunks[0].model_extra, whole.model_extra):
        assert extra is not None  # ... but the reply is the decline: its sources are withdrawn
        assert extra["assistant"] == {"route": "generated", "declined": True, "sources": []}
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content


async def test_the_requests_messages_are_its_history() -> None:
    llm = FakeLanguageModel()
    async with running(fake_engines(llm=llm)) as r, r.client() as client:
        await client.chat.completions.create(
            model="assistant",
            messages=[
                {"role": "system", "content": "You are a pirate."},
                {"role": "user", "content": "Where do visitors get a badge?"},
                {"role": "assistant", "content": "At reception, by the main door."},
                {"role": "user", "content": [{"type": "text", "text": "And the Wi-Fi for visitors?"}]},
            ],
        )
        asked = llm.calls[-1]
        assert any(m.role == "user" and m.content == "Where do visitors get a badge?" for m in asked)
        assert any(m.role == "assistant" and m.content == "At reception, by the main door." for m in asked)
        assert asked[-1].role == "user" and "And the Wi-Fi for visitors?" in asked[-1].content
        assert not any("pirate" in m.content for m in asked)  # the daemon's own prompt decides
        # a request without that history starts afresh: nothing of the last one is kept
        await client.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "Is there visitor Wi-Fi?"}]
        )
        assert not any(m.content == "Where do visitors get a badge?" for m in llm.calls[-1])


async def test_a_failed_turn_is_a_500_whole_and_an_error_event_streamed() -> None:
    llm = FakeLanguageModel(fail_after=6)  # fails after 36 characters, past the reply gate's hold
    async with running(fake_engines(llm=llm)) as r, r.client() as client:
        messages = [{"role": "user", "content": "Where do visitors get a badge?"}]
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="assistant", messages=messages)  # type: ignore[arg-type]
        assert error_of(caught.value)["code"] == "llm-failed"
        stream = await client.chat.completions.create(model="assistant", messages=messages, stream=True)  # type: ignore[arg-type]
        written = ""
        with pytest.raises(openai.APIError, match="failed on purpose"):
            async for chunk in stream:
                written += chunk.choices[0].delta.content or ""
        assert written and llm.reply.startswith(written)  # it had started: the error ends the stream
        ok = await client.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": FAQ_QUESTION}]
        )
        assert ok.choices[0].message.content == FAQ_ANSWER


async def test_a_client_that_leaves_mid_stream_stops_its_turn() -> None:
    llm = FakeLanguageModel(delay_s=0.05)
    async with running(fake_engines(llm=llm)) as r:
        async with r.client() as client:
            stream = await client.chat.completions.create(
                model="assistant", messages=[{"role": "user", "content": "Where do visitors get a badge?"}], stream=True
            )
            async for _ in stream:
                break
            await stream.close()
        for _ in range(100):
            if llm.stopped_early and len(r.daemon.sessions) == 1:
                break
            await asyncio.sleep(0.02)
        assert llm.stopped_early and llm.pieces_sent < len(llm.reply) // llm.piece_chars
        assert len(r.daemon.sessions) == 1


async def test_a_client_that_leaves_before_a_whole_completion_stops_its_turn() -> None:
    llm = FakeLanguageModel(delay_s=0.05)
    async with running(fake_engines(llm=llm)) as r:
        async with r.client() as client:
            messages = [{"role": "user", "content": "Where do visitors get a badge?"}]
            asking = asyncio.create_task(client.chat.completions.create(model="assistant", messages=messages))  # type: ignore[arg-type]
            for _ in range(100):
                if llm.pieces_sent:
                    break
                await asyncio.sleep(0.02)
            asking.cancel()  # the connection closes with the request unanswered
            with contextlib.suppress(asyncio.CancelledError):
                await asking
        for _ in range(100):
            if llm.stopped_early and len(r.daemon.sessions) == 1:
                break
            await asyncio.sleep(0.02)
        assert llm.stopped_early and llm.pieces_sent < len(llm.reply) // llm.piece_chars
        assert len(r.daemon.sessions) == 1


async def test_chat_refuses_bad_requests_in_openais_shape() -> None:
    async with running() as r, r.client() as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert error_of(caught.value) | {"message": ""} == {
            "message": "",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="assistant", messages=[{"role": "assistant", "content": "hi"}])
        assert error_of(caught.value)["param"] == "messages"
        async with r.http() as http:
            for body in (b"{not json", b"[1, 2]", b'{"model": "assistant"}', b'{"model": 3, "messages": []}'):
                response = await http.post(
                    "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}
                )
                assert response.status_code == 400, body
                assert set(response.json()["error"]) == {"message", "type", "param", "code"}
            big = b'{"model": "assistant", "messages": [{"role": "user", "content": "' + b"x" * 1_100_000 + b'"}]}'
            response = await http.post("/v1/chat/completions", content=big)
            assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
            response = await http.get("/v1/chat/completions")
            assert response.status_code == 405 and response.json()["error"]["type"] == "invalid_request_error"
            response = await http.get("/v1/nothing-here")
            assert response.status_code == 404 and "error" in response.json()


# -- the daemon's access rules ---------------------------------------------------------------


async def test_a_bad_token_gets_a_401_and_the_right_one_passes() -> None:
    settings = settings_for_tests()
    settings.server.token = "s3cret-token"
    async with running(settings=settings) as r:
        async with r.client(api_key="wrong") as client:
            with pytest.raises(openai.AuthenticationError) as caught:
                await client.chat.completions.create(
                    model="assistant", messages=[{"role": "user", "content": FAQ_QUESTION}]
                )
            assert error_of(caught.value)["code"] == "invalid_api_key"
            with pytest.raises(openai.AuthenticationError):
                await client.audio.transcriptions.create(model="whisper-1", file=SPEECH_FILE)
            with pytest.raises(openai.AuthenticationError):
                await client.models.list()
        async with r.client(api_key="s3cret-token") as client:
            completion = await client.chat.completions.create(
                model="assistant", messages=[{"role": "user", "content": FAQ_QUESTION}]
            )
            assert completion.choices[0].message.content == FAQ_ANSWER


async def test_host_and_origin_checks_as_on_the_websocket() -> None:
    settings = settings_for_tests()
    settings.server.allowed_origins = ["https://kiosk.example"]
    async with running(settings=settings) as r, r.http() as http:
        response = await http.get("/v1/models", headers={"Host": "evil.example"})  # DNS rebinding
        assert response.status_code == 421 and response.json()["error"]["code"] == "host_not_allowed"
        response = await http.get("/v1/models", headers={"Origin": "http://evil.example"})
        assert response.status_code == 403 and response.json()["error"]["code"] == "origin_not_allowed"
        assert (await http.get("/v1/models", headers={"Origin": "https://kiosk.example"})).status_code == 200
        assert (await http.get("/v1/models", headers={"Host": "kiosk.example"})).status_code == 200
        twice = [("Authorization", "Bearer a"), ("Authorization", "Bearer b")]
        assert (await http.get("/v1/models", headers=twice)).status_code == 400


async def test_a_network_address_needs_a_token() -> None:
    settings = settings_for_tests()
    settings.openai.uri = "http://0.0.0.0:8766"
    with pytest.raises(AssistantError, match=r"\[server\] token"):
        openai_server(settings, Daemon(settings, fake_engines()))


# -- turning it on ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_assistant_run_serves_the_openai_endpoints_beside_the_websocket(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from assistant import registry
    from assistant.commands import daemon as command

    engines = fake_engines(transcriber=FakeTranscriber(text="How do I download the DiDi app?"))
    monkeypatch.setattr(registry, "engines", lambda settings: engines)
    port = free_port()
    args = build_parser().parse_args(["run", "--port", str(free_port()), "--openai", f"http://127.0.0.1:{port}"])
    monkeypatch.setattr(command.asyncio, "run", lambda coro: coro)  # run() hands us serve()'s coroutine
    task = asyncio.create_task(command.run(args, settings_for_tests()))  # type: ignore[arg-type]
    printed = ""
    for _ in range(200):
        printed += capsys.readouterr().out
        if "OpenAI-compatible API on" in printed:
            break
        await asyncio.sleep(0.02)
    assert f"OpenAI-compatible API on http://127.0.0.1:{port}/v1" in printed
    try:
        async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="-", max_retries=0) as client:
            heard = await client.audio.transcriptions.create(model="whisper-1", file=SPEECH_FILE)
            completion = await client.chat.completions.create(
                model="assistant", messages=[{"role": "user", "content": heard.text}]
            )
            assert completion.model_extra is not None and completion.model_extra["assistant"]["route"] == "faq"
    finally:
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 5) == 0
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)  # closed with the daemon


def test_config_section_and_command_line(tmp_path: Path) -> None:
    assert load(environ={}).openai.enabled is False  # the shipped assistant.toml: off by default
    path = tmp_path / "assistant.toml"
    path.write_text('[openai]\nenabled = true\nuri = "http://0.0.0.0:9000"\n')
    settings = load(path, environ={})
    assert settings.openai.enabled and settings.openai.uri == "http://0.0.0.0:9000"
    for bad in (
        'uri = "tcp://x:1"',
        'uri = "http://nohost"',
        'uri = "http://x:1/v1"',
        "max_upload_bytes = 10",
        "port = 1",
    ):
        path.write_text(f"[openai]\n{bad}\n")
        with pytest.raises(ConfigError, match=r"\[openai\]"):
            load(path, environ={})
    assert build_parser().parse_args(["run", "--openai", "http://127.0.0.1:8766"]).openai == "http://127.0.0.1:8766"


# -- the wire, sans I/O ----------------------------------------------------------------------


def test_chat_requests_are_read_strictly() -> None:
    asked = wire.parse_chat(
        {
            "model": "assistant",
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": " c "},
            ],
        }
    )
    assert asked.question == "c" and [(m.role, m.content) for m in asked.history] == [("user", "a"), ("assistant", "b")]
    for bad, param in (
        ({"model": "assistant", "messages": [{"role": "user", "content": "a"}], "n": 2}, "n"),
        ({"model": "assistant", "messages": [{"role": "wizard", "content": "a"}]}, "messages[0].role"),
        ({"model": "assistant", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0]"),
        ({"model": "assistant", "messages": [{"role": "user", "content": "a"}], "stream": "yes"}, "stream"),
    ):
        with pytest.raises(wire.ApiError) as caught:
            wire.parse_chat(bad)
        assert caught.value.status == 400 and caught.value.param == param


def test_subtitles_span_the_audio() -> None:
    content_type, body = wire.transcription("vtt", "你好", language="zh", duration_s=3_725.5)
    assert content_type.startswith("text/vtt") and body.decode() == "WEBVTT\n\n00:00:00.000 --> 01:02:05.500\n你好\n\n"


# -- everyone at once ------------------------------------------------------------------------


async def test_openai_wyoming_and_websocket_clients_at_once_share_the_engines_without_mix_ups() -> None:
    """One daemon, its three doors: each client gets its own answer, on its own history."""
    from daemon_support import collect, hello, open_client
    from wyoming.asr import Transcript as WyTranscript
    from wyoming.client import AsyncTcpClient
    from wyoming.handle import Handled

    from assistant.commands.wyoming import wyoming_server
    from assistant.server.app import AssistantServer

    llm = FakeLanguageModel(delay_s=0.01)
    synth = FakeSynthesizer(delay_s=0.01)
    settings = settings_for_tests()
    settings.wyoming.uri = "tcp://127.0.0.1:0"
    async with running(fake_engines(llm=llm, synthesizer=synth), settings=settings) as r:
        page = AssistantServer(settings, r.daemon, host="127.0.0.1", port=0)
        await page.start()
        wyoming = wyoming_server(settings, r.daemon)
        await wyoming.start()
        try:

            async def chat(question: str, history: list[dict[str, str]], stream: bool) -> tuple[str, str]:
                async with r.client() as client:
                    messages = [*history, {"role": "user", "content": question}]
                    if not stream:
                        done = await client.chat.completions.create(model="assistant", messages=messages)  # type: ignore[arg-type]
                        assert done.model_extra is not None
                        return done.choices[0].message.content or "", done.model_extra["assistant"]["route"]
                    chunks = [
                        c
                        async for c in await client.chat.completions.create(
                            model="assistant", messages=messages, stream=True
                        )
                    ]  # type: ignore[arg-type]
                    assert chunks[0].model_extra is not None
                    text = "".join(c.choices[0].delta.content or "" for c in chunks)
                    return text, chunks[0].model_extra["assistant"]["route"]

            async def transcribe() -> str:
                async with r.client() as client:
                    return (await client.audio.transcriptions.create(model="whisper-1", file=SPEECH_FILE)).text

            async def speak() -> int:
                async with r.client() as client:
                    wav = await client.audio.speech.create(
                        model="tts-1", voice="joe", input="One. Two.", response_format="wav"
                    )
                    with wave.open(io.BytesIO(wav.content), "rb") as w:
                        return w.getnframes()

            async def handle() -> str:
                async with AsyncTcpClient("127.0.0.1", wyoming.port) as client:
                    await client.write_event(WyTranscript(text=FAQ_QUESTION).event())
                    while True:
                        event = await client.read_event()
                        assert event is not None
                        if Handled.is_type(event.type):
                            return Handled.from_event(event).text or ""

            async def visitor() -> str:
                async with await open_client(f"ws://127.0.0.1:{page.port}/ws?role=visitor") as ws:
                    await hello(ws)
                    await ws.send('{"type": "text", "text": "Where do visitors get a badge?"}')
                    return str((await collect(ws)).of("reply-end")[0]["text"])

            marker = [
                {"role": "user", "content": "Do visitors need a badge on Saturdays?"},
                {"role": "assistant", "content": "Yes, on Saturdays too."},
            ]
            results = await asyncio.gather(
                chat(FAQ_QUESTION, [], False),
                chat("And for visitors, the Wi-Fi?", marker, True),
                chat("What is the tallest mountain on Mars?", [], True),
                transcribe(),
                speak(),
                handle(),
                visitor(),
            )
        finally:
            await wyoming.close()
            await page.close()
    assert results[0] == (FAQ_ANSWER, "faq")
    assert results[1] == (llm.reply, "generated")
    assert results[2] == (prompts.fallback_line("en"), "fallback")
    assert results[3] == FakeTranscriber().text
    assert results[4] == 2 * 4 * 640  # "One." and "Two.": 4 characters each, the fake's 40 ms (640 samples) apiece
    assert results[5] == FAQ_ANSWER
    assert results[6] == llm.reply
    # two generated turns, each asked with its own history: the chat's marker went to one call only
    assert len(llm.calls) == 2
    assert sum(any(m.content == "Yes, on Saturdays too." for m in call) for call in llm.calls) == 1
