"""The listener: frames in, hearing out, for one audio stream (one session's microphone).

A thin runner around the endpointer (``assistant.audio.vad``) and the pure policy
(``assistant.listening.policy``): it feeds frames, asks the policy what to do, and owns the tasks
that do it (transcriptions, the work ahead). Why it transcribes ahead at all: Whisper needs ~0.2-1.5 s
here for a 3-6 s question, and a fixed end-of-turn silence comes on top, so transcribing after the
endpoint would leave the visitor waiting; see the policy for what is transcribed when.

With ``[asr] partials = false`` none of that happens: the whole utterance is transcribed after the
endpointer's ``silence_ms`` (the baseline ``bench/asr.py`` compares against), and no turn model is
asked (the end-of-turn rule weighs it together with the transcript at the pause).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from assistant.audio.vad import Endpoint, Endpointer, VoiceDetector, VoiceEnd, VoiceStart
from assistant.config import Settings
from assistant.errors import AssistantError
from assistant.listening import policy
from assistant.listening.ending import limit_ms
from assistant.listening.policy import Hearing, Job, Judgement
from assistant.stages import SAMPLE_RATE_HZ, Transcriber, Transcript, TurnDetector, Utterance
from assistant.transcripts import join_texts, repeats_prompt

log = logging.getLogger(__name__)

EndpointKind = Literal["silence", "early", "max", "flush"]
REPEAT_MAX_SHARE = 0.6
"""A transcription that reads like the committed text is Whisper writing its prompt out again only
when its audio is this much shorter than the committed part's: too short to have said it all again.
A visitor who does say it again ("年假多少天…产假多少天？") takes about as long the second time."""


@dataclass(frozen=True)
class Partial:
    """A partial transcript of the utterance so far (``stream_ms``: when it was ready)."""

    transcript: Transcript
    stream_ms: float


@dataclass(frozen=True)
class Heard:
    """One finished utterance with its final transcript: what starts a turn.

    ``endpoint``: what ended it (``silence``: the longest silence the rule waits, [vad] silence_ms,
    or [turn] wait_ms with a turn model; ``early``: the evidence at the pause said finished, see
    ``assistant.listening.ending``; ``max``: max_utterance_s; ``flush``: the stream ended).
    ``decided_stream_ms``: stream time of the endpoint decision; ``ready_stream_ms``: of the final
    transcript. ``pieces``: transcriptions joined.
    """

    utterance: Utterance
    transcript: Transcript
    endpoint: EndpointKind
    decided_stream_ms: float
    pieces: int
    ready_stream_ms: float = 0.0


@dataclass(frozen=True)
class NotHeard:
    """The final transcription of an utterance failed (``code``, ``message`` from the error); no
    ``Heard`` follows for it. Failed partials are only logged."""

    code: str
    message: str
    stream_ms: float


ListenItem = VoiceStart | Partial | VoiceEnd | Heard | NotHeard

PrepareHook = Callable[[Transcript, Callable[[], None] | None], Awaitable[None]]
"""``prepare(transcript, answerable)``: the work ahead (``assistant.ahead``), called with the whole
transcript so far each time one is ready while the visitor may still be talking.

- At a pause (the transcript covers every voiced sample), ``answerable`` is a function: the work
  calls it when the question as transcribed is one it can answer completely (an FAQ entry), and the
  turn then ends after ``[vad] early_silence_ms`` like a finished sentence does. The task is
  cancelled when the visitor speaks again before the turn ended.
- On a partial transcript (the visitor is talking), ``answerable`` is None. The task is cancelled
  when a newer partial or a pause's transcript replaces it.
"""

Clock = Callable[[], float]
"""Seconds, monotonic (default: the event loop's clock)."""


def make_endpointer(settings: Settings, *, judged: bool, detector: VoiceDetector | None = None) -> Endpointer:
    """The endpointer for a listener. ``judged``: a turn model is used (``Listener.judged``); the
    endpointer's own silence limit then moves out to the longest the end-of-turn rule may wait, and
    the rule ends the turn sooner when the evidence says so."""
    vad = dataclasses.replace(settings.vad, silence_ms=limit_ms(settings, judged=judged))
    return Endpointer(vad, detector=detector)


class Listener:
    """``async for item in listener.listen(frames)``, ``frames`` any async iterable of mono int16
    16 kHz frames (an ``assistant.audio`` source). Items, in the order they happen:

      VoiceStart   voice began
      Partial      a partial transcript of the utterance so far (with ``[asr] partials``)
      VoiceEnd     the endpoint was decided
      Heard        the final transcript and the utterance
      NotHeard     the final transcription failed

    Times are stream times (ms since the first frame). The final items of one utterance may come
    after the next utterance's VoiceStart when the visitor speaks again at once. Stopping the
    iteration (``aclose()`` or cancelling the consuming task) stops everything it started.

    ``pause()`` / ``resume()``: half-duplex gating while the assistant speaks; an utterance in
    progress is dropped (``pause()`` returns True then) and nothing more comes of it.

    The transcriber and the turn detector may be shared with other listeners; each transcription's
    ``Utterance`` carries the committed text as ``previous_text``.
    """

    def __init__(
        self,
        transcriber: Transcriber,
        settings: Settings,
        *,
        endpointer: Endpointer | None = None,
        prepare: PrepareHook | None = None,
        clock: Clock | None = None,
        turn_detector: TurnDetector | None = None,
    ) -> None:
        """``prepare``: see ``PrepareHook`` (only with ``[asr] partials``). ``clock``: measures how long
        transcriptions take (default: the event loop's). ``turn_detector``: the ``[turn] model``
        (with ``[asr] partials``); a given ``endpointer`` should come from ``make_endpointer`` with
        ``judged`` as this listener's."""
        self.transcriber = transcriber
        self.prepare = prepare
        self.settings = settings
        self.partials = settings.asr.partials
        self.turn_detector = turn_detector if self.partials else None
        self.endpointer = endpointer if endpointer is not None else make_endpointer(settings, judged=self.judged)
        self._clock = clock
        self._hearing: Hearing | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._jobs: dict[Job, asyncio.Task[Transcript]] = {}
        self._prepared: dict[Job | None, asyncio.Task[None]] = {}
        """The work ahead running per job (None: on the latest partial)."""
        self._out: asyncio.Queue[Any] = asyncio.Queue()
        self._busy = asyncio.Lock()
        self._holder: Job | None = None
        self._busy_samples = 0
        self._judge_failed = False

    @property
    def judged(self) -> bool:
        """Pauses are judged by a turn model (one is given, and ``[asr] partials`` is on)."""
        return self.turn_detector is not None

    # -- control -------------------------------------------------------------------------------

    def pause(self) -> bool:
        if self._hearing is not None:
            self._act(self._hearing.stop())
        self._hearing = None
        return self.endpointer.pause()

    def resume(self) -> None:
        self.endpointer.resume()

    # -- the stream ----------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def listen(self, frames: AsyncIterable[np.ndarray]) -> AsyncIterator[ListenItem]:
        end = object()
        self._out = asyncio.Queue()

        async def pump() -> None:
            try:
                async for frame in frames:
                    self._endpoints(self.endpointer.feed(frame), "silence")
                    self._step()
                self._endpoints(self.endpointer.flush(), "flush")
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

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _endpoints(self, events: list[Endpoint], kind: EndpointKind) -> None:
        for event in events:
            if isinstance(event, VoiceStart):
                state = self.endpointer.state()
                start = state.start_sample if state else 0
                self._hearing = Hearing(
                    self.settings, commit_sample=start, language=self.settings.asr.language, judged=self.judged
                )
                self._out.put_nowait(event)
            elif isinstance(event, VoiceEnd):
                self._out.put_nowait(event)
            else:
                hearing = self._hearing or Hearing(
                    self.settings, commit_sample=round(event.start_ms * SAMPLE_RATE_HZ / 1000)
                )
                hearing.ended = True
                self._hearing = None
                length_s = event.end_of_speech_ms / 1000 - event.start_ms / 1000
                if kind == "silence" and length_s >= self.settings.vad.max_utterance_s - 0.05:
                    kind = "max"
                self._spawn(self._finalize(hearing, event, kind, self.endpointer.stream_ms))

    # -- carrying out the policy ----------------------------------------------------------------

    def _step(self) -> None:
        hearing = self._hearing
        state = self.endpointer.state()
        if not self.partials or hearing is None or state is None:
            return
        hearing.busy_samples = self._busy_samples
        self._act(hearing.step(state, holder=self._holder, quietest=self.endpointer.quietest_window))

    def _act(self, actions: list[policy.Action]) -> None:
        hearing = self._hearing
        for action in actions:
            if isinstance(action, policy.Transcribe) and hearing is not None:
                self._start(hearing, action.job)
            elif isinstance(action, policy.Drop):
                job_task = self._jobs.get(action.job)
                if job_task is not None and action.job is not self._holder:
                    job_task.cancel()
            elif isinstance(action, policy.StopPreparing):
                prepared = self._prepared.pop(action.job, None)
                if prepared is not None:
                    prepared.cancel()
            elif isinstance(action, policy.Prepare) and self.prepare is not None:
                self._prepared[action.job] = self._spawn(self._prepare(action.job, action.transcript))
            elif isinstance(action, policy.ShowPartial):
                self._out.put_nowait(Partial(action.transcript, self.endpointer.stream_ms))
            elif isinstance(action, policy.Judge):
                self._spawn(self._judge(action.judgement))
            elif isinstance(action, policy.EndTurn):
                self._endpoints(self.endpointer.end_now(), action.endpoint)

    def _start(self, hearing: Hearing, job: Job) -> None:
        pcm = self.endpointer.audio(job.from_sample, job.to_sample)
        utterance = Utterance(
            pcm=pcm.copy(),
            start_ms=job.from_sample * 1000 / SAMPLE_RATE_HZ,
            language=hearing.language,
            draft=job.kind == "partial",
        )

        def finished(task: asyncio.Task[Transcript]) -> None:
            self._jobs.pop(job, None)
            if task.cancelled() or task.exception() is not None:
                job.failed = True
            else:
                job.result = task.result()
            self._step()

        task = self._spawn(self._transcribe(utterance, hearing, job.kind))
        self._jobs[job] = task
        task.add_done_callback(finished)

    async def _transcribe(self, utterance: Utterance, hearing: Hearing, what: str) -> Transcript:
        # One transcription at a time per stream: a partial still waiting here is dropped when a
        # pause makes the transcription ahead more urgent (policy.Drop).
        async with self._busy:
            self._holder = next((j for j, t in self._jobs.items() if t is asyncio.current_task()), None)
            t0 = self._now()
            previous = hearing.previous_text
            try:
                result = await self.transcriber.transcribe(dataclasses.replace(utterance, previous_text=previous))
                if (
                    previous
                    and utterance.duration_s < REPEAT_MAX_SHARE * hearing.committed_s
                    and repeats_prompt(previous, result.text)
                ):
                    # Whisper wrote its prompt out again over a tail of noise: nothing new was said.
                    log.debug("%s repeats the committed text %r: dropped", what, result.text)
                    result = Transcript("", result.language)
            finally:
                self._holder = None
                self._busy_samples = int((self._now() - t0) * SAMPLE_RATE_HZ)
            log.debug(
                "%s of %.2f s at %.0f ms took %.0f ms: %r",
                what,
                utterance.duration_s,
                self.endpointer.stream_ms,
                self._busy_samples * 1000 / SAMPLE_RATE_HZ,
                result.text,
            )
            return result

    async def _judge(self, judgement: Judgement) -> None:
        """Ask the turn model about a pause (in its own thread: ~60-180 ms of CPU), then decide again."""
        assert self.turn_detector is not None
        pcm = self.endpointer.audio(judgement.from_sample, judgement.to_sample).copy()
        t0 = self._now()
        try:
            judgement.probability = await self.turn_detector.judge(pcm)
        except AssistantError as err:
            judgement.failed = True
            if not self._judge_failed:  # once per stream: the silence rule takes over each time
                log.warning("the turn model failed (%s); this pause ends on silence alone", err.message)
                self._judge_failed = True
        log.debug(
            "turn model at %.0f ms of silence: p=%s (%.0f ms)",
            (judgement.to_sample - judgement.last_voiced) * 1000 / SAMPLE_RATE_HZ,
            judgement.probability,
            (self._now() - t0) * 1000,
        )
        self._step()

    async def _prepare(self, job: Job | None, transcript: Transcript) -> None:
        """Run the work ahead on ``job``'s transcript (a pause's), or on a partial one (``job`` None)."""
        assert self.prepare is not None

        def answerable() -> None:
            assert job is not None
            job.answerable = True
            self._step()  # the silence may already be long enough to end the turn

        try:
            await self.prepare(transcript, answerable if job is not None else None)
        except asyncio.CancelledError:
            raise
        except Exception:  # speculative work: its failure must never stop hearing
            log.exception("preparing the answer ahead failed")
        finally:
            if self._prepared.get(job) is asyncio.current_task():
                del self._prepared[job]

    # -- the final transcript ------------------------------------------------------------------

    async def _finalize(self, hearing: Hearing, utterance: Utterance, kind: EndpointKind, decided_stream_ms: float) -> None:
        eos_sample = round(utterance.end_of_speech_ms * SAMPLE_RATE_HZ / 1000)
        start_sample = round(utterance.start_ms * SAMPLE_RATE_HZ / 1000)
        try:
            if not self.partials:
                async with self._busy:
                    transcript = await self.transcriber.transcribe(utterance)
                pieces = 1
            else:
                piece = hearing.piece
                if piece is not None and piece.from_sample == hearing.commit_sample:
                    task = self._jobs.get(piece)
                    if task is not None:
                        await asyncio.wait({task})
                    hearing.commit_piece(piece)
                result: Transcript | None = None
                spec = hearing.final_job(eos_sample)
                if spec is not None:
                    # The transcription ahead already covers every voiced sample.
                    task = self._jobs.get(spec)
                    if task is not None:
                        await asyncio.wait({task})
                    result = spec.result
                    if result is None:
                        log.debug("the transcription ahead failed; transcribing the tail again")
                if result is None:
                    # Voice came back after the last transcription ahead (or there was none): the
                    # tail since the last commit is transcribed now.
                    tail = Utterance(
                        pcm=utterance.pcm[max(0, hearing.commit_sample - start_sample) :],
                        start_ms=hearing.commit_sample * 1000 / SAMPLE_RATE_HZ,
                        end_of_speech_ms=utterance.end_of_speech_ms,
                        language=hearing.language,
                    )
                    result = await self._transcribe(tail, hearing, "tail")
                transcript = Transcript(join_texts([*hearing.committed, result.text]), hearing.language or result.language)
                pieces = len(hearing.committed) + 1
        except AssistantError as err:
            self._out.put_nowait(NotHeard(err.code, err.message, self.endpointer.stream_ms))
            return
        final = Transcript(transcript.text, transcript.language, final=True)
        self._out.put_nowait(Heard(utterance, final, kind, decided_stream_ms, pieces, self.endpointer.stream_ms))


async def transcribe_stream(
    transcriber: Transcriber, settings: Settings, frames: AsyncIterable[np.ndarray]
) -> list[Heard]:
    """Every utterance heard in a finite stream (a file), in order. A convenience for commands."""
    heard: list[Heard] = []
    async for item in Listener(transcriber, settings).listen(frames):
        if isinstance(item, Heard):
            heard.append(item)
    return heard
