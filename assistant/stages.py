"""The stage contracts of one turn and the data that flows between them.

Engines (``assistant/engines/``) implement these Protocols; the turn, the daemon and the tests only
ever see these types. Nothing here imports an engine or a heavy library beyond numpy.

Units live in field names: ``*_hz`` is Hertz, ``*_ms`` milliseconds, ``*_s`` seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

SAMPLE_RATE_HZ = 16_000
"""The rate every Utterance is delivered at (what Whisper and Silero expect)."""

ENVELOPE_FRAME_MS = 20
"""One mouth-envelope value covers this many milliseconds of audio."""

Language = str
"""A BCP-47-ish language code as Whisper names it: ``"zh"``, ``"en"``; ``""`` when unknown."""


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Utterance:
    """One stretch of speech, cut by the endpointer.

    ``pcm`` is mono int16 at ``sample_rate_hz`` (always 16 kHz when it reaches a Transcriber).
    ``end_of_speech_ms`` is the stream time of the last voiced sample: the moment latency counts from.
    """

    pcm: np.ndarray
    sample_rate_hz: int = SAMPLE_RATE_HZ
    start_ms: float = 0.0
    end_of_speech_ms: float = 0.0
    language: Language = ""
    """A language hint (``""``: detect)."""
    draft: bool = False
    """A partial of speech still going on, transcribed only to show and plan ahead: a rough or empty
    transcript now beats a good one later, so an engine may skip its costly retries (faster-whisper
    does not redo a degenerate fit-window decode on the full window, ~1.5-2 s on 2 cores)."""

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / float(self.sample_rate_hz)

    def float32(self) -> np.ndarray:
        """Samples as float32 in [-1, 1], the form Whisper engines take."""
        return self.pcm.astype(np.float32) / 32768.0


@dataclass(frozen=True)
class Transcript:
    """What the visitor said. ``final`` is False for partial transcripts of a growing utterance."""

    text: str
    language: Language = ""
    final: bool = True


PassageKind = Literal["faq", "document"]


@dataclass(frozen=True)
class Passage:
    """One retrieved piece of the knowledge base.

    ``score`` is calibrated to [0, 1] by the retriever, so that the thresholds in ``assistant.toml``
    mean the same thing for every embedder. For an FAQ entry, ``text`` is the matched question and
    ``answer`` the canonical answer; for a document chunk, ``answer`` is None.
    """

    id: str
    text: str
    source: str
    score: float
    kind: PassageKind = "document"
    answer: str | None = None
    title: str = ""
    section: str = ""
    page: int | None = None
    language: Language = ""


Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Voice:
    """A voice folder (``voices/<name>/voice.toml``) as the synthesizers see it."""

    name: str
    engine: str
    languages: tuple[Language, ...] = ("en",)
    speed: float = 1.0
    reference_clips: tuple[Path, ...] = ()
    path: Path | None = None
    options: dict[str, object] = field(default_factory=dict)
    """Engine-specific settings from voice.toml (model folder, speaker id, ...)."""


@dataclass(frozen=True)
class AudioChunk:
    """A piece of synthesized speech.

    ``pcm`` is mono int16 little-endian bytes at ``sample_rate_hz``. ``envelope`` is the mouth
    openness, one value in [0, 1] per ``ENVELOPE_FRAME_MS`` of audio, absolute (comparable across
    chunks, sentences and voices), so any avatar can lip-sync without analysing the audio.
    """

    pcm: bytes
    sample_rate_hz: int
    envelope: tuple[float, ...] = ()

    @property
    def duration_ms(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate_hz * 1000.0


# --------------------------------------------------------------------------------------------
# Errors: wrapped once at a stage's edge, with a stable code
# --------------------------------------------------------------------------------------------


class AssistantError(Exception):
    """An error a user can act on. ``code`` is stable (it goes on the wire); ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class TranscribeError(AssistantError):
    """asr-*"""


class RetrieveError(AssistantError):
    """kb-*"""


class GenerateError(AssistantError):
    """llm-*"""


class SynthesizeError(AssistantError):
    """tts-*"""


class ModelMissingError(AssistantError):
    """A model's files are not in ``models/``: the message names the command that fetches them."""

    def __init__(self, name: str, path: Path | str, fetch_hint: str | None = None) -> None:
        hint = fetch_hint or f"assistant models fetch {name}"
        super().__init__("model-missing", f"model '{name}' is not present at {path}; run `{hint}` to get it")
        self.name = name


# --------------------------------------------------------------------------------------------
# Protocols
# --------------------------------------------------------------------------------------------


@runtime_checkable
class Transcriber(Protocol):
    async def transcribe(self, utterance: Utterance) -> Transcript: ...


@runtime_checkable
class Embedder(Protocol):
    @property
    def identity(self) -> str:
        """Names the model and its version; an index built with another identity is refused."""
        ...

    @property
    def dimensions(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32, shape (len(texts), dimensions)."""
        ...


@runtime_checkable
class Retriever(Protocol):
    async def search(self, query: str, *, k: int) -> list[Passage]:
        """Best first; scores calibrated to [0, 1]."""
        ...


@runtime_checkable
class LanguageModel(Protocol):
    def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float | None = None
    ) -> AsyncIterator[str]:
        """Text deltas. Closing the iterator early (or cancelling its task) stops generation.
        ``temperature``: None samples at the configured ``[llm] temperature``; 0 decodes greedily
        (a yes/no judgement, which sampling would only make noisy)."""
        ...


@runtime_checkable
class Prefiller(Protocol):
    """An optional ability of a ``LanguageModel``: process a prompt ahead, while the visitor is still
    talking, so that a later ``stream`` of a prompt starting the same way begins at once.
    Speculative: it must never delay a real ``stream`` (the engine drops it when one needs the model)."""

    async def prefill(self, messages: list[Message], *, yield_while: Callable[[], bool] | None = None) -> bool:
        """True when the prompt was processed, False when the prefill was given up. While
        ``yield_while()`` is True the engine pauses the work (at its next step; the part done is
        kept) and resumes after: the CPU is needed by a stage on the turn's critical path."""
        ...


@runtime_checkable
class PromptCache(Protocol):
    """An optional ability of a ``LanguageModel``: keep the processed state of prompt beginnings
    (one per knowledge-base passage, ``assistant.prompts.passage_prefix``), so that a prompt which
    starts like one of them is processed only from where it differs. Uses idle time only, like a
    prefill: it stops for any real request and for ``yield_while``."""

    async def warm(
        self, prompts: Sequence[list[Message]], *, yield_while: Callable[[], bool] | None = None, again: bool = False
    ) -> int:
        """Process each prompt, in order, whenever the model and ``yield_while`` allow (an
        interrupted one is resumed from what it processed). One processed before and still cached
        is skipped unless ``again``. Returns how many were processed."""
        ...


@runtime_checkable
class Synthesizer(Protocol):
    def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
        """Audio for one sentence, in order; the first chunk as early as the engine allows."""
        ...
