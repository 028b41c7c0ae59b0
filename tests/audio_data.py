"""Real recordings for the audio and ASR tests: Debian's pocketsphinx-testdata (16 kHz speech)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path("/usr/share/pocketsphinx/test/data")
LIBRIVOX = DATA / "librivox"
CARDS = DATA / "cards"


def recording(relative: str) -> np.ndarray:
    """int16 16 kHz mono; skips the test when the Debian package is not installed."""
    from assistant.audio.codecs import decode_file

    path = DATA / relative
    if not path.exists():
        pytest.skip("needs Debian's pocketsphinx-testdata")
    if path.suffix == ".raw":
        return np.fromfile(path, dtype="<i2")
    return decode_file(path)


def silence(ms: int) -> np.ndarray:
    return np.zeros(ms * 16, dtype=np.int16)


def with_silence(pcm: np.ndarray, before_ms: int = 500, after_ms: int = 1000) -> np.ndarray:
    return np.concatenate([silence(before_ms), pcm, silence(after_ms)])


def trimmed(pcm: np.ndarray, margin_ms: int = 30) -> np.ndarray:
    """The recording without its own leading and trailing quiet (blocks under -35 dBFS)."""
    blocks = pcm[: len(pcm) // 160 * 160].astype(np.float64).reshape(-1, 160)
    loud = np.nonzero(np.sqrt((blocks**2).mean(axis=1)) / 32768 > 10 ** (-35 / 20))[0]
    a = max(0, loud[0] * 160 - margin_ms * 16)
    b = min(len(pcm), (loud[-1] + 1) * 160 + margin_ms * 16)
    return pcm[a:b]
