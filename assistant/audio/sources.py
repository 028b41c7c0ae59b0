"""Audio sources that need no sound card: recorded audio and frames pushed by a browser client.

All yield mono int16 frames at 16 kHz (see ``assistant.audio``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from assistant.audio import FRAME_SAMPLES, to_int16
from assistant.audio.resample import Resampler
from assistant.stages import SAMPLE_RATE_HZ

log = logging.getLogger(__name__)


class ArraySource:
    """Frames cut from samples in memory, optionally paced at real time.

    ``realtime=True`` yields each frame when its last sample would have been captured by a
    microphone (frame k of n samples at ``start + (k + 1) * n / 16000`` s), so latency measured on
    it matches a live stream. ``trailing_silence_ms`` appends silence (what a room sounds like after
    a question), so an endpointer sees the end of speech.
    """

    def __init__(
        self,
        pcm: np.ndarray,
        *,
        realtime: bool = False,
        frame_samples: int = FRAME_SAMPLES,
        trailing_silence_ms: int = 0,
        speed: float = 1.0,
    ) -> None:
        pcm = to_int16(np.asarray(pcm).reshape(-1))
        pad = int(trailing_silence_ms * SAMPLE_RATE_HZ / 1000)
        self.pcm = np.concatenate([pcm, np.zeros(pad, dtype=np.int16)]) if pad else pcm
        self.realtime = realtime
        self.speed = speed
        """With ``realtime``: play this many times faster than real time (tests use > 1)."""
        self.frame_samples = frame_samples
        self.started_at: float | None = None
        """The event loop's ``time()`` when the first frame's first sample was (notionally) captured.
        Pacing follows the loop's clock, so a test loop with virtual time replays at once."""
        self._closed = False

    def __aiter__(self) -> AsyncIterator[np.ndarray]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[np.ndarray]:
        loop = asyncio.get_running_loop()
        self.started_at = loop.time()
        n = self.frame_samples
        for k, i in enumerate(range(0, len(self.pcm), n)):
            if self._closed:
                return
            frame = self.pcm[i : i + n]
            if self.realtime:
                due = self.started_at + (i + len(frame)) / SAMPLE_RATE_HZ / self.speed
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif k % 64 == 63:
                await asyncio.sleep(0)  # let other tasks run during a fast replay
            yield frame

    async def aclose(self) -> None:
        self._closed = True


class FileSource(ArraySource):
    """An audio file (WAV, FLAC, MP3, OGG), decoded to 16 kHz mono on construction.

    Raises TranscribeError("audio-unreadable" | "audio-empty") like ``codecs.decode_file``.
    """

    def __init__(self, path: str | Path, **kwargs: object) -> None:
        from assistant.audio.codecs import decode_file

        self.path = Path(path)
        super().__init__(decode_file(self.path), **kwargs)  # type: ignore[arg-type]


_CLOSED = object()


class PushSource:
    """Frames pushed by someone else (a browser over the WebSocket), resampled to 16 kHz.

    ``push(pcm, sample_rate_hz)`` never blocks and never waits: it is called from the server's
    receive loop. The queue is bounded (``max_queued_ms`` of audio); when the consumer falls behind,
    the oldest frames are dropped and counted in ``dropped_ms`` (stale audio is worth less than
    fresh audio to an endpointer). ``close()`` ends the iteration after what is queued.
    """

    def __init__(self, *, max_queued_ms: int = 2000) -> None:
        self.max_queued_ms = max_queued_ms
        self.dropped_ms = 0.0
        self._queue: deque[np.ndarray | object] = deque()
        self._queued_samples = 0
        self._wakeup = asyncio.Event()
        self._resampler: Resampler | None = None
        self._closed = False

    def push(self, pcm: bytes | np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
        """Queue mono int16 samples (little-endian bytes or an array) captured at ``sample_rate_hz``."""
        if self._closed:
            return
        samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray | memoryview) else pcm
        if sample_rate_hz != SAMPLE_RATE_HZ:
            if self._resampler is None or self._resampler.from_hz != sample_rate_hz:
                # A client that changes rate mid-stream starts a fresh filter state.
                self._resampler = Resampler(sample_rate_hz, SAMPLE_RATE_HZ)
            frame = to_int16(self._resampler.process(samples))
        else:
            frame = to_int16(np.asarray(samples).reshape(-1)).copy()
        if frame.size == 0:
            return
        self._queue.append(frame)
        self._queued_samples += frame.size
        limit = self.max_queued_ms * SAMPLE_RATE_HZ // 1000
        while self._queued_samples > limit and len(self._queue) > 1:
            old = self._queue.popleft()
            assert isinstance(old, np.ndarray)
            self._queued_samples -= old.size
            if self.dropped_ms == 0:
                log.warning("audio from the client arrives faster than it is consumed; dropping the oldest frames")
            self.dropped_ms += old.size * 1000 / SAMPLE_RATE_HZ
        self._wakeup.set()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.append(_CLOSED)
            self._wakeup.set()

    async def aclose(self) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[np.ndarray]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[np.ndarray]:
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            item = self._queue.popleft()
            if item is _CLOSED:
                return
            assert isinstance(item, np.ndarray)
            self._queued_samples -= item.size
            yield item
