"""The client half of protocol v1, sans I/O: bytes or text in, typed messages (or a ProtocolError) out.

Nothing here touches a socket, so every rule of ``docs/protocol.md`` about what a client may send is
tested without one. The server (``assistant.server.app``) feeds each received frame to
``parse_text`` / ``parse_binary`` and acts on the result; a ``ProtocolError`` becomes an ``error``
event, or a close with ``close_code`` when the connection cannot sensibly go on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from assistant.events import AUDIO_HEADER_BYTES, FrameError, decode_audio_frame
from assistant.stages import SAMPLE_RATE_HZ

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
"""The daemon is shutting down."""
CLOSE_POLICY = 1008
"""A policy violation: bad token or origin, repeated malformed input, a client too slow to keep up."""
CLOSE_TOO_BIG = 1009
"""A message over ``[server] max_message_bytes``."""
CLOSE_TRY_LATER = 1013
"""The server is at ``[server] max_clients``."""

MAX_TEXT_CHARS = 1_000
"""The longest typed question accepted (a spoken one is bounded by ``[vad] max_utterance_s``)."""
MAX_FRAME_MS = 1_000
"""The longest microphone frame accepted; browsers send 20-100 ms."""
MAX_BAD_MESSAGES = 20
"""Malformed messages tolerated per connection (each answered with an ``error``) before a 1008 close."""

Role = Literal["visitor", "watcher"]
Mode = Literal["hands-free", "push-to-talk"]


class ProtocolError(Exception):
    """A client message that breaks the protocol. ``close_code`` is None when an ``error`` event suffices."""

    def __init__(self, code: str, message: str, *, close_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


# --- client -> server messages -----------------------------------------------------------------


@dataclass(frozen=True)
class HelloMessage:
    """Optional first message: who the client is and what it wants to be."""

    role: Role = "watcher"
    client: str = ""
    """Free text naming the client (``avatar/1.0``), for logs."""


@dataclass(frozen=True)
class TextMessage:
    """A typed question; makes the client a visitor."""

    text: str


@dataclass(frozen=True)
class InterruptMessage:
    """Stop the reply now (a button, or the client's own voice detection)."""

    turn: int | None = None
    played_ms: float | None = None
    """How much of that turn's reply audio the listener heard, when the client knows."""


@dataclass(frozen=True)
class PlaybackMessage:
    """How far the client has played a turn's reply audio (all sentences together)."""

    turn: int
    played_ms: float


@dataclass(frozen=True)
class ModeMessage:
    mode: Mode


@dataclass(frozen=True)
class TalkMessage:
    """Push-to-talk: ``talk-start`` when the button goes down, ``talk-end`` when it comes up."""

    pressed: bool


@dataclass(frozen=True)
class MicFrame:
    """A frame of microphone audio from the client: mono int16 at 16 kHz."""

    sequence: int
    pcm: np.ndarray


ClientMessage = HelloMessage | TextMessage | InterruptMessage | PlaybackMessage | ModeMessage | TalkMessage

CLIENT_TYPES = ("hello", "text", "interrupt", "playback", "mode", "talk-start", "talk-end")


def _field(body: dict[str, Any], name: str, kinds: type | tuple[type, ...], *, required: bool = False) -> Any:
    if name not in body or body[name] is None:
        if required:
            raise ProtocolError("bad-message", f"'{body['type']}' needs the field '{name}'")
        return None
    value = body[name]
    # bool is an int in Python; no numeric field of this protocol takes true/false
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ProtocolError("bad-message", f"'{body['type']}' field '{name}' has the wrong type")
    if not isinstance(value, kinds):
        raise ProtocolError("bad-message", f"'{body['type']}' field '{name}' has the wrong type")
    return value


def parse_text(data: str, *, max_bytes: int) -> ClientMessage:
    """One JSON text frame -> a client message. Raises ProtocolError."""
    if len(data) * 4 > max_bytes and len(data.encode("utf-8")) > max_bytes:
        raise ProtocolError("too-big", f"message over {max_bytes} bytes", close_code=CLOSE_TOO_BIG)
    try:
        body = json.loads(data)
    except (json.JSONDecodeError, RecursionError) as err:
        raise ProtocolError("bad-json", f"not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise ProtocolError("bad-message", "a message must be a JSON object")
    kind = body.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad-message", "a message needs a string 'type'")
    if kind == "hello":
        role = _field(body, "role", str) or "watcher"
        if role not in ("visitor", "watcher"):
            raise ProtocolError("bad-message", "'hello' role must be 'visitor' or 'watcher'")
        client = (_field(body, "client", str) or "")[:100]
        return HelloMessage(role="visitor" if role == "visitor" else "watcher", client=client)
    if kind == "text":
        text = _field(body, "text", str, required=True).strip()
        if not text:
            raise ProtocolError("empty-question", "'text' is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise ProtocolError("too-long", f"a typed question is limited to {MAX_TEXT_CHARS} characters")
        return TextMessage(text)
    if kind == "interrupt":
        turn = _field(body, "turn", int)
        played = _field(body, "played_ms", (int, float))
        return InterruptMessage(turn=turn, played_ms=None if played is None else max(0.0, float(played)))
    if kind == "playback":
        turn = _field(body, "turn", int, required=True)
        played = _field(body, "played_ms", (int, float), required=True)
        return PlaybackMessage(turn=turn, played_ms=max(0.0, float(played)))
    if kind == "mode":
        mode = _field(body, "mode", str, required=True)
        if mode not in ("hands-free", "push-to-talk"):
            raise ProtocolError("bad-message", "'mode' must be 'hands-free' or 'push-to-talk'")
        return ModeMessage(mode)
    if kind in ("talk-start", "talk-end"):
        return TalkMessage(pressed=kind == "talk-start")
    raise ProtocolError("unknown-type", f"unknown message type '{kind[:40]}'; known: {', '.join(CLIENT_TYPES)}")


def parse_binary(data: bytes, *, max_bytes: int, sample_rate_hz: int = SAMPLE_RATE_HZ) -> MicFrame:
    """One binary frame (the layout of ``assistant.events.encode_audio_frame``) -> microphone audio."""
    if len(data) > max_bytes:
        raise ProtocolError("too-big", f"audio frame over {max_bytes} bytes", close_code=CLOSE_TOO_BIG)
    try:
        frame = decode_audio_frame(bytes(data))
    except FrameError as err:
        raise ProtocolError("bad-audio", str(err)) from None
    if frame.chunk.sample_rate_hz != sample_rate_hz:
        # resampling in the server would hide a client bug and cost every session CPU: refuse clearly
        raise ProtocolError(
            "audio-rate",
            f"microphone audio must be {sample_rate_hz} Hz mono int16; got {frame.chunk.sample_rate_hz} Hz",
        )
    samples = (len(data) - AUDIO_HEADER_BYTES - len(frame.chunk.envelope)) // 2
    if samples * 1000 > MAX_FRAME_MS * sample_rate_hz:
        raise ProtocolError("bad-audio", f"a microphone frame may hold at most {MAX_FRAME_MS} ms")
    pcm = np.frombuffer(frame.chunk.pcm, dtype="<i2").astype(np.int16)
    return MicFrame(sequence=frame.sequence, pcm=pcm)
