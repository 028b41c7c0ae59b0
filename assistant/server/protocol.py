"""The client half of the protocol, sans I/O: bytes or text in, typed messages (or a ProtocolError) out.

Nothing here touches a socket, so every rule of ``docs/protocol.md`` about what a client may send is
tested without one. The server (``assistant.server.app``) feeds each received frame to
``parse_text`` / ``parse_binary`` and acts on the result; a ``ProtocolError`` becomes an ``error``
event, or a close with ``close_code`` when the connection cannot sensibly go on. The messages
themselves, and how a JSON object becomes one, are ``assistant.events``.
"""

from __future__ import annotations

import json

import numpy as np

from assistant.errors import FrameError, ProtocolError
from assistant.events import (
    AUDIO_HEADER_BYTES,
    MESSAGE_TYPES,
    ClientMessage,
    HelloMessage,
    InterruptMessage,
    MicFrame,
    ModeMessage,
    NotHelpfulMessage,
    PlaybackMessage,
    Role,
    TalkEndMessage,
    TalkStartMessage,
    TextMessage,
    decode_audio_frame,
    message_from_dict,
)
from assistant.owner_wire import OWNER_MESSAGE_TYPES, OwnerMessage
from assistant.stages import SAMPLE_RATE_HZ

__all__ = [
    "CLIENT_TYPES",
    "ClientMessage",
    "HelloMessage",
    "InterruptMessage",
    "MicFrame",
    "ModeMessage",
    "NotHelpfulMessage",
    "PlaybackMessage",
    "ProtocolError",
    "Role",
    "TalkEndMessage",
    "TalkStartMessage",
    "TextMessage",
    "parse_binary",
    "parse_text",
]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
"""The daemon is shutting down."""
CLOSE_POLICY = 1008
"""A policy violation: bad token or origin, repeated malformed input, a client too slow to keep up."""
CLOSE_TOO_BIG = 1009
"""A message over ``[server] max_message_bytes``."""
CLOSE_INTERNAL = 1011
"""The server failed (a bug, logged): the connection cannot go on."""
CLOSE_TRY_LATER = 1013
"""The server is at ``[server] max_clients``."""

MAX_FRAME_MS = 1_000
"""The longest microphone frame accepted; browsers send 20-100 ms."""
MAX_BAD_MESSAGES = 20
"""Malformed messages tolerated per connection (each answered with an ``error``) before a 1008 close."""

CLIENT_TYPES = tuple(MESSAGE_TYPES)


def parse_text(data: str, *, max_bytes: int) -> ClientMessage | OwnerMessage:
    """One JSON text frame -> a client message (or an owner's page's, ``assistant.owner_wire``).
    Raises ProtocolError."""
    if len(data) * 4 > max_bytes and len(data.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ProtocolError("too-big", f"message over {max_bytes} bytes", close_code=CLOSE_TOO_BIG)
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, and integers too long to convert
        raise ProtocolError("bad-json", f"not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise ProtocolError("bad-message", "a message must be a JSON object")
    kind = body.get("type")
    if isinstance(kind, str) and kind in OWNER_MESSAGE_TYPES:
        return message_from_dict(body, known=OWNER_MESSAGE_TYPES)  # type: ignore[return-value]
    return message_from_dict(body)


def parse_binary(data: bytes, *, max_bytes: int, sample_rate_hz: int = SAMPLE_RATE_HZ) -> MicFrame:
    """One binary frame (the layout of ``assistant.events.encode_audio_frame``) -> microphone audio."""
    if len(data) > max_bytes:
        raise ProtocolError("too-big", f"audio frame over {max_bytes} bytes", close_code=CLOSE_TOO_BIG)
    try:
        frame = decode_audio_frame(bytes(data))
    except FrameError as err:
        raise ProtocolError("bad-audio", err.message) from None
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
