"""Every event the daemon emits: the WebSocket vocabulary (``docs/protocol.md`` is its contract).

The wire form is derived from the dataclasses, never written by hand per class: the ``type`` is the
class name in kebab-case (``ReplyDelta`` -> ``reply-delta``), the fields are flat JSON members.
``Audio`` is the one event that travels as a binary frame (see ``encode_audio_frame``).
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

from assistant.stages import ENVELOPE_FRAME_MS, AudioChunk, Passage

PROTOCOL_VERSION = 1

State = Literal["idle", "listening", "transcribing", "thinking", "speaking"]
Route = Literal["faq", "generated", "fallback"]


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


@dataclass(kw_only=True)
class Event:
    """Fields every event carries: the turn it belongs to (0 outside a turn) and the session clock."""

    turn: int = 0
    t_ms: float = 0.0
    """Milliseconds since the session started (monotonic clock)."""

    type: ClassVar[str] = "event"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.type = _kebab(cls.__name__.removesuffix("Event"))


# --- session -------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Hello(Event):
    protocol: int = PROTOCOL_VERSION
    session: str = ""
    server: str = ""
    """The daemon's version."""
    language: str = ""
    """The configured interface language (the avatar page's own text follows it)."""
    sample_rate_hz: int = 16_000
    """The rate the server expects microphone frames at."""
    role: str = "visitor"
    """``visitor`` (asks questions) or ``watcher`` (follows the kiosk session)."""


@dataclass(kw_only=True)
class StateEvent(Event):
    state: State = "idle"


# --- hearing -------------------------------------------------------------------------------


@dataclass(kw_only=True)
class SpeechStart(Event):
    pass


@dataclass(kw_only=True)
class SpeechEnd(Event):
    duration_ms: float = 0.0


@dataclass(kw_only=True)
class TranscriptEvent(Event):
    text: str = ""
    language: str = ""
    final: bool = True


# --- answering -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One source of an answer as the wire shows it."""

    id: str
    source: str
    score: float
    kind: str = "document"
    title: str = ""
    section: str = ""
    page: int | None = None

    @classmethod
    def of(cls, passage: Passage) -> Source:
        return cls(
            id=passage.id,
            source=passage.source,
            score=round(float(passage.score), 4),
            kind=passage.kind,
            # an FAQ entry's title is its question, unless the table gave it one
            title=passage.title or (passage.text if passage.kind == "faq" else ""),
            section=passage.section,
            page=passage.page,
        )


@dataclass(kw_only=True)
class Sources(Event):
    sources: list[Source] = field(default_factory=list)


@dataclass(kw_only=True)
class ReplyStart(Event):
    route: Route = "generated"
    language: str = ""


@dataclass(kw_only=True)
class ReplyDelta(Event):
    text: str = ""


@dataclass(kw_only=True)
class ReplyEnd(Event):
    text: str = ""
    """The whole reply as written (or, when interrupted, as far as it was heard)."""
    route: Route = "generated"
    interrupted: bool = False


@dataclass(kw_only=True)
class Sentence(Event):
    """A sentence about to be spoken: captions show it when its audio starts."""

    index: int = 0
    text: str = ""
    language: str = ""


@dataclass(kw_only=True)
class AudioStart(Event):
    sentence: int = 0
    sample_rate_hz: int = 0


@dataclass(kw_only=True)
class AudioStop(Event):
    sentence: int = 0
    duration_ms: float = 0.0


@dataclass(kw_only=True)
class Audio(Event):
    """A chunk of reply audio; sent as a binary frame, not JSON."""

    sequence: int = 0
    sentence: int = 0
    chunk: AudioChunk = field(default_factory=lambda: AudioChunk(b"", 16_000))


@dataclass(kw_only=True)
class Interrupted(Event):
    heard_text: str = ""
    """The part of the reply the listener actually heard (kept in the history)."""


@dataclass(kw_only=True)
class ErrorEvent(Event):
    code: str = "internal"
    message: str = ""


@dataclass(kw_only=True)
class Trace(Event):
    """Per-turn latency, each in milliseconds after the end of speech (or after a typed question)."""

    route: Route = "generated"
    endpoint_ms: float | None = None
    transcript_ms: float | None = None
    retrieve_ms: float | None = None
    first_token_ms: float | None = None
    first_sentence_ms: float | None = None
    first_audio_ms: float | None = None
    total_ms: float | None = None


# --------------------------------------------------------------------------------------------
# Wire form
# --------------------------------------------------------------------------------------------


def to_dict(event: Event) -> dict[str, Any]:
    """The JSON object for an event: ``{"type": ..., "turn": ..., "t_ms": ..., ...fields}``."""
    body: dict[str, Any] = {"type": event.type}
    for f in fields(event):
        value = getattr(event, f.name)
        if isinstance(value, list):
            value = [asdict(v) if hasattr(v, "__dataclass_fields__") else v for v in value]
        elif isinstance(value, float):
            value = round(value, 1)
        body[f.name] = value
    return body


def to_wire(event: Event) -> str | bytes:
    """A text frame for every event but ``Audio``, which becomes a binary frame."""
    if isinstance(event, Audio):
        return encode_audio_frame(event.chunk, turn=event.turn, sequence=event.sequence, sentence=event.sentence)
    return json.dumps(to_dict(event), ensure_ascii=False, separators=(",", ":"))


# Binary audio frame, both directions, little-endian:
#   0  4s  magic  b"ASA1"
#   4  I   turn
#   8  I   sequence (per turn, from 0)
#  12  I   sample_rate_hz
#  16  H   channels (1)
#  18  H   envelope_count (N)
#  20  H   envelope_frame_ms (20)
#  22  H   sentence index
#  24  N bytes: envelope, 0..255 = openness 0..1
#  24+N    int16 PCM samples
AUDIO_MAGIC = b"ASA1"
_HEADER = struct.Struct("<4sIIIHHHH")
AUDIO_HEADER_BYTES = _HEADER.size


@dataclass(frozen=True)
class AudioFrame:
    turn: int
    sequence: int
    sentence: int
    chunk: AudioChunk


class FrameError(ValueError):
    """A binary frame that does not follow the layout above."""


def encode_audio_frame(chunk: AudioChunk, *, turn: int = 0, sequence: int = 0, sentence: int = 0) -> bytes:
    env = bytes(min(255, max(0, round(v * 255))) for v in chunk.envelope)
    header = _HEADER.pack(AUDIO_MAGIC, turn, sequence, chunk.sample_rate_hz, 1, len(env), ENVELOPE_FRAME_MS, sentence)
    return header + env + chunk.pcm


def decode_audio_frame(data: bytes) -> AudioFrame:
    if len(data) < AUDIO_HEADER_BYTES:
        raise FrameError(f"audio frame too short: {len(data)} bytes, the header alone is {AUDIO_HEADER_BYTES}")
    magic, turn, sequence, rate, channels, n_env, frame_ms, sentence = _HEADER.unpack_from(data)
    if magic != AUDIO_MAGIC:
        raise FrameError(f"audio frame has magic {magic!r}, expected {AUDIO_MAGIC!r}")
    if channels != 1:
        raise FrameError(f"audio frame has {channels} channels; only mono is accepted")
    if n_env and frame_ms != ENVELOPE_FRAME_MS:
        raise FrameError(f"audio frame envelope step is {frame_ms} ms; protocol 1 uses {ENVELOPE_FRAME_MS} ms")
    if not 8_000 <= rate <= 48_000:
        raise FrameError(f"audio frame sample rate {rate} Hz is outside 8000..48000")
    pcm = data[AUDIO_HEADER_BYTES + n_env :]
    if len(pcm) % 2:
        raise FrameError("audio frame PCM has an odd number of bytes (int16 samples expected)")
    env = tuple(b / 255.0 for b in data[AUDIO_HEADER_BYTES : AUDIO_HEADER_BYTES + n_env])
    return AudioFrame(turn=turn, sequence=sequence, sentence=sentence, chunk=AudioChunk(pcm, rate, env))


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        Hello, StateEvent, SpeechStart, SpeechEnd, TranscriptEvent, Sources, ReplyStart, ReplyDelta,
        ReplyEnd, Sentence, AudioStart, AudioStop, Audio, Interrupted, ErrorEvent, Trace,
    )
}
