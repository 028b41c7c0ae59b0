"""Audio files in (WAV, FLAC, MP3, OGG -> 16 kHz mono int16) and WAV bytes out.

Decoding tries libsndfile (``soundfile``: WAV, FLAC, OGG Vorbis/Opus, MP3 with libsndfile >= 1.1)
first, then PyAV (``av``, installed with faster-whisper; anything FFmpeg reads). Errors come out as
``TranscribeError`` with a stable code:
  audio-unreadable  missing file, not audio, truncated or corrupt beyond decoding
  audio-empty       decodes, but holds no samples (or an empty file)
"""

from __future__ import annotations

import io
import logging
import wave
from pathlib import Path

import numpy as np

from assistant.audio import to_int16
from assistant.audio.resample import resample
from assistant.stages import SAMPLE_RATE_HZ, TranscribeError

log = logging.getLogger(__name__)

FORMATS = ("WAV", "FLAC", "MP3", "OGG")


def _with_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1), int(rate)


def _with_av(path: Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as container:
        streams = container.streams.audio
        if not streams:
            raise ValueError("the file has no audio stream")
        stream = streams[0]
        rate = int(stream.rate or stream.codec_context.sample_rate or 0)
        if rate <= 0:
            raise ValueError("the audio stream names no sample rate")
        # Let FFmpeg do the down-mix and the sample format; we resample ourselves below.
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks: list[np.ndarray] = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, dtype=np.float32)
    return samples, rate


def decode_file(path: str | Path, *, rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """The whole file as mono int16 at ``rate_hz``.

    Raises TranscribeError("audio-unreadable" | "audio-empty") with a message naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise TranscribeError("audio-unreadable", f"audio file {p} does not exist or is not a file")
    if p.stat().st_size == 0:
        raise TranscribeError("audio-empty", f"audio file {p} is empty (0 bytes)")
    errors: list[str] = []
    samples: np.ndarray | None = None
    rate = 0
    for name, decoder in (("soundfile", _with_soundfile), ("av", _with_av)):
        try:
            samples, rate = decoder(p)
            break
        except Exception as err:  # each library has its own error types; we report them all at once
            errors.append(f"{name}: {err}")
            log.debug("decoding %s with %s failed: %s", p, name, err)
    if samples is None:
        raise TranscribeError(
            "audio-unreadable",
            f"cannot decode {p} as audio ({'; '.join(errors)}); supported formats: {', '.join(FORMATS)}",
        )
    if samples.size == 0:
        raise TranscribeError("audio-empty", f"audio file {p} holds no samples")
    if not np.all(np.isfinite(samples)):
        raise TranscribeError("audio-unreadable", f"audio file {p} decodes to non-finite samples (corrupt data)")
    return to_int16(resample(samples, rate, rate_hz))


def encode_wav(pcm: np.ndarray, rate_hz: int = SAMPLE_RATE_HZ) -> bytes:
    """Mono int16 samples -> a complete WAV file in memory."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(to_int16(np.asarray(pcm)).astype("<i2").tobytes())
    return buf.getvalue()
