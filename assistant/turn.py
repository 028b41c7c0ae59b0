"""One turn, top to bottom: question -> transcript -> retrieval -> route -> reply text -> speech.

A turn is one asyncio task. It streams all the way: reply text is split into sentences as it is
written (``assistant.reply_gate`` decides what may go out), and the first sentence is synthesised
while the LLM still writes the rest. Cancelling the task is barge-in: generation and synthesis stop,
an ``interrupted`` event says what was heard, and ``heard_text(played_ms)`` tells the caller what to
keep in the history.

Every step emits a typed event (assistant/events.py) through ``emit``, stamped with the turn number
and the session clock. ``emit`` must not block (the session hands events to every client's bounded queue).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from assistant import events as ev
from assistant import prompts
from assistant.config import Settings
from assistant.grounding import NumberCheck, SaidBackCheck
from assistant.language import detect_language
from assistant.reply_gate import Release, ReplyGate
from assistant.routing import Plan, answer_language, plan_answer, verify_faq
from assistant.sentences import join_sentences
from assistant.stages import AssistantError, Engines, Message, Passage, Route, Transcript, Utterance, closing

log = logging.getLogger(__name__)

Emit = Callable[[ev.Event], None]


@dataclass
class TurnResult:
    """What a turn did. ``question``: the visitor's words (typed, or the final transcript);
    ``reply``: what the assistant said (as far as it was written), whatever the route."""

    turn: int = 0
    """The turn's number in its session."""
    question: str = ""
    language: str = ""
    route: Route | None = None
    reply: str = ""
    sources: list[Passage] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: AssistantError | None = None
    interrupted: bool = False
    withheld: list[str] = field(default_factory=list)
    """Numbers the reply was about to state that its passages do not hold (assistant.grounding)."""
    candidates: list[Passage] = field(default_factory=list)
    """What retrieval returned, best first, whatever the route (``sources`` are the ones used)."""
    declined: bool = False
    """The generated reply is the decline line: the model found no answer in its passages. Such a
    reply shows no sources (``sources`` is emptied and a second, empty ``sources`` event sent)."""
    reply_started_ms: float | None = None
    """The session clock when ``reply-start`` went out (None: the turn never got that far)."""


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
        self.result = TurnResult(turn=number)
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
            return self.result.reply if played_ms is None else ""
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
        return join_sentences(parts).strip()

    # --- the turn -------------------------------------------------------------------------

    async def run(
        self,
        question: str | Utterance | Transcript,
        *,
        speech_end_clock_ms: float | None = None,
        marks: Mapping[str, float | None] | None = None,
        plan: Plan | None = None,
    ) -> TurnResult:
        """Run the turn. ``speech_end_clock_ms`` (session clock) is when the visitor stopped talking;
        the latency trace counts from it (default: now). ``marks`` are stages measured before the
        turn existed, in ms after the end of speech: ``endpoint`` (the endpointer decided) and
        ``transcript`` (the listener's final transcript). ``plan``: retrieval and routing done
        ahead on a speculative transcript; used only if it was made for this very question and
        history."""
        self._reference_ms = self._clock_ms() if speech_end_clock_ms is None else speech_end_clock_ms
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
        self.emit(ev.StateEvent(state="thinking"))
        if plan is None or not plan.fits(transcript.text, transcript.language, self.history):
            plan = await plan_answer(transcript, self.history, engines=self.engines, settings=self.settings)
        plan = await verify_faq(plan, engines=self.engines, settings=self.settings)
        self._mark("retrieve")
        decision = plan.decision
        self.result.route = decision.route
        self.result.sources = decision.passages
        self.result.candidates = list(plan.candidates)
        self.emit(ev.Sources(sources=[ev.Source.of(p) for p in decision.passages]))
        self.result.reply_started_ms = self._clock_ms()
        self.emit(ev.ReplyStart(route=decision.route, language=transcript.language))

        gate = ReplyGate(decline=prompts.decline_line(plan.language))
        if plan.messages is not None:
            # what the model was asked, which a reply must not merely say back
            gate.said_back = SaidBackCheck([transcript.text, prompts.prompt_set(plan.language).reminder])
            deltas = self.engines.llm.stream(plan.messages, max_tokens=self.settings.answer.max_tokens)
            if self.settings.answer.check_numbers:
                # The evidence is what the model was given: the earlier turns, the numbered passages and
                # the question (not the system message, whose worked example has numbers of its own).
                gate.numbers = NumberCheck(m.content for m in plan.messages if m.role != "system")
        else:
            text = (
                decision.passages[0].answer or ""
                if decision.route == "faq"
                else prompts.fallback_line(transcript.language)
            )
            deltas = _once(text)
        # Stored answers go through the same gate and splitter, so their units are the ones the
        # instant-reply audio was rendered in (assistant.sentences.speech_units) and a miss still starts early.
        await self._write_and_speak(deltas, gate, language=transcript.language)

    async def _write_and_speak(self, deltas: AsyncIterator[str], gate: ReplyGate, *, language: str) -> None:
        """Feed the reply through ``gate`` as it is written; speak each piece while the next is written."""
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speak = self.engines.synthesizer is not None
        # A decline is known from its first words: its sources are withdrawn before it is spoken (the
        # passages were searched, not used). Only a generated reply can decline; a stored one never.
        declined: bool | None = None if self.result.route == "generated" else False

        def release(out: Release) -> None:
            nonlocal declined
            if declined is None and (out.shown or out.sentences):
                declined = prompts.decline_state(gate.reply or " ".join(out.sentences))
                if declined:
                    self.result.declined = True
                    self.result.sources = []
                    self.emit(ev.Sources(sources=[]))
            if out.shown:
                self.emit(ev.ReplyDelta(text=out.shown))
                self.result.reply = gate.reply
            for sentence in out.sentences:
                self._queue_sentence(sentences, sentence)

        async def write() -> None:
            try:
                async with closing(deltas) as stream:  # closing stops generation
                    async for delta in stream:
                        if not delta:
                            continue
                        self._mark("first_token")
                        release(gate.feed(delta))
                        if gate.stopped:
                            break
                release(gate.finish())
                for piece in gate.dropped:
                    log.info("turn %d: dropped %r, the question said back", self.number, piece)
                if gate.withheld:
                    log.info("turn %d: withheld a piece stating %s, which its passages do not", self.number, gate.withheld)
                    self.result.withheld = gate.withheld
                self.result.reply = gate.reply
                self.emit(ev.ReplyEnd(text=self.result.reply, route=self.result.route or "generated"))
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
        if self.engines.voices is None:
            raise AssistantError("tts-voice", "a synthesizer was given without a voice selector")
        voice = self.engines.voices.voice_for(lang)
        spoken = _Spoken(sentence)
        self._spoken.append(spoken)
        self.emit(ev.Sentence(index=index, text=sentence, language=lang))
        started = False
        stream = self.engines.synthesizer.synthesize(sentence, voice=voice)
        async with closing(stream) as chunks:
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
            self.emit(ev.AudioEnd(sentence=index, duration_ms=round(spoken.duration_ms, 1)))


async def _once(text: str) -> AsyncIterator[str]:
    yield text
