"""The stage contracts of one turn and the data that flows between them.

Engines (``assistant/engines/``) implement these Protocols; the turn, the daemon and the tests only
ever see these types. Nothing here imports an engine or a heavy library beyond numpy.

Units live in field names: ``*_hz`` is Hertz, ``*_ms`` milliseconds, ``*_s`` seconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, TypeVar, runtime_checkable

import numpy as np

# The error types, re-exported: a stage wraps its failures once, at its edge, in one of them.
from assistant.errors import AssistantError as AssistantError
from assistant.errors import GenerateError as GenerateError
from assistant.errors import ModelMissingError as ModelMissingError
from assistant.errors import RetrieveError as RetrieveError
from assistant.errors import SynthesizeError as SynthesizeError
from assistant.errors import TranscribeError as TranscribeError

T = TypeVar("T")

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
    does not redo a degenerate fit-window decode on the full window, which holds the model for
    seconds while the pause's transcription waits)."""
    previous_text: str = ""
    """What the visitor said just before this audio, in the same utterance (the listener commits a
    long question in pieces at its pauses): context an engine may prompt with, so it spells on. It
    travels in the data, not as an argument, so that every wrapper passes it on."""

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

Route = Literal["faq", "generated", "fallback"]
"""How a question is answered: ``faq`` reads a stored answer verbatim, ``generated`` has the LLM
answer from the passages, ``fallback`` says the knowledge base does not cover it."""


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

    @property
    def caches_prompts(self) -> bool:
        """Whether a cache is configured (``[llm] prompt_cache_mib``); without one ``warm`` does nothing."""
        ...

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
        """Audio for one sentence, in order; the first chunk as early as the engine allows.
        Closing the iterator early (or cancelling its task) stops synthesis."""
        ...


@runtime_checkable
class TurnDetector(Protocol):
    """Judges from the sound whether a visitor who paused has finished their turn (smart-turn)."""

    async def judge(self, pcm: np.ndarray) -> float:
        """The probability (0-1) that the turn is complete. ``pcm``: the utterance so far, 16 kHz
        mono int16, ending with the pause being judged. Runs the model off the event loop; raises
        ``AssistantError`` when it fails."""
        ...


@contextlib.asynccontextmanager
async def closing(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Use a stage's stream and close it however the use ends (barge-in, an error): an async
    generator only stops its work (generation, synthesis) when closed, not when merely dropped."""
    try:
        yield stream
    finally:
        if isinstance(stream, AsyncGenerator):
            await stream.aclose()


# --------------------------------------------------------------------------------------------
# Optional capabilities: checked with isinstance, never sniffed with getattr
# --------------------------------------------------------------------------------------------


@runtime_checkable
class VoiceSelector(Protocol):
    """Picks the voice for a sentence's language (the voice router does; a Synthesizer needs one)."""

    def voice_for(self, language: Language) -> Voice: ...


@runtime_checkable
class PassageCatalog(Protocol):
    """An optional ability of a ``Retriever``: list every passage a search can return."""

    def all_passages(self) -> list[Passage]:
        """As the prompt would show them: a document chunk once, an FAQ entry once per phrasing. Score 1."""
        ...


@runtime_checkable
class SpeechPrerenderer(Protocol):
    """An optional ability of a ``Synthesizer``: render texts ahead (FAQ answers), so that speaking
    one later replays it at once."""

    async def prerender(self, texts: Iterable[str], *, wait_idle: Callable[[], Awaitable[None]] | None = None) -> int:
        """Render what is not rendered yet, awaiting ``wait_idle()`` before each piece (so live
        replies keep the CPU); returns how many were rendered now."""
        ...


@runtime_checkable
class Preloading(Protocol):
    """An engine that loads its models lazily and can be told to load them now (at start-up, so the
    first visitor does not wait)."""

    async def preload(self) -> None: ...


@runtime_checkable
class Versioned(Protocol):
    """An engine that names its model and library versions (what cached audio depends on)."""

    @property
    def version(self) -> str: ...


@runtime_checkable
class VoiceLoading(Protocol):
    """A TTS engine that loads a voice's model lazily and can be told to load it now."""

    def load(self, voice: Voice) -> object: ...


@runtime_checkable
class VoicePreparing(Protocol):
    """A TTS engine that computes a cloned voice's conditioning ahead (``assistant voices add``)."""

    def prepare_voice(self, voice: Voice) -> Path:
        """Compute and keep it; returns the folder it is kept in."""
        ...


@runtime_checkable
class TermsPrompted(Protocol):
    """A Transcriber that can be prompted with the knowledge base's own vocabulary (names, places)."""

    def set_prompt_terms(self, terms: Sequence[str], *, languages: Sequence[Language] | None = None) -> None:
        """``languages``: speech in these is prompted (None: every language)."""
        ...


@runtime_checkable
class Closing(Protocol):
    """An engine holding threads, processes or native memory to release at shutdown."""

    def close(self) -> None: ...


@runtime_checkable
class AsyncClosing(Protocol):
    """An engine holding connections to close at shutdown."""

    async def aclose(self) -> None: ...


QueueReason = Literal["fallback", "declined", "weak", "interrupted", "not-helpful"]
"""Why a turn needs an owner's eye: it ended in the fallback line, the reply declined, the best match
scored under ``[answer] faq_threshold`` on the generated route, the visitor cut the reply short
soon after it began, or the visitor marked it "not helpful" on the avatar page."""


@dataclass(frozen=True)
class QueueCandidate:
    """One passage retrieval offered for a queued question: what the owner compares it with."""

    id: str
    title: str
    """An FAQ entry's question, a document's title (or its file when it has none)."""
    kind: str
    score: float
    """0..1, the calibrated chance that it answers the question."""


@dataclass(frozen=True)
class QueueRecord:
    """A turn that needs an owner's eye (the unanswered queue, ``assistant.kb.queue``). Text only:
    never audio."""

    reason: QueueReason
    question: str
    """What the visitor asked (typed, or the final transcript)."""
    language: str
    route: str
    """``faq``, ``generated`` or ``fallback``; ``""`` when the turn was cut before it was routed."""
    reply: str
    """What the assistant said (as far as it was written)."""
    candidates: tuple[QueueCandidate, ...] = ()
    """The best passages retrieval returned, best first."""
    time_s: float = 0.0
    """Unix time, seconds."""
    turn_id: str = ""
    """The turn, unique across sessions and restarts: a turn recorded twice (weak, then marked not
    helpful) counts once in a listing."""


@runtime_checkable
class QueueRecorder(Protocol):
    """Keeps ``QueueRecord``s. ``record`` returns at once, whatever the storage does (a turn never
    waits on it, and a failing store never fails a turn)."""

    def record(self, entry: QueueRecord) -> None: ...


@runtime_checkable
class TurnCounter(Protocol):
    """An optional ability of a ``QueueRecorder``: count every finished turn by day, so that the
    owner's page can show the unanswered *rate* per day. Returns at once, as ``record`` does."""

    def count_turn(self, time_s: float) -> None:
        """One turn finished (answered, failed or interrupted) at ``time_s`` (Unix time)."""
        ...


@dataclass(frozen=True)
class Engines:
    """The shared engine instances a turn, a session and the work ahead use, and their optional
    capabilities. ``transcriber`` and ``synthesizer`` are optional: a typed question needs no ASR, a
    text-only answer no TTS; ``voices`` is required with a synthesizer. A capability is None when the
    engine lacks it: ``of`` finds them with isinstance, and a wrapper (``assistant.sharing``)
    passes each one on explicitly."""

    retriever: Retriever
    llm: LanguageModel
    transcriber: Transcriber | None = None
    synthesizer: Synthesizer | None = None
    voices: VoiceSelector | None = None
    prefiller: Prefiller | None = None
    prompt_cache: PromptCache | None = None
    catalog: PassageCatalog | None = None
    prerenderer: SpeechPrerenderer | None = None
    preloader: Preloading | None = None
    """Loads the synthesizer's voices now (their models load lazily otherwise)."""
    turn_detector: TurnDetector | None = None
    """The semantic end of turn (``[turn] model``); None: the turn ends on silence alone."""

    @classmethod
    def of(
        cls,
        *,
        retriever: Retriever,
        llm: LanguageModel,
        transcriber: Transcriber | None = None,
        synthesizer: Synthesizer | None = None,
        turn_detector: TurnDetector | None = None,
    ) -> Engines:
        """The engines with every capability they have."""
        return cls(
            retriever=retriever,
            llm=llm,
            transcriber=transcriber,
            synthesizer=synthesizer,
            voices=synthesizer if isinstance(synthesizer, VoiceSelector) else None,
            prefiller=llm if isinstance(llm, Prefiller) else None,
            prompt_cache=llm if isinstance(llm, PromptCache) and llm.caches_prompts else None,
            catalog=retriever if isinstance(retriever, PassageCatalog) else None,
            prerenderer=synthesizer if isinstance(synthesizer, SpeechPrerenderer) else None,
            preloader=synthesizer if isinstance(synthesizer, Preloading) else None,
            turn_detector=turn_detector,
        )
