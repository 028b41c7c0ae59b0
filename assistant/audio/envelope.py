"""The mouth-openness envelope: how open the avatar's mouth is, one value per 20 ms of audio.

Absolute, not normalised per sentence: each frame's RMS level in dBFS is mapped through one fixed
range (``FLOOR_DBFS`` -> 0, ``CEILING_DBFS`` -> 1), so a quiet sentence moves the lips less than a
loud one, and two voices at the same loudness move them alike. Speech synthesisers put out voiced
speech at roughly -25..-12 dBFS RMS; the floor sits below breath noise and the ceiling just above
loud vowels, so speech fills most of the range and silence is 0.

A light attack/release smoothing (fast open, slower close) keeps the lips from chattering between
frames without changing the levels they reach; it is causal and carries across chunks through
``EnvelopeFollower`` so chunk boundaries do not show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from assistant.stages import ENVELOPE_FRAME_MS

FLOOR_DBFS = -50.0
"""RMS level (dBFS) at or below which the mouth is closed (0)."""
CEILING_DBFS = -12.0
"""RMS level (dBFS) at or above which the mouth is fully open (1)."""


def as_int16(pcm: bytes | np.ndarray) -> np.ndarray:
    if isinstance(pcm, bytes | bytearray | memoryview):
        return np.frombuffer(pcm, dtype="<i2")
    return np.asarray(pcm, dtype=np.int16)


def frame_samples(sample_rate_hz: int) -> int:
    """Samples in one envelope frame (20 ms)."""
    return max(1, round(sample_rate_hz * ENVELOPE_FRAME_MS / 1000))


def rms_dbfs(pcm: bytes | np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """Per-frame RMS level in dBFS (0 dBFS = a full-scale square wave); silence is -inf-ish (-120)."""
    samples = as_int16(pcm).astype(np.float32) / 32768.0
    n = frame_samples(sample_rate_hz)
    frames = math.ceil(len(samples) / n)
    if frames == 0:
        return np.zeros(0, dtype=np.float32)
    padded = np.zeros(frames * n, dtype=np.float32)
    padded[: len(samples)] = samples
    blocks = padded.reshape(frames, n)
    # The last frame is partial: its mean counts only the samples that exist.
    counts = np.full(frames, n, dtype=np.float32)
    counts[-1] = len(samples) - (frames - 1) * n
    rms = np.sqrt((blocks**2).sum(axis=1) / counts)
    return (20.0 * np.log10(np.maximum(rms, 1e-6))).astype(np.float32)


def level_to_openness(dbfs: np.ndarray) -> np.ndarray:
    return np.clip((dbfs - FLOOR_DBFS) / (CEILING_DBFS - FLOOR_DBFS), 0.0, 1.0)


@dataclass
class EnvelopeFollower:
    """Envelope across consecutive chunks of one stream, smoothing carried over chunk boundaries.

    ``attack`` and ``release`` are the fraction of the way to the new value covered per frame when
    opening and closing (1.0 = no smoothing).
    """

    attack: float = 0.9
    release: float = 0.5
    _last: float = 0.0

    def envelope(self, pcm: bytes | np.ndarray, sample_rate_hz: int) -> tuple[float, ...]:
        raw = level_to_openness(rms_dbfs(pcm, sample_rate_hz))
        out = []
        last = self._last
        for value in raw.tolist():
            rate = self.attack if value > last else self.release
            last = last + (value - last) * rate
            out.append(round(last, 3))
        self._last = last
        return tuple(out)


def envelope(pcm: bytes | np.ndarray, sample_rate_hz: int) -> tuple[float, ...]:
    """The envelope of one stand-alone piece of audio: one value in [0, 1] per 20 ms frame."""
    return EnvelopeFollower().envelope(pcm, sample_rate_hz)


# Visemes: a coarse mouth shape per frame from the spectrum, for avatars that want more than an
# open/closed jaw. Four classes are what a 2D avatar can draw distinctly.
VISEMES = ("rest", "open", "wide", "round")


def visemes(pcm: bytes | np.ndarray, sample_rate_hz: int) -> tuple[str, ...]:
    """One viseme name per 20 ms frame: ``rest`` when quiet, else by spectral centroid (round < open < wide).

    A heuristic, not phoneme alignment: back rounded vowels (o, u) have low centroids, open vowels (a)
    mid, spread vowels and sibilants (i, e, s) high.
    """
    pcm16 = as_int16(pcm)
    samples = pcm16.astype(np.float32) / 32768.0
    n = frame_samples(sample_rate_hz)
    levels = level_to_openness(rms_dbfs(pcm16, sample_rate_hz))
    out = []
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate_hz)
    for i, level in enumerate(levels.tolist()):
        if level < 0.15:
            out.append("rest")
            continue
        block = samples[i * n : (i + 1) * n]
        if len(block) < n:
            block = np.pad(block, (0, n - len(block)))
        power = np.abs(np.fft.rfft(block * np.hanning(n))) ** 2
        centroid = float((freqs * power).sum() / max(power.sum(), 1e-12))
        out.append("round" if centroid < 900 else "open" if centroid < 2200 else "wide")
    return tuple(out)
