"""A sound card as an audio source, through ``sounddevice`` (PortAudio).

``sounddevice`` is imported only when a device is opened: PortAudio enumerates devices once, at
import, so an environment such as ``PULSE_SERVER`` must be set before that (the tests' PulseAudio
null sink relies on it).

When there is no usable input device (no PortAudio library, no devices, a configured name that
matches none), opening raises ``NoInputDeviceError`` (code ``audio-no-device``); the daemon logs it
and carries on serving browser clients.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from assistant.audio import FRAME_SAMPLES, to_int16
from assistant.audio.resample import Resampler
from assistant.config import Audio as AudioSettings
from assistant.stages import SAMPLE_RATE_HZ, AssistantError

log = logging.getLogger(__name__)


class NoInputDeviceError(AssistantError):
    """No sound card input to listen to."""

    def __init__(self, message: str) -> None:
        super().__init__("audio-no-device", message)


def _sounddevice() -> Any:
    try:
        import sounddevice as sd
    except OSError as err:  # the PortAudio shared library is missing
        raise NoInputDeviceError(f"no audio input: PortAudio is not available ({err})") from err
    return sd


def input_devices() -> list[dict[str, Any]]:
    """The input-capable devices PortAudio sees: ``[{"index", "name", "default_samplerate", "channels"}]``."""
    try:
        sd = _sounddevice()
    except NoInputDeviceError:
        return []
    out = []
    for index, dev in enumerate(sd.query_devices()):
        if dev["max_input_channels"] > 0:
            out.append(
                {
                    "index": index,
                    "name": dev["name"],
                    "default_samplerate": float(dev["default_samplerate"]),
                    "channels": int(dev["max_input_channels"]),
                }
            )
    return out


def find_input_device(name: str) -> dict[str, Any]:
    """The device ``name`` names: ``""`` the default input, digits an index, else a name substring.

    Raises NoInputDeviceError listing what exists.
    """
    devices = input_devices()
    if not devices:
        raise NoInputDeviceError(
            "no audio input device found (PortAudio lists none); the microphone is off, browser clients still work"
        )
    if name == "":
        sd = _sounddevice()
        try:
            default = sd.query_devices(kind="input")
        except Exception:  # PortAudio raises its own error type when there is no default
            return devices[0]
        for dev in devices:
            if dev["name"] == default["name"]:
                return dev
        return devices[0]
    if name.isdigit():
        for dev in devices:
            if dev["index"] == int(name):
                return dev
    matches = [dev for dev in devices if name.lower() in dev["name"].lower()]
    if matches:
        return matches[0]
    names = ", ".join(f"{d['index']}: {d['name']}" for d in devices)
    raise NoInputDeviceError(f"[audio] input_device {name!r} matches no input device; the inputs are: {names}")


class DeviceSource:
    """The microphone: frames of ``FRAME_SAMPLES`` at 16 kHz from ``settings.input_device``.

    Captures at ``settings.sample_rate_hz`` (falling back to the device's own default rate when the
    device refuses it) and resamples to 16 kHz. PortAudio's callback thread hands frames to the
    event loop through a bounded queue; if the loop stalls, the oldest audio is dropped and counted
    in ``dropped_frames`` rather than blocking the audio thread.
    """

    def __init__(self, settings: AudioSettings, *, max_queued_frames: int = 64) -> None:
        self.settings = settings
        self.max_queued_frames = max_queued_frames
        self.dropped_frames = 0
        self.device: dict[str, Any] | None = None
        self.rate_hz = settings.sample_rate_hz
        self._stream: Any = None
        self._queue: asyncio.Queue[np.ndarray | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Open the device now (``__aiter__`` does it too). Raises NoInputDeviceError."""
        if self._stream is not None:
            return
        sd = _sounddevice()
        self.device = find_input_device(self.settings.input_device)
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=self.max_queued_frames)
        stream = None
        last_err: Exception | None = None
        for rate in dict.fromkeys([self.settings.sample_rate_hz, int(self.device["default_samplerate"])]):
            block = max(1, round(FRAME_SAMPLES * rate / SAMPLE_RATE_HZ))
            try:
                stream = sd.InputStream(
                    device=self.device["index"],
                    channels=1,
                    samplerate=rate,
                    dtype="int16",
                    blocksize=block,
                    callback=self._callback,
                )
                self.rate_hz = rate
                break
            except Exception as err:  # PortAudioError, ValueError for an unsupported rate
                last_err = err
                log.debug("input device %s refused %d Hz: %s", self.device["name"], rate, err)
        if stream is None:
            raise NoInputDeviceError(f"cannot open input device {self.device['name']!r}: {last_err}")
        self._resampler = Resampler(self.rate_hz, SAMPLE_RATE_HZ)
        stream.start()
        self._stream = stream
        log.info("listening on %r at %d Hz", self.device["name"], self.rate_hz)

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's thread: copy, never block, hand over to the loop.
        if status:
            log.debug("input status: %s", status)
        assert self._loop is not None
        data = indata[:, 0].copy()
        try:
            self._loop.call_soon_threadsafe(self._enqueue, data)
        except RuntimeError:  # the loop is closed: we are shutting down
            pass

    def _enqueue(self, data: np.ndarray) -> None:
        assert self._queue is not None
        frame = to_int16(self._resampler.process(data)) if not self._resampler.identity else data
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped_frames += 1
        self._queue.put_nowait(frame)

    def __aiter__(self) -> AsyncIterator[np.ndarray]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[np.ndarray]:
        await self.start()
        assert self._queue is not None
        while True:
            frame = await self._queue.get()
            if frame is None:
                return
            if frame.size:
                yield frame

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await asyncio.to_thread(_close_stream, stream)
        if self._queue is not None:
            if self._queue.full():
                self._queue.get_nowait()
            self._queue.put_nowait(None)


def _close_stream(stream: Any) -> None:
    stream.stop()
    stream.close()
