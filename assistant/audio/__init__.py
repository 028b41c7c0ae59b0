"""Audio in: sources, resampling, file decoding and voice activity detection.

Every source is an async iterator of mono int16 frames at 16 kHz (``numpy.ndarray``, dtype int16,
1-D, any length; the sources here yield ``FRAME_SAMPLES`` at a time). What a source does when it
ends: the iteration stops; ``aclose()`` stops it early and releases what it holds (a device stream).

Modules (imported on use, so ``import assistant.audio`` stays light):
  resample   streaming windowed-sinc resampler (numpy only)
  codecs     decode WAV / FLAC / MP3 / OGG files to 16 kHz mono; encode WAV bytes
  sources    FileSource, PushSource (frames from a browser), ArraySource
  device     DeviceSource (a sound card through sounddevice), NoInputDeviceError
  vad        SileroVAD (streaming, ONNX) and the Endpointer (voice start, voice end, Utterance)
  pcm        int16 <-> float, resampling whole buffers, cutting synthesized audio into AudioChunks
  envelope   the mouth-openness envelope any avatar lip-syncs to
  playback   Player (a sound card's speaker); soundcard: the kiosk's microphone and speaker together
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from assistant.stages import SAMPLE_RATE_HZ

FRAME_SAMPLES = 512
"""32 ms at 16 kHz: what the sources yield and what Silero VAD takes per step."""


@runtime_checkable
class AudioSource(Protocol):
    """Mono int16 frames at ``SAMPLE_RATE_HZ`` (16 kHz), in stream order."""

    def __aiter__(self) -> AsyncIterator[np.ndarray]: ...

    async def aclose(self) -> None:
        """Stop the source; an iteration in progress ends. Idempotent."""
        ...


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] (or int16 already) -> int16, clipped."""
    if samples.dtype == np.int16:
        return samples
    scaled = np.clip(np.asarray(samples, dtype=np.float32) * 32768.0, -32768.0, 32767.0)
    return scaled.astype(np.int16)


def read_audio_file(path: str | Path) -> np.ndarray:
    """A whole audio file (WAV, FLAC, MP3, OGG, anything FFmpeg reads) as 16 kHz mono int16.

    Raises TranscribeError("audio-unreadable" | "audio-empty"); see ``codecs.decode_file``.
    """
    from assistant.audio.codecs import decode_file

    return decode_file(path)


__all__ = ["FRAME_SAMPLES", "SAMPLE_RATE_HZ", "AudioSource", "read_audio_file", "to_int16"]
