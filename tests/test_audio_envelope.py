"""The mouth envelope: silence closed, loud speech open, absolute across chunks, sentences and voices."""

from __future__ import annotations

import math

import numpy as np

from assistant.audio.envelope import EnvelopeFollower, envelope, rms_dbfs, visemes
from assistant.audio.pcm import FrameAligner, chunks_from_pcm
from assistant.stages import ENVELOPE_FRAME_MS


def sine(freq_hz: float, duration_ms: float, rate_hz: int, amplitude: float) -> np.ndarray:
    t = np.arange(int(rate_hz * duration_ms / 1000)) / rate_hz
    return (amplitude * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def test_one_value_per_20_ms_frame() -> None:
    for rate in (16_000, 22_050, 24_000):
        pcm = sine(200, 1000, rate, 0.3)
        env = envelope(pcm, rate)
        assert len(env) == math.ceil(len(pcm) / round(rate * ENVELOPE_FRAME_MS / 1000))
        assert all(0.0 <= v <= 1.0 for v in env)


def test_silence_is_closed_and_loud_speech_is_open() -> None:
    rate = 22_050
    assert max(envelope(np.zeros(rate, dtype=np.int16), rate)) == 0.0
    noise_floor = (np.random.default_rng(0).normal(0, 30, rate)).astype(np.int16)  # about -60 dBFS
    assert max(envelope(noise_floor, rate)) < 0.05
    loud = envelope(sine(220, 1000, rate, 0.5), rate)
    assert min(loud[5:]) > 0.9


def test_absolute_not_normalised_per_sentence() -> None:
    """A quiet sentence moves the lips less than a loud one; the same level gives the same value."""
    rate = 22_050
    quiet = envelope(sine(220, 500, rate, 0.02), rate)
    loud = envelope(sine(220, 500, rate, 0.2), rate)
    assert 0.1 < np.mean(quiet[5:]) < np.mean(loud[5:]) - 0.3
    # Same level in another voice's rate and pitch: the same openness.
    other = envelope(sine(180, 500, 24_000, 0.2), 24_000)
    assert abs(np.mean(other[5:]) - np.mean(loud[5:])) < 0.02


def test_chunked_envelope_equals_whole_envelope() -> None:
    rate = 22_050
    pcm = np.concatenate([sine(220, 300, rate, 0.3), np.zeros(rate // 4, np.int16), sine(300, 400, rate, 0.1)])
    whole = envelope(pcm, rate)
    follower = EnvelopeFollower()
    chunks = list(chunks_from_pcm(pcm, rate, follower=follower, chunk_ms=100))
    joined = tuple(v for c in chunks for v in c.envelope)
    assert len(joined) == len(whole)
    assert np.allclose(joined, whole, atol=1e-3)
    for c in chunks[:-1]:  # whole frames per chunk, so chunk boundaries are frame boundaries
        assert len(c.pcm) // 2 % round(rate * ENVELOPE_FRAME_MS / 1000) == 0
        assert len(c.envelope) == 5


def test_level_mapping_is_fixed() -> None:
    rate = 16_000
    pcm = sine(200, 200, rate, 0.5)
    level = float(np.median(rms_dbfs(pcm, rate)))
    assert abs(level - 20 * math.log10(0.5 / math.sqrt(2))) < 0.2


def test_visemes() -> None:
    rate = 22_050
    pcm = np.concatenate([np.zeros(rate // 5, np.int16), sine(300, 200, rate, 0.3), sine(4000, 200, rate, 0.3)])
    shapes = visemes(pcm, rate)
    assert len(shapes) == len(envelope(pcm, rate))
    assert shapes[0] == "rest"
    assert shapes[15] == "round"
    assert shapes[-3] == "wide"


def test_frame_aligner_keeps_the_sentence_frame_grid() -> None:
    """Pieces of any length (decoder windows, clauses) give the envelope of the whole sentence."""
    rate = 22_050
    rng = np.random.default_rng(1)
    pcm = np.concatenate([sine(180, 400, rate, 0.4), np.zeros(3000, dtype=np.int16), sine(300, 700, rate, 0.1)])
    pcm = (pcm + rng.normal(0, 50, len(pcm))).astype(np.int16)
    cuts = sorted(rng.choice(np.arange(1, len(pcm)), size=9, replace=False).tolist())
    aligner = FrameAligner(rate)
    chunks = []
    for piece in np.split(pcm, cuts):
        chunks += aligner.feed(piece)
    chunks += aligner.flush()
    frame = round(rate * ENVELOPE_FRAME_MS / 1000)
    assert all(len(c.pcm) // 2 % frame == 0 for c in chunks[:-1])  # only the sentence's end is a partial frame
    assert b"".join(c.pcm for c in chunks) == pcm.astype("<i2").tobytes()
    whole = [v for c in chunks_from_pcm(pcm, rate) for v in c.envelope]
    assert [v for c in chunks for v in c.envelope] == whole
