"""One conversation: its history, its turns, barge-in, and hearing its microphone.

A session has its own history, turn counter and clock, and at most one turn at a time. The daemon
(``assistant.daemon``) keeps one kiosk session (the local microphone and speaker, when the machine
has them), which watcher clients follow, and one session per browser client that asks questions.

The turn loop: idle -> listening (speech started) -> transcribing -> thinking -> speaking -> idle.
A turn is one task running ``Turn.run``; barge-in (speech while speaking, a new question, or an
``interrupt`` message) cancels that task, and the history keeps only the part of the reply the
listener heard, from the playback position the client reports (or the local speaker's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from assistant import events as ev
from assistant.ahead import Preparer
from assistant.audio.sources import PushSource
from assistant.audio.vad import VoiceEnd, VoiceStart
from assistant.config import Settings
from assistant.echo import EchoGuard
from assistant.listening import Heard, Listener, ListenItem, NotHeard, Partial
from assistant.metrics import DaemonMetrics
from assistant.routing import Plan
from assistant.stages import (
    SAMPLE_RATE_HZ,
    AudioChunk,
    Engines,
    Message,
    QueueReason,
    QueueRecorder,
    Transcript,
    TurnCounter,
    Utterance,
)
from assistant.turn import Turn, TurnResult
from assistant.unanswered import finished_reason, interrupted_early, queue_record, unanswered

log = logging.getLogger(__name__)

BARGE_IN_WAIT_S = 0.2
"""How long an interrupt waits for the cancelled turn to finish before moving on (the 200 ms promise)."""
HISTORY_MESSAGES = 40
PLAYED_TURNS = 4
"""Playback positions are kept for this many recent turns."""

SessionKind = Literal["kiosk", "visitor"]
Question = str | Utterance | Transcript


class Subscriber(Protocol):
    """A client following a session (``assistant.server.app.Client``): ``send`` never waits."""

    def send(self, frame: str | bytes) -> bool: ...


class LocalAudio(Protocol):
    """The kiosk's microphone and speaker, as a session uses them (``assistant.audio.soundcard``)."""

    def frames(self) -> AsyncIterator[np.ndarray]:
        """An async iterator of int16 16 kHz microphone frames."""
        ...

    def play(self, chunk: AudioChunk) -> None:
        """Queue reply audio; returns at once."""

    def end(self) -> None:
        """No more audio for now: play out what is queued."""

    def stop(self) -> None:
        """Stop playback now (barge-in) and drop what is queued."""

    @property
    def playing(self) -> bool: ...

    @property
    def played_ms(self) -> float:
        """Milliseconds of the current reply heard so far (reset by ``new_reply``)."""
        ...

    def new_reply(self) -> None: ...

    async def aclose(self) -> None: ...


class Host(Protocol):
    """What a session needs from the daemon that owns it."""

    settings: Settings
    metrics: DaemonMetrics
    recorder: QueueRecorder | None
    """Where turns that need an owner's eye go (the unanswered queue); None: nowhere."""

    def observe(self, session: Session, event: ev.Event) -> None:
        """Every event the session emits (metrics)."""

    def orphan(self, task: asyncio.Task[TurnResult | None]) -> None:
        """Keep a turn that outlived its barge-in budget until it ends."""

    def make_listener(self, session: Session) -> Listener | None:
        """The session's ears, or None (no transcriber, no endpointer)."""


@dataclass
class Session:
    id: str
    kind: SessionKind
    host: Host
    engines: Engines
    clock: Callable[[], float] = field(default_factory=lambda: asyncio.get_running_loop().time)
    """Seconds, monotonic: the session clock of every event's ``t_ms``, and the echo tail's (default:
    the event loop's clock, which a test loop may run on virtual time)."""
    history: list[Message] = field(default_factory=list)
    clients: set[Subscriber] = field(default_factory=set)
    mode: str = "hands-free"
    state: ev.State = "idle"
    turn: Turn | None = None
    task: asyncio.Task[TurnResult | None] | None = None
    played_ms: dict[int, float] = field(default_factory=dict)
    """Playback position per recent turn (at most ``PLAYED_TURNS``), reported by the clients."""
    results: deque[TurnResult] = field(default_factory=lambda: deque(maxlen=8))
    last_number: int = 0
    local: LocalAudio | None = None
    echo: EchoGuard | None = None
    """With local audio: half-duplex gating and the echo filter."""
    half_duplex: bool = True
    """Gate the microphone while the local speaker plays (kiosk only; off only to measure the echo)."""
    listener: Listener | None = None
    preparer: Preparer | None = None

    def __post_init__(self) -> None:
        self._started = self.clock()
        self._switch = asyncio.Lock()
        self._mic: PushSource | None = None
        self._listening: asyncio.Task[None] | None = None
        self._talk: list[np.ndarray] | None = None
        """Push-to-talk: the frames since the button went down (None: not pressed)."""
        self._talk_samples = 0
        self._fed_ms = 0.0
        """Microphone audio fed so far."""
        self._mic_origin_ms = 0.0
        """``_fed_ms`` when the listener's stream began."""
        self._key = uuid.uuid4().hex[:12]
        """Makes this session's turns unique in the unanswered queue, across sessions and restarts."""
        self._queued: deque[tuple[int, QueueReason]] = deque(maxlen=64)
        self._recorder_failed = False

    # -- clock and events --------------------------------------------------------------------

    def clock_ms(self) -> float:
        return (self.clock() - self._started) * 1000.0

    def emit(self, event: ev.Event) -> None:
        """Send to every client of the session (and the local speaker), never waiting."""
        if not event.t_ms:
            event.t_ms = self.clock_ms()
        if isinstance(event, ev.StateEvent):
            self.state = event.state
        elif isinstance(event, ev.Sentence) and self.echo is not None:
            # known before it is heard: the microphone may pick it up while the turn still runs
            self.echo.said(event.text)
        self.host.observe(self, event)
        if self.local is not None:
            if isinstance(event, ev.Audio):
                self.local.play(event.chunk)
            elif isinstance(event, ev.AudioEnd):
                self.local.end()
        frame = ev.to_wire(event)
        for client in list(self.clients):
            client.send(frame)

    def playback(self, turn: int, played_ms: float) -> None:
        """A client's ``playback`` report. Only the current turn's counts (a position is wanted on
        barge-in, which cuts the current turn), so any stream of reports keeps one number per turn."""
        # a kiosk with a speaker knows its own position; without one, its watchers play the reply
        if self.local is None and turn == self.last_number and turn > 0:
            self.played_ms[turn] = played_ms

    def _played(self, number: int) -> float | None:
        if self.local is not None:
            return self.local.played_ms
        return self.played_ms.get(number)

    # -- turns -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    async def ask(
        self,
        question: Question,
        *,
        speech_end_clock_ms: float | None = None,
        endpoint_ms: float | None = None,
        transcript_ms: float | None = None,
        plan: Plan | None = None,
    ) -> None:
        """Start a turn for ``question``, interrupting the running one first (a new question is barge-in).
        ``plan``: the answer planned ahead (the turn uses it only if it fits the question)."""
        async with self._switch:
            await self._interrupt()
            self.last_number += 1
            number = self.last_number
            self.played_ms = {n: ms for n, ms in self.played_ms.items() if n > number - PLAYED_TURNS}
            turn = Turn(
                number,
                engines=self.engines,
                settings=self.host.settings,
                history=self.history,
                emit=self.emit,
                clock_ms=self.clock_ms,
                # the turn only knows what was sent; the listener's playback position says what was heard
                played_ms=lambda: self._played(number),
            )
            # the listener decided the endpoint and transcribed before the turn existed: the
            # trace still reports both (ms after the end of speech, like every other stage)
            marks = {"endpoint": endpoint_ms, "transcript": transcript_ms}
            if self.local is not None:
                self.local.new_reply()
            self.turn = turn
            self.task = asyncio.create_task(
                self._run(turn, question, speech_end_clock_ms, marks, plan), name=f"turn-{self.id}-{number}"
            )

    async def _run(
        self,
        turn: Turn,
        question: Question,
        speech_end_clock_ms: float | None,
        marks: dict[str, float | None],
        plan: Plan | None,
    ) -> TurnResult | None:
        metrics = self.host.metrics
        try:
            result = await turn.run(question, speech_end_clock_ms=speech_end_clock_ms, marks=marks, plan=plan)
        except asyncio.CancelledError:
            played_ms = self._played(turn.number)
            heard = turn.heard_text(played_ms)
            self._remember(turn.result, heard)
            metrics.turns.inc(outcome="interrupted")
            self._count_turn()
            started_ms = turn.result.reply_started_ms
            if played_ms is None and started_ms is not None:
                played_ms = self.clock_ms() - started_ms  # no playback reports: the time since the reply began
            if interrupted_early(turn.result, played_ms, self.host.settings):
                self._queue(turn.result, "interrupted")
            raise
        self.results.append(result)
        self._count_turn()
        if result.error is None:
            self._remember(result, result.reply)
            metrics.turns.inc(outcome="answered")
            if unanswered(result):
                metrics.unanswered.inc(route=result.route or "", language=result.language)
        else:
            metrics.turns.inc(outcome="error")
        reason = finished_reason(result, self.host.settings)
        if reason is not None:
            self._queue(result, reason)
        return result

    def _count_turn(self) -> None:
        """Tell a recorder that counts turns (``TurnCounter``) that one finished: the denominator of
        the owner's page's unanswered rate. Never waits, never raises."""
        recorder = self.host.recorder
        if not isinstance(recorder, TurnCounter) or not self.host.settings.queue.record:
            return
        try:
            recorder.count_turn(time.time())
        except Exception:
            if not self._recorder_failed:
                self._recorder_failed = True
                log.exception("session %s: counting a turn for the unanswered queue failed (said once)", self.id)

    def _queue(self, result: TurnResult, reason: QueueReason) -> None:
        """Count the turn and hand it to the recorder, once per reason; never waits, never raises."""
        if (result.turn, reason) in self._queued:
            return
        self._queued.append((result.turn, reason))
        self.host.metrics.queued.inc(reason=reason)
        recorder = self.host.recorder
        if recorder is None or not self.host.settings.queue.record:
            return
        entry = queue_record(result, reason, time_s=time.time(), turn_id=f"{self._key}/{result.turn}")
        try:
            recorder.record(entry)
        except Exception:  # a recorder must not raise; if one does, the visitor's turn is not its victim
            if not self._recorder_failed:
                self._recorder_failed = True
                log.exception("session %s: recording a turn for the unanswered queue failed (said once)", self.id)

    def not_helpful(self, turn: int) -> bool:
        """The visitor marked ``turn``'s reply "not helpful": queue it. False when the session no
        longer remembers that turn (or it never finished)."""
        result = next((r for r in self.results if r.turn == turn), None)
        if result is None or result.error is not None:
            return False
        self._queue(result, "not-helpful")
        return True

    def _remember(self, result: TurnResult, heard: str) -> None:
        if result.question and heard:
            self.history.extend([Message("user", result.question), Message("assistant", heard)])
            del self.history[:-HISTORY_MESSAGES]
        if self.echo is not None:
            self.echo.said(heard)
            # the whole written answer too: the tail may still echo from the room after a cut
            self.echo.said(result.reply)

    async def interrupt(self, played_ms: float | None = None, turn: int | None = None) -> None:
        current = self.turn
        if current is not None and turn is not None and turn != current.number:
            # a late interrupt for an earlier turn (hands-free: the visitor spoke over its end)
            # must not cut the reply that is playing now
            return
        if played_ms is not None and current is not None:
            self.played_ms[current.number] = played_ms
        async with self._switch:
            finished = self.task is None or self.task.done()
            await self._interrupt()
            if finished and played_ms is not None and current is not None and self.results:
                self._trim_heard(current, played_ms)
                # all its audio had been sent, but the visitor cut it soon after it began
                if current.result.error is None and interrupted_early(current.result, played_ms, self.host.settings):
                    self._queue(current.result, "interrupted")

    def _trim_heard(self, turn: Turn, played_ms: float) -> None:
        """The turn had sent all its audio but the listener cut playback: keep only what was heard."""
        heard = turn.heard_text(played_ms)
        if not (self.history and self.history[-1].role == "assistant"):
            return
        if self.history[-1].content == turn.result.reply and heard != turn.result.reply:
            if heard:
                self.history[-1] = Message("assistant", heard)
            else:
                del self.history[-2:]

    async def _interrupt(self) -> None:
        if self.local is not None:
            self.local.stop()
        task = self.task
        if task is None or task.done():
            return
        task.cancel()
        # The turn's awaits are cancellation points (engines run off the loop), so it ends quickly;
        # never let a stubborn engine hold the session hostage beyond the barge-in budget.
        done, _ = await asyncio.wait({task}, timeout=BARGE_IN_WAIT_S)
        if not done:
            log.warning("session %s: turn did not stop within %d ms", self.id, BARGE_IN_WAIT_S * 1000)
            self.host.orphan(task)

    async def close(self) -> None:
        if self._mic is not None:
            self._mic.close()
        for task in (self.task, self._listening):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout=1.0)

    # -- hearing -----------------------------------------------------------------------------

    def gated(self) -> bool:
        """Half-duplex: is the local speaker (or its echo tail) sounding right now? The echo guard
        learns when the speaker sounds from this (every microphone frame), gating on or off."""
        if self.local is None or self.echo is None:
            return False
        sounding = self.echo.gated(self.local.playing or self.state == "speaking")
        return sounding and self.half_duplex

    async def hear(self, pcm: np.ndarray) -> None:
        """Microphone audio for this session (browser frames or the local microphone)."""
        frame_ms = len(pcm) * 1000.0 / SAMPLE_RATE_HZ
        self._fed_ms += frame_ms
        if self._talk is not None:  # push-to-talk: the button, not the VAD, delimits speech
            self._talk.append(pcm)
            self._talk_samples += len(pcm)
            if self._talk_samples >= self.host.settings.vad.max_utterance_s * SAMPLE_RATE_HZ:
                # held past the longest utterance (or a client that never sends talk-end): the
                # question is what was said so far, as the VAD's own limit does; memory stays bounded
                await self.talk(False)
            return
        if self.mode != "hands-free":
            return
        listener = self._ensure_listener(frame_ms)
        if listener is None:
            return
        if self.gated():
            # our own voice must not even reach the endpointer (pausing drops a half-heard utterance)
            if not listener.endpointer.paused:
                listener.pause()
        elif listener.endpointer.paused:
            listener.resume()
        assert self._mic is not None
        # frames still flow while paused: the listener's stream clock must keep pace with ours
        self._mic.push(pcm)

    def _ensure_listener(self, frame_ms: float) -> Listener | None:
        if self.listener is None:
            listener = self.host.make_listener(self)
            if listener is None:
                return None
            self.listener = listener
            self._mic = PushSource(max_queued_ms=5_000)
            self._mic_origin_ms = self._fed_ms - frame_ms
            self._listening = asyncio.get_running_loop().create_task(self._listen(), name=f"listen-{self.id}")
        return self.listener

    def _stream_to_clock(self, stream_ms: float) -> float:
        """Map the listener's stream time to the session clock: frames arrive in real time, so a
        moment ``x`` ms of audio before the newest frame happened ``x`` ms before now."""
        return self.clock_ms() - max(0.0, self._fed_ms - self._mic_origin_ms - stream_ms)

    def _stream_to_seconds(self, stream_ms: float) -> float:
        """Stream time -> the session clock in seconds (what ``clock`` gives, the echo guard's time)."""
        return self._started + self._stream_to_clock(stream_ms) / 1000.0

    async def _listen(self) -> None:
        assert self.listener is not None and self._mic is not None
        try:
            async for item in self.listener.listen(self._mic):
                await self._heard(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("session %s: listening failed; voice input is off for this session", self.id)
            self.emit(ev.ErrorEvent(code="asr-failed", message="listening failed; type the question instead"))

    async def _heard(self, item: ListenItem) -> None:
        upcoming = self.last_number + 1
        if isinstance(item, VoiceStart):
            self.emit(ev.SpeechStart(turn=upcoming))
            # a finished turn may still be sounding from the local speaker (audio is sent faster
            # than it plays): barge-in stops that too
            if self.busy or (self.local is not None and self.local.playing):
                await self.interrupt()
            self.emit(ev.StateEvent(state="listening", turn=upcoming))
        elif isinstance(item, VoiceEnd):
            self.emit(ev.SpeechEnd(turn=upcoming, duration_ms=round(item.duration_ms, 1)))
            self.emit(ev.StateEvent(state="transcribing", turn=upcoming))
        elif isinstance(item, Partial):
            transcript = item.transcript
            self.emit(ev.TranscriptEvent(turn=upcoming, text=transcript.text, language=transcript.language, final=False))
        elif isinstance(item, NotHeard):
            self.emit(ev.ErrorEvent(turn=upcoming, code=item.code, message=item.message))
            self._dropped(upcoming)
        elif isinstance(item, Heard):
            await self._question(item, upcoming)

    def _dropped(self, number: int) -> None:
        """What was heard for turn ``number`` starts no turn: it ends here, and its number is used up
        (the next question is ``number + 1``: no event of a turn comes after its ``state: idle``)."""
        self.emit(ev.StateEvent(state="idle", turn=number))
        self.last_number = max(self.last_number, number)

    async def _question(self, heard: Heard, upcoming: int) -> None:
        transcript = heard.transcript
        plan = self.preparer.take() if self.preparer is not None else None
        utterance = heard.utterance
        heard_s = (self._stream_to_seconds(utterance.start_ms), self._stream_to_seconds(utterance.end_of_speech_ms))
        if self.echo is not None and self.echo.is_echo(transcript.text, start_s=heard_s[0], end_s=heard_s[1]):
            # our own reply came back through the microphone: as if nothing had been heard
            self.host.metrics.echo_dropped.inc()
            self.host.metrics.turns.inc(outcome="echo")
            log.info("session %s: echo filter dropped %r", self.id, transcript.text)
            self._dropped(upcoming)
            return
        if not transcript.text.strip():
            self._dropped(upcoming)
            return
        eos_ms = self._stream_to_clock(heard.utterance.end_of_speech_ms)
        endpoint_ms = max(0.0, heard.decided_stream_ms - heard.utterance.end_of_speech_ms)
        self.emit(ev.TranscriptEvent(turn=upcoming, text=transcript.text, language=transcript.language, final=True))
        await self.ask(
            transcript,
            speech_end_clock_ms=eos_ms,
            endpoint_ms=endpoint_ms,
            transcript_ms=max(endpoint_ms, self.clock_ms() - eos_ms),
            plan=plan,
        )

    async def set_mode(self, mode: str) -> None:
        self.mode = mode
        if self.listener is not None:
            if mode == "hands-free":
                self.listener.resume()
            else:
                self.listener.pause()

    async def talk(self, pressed: bool) -> None:
        upcoming = self.last_number + 1
        if pressed:
            if self.busy:
                await self.interrupt()
            self._talk = []
            self._talk_samples = 0
            self.emit(ev.SpeechStart(turn=upcoming))
            self.emit(ev.StateEvent(state="listening", turn=upcoming))
            return
        if self._talk is None:
            return
        frames, self._talk = self._talk, None
        pcm = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)
        if len(pcm) < SAMPLE_RATE_HZ // 10:
            self.emit(
                ev.ErrorEvent(turn=upcoming, code="asr-empty", message="push-to-talk released with (almost) no audio")
            )
            self._dropped(upcoming)
            return
        utt = Utterance(pcm=pcm, end_of_speech_ms=self._fed_ms)
        self.emit(ev.SpeechEnd(turn=upcoming, duration_ms=round(utt.duration_s * 1000.0, 1)))
        # the button's release is the end of speech: no endpointing wait at all
        await self.ask(utt, speech_end_clock_ms=self.clock_ms(), endpoint_ms=0.0)
