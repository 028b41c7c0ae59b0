"""One turn, top to bottom: question -> transcript -> retrieval -> route -> reply text -> speech.

A turn is one asyncio task. It streams all the way: reply text is split into sentences as it is
written, and the first sentence is synthesised while the LLM still writes the rest. Cancelling the
task is barge-in: generation and synthesis stop, an ``interrupted`` event says what was heard, and
``heard_text(played_ms)`` tells the caller what to keep in the history.

Every step emits a typed event (assistant/events.py) through ``emit``, stamped with the turn number
and the session clock. ``emit`` must not block (the daemon puts events on bounded queues).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from assistant import events as ev
from assistant.config import Settings
from assistant.grounding import EchoCheck, NumberCheck
from assistant.kb.query import sub_questions
from assistant.language import detect_language
from assistant.sentences import SentenceSplitter
from assistant.stages import (
    AssistantError,
    GenerateError,
    LanguageModel,
    Message,
    Passage,
    Retriever,
    Synthesizer,
    Transcriber,
    Transcript,
    Utterance,
    Voice,
)

if TYPE_CHECKING:
    from assistant.events import Route

log = logging.getLogger(__name__)

Emit = Callable[[ev.Event], None]
T = TypeVar("T")


@dataclass
class Engines:
    """The shared engine instances a turn uses. ``transcriber`` and ``synthesizer`` are optional:
    a typed question needs no ASR, a text-only answer no TTS."""

    retriever: Retriever
    llm: LanguageModel
    transcriber: Transcriber | None = None
    synthesizer: Synthesizer | None = None
    voice_for: Callable[[str], Voice] | None = None
    """Picks the voice for a sentence's language (required with a synthesizer)."""

    @classmethod
    def from_settings(cls, settings: Settings, *, asr: bool = True, tts: bool = True) -> Engines:
        from assistant import registry

        synthesizer = registry.synthesizer(settings) if tts and settings.tts.enabled else None
        return cls(
            retriever=registry.retriever(settings),
            llm=registry.language_model(settings),
            transcriber=registry.transcriber(settings) if asr else None,
            synthesizer=synthesizer,
            voice_for=getattr(synthesizer, "voice_for", None),
        )


@dataclass(frozen=True)
class RouteDecision:
    route: Route
    passages: list[Passage]
    """The passages shown as sources: the FAQ entry on ``faq``, the relevant ones on ``generated``."""


def decide_route(passages: list[Passage], settings: Settings, *, parts: Sequence[list[Passage]] = ()) -> RouteDecision:
    """``faq`` when the best FAQ match clears the FAQ threshold and is unambiguous, ``generated`` when
    anything clears the relevance threshold, else ``fallback``.

    Unambiguous: the best match also holds at least ``faq_threshold`` of its own and the runner-up's
    scores together (with 0.80, the runner-up scores under a quarter of the best). A runner-up that
    close means the question may be the other entry's: "每天的午餐补贴有多少钱？" matches the travel
    per diem at 0.89 and the lunch subsidy at 0.37, "How many days of sick leave?" annual leave at
    0.79 and sick leave at 0.45. Read out verbatim, the first entry is a wrong answer; the model, given
    both (``generated``), picks the one that answers.

    ``parts`` are the results for the question's parts (assistant.kb.query.sub_questions): when two
    or more parts each match a different passage at the FAQ threshold, the visitor asked several
    things, and the answer is ``generated`` from all of those passages.
    """
    answer = settings.answer
    strong: dict[str, Passage] = {}
    for results in parts:
        if results and results[0].score >= answer.faq_threshold:
            strong.setdefault(results[0].id, results[0])
    if len(strong) >= 2:
        extra = [p for p in passages if p.score >= answer.relevance_threshold and p.id not in strong]
        limit = max(answer.max_passages, len(strong))
        return RouteDecision("generated", [*strong.values(), *extra][:limit])
    ranked = sorted(passages, key=lambda p: -p.score)  # stable: ties keep retrieval's order
    faq = [p for p in ranked if p.kind == "faq" and p.answer]
    if faq and faq[0].score >= answer.faq_threshold:
        best = faq[0]
        runner_up = next((p for p in ranked if p.id != best.id), None)
        if runner_up is None or best.score >= answer.faq_threshold * (best.score + runner_up.score):
            return RouteDecision("faq", [best])
        rest = [p for p in ranked if p.id not in (best.id, runner_up.id) and p.score >= answer.relevance_threshold]
        return RouteDecision("generated", [best, runner_up, *rest][: max(answer.max_passages, 2)])
    relevant = [p for p in ranked if p.score >= answer.relevance_threshold]
    if relevant:
        return RouteDecision("generated", relevant[: answer.max_passages])
    return RouteDecision("fallback", [])


def answer_language(transcript: Transcript) -> str:
    """The language a reply to ``transcript`` is written in (``zh`` / ``en``)."""
    if transcript.language in ("zh", "en"):
        return transcript.language
    return detect_language(transcript.text)


@dataclass(frozen=True)
class Plan:
    """Everything a question leads to before the reply is written: retrieval, the route, and on the
    ``generated`` route the LLM's messages. Made by the turn, or ahead of it (the daemon plans on
    the transcript at a pause, to prefill the LLM and to recognise a question it can answer)."""

    transcript: str
    language: str
    history: tuple[Message, ...]
    decision: RouteDecision
    messages: list[Message] | None
    """The chat for the LLM (``generated`` only)."""
    candidates: tuple[Passage, ...] = ()
    """What retrieval returned, best first, whatever the route."""

    def fits(self, transcript: str, language: str, history: Sequence[Message]) -> bool:
        """Was this plan made for exactly this question, in this language, after this history?"""
        return self.transcript == transcript and self.language == language and self.history == tuple(history)


async def plan_answer(
    transcript: Transcript, history: Sequence[Message], *, engines: Engines, settings: Settings
) -> Plan:
    """Retrieve for ``transcript`` (a follow-up joined to the previous question), decide the route and
    build the LLM's messages. Pure with respect to the session: the same inputs give the same plan."""
    from assistant import prompts

    history = list(history)
    language = answer_language(transcript)
    query = prompts.rewrite_query(transcript.text, history)
    passages = await engines.retriever.search(query, k=settings.kb.top_k)
    parts = [await engines.retriever.search(q, k=3) for q in sub_questions(query)]
    decision = decide_route(passages, settings, parts=parts)
    messages = None
    if decision.route == "generated":
        messages = _grounded_messages(transcript.text, decision.passages, history, language, settings)
    return Plan(transcript.text, language, tuple(history), decision, messages, tuple(passages))


async def verify_faq(plan: Plan, *, engines: Engines, settings: Settings) -> Plan:
    """``plan`` unchanged unless it answers an FAQ entry verbatim with a score under ``[answer]
    verify_faq_below``: then the LLM is asked whether the entry answers the question, and on a
    clear no the plan becomes the honest ``fallback`` (an entry read out for the wrong question, "产假"
    answered with annual leave, is the unfaithful answer this exists to stop). A failing LLM keeps
    the entry: the check is a safeguard, not a dependency."""
    from assistant import prompts

    decision = plan.decision
    if decision.route != "faq" or not decision.passages or decision.passages[0].score >= settings.answer.verify_faq_below:
        return plan
    messages = prompts.verify_messages(plan.transcript, decision.passages[0], language=plan.language)
    try:
        verdict = "".join([delta async for delta in engines.llm.stream(messages, max_tokens=3, temperature=0.0)])
    except GenerateError as err:
        log.warning("checking the FAQ match failed; answering it as it is: %s", err.message)
        return plan
    if not prompts.verdict_is_no(verdict):
        return plan
    log.info("the LLM says FAQ entry %s does not answer %r: declining", decision.passages[0].id, plan.transcript)
    return dataclasses.replace(plan, decision=RouteDecision("fallback", []), messages=None)


def guess_messages(plan: Plan, settings: Settings) -> list[Message] | None:
    """The messages worth prefilling for a partial transcript: the plan's own on the ``generated``
    route; on ``fallback`` (nothing relevant yet, the question half said), those the generated route
    would build from the best candidate if it scores at least ``[llm] prefill_guess``. The passages
    come before the question in the prompt, so when the finished question lands on the same best
    passage its request reuses the prefill up to the question; when it does not, only the system
    message is shared, and a batch of the guess still under way delays the real request (up to
    ~0.4 s on two cores: why it is off by default). None: nothing worth prefilling."""
    if plan.messages is not None:
        return plan.messages
    floor = settings.llm.prefill_guess
    if plan.decision.route != "fallback" or floor <= 0:
        return None
    best = max(plan.candidates, key=lambda p: p.score, default=None)
    if best is None or best.score < floor:
        return None
    return _grounded_messages(plan.transcript, [best], plan.history, plan.language, settings)


def _grounded_messages(
    question: str, passages: list[Passage], history: Sequence[Message], language: str, settings: Settings
) -> list[Message]:
    """The generated route's chat: the question over ``passages``, after the last ``[answer]
    history_turns`` question/answer pairs."""
    from assistant import prompts

    recent = list(history)[-2 * settings.answer.history_turns :]
    return prompts.build_messages(question, passages, recent, language=language)


@dataclass
class TurnResult:
    question: str = ""
    language: str = ""
    route: Route | None = None
    answer: str = ""
    sources: list[Passage] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: AssistantError | None = None
    interrupted: bool = False
    withheld: list[str] = field(default_factory=list)
    """Numbers the reply was about to state that its passages do not hold (assistant.grounding)."""


@dataclass
class _Spoken:
    text: str
    duration_ms: float = 0.0
    done: bool = False


class Turn:
    def __init__(
        self,
        number: int,
        *,
        engines: Engines,
        settings: Settings,
        history: list[Message] | None = None,
        emit: Emit | None = None,
        clock_ms: Callable[[], float] | None = None,
        played_ms: Callable[[], float | None] | None = None,
    ) -> None:
        """``played_ms`` reports how much of this turn's audio the listener has heard (the client's
        playback position); on barge-in it decides what ``interrupted`` and the history keep."""
        self.number = number
        self.engines = engines
        self.settings = settings
        self.history = list(history or [])
        self._emit_to = emit or (lambda _e: None)
        self._played_ms = played_ms or (lambda: None)
        start = time.monotonic()
        self._clock_ms = clock_ms or (lambda: (time.monotonic() - start) * 1000.0)
        self.result = TurnResult()
        self._spoken: list[_Spoken] = []
        self._reference_ms = 0.0
        self._sequence = 0
        """Audio frame sequence, per turn from 0 (the wire promises this)."""

    # --- events ---------------------------------------------------------------------------

    def emit(self, event: ev.Event) -> None:
        event.turn = self.number
        event.t_ms = self._clock_ms()
        self._emit_to(event)

    def _mark(self, name: str) -> None:
        self.result.timings_ms.setdefault(name, round(self._clock_ms() - self._reference_ms, 1))

    # --- what was heard -------------------------------------------------------------------

    def heard_text(self, played_ms: float | None = None) -> str:
        """The part of the reply the listener heard.

        ``played_ms`` is the playback position reported by the client (milliseconds of this turn's
        audio played). Without it, every sentence whose audio was completely sent counts as heard.
        A sentence cut mid-way keeps the share of its characters that was played.
        """
        if not self._spoken:
            # Nothing was spoken (no synthesizer): what was written is what the visitor read.
            return self.result.answer if played_ms is None else ""
        parts: list[str] = []
        remaining = played_ms
        for s in self._spoken:
            if remaining is None:
                if s.done:
                    parts.append(s.text)
                continue
            if remaining >= s.duration_ms and s.done:
                parts.append(s.text)
                remaining -= s.duration_ms
            else:
                if s.duration_ms > 0 and remaining > 0:
                    parts.append(s.text[: int(len(s.text) * min(1.0, remaining / s.duration_ms))])
                break
        sep = "" if self.result.language == "zh" else " "
        return sep.join(p for p in parts if p).strip()

    # --- the turn -------------------------------------------------------------------------

    async def run(
        self,
        question: str | Utterance | Transcript,
        *,
        end_of_speech_ms: float | None = None,
        marks: Mapping[str, float | None] | None = None,
        plan: Plan | None = None,
    ) -> TurnResult:
        """Run the turn. ``end_of_speech_ms`` (session clock) is when the visitor stopped talking;
        the latency trace counts from it (default: now). ``marks`` are stages measured before the
        turn existed, in ms after the end of speech: ``endpoint`` (the endpointer decided) and
        ``transcript`` (the listener's final transcript). ``plan``: retrieval and routing done
        ahead on a speculative transcript; used only if it was made for this very question and
        history."""
        self._reference_ms = self._clock_ms() if end_of_speech_ms is None else end_of_speech_ms
        for name, value in (marks or {}).items():
            if value is not None:
                self.result.timings_ms[name] = round(value, 1)
        try:
            transcript = await self._hear(question)
            if not transcript.text.strip():
                raise AssistantError("asr-empty", "nothing intelligible was heard")
            await self._answer(transcript, plan)
        except asyncio.CancelledError:
            self.result.interrupted = True
            heard = self.heard_text(self._played_ms())
            self.emit(ev.Interrupted(heard_text=heard))
            self.emit(ev.StateEvent(state="idle"))
            raise
        except AssistantError as err:
            self._fail(err)
        except Exception as err:  # a bug or an engine failure nobody wrapped: the daemon keeps serving
            log.exception("turn %d failed", self.number)
            self._fail(AssistantError("internal", f"{type(err).__name__}: {err}"))
        else:
            self._mark("total")
            self.emit(self._trace())
            self.emit(ev.StateEvent(state="idle"))
        return self.result

    def _fail(self, err: AssistantError) -> None:
        self.result.error = err
        self.emit(ev.ErrorEvent(code=err.code, message=err.message))
        self.emit(ev.StateEvent(state="idle"))

    def _trace(self) -> ev.Trace:
        t = self.result.timings_ms
        return ev.Trace(
            route=self.result.route or "fallback",
            endpoint_ms=t.get("endpoint"),
            transcript_ms=t.get("transcript"),
            retrieve_ms=t.get("retrieve"),
            first_token_ms=t.get("first_token"),
            first_sentence_ms=t.get("first_sentence"),
            first_audio_ms=t.get("first_audio"),
            total_ms=t.get("total"),
        )

    async def _hear(self, question: str | Utterance | Transcript) -> Transcript:
        if isinstance(question, str):
            transcript = Transcript(question.strip(), detect_language(question))
        elif isinstance(question, Transcript):
            transcript = question
        else:
            if self.engines.transcriber is None:
                raise AssistantError("asr-unavailable", "this turn got audio but no transcriber is loaded")
            self.emit(ev.StateEvent(state="transcribing"))
            transcript = await self.engines.transcriber.transcribe(question)
            self._mark("transcript")
            self.emit(ev.TranscriptEvent(text=transcript.text, language=transcript.language, final=True))
        language = answer_language(transcript)
        self.result.question = transcript.text
        self.result.language = language
        return Transcript(transcript.text, language, True)

    async def _answer(self, transcript: Transcript, plan: Plan | None) -> None:
        from assistant import prompts

        self.emit(ev.StateEvent(state="thinking"))
        if plan is None or not plan.fits(transcript.text, transcript.language, self.history):
            plan = await plan_answer(transcript, self.history, engines=self.engines, settings=self.settings)
        plan = await verify_faq(plan, engines=self.engines, settings=self.settings)
        self._mark("retrieve")
        decision = plan.decision
        self.result.route = decision.route
        self.result.sources = decision.passages
        self.emit(ev.Sources(sources=[ev.Source.of(p) for p in decision.passages]))
        self.emit(ev.ReplyStart(route=decision.route, language=transcript.language))

        check: NumberCheck | None = None
        echo: EchoCheck | None = None
        if plan.messages is not None:
            # what the model was asked, which a reply must not merely say back (grounding.EchoCheck)
            echo = EchoCheck([transcript.text, prompts.prompt_set(plan.language).reminder])
            deltas = self.engines.llm.stream(plan.messages, max_tokens=self.settings.answer.max_tokens)
            if self.settings.answer.check_numbers:
                # The evidence is what the model was given: the earlier turns, the numbered passages and
                # the question (not the system message, whose worked example has numbers of its own).
                check = NumberCheck(m.content for m in plan.messages if m.role != "system")
        else:
            text = (
                decision.passages[0].answer or ""
                if decision.route == "faq"
                else prompts.fallback_line(transcript.language)
            )
            deltas = _once(text)
        # Stored answers go through the same splitter, so their units are the ones the instant-reply
        # cache rendered (assistant.sentences.speech_units) and a cache miss still starts early.
        await self._write_and_speak(
            deltas, language=transcript.language, check=check, echo=echo, decline=prompts.decline_line(plan.language)
        )

    async def _write_and_speak(
        self,
        deltas: AsyncIterator[str],
        *,
        language: str,
        check: NumberCheck | None = None,
        echo: EchoCheck | None = None,
        decline: str = "",
    ) -> None:
        """Split the reply into pieces as it is written; speak each while the next is written.

        With ``check`` (the generated route, ``[answer] check_numbers``), each piece is checked before
        it is shown or said (assistant.grounding): ``reply-delta`` then carries whole pieces, and the
        first piece stating a number the evidence does not hold stops generation. The reply ends with
        the pieces before it, or, when it was the first, is ``decline``. With ``echo`` (the generated
        route), pieces at the start of the reply that only say the question back are neither shown
        nor said, and a reply with nothing else is ``decline`` too."""
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speak = self.engines.synthesizer is not None

        async def write() -> None:
            splitter = SentenceSplitter()
            text = ""  # everything the model wrote
            hidden = 0  # text[:hidden]: pieces that only said the question back, never shown nor said
            released = 0  # how much of it went out as reply-delta (or was hidden)
            withheld: list[str] = []

            def release(upto: int) -> None:
                nonlocal released
                if upto > released:
                    self.emit(ev.ReplyDelta(text=text[released:upto]))
                    released = upto
                    self.result.answer = text[hidden:released]

            def unsupported(pieces: list[str]) -> list[str]:
                return [n for p in pieces for n in check.ungrounded(p)] if check is not None else []

            def said_back(pieces: list[str]) -> list[str]:
                """Drop the pieces at the start of the reply that only say the question back."""
                nonlocal hidden, released
                while echo is not None and pieces and released == hidden and echo.said_back(pieces[0]):
                    start = text.find(pieces[0], hidden)
                    hidden = released = (start if start >= 0 else hidden) + len(pieces[0])
                    log.info("turn %d: dropped %r, the question said back", self.number, pieces[0])
                    pieces = pieces[1:]
                return pieces

            def judged() -> bool:
                """Whether text up to the splitter's pending part may go out as it streams: not while
                the reply's first piece may still turn out to be the question said back."""
                return check is None and (echo is None or released > hidden)

            try:
                async with _closing(deltas) as stream:  # closing stops generation
                    async for delta in stream:
                        if not delta:
                            continue
                        self._mark("first_token")
                        text += delta
                        pieces = said_back(splitter.feed(delta))
                        if withheld := unsupported(pieces):
                            break
                        streaming = judged()
                        if streaming or pieces:
                            release(len(text) if streaming else len(text) - len(splitter.pending))
                        for s in pieces:
                            self._queue_sentence(sentences, s)
                if not withheld:
                    pieces = said_back([s for s in splitter.flush() if s])
                    if not (withheld := unsupported(pieces)):
                        if pieces:
                            release(len(text))
                        for s in pieces:
                            self._queue_sentence(sentences, s)
                if withheld:
                    log.info("turn %d: withheld a piece stating %s, which its passages do not", self.number, withheld)
                    self.result.withheld = withheld
                if (withheld or hidden) and not text[hidden:released].strip():
                    text, hidden, released = decline, 0, 0
                    release(len(text))
                    self._queue_sentence(sentences, text)
                self.result.answer = text[hidden:released].strip()
                self.emit(ev.ReplyEnd(text=self.result.answer, route=self.result.route or "generated"))
            finally:
                sentences.put_nowait(None)

        async def say() -> None:
            index = 0
            while (sentence := await sentences.get()) is not None:
                if speak:
                    await self._speak(index, sentence, language)
                else:
                    self.emit(
                        ev.Sentence(index=index, text=sentence, language=detect_language(sentence, default=language))
                    )
                index += 1

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(write())
                group.create_task(say())
        except BaseExceptionGroup as group_error:
            # Report the first real failure as the turn's error, not a group of them.
            first = group_error.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None

    def _queue_sentence(self, queue: asyncio.Queue[str | None], sentence: str) -> None:
        self._mark("first_sentence")
        queue.put_nowait(sentence)

    async def _speak(self, index: int, sentence: str, language: str) -> None:
        assert self.engines.synthesizer is not None
        lang = detect_language(sentence, default=language)
        if self.engines.voice_for is None:
            raise AssistantError("tts-voice", "a synthesizer was given without a voice_for function")
        voice = self.engines.voice_for(lang)
        spoken = _Spoken(sentence)
        self._spoken.append(spoken)
        self.emit(ev.Sentence(index=index, text=sentence, language=lang))
        started = False
        stream = self.engines.synthesizer.synthesize(sentence, voice=voice)
        async with _closing(stream) as chunks:
            async for chunk in chunks:
                if not started:
                    started = True
                    if "first_audio" not in self.result.timings_ms:
                        self.emit(ev.StateEvent(state="speaking"))
                    self._mark("first_audio")
                    self.emit(ev.AudioStart(sentence=index, sample_rate_hz=chunk.sample_rate_hz))
                self.emit(ev.Audio(sequence=self._sequence, sentence=index, chunk=chunk))
                self._sequence += 1
                spoken.duration_ms += chunk.duration_ms
        spoken.done = True
        if started:
            self.emit(ev.AudioStop(sentence=index, duration_ms=round(spoken.duration_ms, 1)))


@contextlib.asynccontextmanager
async def _closing(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close an engine's stream when the consumer stops early (barge-in, an error): async
    generators only stop their work when closed, not when merely dropped."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


async def _once(text: str) -> AsyncIterator[str]:
    yield text
