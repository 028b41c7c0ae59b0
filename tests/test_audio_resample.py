"""The streaming resampler: band-limited, exact across arbitrary frame cuts."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.audio.resample import Resampler, resample


def _tone(freq_hz: float, rate_hz: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _snr_db(got: np.ndarray, want: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(want**2) / np.sum((got - want) ** 2)))


@pytest.mark.parametrize(("src", "dst"), [(44_100, 16_000), (48_000, 16_000), (22_050, 16_000), (8_000, 16_000)])
def test_a_tone_survives_resampling(src: int, dst: int) -> None:
    out = resample(_tone(1000, src), src, dst)
    assert len(out) == dst
    want = _tone(1000, dst)
    middle = slice(dst // 10, -dst // 10)  # the edges see the zero padding
    assert _snr_db(out[middle], want[middle]) > 60


def test_frequencies_above_the_new_nyquist_are_removed_not_folded() -> None:
    out = resample(_tone(12_000, 48_000), 48_000, 16_000)  # 12 kHz would alias to 4 kHz
    level_db = 20 * np.log10(np.sqrt(np.mean(out[1000:-1000] ** 2)) / (0.5 / np.sqrt(2)))
    assert level_db < -60


def test_streaming_in_random_frames_equals_the_whole_signal() -> None:
    x = np.random.default_rng(1).standard_normal(44_100).astype(np.float32) * 0.1
    whole = np.concatenate([Resampler(44_100, 16_000).process(x), Resampler(44_100, 16_000).flush()])
    r = Resampler(44_100, 16_000)
    parts, i = [], 0
    rng = np.random.default_rng(2)
    while i < len(x):
        n = int(rng.integers(1, 3000))
        parts.append(r.process(x[i : i + n]))
        i += n
    parts.append(r.flush())
    streamed = np.concatenate(parts)
    reference = resample(x, 44_100, 16_000)
    assert abs(len(streamed) - len(reference)) <= 1
    n = min(len(streamed), len(reference))
    np.testing.assert_allclose(streamed[:n], reference[:n], atol=1e-5)
    assert len(whole) > 0


def test_int16_input_and_identity() -> None:
    pcm = (np.arange(100) * 100).astype(np.int16)
    out = resample(pcm, 16_000, 16_000)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, pcm / 32768.0)
    with pytest.raises(ValueError):
        Resampler(0, 16_000)
