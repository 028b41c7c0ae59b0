"""Hearing a question: endpointing plus streaming transcription, so the transcript is ready early.

The problem: Whisper needs ~0.2-1.5 s here to transcribe a 3-6 s question, and a fixed end-of-turn
silence (``[vad] silence_ms``, 500 ms) comes on top, so transcribing the whole utterance after the
endpoint leaves the visitor waiting ~1-2 s before anything else can start.

What this does instead (measured in ``bench/asr.py``):

1. Partials. While the visitor talks, the uncommitted part of the utterance is transcribed every
   ``[asr] partial_interval_ms`` (or 3x as long as the last transcription took, when the machine
   is slower than that) and shown as ``TranscriptEvent(final=False)``.
2. Transcribe ahead at pauses. When the VAD sees ``[vad] pause_ms`` of silence, the audio since
   the last commit point up to now is transcribed at once (speculatively: the visitor may have
   finished). If they speak again after a real pause (>= 160 ms, not a dip inside a word), that
   text is committed (a cut inside a pause is a safe place to cut for Whisper) and later
   transcriptions cover only the audio after it, with the committed text as prompt context. So
   at any moment only the audio since the last pause is pending. Whisper given that context over
   a tail with little speech in it (a breath, a cough) often writes the context out again; such an
   echo is dropped rather than joined (the question would be asked twice).
3. Early end of turn. If that speculative transcript ends a sentence (. ? ! 。？！) and no voice
   came back for ``[vad] early_silence_ms``, the turn ends there, without waiting for the full
   ``silence_ms``; its transcript is already done, so it is final at that moment. Otherwise the
   turn ends after ``silence_ms`` and, if the speculative transcript covered all the voiced audio,
   it is reused; else only the tail since the last commit is transcribed.
4. Preparing the answer ahead (the ``ahead`` hook): each partial transcript, and the speculative
   transcript at a pause, goes to the hook, which retrieves and prefills the LLM while the visitor
   is still talking or the endpoint is still being decided; at a pause it may mark the question
   answerable (an FAQ hit), which ends the turn early like a finished sentence does. The hook's
   task is cancelled when a newer transcript replaces it or the visitor speaks again.

Optionally (``[asr] dip_cut_after_s``, off by default), speech that goes on without any pause is
cut at the quietest dip between words and that part transcribed while the visitor continues; it
bounds the work left at the end of long questions but costs accuracy (see its docstring).

With ``[asr] partials = false`` none of this happens: the whole utterance is transcribed after
the endpointer's ``silence_ms`` decision (the baseline the benchmark compares against).

The engine's ``fit`` encoder window (``[asr] encoder_window``) makes short tails cheap: Whisper's
encoder otherwise costs the same for 1 s as for 30 s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from assistant.audio.vad import Endpoint, Endpointer
from assistant.config import Settings
from assistant.engines._asr_common import echoes_prompt, join_texts
from assistant.events import ErrorEvent, Event, SpeechEnd, SpeechStart, TranscriptEvent
from assistant.stages import SAMPLE_RATE_HZ, AssistantError, Transcriber, Transcript, Utterance

log = logging.getLogger(__name__)

EndpointKind = Literal["silence", "early", "max", "flush"]
_MIN_COMMIT_S = 1.0
"""Chunks shorter than this are not committed on their own: Whisper does poorly on a word or two."""
_MIN_PARTIAL_S = 0.5
_CHUNK_DIP = 0.35
"""[asr] dip_cut_after_s cuts only where Silero's probability is below this (between words, not
inside a vowel)."""
_COMMIT_GAP_MS = 160
"""A transcription made at a pause is committed only if the pause lasted this long: shorter dips
happen inside words, and cutting there would split a word between two chunks."""
_SENTENCE_END = (".", "?", "!", "。", "？", "！")
_ECHO_MAX_SHARE = 0.6
"""A transcription that reads like the committed text is Whisper echoing its prompt only when its
audio is this much shorter than the committed part's: too short to have said it all again. A
visitor who does say it again ("年假多少天…产假多少天？") takes about as long the second time."""


@dataclass(frozen=True)
class Heard:
    """One finished utterance with its final transcript: what starts a turn.

    ``endpoint``: what ended it (``silence``: [vad] silence_ms; ``early``: a complete sentence and
    early_silence_ms; ``max``: max_utterance_s; ``flush``: the stream ended).
    ``decided_ms``: stream time of the endpoint decision. ``chunks``: transcriptions joined.
    """

    utterance: Utterance
    transcript: Transcript
    endpoint: EndpointKind
    decided_ms: float
    chunks: int


ListenItem = SpeechStart | SpeechEnd | TranscriptEvent | ErrorEvent | Heard

Ahead = Callable[[Transcript, Callable[[], None] | None], Awaitable[None]]
"""``ahead(transcript, answerable)``: called with the whole transcript so far each time a
transcription ahead finishes, while the visitor may still be talking, so the hook can prepare the
answer (assistant.daemon: retrieval, an LLM prefill).

- At a pause (the transcript covers every voiced sample), ``answerable`` is a function: the hook
  calls it when the question as transcribed is one it can answer completely (an FAQ entry), and
  the turn then ends after ``[vad] early_silence_ms`` like a finished sentence does. The task is
  cancelled when the visitor speaks again before the turn ended.
- On a partial transcript (the visitor is talking), ``answerable`` is None. The task is cancelled
  when a newer partial or a pause's transcript replaces it.
"""


@dataclass
class _Job:
    task: asyncio.Task[Transcript]
    from_sample: int
    to_sample: int
    last_voiced: int
    ahead: asyncio.Task[None] | None = None
    """The ``ahead`` hook running on this (speculative) transcription's text."""
    answerable: bool = False
    """The ``ahead`` hook said the question, as transcribed here, is complete."""

    def result(self) -> Transcript | None:
        if not self.task.done() or self.task.cancelled() or self.task.exception() is not None:
            return None
        return self.task.result()


@dataclass
class _Take:
    """The transcription state of one utterance."""

    commit_sample: int
    language: str = ""
    start_sample: int = -1
    """Where the utterance starts (the first commit_sample)."""
    committed: list[str] = field(default_factory=list)
    spec: _Job | None = None
    partial: _Job | None = None
    partial_ahead: asyncio.Task[None] | None = None
    """The ``ahead`` hook running on the latest partial transcript."""
    chunk: _Job | None = None
    """A transcription of [commit_sample, a dip between two words], committed when it is done."""
    last_partial_sample: int = 0
    ended: bool = False

    def __post_init__(self) -> None:
        if self.start_sample < 0:
            self.start_sample = self.commit_sample


def ends_sentence(text: str) -> bool:
    """True when a transcript reads as a finished sentence (not trailing off with '...')."""
    text = text.rstrip().rstrip("\"'”’)")
    return bool(text) and text.endswith(_SENTENCE_END) and not text.endswith(("...", "…"))


class Listener:
    """Frames in, hearing events out, for one audio stream (one session's microphone).

    ``async for item in listener.listen(frames)`` where ``frames`` is any async iterable of mono
    int16 16 kHz frames (an ``assistant.audio`` source). Items, in the order they happen:

      SpeechStart                    voice began (``t_ms``: stream time of the first voiced window)
      TranscriptEvent(final=False)   a partial transcript of the utterance so far (with partials on)
      SpeechEnd                      the endpoint was decided (``duration_ms`` of voice)
      TranscriptEvent(final=True)    the final transcript, immediately followed by
      Heard                          the Utterance, its Transcript and how the endpoint was decided
      ErrorEvent                     the final transcription failed (code from the TranscribeError);
                                     no Heard follows for that utterance. Failed partials are logged only.

    ``t_ms`` is stream time (ms since the first frame). The final events of one utterance may
    come after the next utterance's SpeechStart when the visitor speaks again at once. Stopping
    the iteration (``aclose()`` or cancelling the consuming task) stops everything it started.

    ``pause()`` / ``resume()``: half-duplex gating while the assistant speaks; an utterance in
    progress is dropped (``pause()`` returns True then) and no events follow for it.

    The transcriber is any ``Transcriber``; engines with ``accepts_previous_text = True`` get the
    committed text as context for each later chunk. It may be shared with other Listeners.
    """

    def __init__(
        self,
        transcriber: Transcriber,
        settings: Settings,
        *,
        endpointer: Endpointer | None = None,
        ahead: Ahead | None = None,
    ) -> None:
        """``ahead``: see ``Ahead`` (only with ``[asr] partials``)."""
        self.transcriber = transcriber
        self.ahead = ahead
        self.settings = settings
        self.partials = settings.asr.partials
        self.endpointer = endpointer if endpointer is not None else Endpointer(settings.vad)
        self._context = bool(getattr(transcriber, "accepts_previous_text", False))
        self._take: _Take | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._out: asyncio.Queue[Any] = asyncio.Queue()
        self._interval_samples = settings.asr.partial_interval_ms * SAMPLE_RATE_HZ // 1000
        self._busy = asyncio.Lock()
        self.chunk_after_s = settings.asr.dip_cut_after_s or float("inf")
        """Cut speech without pauses at a dip between words after this long (inf: never)."""
        self._holder: asyncio.Task[Any] | None = None
        self._job_samples = 0
        """How long the last transcription took, in samples of stream time: partials are spaced at
        least 3x that apart, so that on a loaded machine the model is mostly free when a pause
        comes and the transcription that matters does not queue behind a partial."""

    # -- control -------------------------------------------------------------------------------

    def pause(self) -> bool:
        if self._take is not None:
            _drop_ahead(self._take.spec)
            _cancel(self._take.partial_ahead)
        self._take = None
        return self.endpointer.pause()

    def resume(self) -> None:
        self.endpointer.resume()

    # -- the stream ----------------------------------------------------------------------------

    async def listen(self, frames: AsyncIterable[np.ndarray]) -> AsyncIterator[ListenItem]:
        end = object()
        self._out = asyncio.Queue()

        async def pump() -> None:
            try:
                async for frame in frames:
                    self._handle(self.endpointer.feed(frame), "silence")
                    self._tick()
                self._handle(self.endpointer.flush(), "flush")
                while self._tasks:
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)
            finally:
                self._out.put_nowait(end)

        producer = asyncio.create_task(pump())
        try:
            while True:
                item = await self._out.get()
                if item is end:
                    break
                yield item
            await producer  # re-raises what stopped the frames, if anything
        finally:
            producer.cancel()
            for task in list(self._tasks):
                task.cancel()

    def _spawn(self, coro: Any, on_done: Callable[[asyncio.Task[Any]], None] | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if on_done is not None:
            task.add_done_callback(on_done)
        return task

    def _emit(self, item: Any) -> None:
        self._out.put_nowait(item)

    # -- endpointer events ---------------------------------------------------------------------

    def _handle(self, events: list[Endpoint], kind: EndpointKind) -> None:
        for event in events:
            if isinstance(event, SpeechStart):
                state = self.endpointer.state()
                start = state.start_sample if state else 0
                self._take = _Take(commit_sample=start, language=self.settings.asr.language)
                self._emit(event)
            elif isinstance(event, SpeechEnd):
                self._emit(event)
            elif isinstance(event, Utterance):
                take = self._take or _Take(commit_sample=round(event.start_ms * SAMPLE_RATE_HZ / 1000))
                take.ended = True
                self._take = None
                length_s = event.end_of_speech_ms / 1000 - event.start_ms / 1000
                if kind == "silence" and length_s >= self.settings.vad.max_utterance_s - 0.05:
                    kind = "max"
                self._spawn(self._finalize(take, event, kind, self.endpointer.stream_ms))

    # -- transcribing ahead --------------------------------------------------------------------

    def _job(self, take: _Take, from_sample: int, to_sample: int, last_voiced: int, what: str) -> _Job:
        pcm = self.endpointer.audio(from_sample, to_sample)
        utterance = Utterance(
            pcm=pcm.copy(),
            start_ms=from_sample * 1000 / SAMPLE_RATE_HZ,
            language=take.language,
            draft=what == "partial",
        )
        task = self._spawn(self._transcribe(utterance, take, what), lambda _t: self._tick())
        return _Job(task, from_sample, to_sample, last_voiced)

    async def _transcribe(self, utterance: Utterance, take: _Take, what: str) -> Transcript:
        # One transcription at a time per stream: a partial still waiting here is cancelled when a
        # pause makes the speculative transcription more urgent (see _tick).
        async with self._busy:
            self._holder = asyncio.current_task()
            t0 = time.perf_counter()
            try:
                if self._context and take.committed:
                    method: Any = self.transcriber.transcribe
                    previous = join_texts(take.committed)
                    result: Transcript = await method(utterance, previous_text=previous)
                    committed_s = (take.commit_sample - take.start_sample) / SAMPLE_RATE_HZ
                    if utterance.duration_s < _ECHO_MAX_SHARE * committed_s and echoes_prompt(previous, result.text):
                        # Whisper wrote its prompt out again over a tail of noise: nothing new was said.
                        log.debug("%s repeats the committed text %r: dropped", what, result.text)
                        result = Transcript("", result.language)
                else:
                    result = await self.transcriber.transcribe(utterance)
            finally:
                self._holder = None
                self._job_samples = int((time.perf_counter() - t0) * SAMPLE_RATE_HZ)
            log.debug(
                "%s of %.2f s at %.0f ms took %.0f ms: %r",
                what,
                utterance.duration_s,
                self.endpointer.stream_ms,
                (time.perf_counter() - t0) * 1000,
                result.text,
            )
            return result

    def _tick(self) -> None:
        """Decide what to transcribe ahead, what to commit, and whether to end the turn early."""
        take = self._take
        state = self.endpointer.state()
        if not self.partials or take is None or state is None or not state.started or take.ended:
            return
        s = self.settings
        spec = take.spec
        # Voice came back after a speculative transcription: if the pause was a real one (not a dip
        # inside a word), commit it; the next transcription starts after it.
        if spec is not None and state.last_voiced_sample > spec.last_voiced and spec.task.done():
            result = spec.result()
            if (
                result is not None
                and result.text
                and state.last_gap_samples >= _COMMIT_GAP_MS * SAMPLE_RATE_HZ // 1000
                and (spec.to_sample - spec.from_sample) >= _MIN_COMMIT_S * SAMPLE_RATE_HZ
            ):
                take.committed.append(result.text)
                take.commit_sample = spec.to_sample
                take.language = take.language or result.language
            _drop_ahead(spec)  # that transcript was not the whole question
            take.spec = spec = None
        # A chunk cut at a dip between words is done: commit it.
        chunk = take.chunk
        if chunk is not None and chunk.task.done():
            result = chunk.result()
            if result is not None and result.text and chunk.from_sample == take.commit_sample:
                # Cut mid-sentence: Whisper's full stop at the cut is not the speaker's.
                take.committed.append(result.text.rstrip(".。"))
                take.commit_sample = chunk.to_sample
                take.language = take.language or result.language
            take.chunk = chunk = None
        # A pause: transcribe what is pending now; it may be the whole rest of the question.
        if spec is None and state.silence_ms >= s.vad.pause_ms and state.last_voiced_sample > take.commit_sample:
            # Jobs still waiting for the model are dropped: the pause matters more.
            if take.partial is not None and take.partial.task is not self._holder and not take.partial.task.done():
                take.partial.task.cancel()
                take.partial = None
            if take.chunk is not None and take.chunk.task is not self._holder and not take.chunk.task.done():
                take.chunk.task.cancel()
                take.chunk = chunk = None
            if take.chunk is None:  # a chunk already running moves commit_sample first
                take.spec = spec = self._job(
                    take, take.commit_sample, state.now_sample, state.last_voiced_sample, "ahead"
                )
        # Long speech without a pause: cut at the quietest dip between words, so that at the end
        # only the audio after it is left to transcribe.
        if (
            chunk is None
            and spec is None
            and state.silence_ms == 0
            and state.now_sample - take.commit_sample >= self.chunk_after_s * SAMPLE_RATE_HZ
        ):
            dip = self.endpointer.quietest_window(
                take.commit_sample + int(_MIN_COMMIT_S * SAMPLE_RATE_HZ), state.now_sample - SAMPLE_RATE_HZ // 2
            )
            if dip is not None and dip[1] < _CHUNK_DIP:
                take.chunk = self._job(take, take.commit_sample, dip[0], dip[0], "chunk")
        # The transcript of everything voiced so far is done: let the ahead hook prepare the answer.
        if spec is not None and self.ahead is not None and spec.ahead is None and spec.task.done():
            result = spec.result()
            if result is not None and result.text and spec.last_voiced == state.last_voiced_sample:
                so_far = Transcript(join_texts([*take.committed, result.text]), take.language or result.language)
                _cancel(take.partial_ahead)  # this transcript supersedes the partial's
                take.partial_ahead = None
                spec.ahead = self._spawn(self._run_ahead(spec, so_far))
        # Early end of turn: the transcript of everything voiced so far is done and ends a sentence,
        # or asks a question the ahead hook can answer completely.
        if (
            spec is not None
            and s.vad.early_silence_ms > 0
            and spec.last_voiced == state.last_voiced_sample
            and state.silence_ms >= s.vad.early_silence_ms
        ):
            result = spec.result()
            if result is not None and (ends_sentence(result.text) or spec.answerable):
                self._handle(self.endpointer.end_now(), "early")
                return
        # Partials while the visitor talks.
        partial = take.partial
        if partial is not None and partial.task.done():
            result = partial.result()
            if result is not None and partial.from_sample == take.commit_sample and result.text:
                so_far = Transcript(join_texts([*take.committed, result.text]), take.language or result.language)
                self._emit(
                    TranscriptEvent(
                        t_ms=self.endpointer.stream_ms, text=so_far.text, language=so_far.language, final=False
                    )
                )
                if self.ahead is not None and take.spec is None:
                    _cancel(take.partial_ahead)
                    take.partial_ahead = self._spawn(self._run_ahead(None, so_far))
            take.partial = partial = None
        if (
            partial is None
            and spec is None
            and take.chunk is None
            and state.silence_ms == 0
            and state.now_sample - take.last_partial_sample >= max(self._interval_samples, self._job_samples * 3)
            and state.now_sample - take.commit_sample >= _MIN_PARTIAL_S * SAMPLE_RATE_HZ
        ):
            take.last_partial_sample = state.now_sample
            take.partial = self._job(take, take.commit_sample, state.now_sample, state.last_voiced_sample, "partial")

    async def _run_ahead(self, job: _Job | None, transcript: Transcript) -> None:
        """Run the ahead hook on ``job``'s transcript (a pause's), or on a partial one (``job`` None)."""
        assert self.ahead is not None

        def answerable() -> None:
            assert job is not None
            job.answerable = True
            self._tick()  # the silence may already be long enough to end the turn

        try:
            await self.ahead(transcript, answerable if job is not None else None)
        except asyncio.CancelledError:
            raise
        except Exception:  # speculative work: its failure must never stop hearing
            log.exception("preparing the answer ahead failed")

    # -- the final transcript ------------------------------------------------------------------

    async def _finalize(self, take: _Take, utterance: Utterance, kind: EndpointKind, decided_ms: float) -> None:
        eos_sample = round(utterance.end_of_speech_ms * SAMPLE_RATE_HZ / 1000)
        start_sample = round(utterance.start_ms * SAMPLE_RATE_HZ / 1000)
        try:
            if not self.partials:
                async with self._busy:
                    transcript = await self.transcriber.transcribe(utterance)
                chunks = 1
            else:
                chunk = take.chunk
                if chunk is not None and chunk.from_sample == take.commit_sample:
                    try:
                        done = await asyncio.shield(chunk.task)
                    except (AssistantError, asyncio.CancelledError):
                        done = None
                    if done is not None and done.text:
                        take.committed.append(done.text.rstrip(".。"))
                        take.commit_sample = chunk.to_sample
                        take.language = take.language or done.language
                spec = take.spec
                if spec is not None and spec.from_sample != take.commit_sample:
                    spec = None  # it started before a commit: it would repeat committed words
                result: Transcript | None = None
                if spec is not None and spec.last_voiced >= eos_sample:
                    # The speculative transcription already covers every voiced sample.
                    try:
                        result = await asyncio.shield(spec.task)
                    except AssistantError as err:
                        log.debug("speculative transcription failed (%s); transcribing the tail again", err)
                if result is None:
                    # Voice came back after the last transcription ahead (or there was none): the
                    # tail since the last commit is transcribed now.
                    tail = utterance.pcm[max(0, take.commit_sample - start_sample) :]
                    tail_utterance = Utterance(
                        pcm=tail,
                        start_ms=take.commit_sample * 1000 / SAMPLE_RATE_HZ,
                        end_of_speech_ms=utterance.end_of_speech_ms,
                        language=take.language,
                    )
                    result = await self._transcribe(tail_utterance, take, "tail")
                text = join_texts([*take.committed, result.text])
                transcript = Transcript(text, take.language or result.language)
                chunks = len(take.committed) + 1
        except AssistantError as err:
            self._emit(ErrorEvent(t_ms=self.endpointer.stream_ms, code=err.code, message=err.message))
            return
        final = Transcript(transcript.text, transcript.language, final=True)
        self._emit(TranscriptEvent(t_ms=self.endpointer.stream_ms, text=final.text, language=final.language))
        self._emit(Heard(utterance, final, kind, decided_ms, chunks))


def _drop_ahead(job: _Job | None) -> None:
    if job is not None:
        _cancel(job.ahead)


def _cancel(task: asyncio.Task[Any] | None) -> None:
    if task is not None and not task.done():
        task.cancel()


async def transcribe_stream(
    transcriber: Transcriber, settings: Settings, frames: AsyncIterable[np.ndarray]
) -> list[Heard]:
    """Every utterance heard in a finite stream (a file), in order. A convenience for commands."""
    heard: list[Heard] = []
    async for item in Listener(transcriber, settings).listen(frames):
        if isinstance(item, Heard):
            heard.append(item)
    return heard


__all__ = ["Ahead", "Event", "Heard", "ListenItem", "Listener", "ends_sentence", "transcribe_stream"]
