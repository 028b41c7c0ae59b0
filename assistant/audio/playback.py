"""Playing synthesized speech on the local sound card, through a ``sounddevice`` OutputStream.

A small jitter buffer (``[audio] jitter_buffer_ms``) absorbs uneven chunk arrival: the device starts
(or restarts after running dry) only once that much audio is queued or the reply is complete, so a
slow chunk becomes one short pause before a sentence, not crackles inside it.

``position_ms`` is how much of what was written has actually gone out of the speaker (samples handed
to the device minus the device's output latency): on barge-in, ``stop()`` returns it, so the
conversation history can keep only what the visitor heard.

``sounddevice`` is imported only when a stream is opened: PortAudio reads its environment (e.g.
``PULSE_SERVER``) once, at import.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from assistant.config import Settings
from assistant.stages import AssistantError, AudioChunk

log = logging.getLogger(__name__)

OUTPUT_RATE_HZ = 22_050
"""The stream's rate: the embedded English voice's own, so the common case is not resampled."""
BLOCK_MS = 20


class NoOutputDeviceError(AssistantError):
    def __init__(self, message: str) -> None:
        super().__init__("audio-no-output", message)


def _resample(pcm: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    from assistant.audio.pcm import resample_int16

    return resample_int16(pcm, from_hz, to_hz)


class Player:
    """One output stream. ``write`` queues audio (any rate, resampled), the device pulls it in a thread."""

    def __init__(
        self,
        *,
        device: str | int | None = None,
        sample_rate_hz: int = OUTPUT_RATE_HZ,
        jitter_buffer_ms: int = 60,
    ) -> None:
        self.device = device
        self.sample_rate_hz = sample_rate_hz
        self.jitter_buffer_ms = jitter_buffer_ms
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._queued = 0
        """Samples waiting in the queue."""
        self._offset = 0
        """Samples of the queue's first array already played."""
        self._lock = threading.Lock()
        self._buffering = True
        self._ended = False
        self._delivered = 0
        """Samples handed to the device since the last ``reset``."""
        self._delivered_at = 0.0
        """monotonic time of the last callback that handed over audio."""
        self._written = 0
        self.underruns = 0
        self._stream: Any = None
        self._idle = threading.Event()
        self._idle.set()

    @classmethod
    def from_settings(cls, settings: Settings) -> Player:
        device: str | int | None = settings.audio.output_device or None
        if isinstance(device, str) and device.isdigit():
            device = int(device)
        return cls(device=device, jitter_buffer_ms=settings.audio.jitter_buffer_ms)

    # --- the stream --------------------------------------------------------------------------

    def start(self) -> None:
        try:
            import sounddevice as sd
        except OSError as err:
            raise NoOutputDeviceError(f"no audio output: PortAudio is not available ({err})") from err
        try:
            self._stream = sd.OutputStream(
                samplerate=self.sample_rate_hz,
                channels=1,
                dtype="int16",
                device=self.device,
                blocksize=self.sample_rate_hz * BLOCK_MS // 1000,
                latency="low",
                callback=self._callback,
            )
            self._stream.start()
        except Exception as err:  # PortAudioError, ValueError for an unknown device name
            self._stream = None
            raise NoOutputDeviceError(f"cannot open audio output {self.device or '(default)'}: {err}") from err

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            finally:
                self._stream = None

    def __enter__(self) -> Player:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        out = outdata.reshape(-1)
        filled = 0
        with self._lock:
            threshold = self.sample_rate_hz * self.jitter_buffer_ms // 1000
            if self._buffering and (self._queued >= threshold or (self._ended and self._queued)):
                self._buffering = False
            if not self._buffering:
                while filled < frames and self._queue:
                    head = self._queue[0]
                    take = min(frames - filled, len(head) - self._offset)
                    out[filled : filled + take] = head[self._offset : self._offset + take]
                    filled += take
                    self._offset += take
                    self._queued -= take
                    if self._offset >= len(head):
                        self._queue.popleft()
                        self._offset = 0
                self._delivered += filled
                if filled:
                    self._delivered_at = time.monotonic()
                if not self._queue:
                    if not self._ended:
                        self.underruns += 1
                    # Dry: wait for a full jitter buffer again (or the end) before resuming.
                    self._buffering = True
                    if self._ended:
                        self._idle.set()
        out[filled:] = 0

    # --- feeding -----------------------------------------------------------------------------

    def write(self, chunk: AudioChunk) -> None:
        pcm = np.frombuffer(chunk.pcm, dtype="<i2")
        pcm = _resample(pcm, chunk.sample_rate_hz, self.sample_rate_hz)
        if not len(pcm):
            return
        with self._lock:
            self._queue.append(pcm)
            self._queued += len(pcm)
            self._written += len(pcm)
            self._ended = False
            self._idle.clear()

    def end(self) -> None:
        """No more audio for now: play out what is queued even if it is shorter than the jitter buffer."""
        with self._lock:
            self._ended = True
            if not self._queue:
                self._idle.set()

    async def play(self, chunks: AsyncIterator[AudioChunk]) -> float:
        """Queue every chunk as it arrives, wait until it has been played; returns ``position_ms``."""
        async for chunk in chunks:
            self.write(chunk)
        self.end()
        await self.drain()
        return self.position_ms

    async def drain(self, *, timeout_s: float | None = None) -> None:
        await asyncio.wait_for(asyncio.to_thread(self._idle.wait), timeout_s)
        # The last block is still in the device's buffer: wait out its latency.
        await asyncio.sleep(self.output_latency_s)

    def stop(self) -> float:
        """Barge-in: drop everything queued; returns what was heard (ms) before the stop."""
        with self._lock:
            heard = self._position_ms_locked()
            self._queue.clear()
            self._queued = 0
            self._offset = 0
            self._buffering = True
            self._ended = True
            # What was dropped will never be written to the device: without this, ``written_ms``
            # stays ahead of ``position_ms`` forever and the kiosk's microphone stays gated (deaf).
            self._written = self._delivered
            self._idle.set()
        return heard

    def reset(self) -> None:
        """Start counting the position from zero (a new reply)."""
        with self._lock:
            self._delivered = 0
            self._written = 0

    # --- position ------------------------------------------------------------------------------

    @property
    def output_latency_s(self) -> float:
        return float(self._stream.latency) if self._stream is not None else 0.0

    def _position_ms_locked(self) -> float:
        delivered_ms = self._delivered / self.sample_rate_hz * 1000.0
        # The last block handed over needs the device's latency to come out; part of it may have.
        in_flight_ms = max(0.0, self.output_latency_s - (time.monotonic() - self._delivered_at)) * 1000.0
        return max(0.0, delivered_ms - in_flight_ms)

    @property
    def position_ms(self) -> float:
        """Milliseconds of the written audio that have left the speaker (device latency subtracted)."""
        with self._lock:
            return self._position_ms_locked()

    @property
    def written_ms(self) -> float:
        """Milliseconds of audio that have been or will be played since the last ``reset`` (``stop``
        forgets what it dropped)."""
        return self._written / self.sample_rate_hz * 1000.0

    @property
    def sounding(self) -> bool:
        """Whether audio is queued or still coming out of the speaker."""
        return self.position_ms + 1.0 < self.written_ms
