"""Wyoming on the wire, sans business: a bounded event reader, non-waiting frames, audio in and out.

A Wyoming event is one JSON header line (``type``, optional ``data``, ``data_length``,
``payload_length``), then ``data_length`` bytes of extra JSON data, then ``payload_length`` bytes of
payload. The ``wyoming`` package's own reader (``wyoming.event.async_read_event``) trusts the
client: a header without ``type`` raises ``KeyError`` out of the connection's task, and a
``payload_length`` of gigabytes is buffered in full. This reader checks every field first and
raises ``WireError`` (after which the stream is out of step and the connection must close), and
frames are serialised by the package's own ``write_event``.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from wyoming.audio import AudioChunk as WyAudioChunk
from wyoming.audio import AudioStart, AudioStop
from wyoming.event import Event, write_event

from assistant.audio import to_int16
from assistant.audio.pcm import resample_int16
from assistant.audio.resample import resample
from assistant.stages import SAMPLE_RATE_HZ, AudioChunk

MIN_RATE_HZ = 8_000
MAX_RATE_HZ = 48_000
MAX_CHANNELS = 8
SAMPLE_WIDTH_BYTES = 2
"""The only sample width taken: signed 16-bit little-endian, what Home Assistant sends."""


class WireError(Exception):
    """A client's event cannot be read or served as sent; ``code`` is stable. From ``read_event``
    (``wyoming-bad-header``, ``wyoming-too-large``, ``wyoming-bad-data``) the stream is out of step
    and the connection closes; from a whole event (``wyoming-bad-data``, ``wyoming-bad-order``,
    ``tts-empty``, ``handle-empty``) it goes on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AudioFormatError(Exception):
    """Audio this server does not take (a rate, width or channel count); the connection goes on."""

    code = "audio-format"


def _length(header: Mapping[str, Any], key: str) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WireError("wyoming-bad-header", f"'{key}' must be a non-negative integer, found {value!r}")
    return value


async def read_event(reader: asyncio.StreamReader, *, max_bytes: int) -> Event | None:
    """The next event, or None when the client has gone (also mid-event: a length that promised more
    than came). Raises ``WireError`` for bytes that are not an event or an event over ``max_bytes``."""
    try:
        line = await reader.readline()
    except ValueError as err:  # a header line over the reader's limit (asyncio.LimitOverrunError)
        raise WireError("wyoming-too-large", f"the header line is too long: {err}") from err
    if not line.endswith(b"\n"):
        return None  # end of stream (nothing, or a header cut short)
    try:
        header = json.loads(line)
    except ValueError as err:
        raise WireError("wyoming-bad-header", f"the header line is not JSON: {err}") from err
    if not isinstance(header, dict) or not isinstance(header.get("type"), str) or not header["type"]:
        raise WireError("wyoming-bad-header", "the header line must be a JSON object with a string 'type'")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise WireError("wyoming-bad-data", f"'data' must be a JSON object, found {type(data).__name__}")
    data_length = _length(header, "data_length")
    payload_length = _length(header, "payload_length")
    if len(line) + data_length + payload_length > max_bytes:
        raise WireError(
            "wyoming-too-large",
            f"an event of {len(line) + data_length + payload_length} bytes is over this server's {max_bytes}",
        )
    try:
        if data_length:
            extra = json.loads(await reader.readexactly(data_length))
            if not isinstance(extra, dict):
                raise WireError("wyoming-bad-data", "the data block must be a JSON object")
            data = {**data, **extra}
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None
    except ValueError as err:
        raise WireError("wyoming-bad-data", f"the data block is not JSON: {err}") from err
    return Event(type=header["type"], data=data, payload=payload)


def frame(event: Event) -> bytes:
    """An event's bytes, serialised by the wyoming package itself (written later without waiting)."""
    buffer = io.BytesIO()
    write_event(event, buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class AudioFormat:
    rate_hz: int
    width_bytes: int
    channels: int

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> AudioFormat:
        """The format an ``audio-start`` or ``audio-chunk`` names; raises ``AudioFormatError``."""
        values = []
        for key in ("rate", "width", "channels"):
            value = data.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise AudioFormatError(f"audio '{key}' must be an integer, found {value!r}")
            values.append(value)
        fmt = cls(*values)
        if not MIN_RATE_HZ <= fmt.rate_hz <= MAX_RATE_HZ:
            raise AudioFormatError(f"audio at {fmt.rate_hz} Hz is not taken ({MIN_RATE_HZ}..{MAX_RATE_HZ} Hz are)")
        if fmt.width_bytes != SAMPLE_WIDTH_BYTES:
            raise AudioFormatError(f"{fmt.width_bytes}-byte samples are not taken (16-bit PCM, width 2, is)")
        if not 1 <= fmt.channels <= MAX_CHANNELS:
            raise AudioFormatError(f"{fmt.channels} channels are not taken (1..{MAX_CHANNELS} are)")
        return fmt


class AudioIn:
    """One ``audio-start`` .. ``audio-stop`` stream, gathered as the transcriber takes it: 16 kHz mono
    int16 (channels averaged, rate changed by the daemon's band-limited resampler), at most
    ``max_s`` seconds."""

    def __init__(self, fmt: AudioFormat, *, max_s: float) -> None:
        self.format = fmt
        self.max_bytes = int(max_s * fmt.rate_hz) * fmt.channels * fmt.width_bytes
        self._parts: list[bytes] = []
        self._bytes = 0

    def add(self, data: Mapping[str, Any], payload: bytes | None) -> None:
        """One ``audio-chunk``; raises ``AudioFormatError`` when it changes the format or overflows."""
        if AudioFormat.of(data) != self.format:
            raise AudioFormatError("an audio-chunk changed the format that audio-start announced")
        payload = payload or b""
        self._bytes += len(payload)
        if self._bytes > self.max_bytes:
            raise AudioFormatError(f"the audio is longer than this server takes ({self.max_bytes} bytes)")
        self._parts.append(payload)

    def pcm(self) -> np.ndarray:
        """Everything so far as 16 kHz mono int16 (trailing bytes of a partial frame are dropped)."""
        raw = b"".join(self._parts)
        frame_bytes = self.format.channels * self.format.width_bytes
        raw = raw[: len(raw) - len(raw) % frame_bytes]
        samples = np.frombuffer(raw, dtype="<i2").reshape(-1, self.format.channels)
        mono = samples[:, 0] if self.format.channels == 1 else samples.mean(axis=1).astype(np.int16)
        if self.format.rate_hz == SAMPLE_RATE_HZ:
            return mono.astype(np.int16)
        return to_int16(resample(mono.astype(np.float32) / 32768.0, self.format.rate_hz, SAMPLE_RATE_HZ))


def event_text(data: dict[str, Any], key: str = "text") -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise WireError("wyoming-bad-data", f"'{key}' must be a string, found {value!r}")
    return value


def asked_language(data: Mapping[str, Any]) -> str:
    """The language an event names, as the daemon's codes go (``zh-CN`` -> ``zh``); ``""``: none."""
    value = data.get("language")
    return value.strip().replace("_", "-").split("-")[0].lower() if isinstance(value, str) else ""


def asked_voice(data: dict[str, Any]) -> tuple[str | None, str | None]:
    """(voice name, language) a ``synthesize`` or ``synthesize-start`` asks for."""
    voice = data.get("voice") or {}
    if not isinstance(voice, dict):
        raise WireError("wyoming-bad-data", "'voice' must be an object")
    name = voice.get("name")
    return (name if isinstance(name, str) and name else None), (asked_language(voice) or None)


class AudioOut:
    """One reply's audio out: ``audio-start`` at the first chunk's rate, every later chunk at that rate."""

    def __init__(self, send: Callable[[Event], None]) -> None:
        self.send = send
        self.rate_hz = 0

    def chunk(self, chunk: AudioChunk) -> None:
        pcm = chunk.pcm
        if not self.rate_hz:
            self.rate_hz = chunk.sample_rate_hz
            self.send(AudioStart(rate=self.rate_hz, width=2, channels=1).event())
        elif chunk.sample_rate_hz != self.rate_hz:  # another language's voice
            samples = resample_int16(np.frombuffer(pcm, dtype="<i2"), chunk.sample_rate_hz, self.rate_hz)
            pcm = samples.astype("<i2").tobytes()
        self.send(WyAudioChunk(rate=self.rate_hz, width=2, channels=1, audio=pcm).event())

    def stop(self) -> None:
        if self.rate_hz:
            self.send(AudioStop().event())
