"""The WebSocket vocabulary, both ways (``docs/protocol.md`` is its contract).

Server -> client: every event the daemon emits. Client -> server: every message a client may send.
Both wire forms are derived from the dataclasses, never written by hand per class: the ``type`` is
the class name in kebab-case (``ReplyDelta`` -> ``reply-delta``, ``TalkStartMessage`` ->
``talk-start``), the fields are flat JSON members (``to_dict`` out, ``message_from_dict`` in).
``Audio`` (out) and microphone audio (in) travel as binary frames (``encode_audio_frame``).
"""

from __future__ import annotations

import json
import math
import re
import struct
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

from assistant.errors import FrameError, ProtocolError
from assistant.stages import ENVELOPE_FRAME_MS, AudioChunk, Passage, Route

PROTOCOL_VERSION = 2
"""Version 2 (from 1): ``audio-stop`` is ``audio-end``; ``reply-end`` lost ``interrupted`` (always
false: an interrupted turn ends with ``interrupted``); ``/healthz`` says ``faq_audio``."""

State = Literal["idle", "listening", "transcribing", "thinking", "speaking"]


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
    """The whole reply as written. (An interrupted turn ends with ``Interrupted`` instead, whose
    ``heard_text`` is as far as it was heard.)"""
    route: Route = "generated"


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
class AudioEnd(Event):
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


# --- the knowledge base ----------------------------------------------------------------------


@dataclass(kw_only=True)
class KbUpdated(Event):
    """A new index generation answers from now on (live reload, ``assistant.reload``); a turn in
    flight finishes on the one it started with. Sent to every client, outside any turn."""

    generation: str = ""
    """The index generation now live (its folder's name, as ``/healthz`` says ``kb_generation``)."""
    entries: int = 0
    """FAQ entries in it."""
    chunks: int = 0
    """Document chunks in it."""
    build_ms: float = 0.0
    """Milliseconds from the request (a file change, the owner's page) to the swap."""


@dataclass(kw_only=True)
class KbUpdateFailed(Event):
    """A reload's build failed; the live generation (``generation``) keeps answering."""

    generation: str = ""
    code: str = ""
    """The failure's stable code (``kb-write``: a full disk; ``kb-skipped``: a file could not be read)."""
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


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_unicode(text: str) -> str:
    """``text`` with any lone surrogate (``"\\ud83d"`` in JSON: half an emoji) replaced by U+FFFD: such
    a string cannot be encoded as UTF-8, so it could not be sent, logged or spoken."""
    if text.isascii():
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)


def to_wire(event: Event) -> str | bytes:
    """A text frame for every event but ``Audio``, which becomes a binary frame. The text is always
    valid UTF-8 (a lone surrogate that reached an event is replaced, never left to fail the send)."""
    if isinstance(event, Audio):
        return encode_audio_frame(event.chunk, turn=event.turn, sequence=event.sequence, sentence=event.sentence)
    return valid_unicode(json.dumps(to_dict(event), ensure_ascii=False, separators=(",", ":")))


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
        raise FrameError(f"audio frame envelope step is {frame_ms} ms; the protocol uses {ENVELOPE_FRAME_MS} ms")
    if not 8_000 <= rate <= 48_000:
        raise FrameError(f"audio frame sample rate {rate} Hz is outside 8000..48000")
    if AUDIO_HEADER_BYTES + n_env > len(data):
        raise FrameError(
            f"audio frame claims {n_env} envelope bytes but only {len(data) - AUDIO_HEADER_BYTES} follow the header"
        )
    pcm = data[AUDIO_HEADER_BYTES + n_env :]
    if len(pcm) % 2:
        raise FrameError("audio frame PCM has an odd number of bytes (int16 samples expected)")
    env = tuple(b / 255.0 for b in data[AUDIO_HEADER_BYTES : AUDIO_HEADER_BYTES + n_env])
    return AudioFrame(turn=turn, sequence=sequence, sentence=sentence, chunk=AudioChunk(pcm, rate, env))


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        Hello, StateEvent, SpeechStart, SpeechEnd, TranscriptEvent, Sources, ReplyStart, ReplyDelta,
        ReplyEnd, Sentence, AudioStart, AudioEnd, Audio, Interrupted, ErrorEvent, Trace, KbUpdated,
        KbUpdateFailed,
    )
}


# --------------------------------------------------------------------------------------------
# Client -> server
# --------------------------------------------------------------------------------------------

Role = Literal["visitor", "watcher"]
Mode = Literal["hands-free", "push-to-talk"]

MAX_TEXT_CHARS = 1_000
"""The longest typed question accepted (a spoken one is bounded by ``[vad] max_utterance_s``)."""
MAX_INT = 2**31 - 1
"""The largest integer any client field takes (turn numbers, positions in milliseconds)."""


class Inbound:
    """A client message. Its wire ``type`` is the class name without ``Message``, in kebab-case;
    its fields are the dataclass fields (checked against their annotations by ``message_from_dict``,
    then by the class's own ``checked``)."""

    type: ClassVar[str] = "message"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.type = _kebab(cls.__name__.removesuffix("Message"))

    def checked(self) -> Inbound:
        """The message with its values normalised; raises ``ProtocolError`` for values its types allow
        but the protocol does not."""
        return self


@dataclass(frozen=True)
class HelloMessage(Inbound):
    """Optional first message: who the client is and what it wants to be."""

    role: Role = "watcher"
    client: str = ""
    """Free text naming the client (``avatar/1.0``), for logs; cut to 100 characters."""

    def checked(self) -> HelloMessage:
        return HelloMessage(self.role, self.client[:100])


@dataclass(frozen=True)
class TextMessage(Inbound):
    """A typed question; makes the client a visitor."""

    text: str

    def checked(self) -> TextMessage:
        text = self.text.strip()
        if not text:
            raise ProtocolError("empty-question", "'text' is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise ProtocolError("too-long", f"a typed question is limited to {MAX_TEXT_CHARS} characters")
        return TextMessage(text)


@dataclass(frozen=True)
class InterruptMessage(Inbound):
    """Stop the reply now (a button, or the client's own voice detection)."""

    turn: int | None = None
    played_ms: float | None = None
    """How much of that turn's reply audio the listener heard, when the client knows."""

    def checked(self) -> InterruptMessage:
        return InterruptMessage(self.turn, None if self.played_ms is None else max(0.0, self.played_ms))


@dataclass(frozen=True)
class PlaybackMessage(Inbound):
    """How far the client has played a turn's reply audio (all sentences together)."""

    turn: int
    played_ms: float

    def checked(self) -> PlaybackMessage:
        return PlaybackMessage(self.turn, max(0.0, self.played_ms))


@dataclass(frozen=True)
class ModeMessage(Inbound):
    mode: Mode


@dataclass(frozen=True)
class TalkStartMessage(Inbound):
    """Push-to-talk: the button went down."""


@dataclass(frozen=True)
class TalkEndMessage(Inbound):
    """Push-to-talk: the button came up."""


@dataclass(frozen=True)
class NotHelpfulMessage(Inbound):
    """The visitor marked a finished reply "not helpful": the turn goes to the unanswered queue."""

    turn: int

    def checked(self) -> NotHelpfulMessage:
        if self.turn < 1:
            raise ProtocolError("bad-message", "'not-helpful' needs the turn, a number from 1")
        return self


ClientMessage = (
    HelloMessage
    | TextMessage
    | InterruptMessage
    | PlaybackMessage
    | ModeMessage
    | TalkStartMessage
    | TalkEndMessage
    | NotHelpfulMessage
)

MESSAGE_TYPES: dict[str, type[Inbound]] = {
    cls.type: cls
    for cls in (
        HelloMessage,
        TextMessage,
        InterruptMessage,
        PlaybackMessage,
        ModeMessage,
        TalkStartMessage,
        TalkEndMessage,
        NotHelpfulMessage,
    )
}


@dataclass(frozen=True)
class MicFrame:
    """A frame of microphone audio from the client: mono int16 at 16 kHz (a binary frame)."""

    sequence: int
    pcm: Any
    """numpy int16 samples."""


def message_from_dict(body: dict[str, Any], *, known: dict[str, type[Inbound]] | None = None) -> ClientMessage:
    """A client message from its JSON object; raises ``ProtocolError`` (``unknown-type``,
    ``bad-message``, or the message's own). Unknown fields are ignored (a newer client's).
    ``known``: the message types to accept (default ``MESSAGE_TYPES``; the owner's page's
    vocabulary, ``assistant.owner_wire``, passes its own)."""
    known = MESSAGE_TYPES if known is None else known
    kind = body.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad-message", "a message needs a string 'type'")
    cls = known.get(kind)
    if cls is None:
        # the type is echoed back: escaped, so a lone surrogate cannot break the error frame
        shown = kind[:40].encode("utf-8", "backslashreplace").decode("utf-8")
        raise ProtocolError("unknown-type", f"unknown message type '{shown}'; known: {', '.join(known)}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        value = body.get(f.name)
        if value is None:
            if f.default is MISSING:
                raise ProtocolError("bad-message", f"'{kind}' needs the field '{f.name}'")
            continue
        if not _fits(hints[f.name], value):
            raise ProtocolError("bad-message", f"'{kind}' field '{f.name}' has the wrong type or is out of range")
        if isinstance(value, str):
            value = valid_unicode(value)  # a lone surrogate would fail the turn that speaks or logs it
        values[f.name] = float(value) if _is_float(hints[f.name]) else value
    return cls(**values).checked()  # type: ignore[return-value]


def _is_float(tp: Any) -> bool:
    return tp is float or float in typing.get_args(tp)


def _fits(tp: Any, value: Any) -> bool:
    """Whether a JSON value fits a field annotation (``bool`` is never a number here)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return any(_fits(arg, value) for arg in typing.get_args(tp) if arg is not type(None))
    if isinstance(value, bool):
        return tp is bool
    if tp is int:
        return isinstance(value, int) and 0 <= value <= MAX_INT
    if tp is float:
        # the bound first: a 400-digit integer is not a float (math.isfinite would overflow on it)
        return isinstance(value, int | float) and abs(value) <= MAX_INT and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    return False
