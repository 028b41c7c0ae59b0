"""Small audio helpers every synthesizer shares: float -> int16, resampling, chunking with envelopes,
WAV files, and running a blocking generator off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import wave
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from assistant.audio.envelope import EnvelopeFollower, frame_samples
from assistant.stages import AudioChunk

T = TypeVar("T")

CHUNK_MS = 200
"""Audio is handed on in pieces of about this length (a whole number of envelope frames)."""


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """float audio in [-1, 1] -> int16 (clipped)."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def resample_int16(pcm: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Linear-interpolation resampling; good enough for speech moving between 16/22.05/24 kHz."""
    if from_hz == to_hz or len(pcm) == 0:
        return np.asarray(pcm, dtype=np.int16)
    n_out = round(len(pcm) * to_hz / from_hz)
    t_out = np.arange(n_out, dtype=np.float64) * (from_hz / to_hz)
    out = np.interp(t_out, np.arange(len(pcm), dtype=np.float64), np.asarray(pcm, dtype=np.float64))
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def chunks_from_pcm(
    pcm: np.ndarray,
    sample_rate_hz: int,
    *,
    follower: EnvelopeFollower | None = None,
    chunk_ms: int = CHUNK_MS,
) -> Iterator[AudioChunk]:
    """Cut int16 audio into AudioChunks of ``chunk_ms`` (whole envelope frames), each with its envelope.

    Pass one ``follower`` for all the audio of a sentence so the envelope's smoothing runs across
    chunk boundaries.
    """
    follower = follower or EnvelopeFollower()
    frame = frame_samples(sample_rate_hz)
    step = max(frame, (sample_rate_hz * chunk_ms // 1000) // frame * frame)
    pcm = np.asarray(pcm, dtype=np.int16)
    for start in range(0, len(pcm), step):
        piece = pcm[start : start + step]
        yield AudioChunk(
            pcm=piece.astype("<i2").tobytes(),
            sample_rate_hz=sample_rate_hz,
            envelope=follower.envelope(piece, sample_rate_hz),
        )


def join_chunks(chunks: Iterable[AudioChunk], *, sample_rate_hz: int | None = None) -> tuple[np.ndarray, int]:
    """All chunks' audio as one int16 array at ``sample_rate_hz`` (default: the first chunk's rate)."""
    parts: list[np.ndarray] = []
    rate = sample_rate_hz
    for chunk in chunks:
        rate = rate or chunk.sample_rate_hz
        parts.append(resample_int16(np.frombuffer(chunk.pcm, dtype="<i2"), chunk.sample_rate_hz, rate))
    return (np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)), rate or 22050


def wav_bytes(pcm: np.ndarray, sample_rate_hz: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate_hz)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()


def write_wav(path: Path | str, pcm: np.ndarray, sample_rate_hz: int) -> None:
    Path(path).write_bytes(wav_bytes(pcm, sample_rate_hz))


async def iterate_in_thread(
    make: Callable[[], Iterator[T]], *, lock: threading.Lock | None = None
) -> AsyncGenerator[T, None]:
    """Run a blocking generator in a worker thread and yield its items on the event loop, as they come.

    ``lock`` (held for the whole generation) keeps two sessions from driving one model at once.
    Closing the async iterator early (barge-in) tells the worker to stop after its current item.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    stop = threading.Event()

    def put(kind: str, value: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def work() -> None:
        try:
            with lock if lock is not None else contextlib.nullcontext():
                for item in make():
                    if stop.is_set():
                        break
                    put("item", item)
        except BaseException as err:  # handed to the consumer, re-raised there
            put("error", err)
        finally:
            put("end", None)

    thread = threading.Thread(target=work, name="tts-worker", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == "item":
                yield value  # type: ignore[misc]
            elif kind == "error":
                raise value  # type: ignore[misc]
            else:
                break
    finally:
        stop.set()


class FrameAligner:
    """Re-cuts a stream of int16 pieces into AudioChunks that hold whole envelope frames.

    A synthesizer that makes a sentence's audio in pieces of any length (clauses, decoder chunks)
    feeds them here: every chunk except the sentence's last starts and ends on the 20 ms frame grid
    of the whole sentence, so the envelope values are the same however the audio was cut, and one
    follower carries the smoothing across pieces.
    """

    def __init__(self, sample_rate_hz: int, *, chunk_ms: int = CHUNK_MS) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.chunk_ms = chunk_ms
        self.follower = EnvelopeFollower()
        self._frame = frame_samples(sample_rate_hz)
        self._held = np.zeros(0, dtype=np.int16)

    def feed(self, pcm: np.ndarray) -> list[AudioChunk]:
        """Chunks for all whole frames received so far; a partial frame waits for the next piece."""
        pcm = np.concatenate([self._held, np.asarray(pcm, dtype=np.int16).reshape(-1)])
        whole = len(pcm) // self._frame * self._frame
        self._held = pcm[whole:]
        return list(chunks_from_pcm(pcm[:whole], self.sample_rate_hz, follower=self.follower, chunk_ms=self.chunk_ms))

    def flush(self) -> list[AudioChunk]:
        """The last partial frame, if any (end of the sentence)."""
        held, self._held = self._held, np.zeros(0, dtype=np.int16)
        return list(chunks_from_pcm(held, self.sample_rate_hz, follower=self.follower, chunk_ms=self.chunk_ms))
