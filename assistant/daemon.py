"""The daemon: sessions, the turn loop, barge-in, and not hearing itself.

A *session* is one conversation: its own history, its own turn counter and clock, at most one turn
at a time. There is one kiosk session (the local microphone and speaker, when the machine has
them), which watcher clients follow, and one session per browser client that asks questions (by
microphone audio or typed text). All sessions share one set of engines behind FIFO gates
(``assistant.server.fair``), so concurrent turns queue fairly instead of failing or mixing state.

The turn loop of a session: idle -> listening (speech started) -> transcribing -> thinking ->
speaking -> idle. A turn is one task running ``Turn.run``; barge-in (speech while speaking, a new
question, or an ``interrupt`` message) cancels that task, and the history keeps only the part of the
reply the listener heard, from the playback position the client reports (or the local speaker's).

Not hearing itself, on the kiosk (local speaker + microphone): half-duplex gating (microphone
frames are not endpointed while the reply plays, nor for ``ECHO_TAIL_MS`` after) plus an echo
filter that drops a transcript matching what was just said. Browser sessions rely on the browser's
echo cancellation and keep voice barge-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from assistant import __version__
from assistant import events as ev
from assistant.audio.sources import PushSource
from assistant.audio.vad import Endpointer, VoiceDetector
from assistant.config import Settings
from assistant.listen import Heard, Listener
from assistant.server.app import Client
from assistant.server.fair import Gate, fair_engines
from assistant.server.metrics import DaemonMetrics
from assistant.server.protocol import (
    ClientMessage,
    HelloMessage,
    InterruptMessage,
    MicFrame,
    ModeMessage,
    PlaybackMessage,
    ProtocolError,
    Role,
    TalkMessage,
    TextMessage,
)
from assistant.stages import SAMPLE_RATE_HZ, AssistantError, Message, Transcript, Utterance
from assistant.turn import Engines, Plan, Turn, TurnResult, guess_messages, plan_answer

log = logging.getLogger(__name__)

ECHO_TAIL_MS = 400
"""After local playback stops, the microphone stays gated this long (room reverberation, device latency)."""
ECHO_MEMORY_S = 30.0
"""Replies spoken within this window are compared with new transcripts (the echo filter)."""
ECHO_SIMILARITY = 0.6
"""A transcript this similar (0..1) to something just said is our own voice, not a visitor."""
BARGE_IN_WAIT_S = 0.2
"""How long an interrupt waits for the cancelled turn to finish before moving on (the 200 ms promise)."""
HISTORY_MESSAGES = 40


# --- hearing ------------------------------------------------------------------------------------

DetectorFactory = Callable[[], VoiceDetector]
"""Makes one stream's voice detector; the default is Silero (``assistant.audio.vad.SileroVAD``)."""


# --- the echo filter -----------------------------------------------------------------------------

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def _normalise(text: str) -> str:
    return _NON_WORD.sub("", text.lower())


def echo_similarity(heard: str, said: str) -> float:
    """How much of ``heard`` is contained in ``said`` (0..1): Whisper re-transcribing our own reply
    yields a fragment of it, so containment, not whole-string equality, is the test."""
    h, s = _normalise(heard), _normalise(said)
    if not h or not s:
        return 0.0
    if h in s:
        return 1.0
    match = difflib.SequenceMatcher(None, h, s, autojunk=False)
    matched = sum(block.size for block in match.get_matching_blocks())
    return matched / len(h)


class EchoFilter:
    """Remembers what the kiosk said; ``is_echo(transcript)`` says whether a transcript is that again."""

    def __init__(self, *, memory_s: float = ECHO_MEMORY_S, threshold: float = ECHO_SIMILARITY) -> None:
        self.memory_s = memory_s
        self.threshold = threshold
        self._said: deque[tuple[float, str]] = deque(maxlen=32)

    def said(self, text: str, now_s: float | None = None) -> None:
        if text.strip():
            self._said.append((time.monotonic() if now_s is None else now_s, text))

    def is_echo(self, heard: str, now_s: float | None = None) -> bool:
        now = time.monotonic() if now_s is None else now_s
        # short transcripts ("yes", "好") match by chance; only judge ones with some substance
        if len(_normalise(heard)) < 4:
            return False
        return any(
            now - t <= self.memory_s and echo_similarity(heard, text) >= self.threshold for t, text in self._said
        )


# --- local audio (the kiosk's own sound card) ----------------------------------------------------


class LocalAudio(Protocol):
    """The kiosk's microphone and speaker, as the daemon uses them (see ``assistant.server.ears``)."""

    def frames(self) -> Any:
        """An async iterator of int16 16 kHz microphone frames."""

    def play(self, chunk: Any) -> None:
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

    def new_reply(self) -> None: ...

    async def aclose(self) -> None: ...


# --- sessions -------------------------------------------------------------------------------------

SessionKind = Literal["kiosk", "visitor"]
Question = str | Utterance | Transcript


@dataclass
class Session:
    id: str
    kind: SessionKind
    daemon: Daemon
    engines: Engines
    history: list[Message] = field(default_factory=list)
    clients: set[Client] = field(default_factory=set)
    mode: str = "hands-free"
    state: ev.State = "idle"
    turn: Turn | None = None
    task: asyncio.Task[TurnResult | None] | None = None
    played_ms: dict[int, float] = field(default_factory=dict)
    listener: Listener | None = None
    echo: EchoFilter | None = None
    local: LocalAudio | None = None
    half_duplex: bool = True
    """Gate the microphone while the local speaker plays (kiosk only; off only to measure the echo)."""
    results: deque[TurnResult] = field(default_factory=lambda: deque(maxlen=8))
    last_number: int = 0
    _started: float = field(default_factory=time.monotonic)
    _fed_ms: float = 0.0
    _mic_origin_ms: float = 0.0
    _mic: PushSource | None = None
    _listening: asyncio.Task[None] | None = None
    _talk: list[np.ndarray] | None = None
    _speaking_until: float = 0.0
    _switch: asyncio.Lock = field(default_factory=asyncio.Lock)
    _plan: Plan | None = None
    """The answer planned ahead on the latest transcript at a pause (see ``prepare``)."""

    # -- clock and events --------------------------------------------------------------------

    def clock_ms(self) -> float:
        return (time.monotonic() - self._started) * 1000.0

    def emit(self, event: ev.Event) -> None:
        """Send to every client of the session (and the local speaker), never waiting."""
        if not event.t_ms:
            event.t_ms = self.clock_ms()
        if isinstance(event, ev.StateEvent):
            self.state = event.state
        self.daemon.observe(self, event)
        if self.local is not None:
            if isinstance(event, ev.Audio):
                self.local.play(event.chunk)
            elif isinstance(event, ev.AudioStop):
                self.local.end()
        frame = ev.to_wire(event)
        for client in list(self.clients):
            client.send(frame)

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
        end_of_speech_ms: float | None = None,
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
            self.played_ms = {n: ms for n, ms in self.played_ms.items() if n > number - 4}
            emitter = _TurnEmitter(self)
            turn = Turn(
                number,
                engines=self.engines,
                settings=self.daemon.settings,
                history=self.history,
                emit=emitter,
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
                self._run(turn, question, end_of_speech_ms, marks, plan), name=f"turn-{self.id}-{number}"
            )

    async def _run(
        self,
        turn: Turn,
        question: Question,
        end_of_speech_ms: float | None,
        marks: dict[str, float | None],
        plan: Plan | None,
    ) -> TurnResult | None:
        try:
            result = await turn.run(question, end_of_speech_ms=end_of_speech_ms, marks=marks, plan=plan)
        except asyncio.CancelledError:
            heard = turn.heard_text(self._played(turn.number))
            self._remember(turn.result, heard)
            self.daemon.metrics.turns.inc(outcome="interrupted")
            raise
        self.results.append(result)
        if result.error is None:
            self._remember(result, result.answer)
            self.daemon.metrics.turns.inc(outcome="answered")
        else:
            self.daemon.metrics.turns.inc(outcome="error")
        return result

    def _remember(self, result: TurnResult, heard: str) -> None:
        if result.question and heard:
            self.history.extend([Message("user", result.question), Message("assistant", heard)])
            del self.history[:-HISTORY_MESSAGES]
        if heard and self.echo is not None:
            self.echo.said(heard)
        if result.answer and self.echo is not None:
            # the whole written answer too: the tail may still echo from the room after a cut
            self.echo.said(result.answer)

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

    def _trim_heard(self, turn: Turn, played_ms: float) -> None:
        """The turn had sent all its audio but the listener cut playback: keep only what was heard."""
        heard = turn.heard_text(played_ms)
        if not (self.history and self.history[-1].role == "assistant"):
            return
        if self.history[-1].content == turn.result.answer and heard != turn.result.answer:
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
            self.daemon.orphan(task)

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
        """Half-duplex: is the local speaker (or its echo tail) sounding right now?"""
        if self.local is None or not self.half_duplex:
            return False
        if self.local.playing or self.state == "speaking":
            self._speaking_until = time.monotonic()
            return True
        return (time.monotonic() - self._speaking_until) * 1000.0 < ECHO_TAIL_MS

    async def hear(self, pcm: np.ndarray) -> None:
        """Microphone audio for this session (browser frames or the local microphone)."""
        frame_ms = len(pcm) * 1000.0 / SAMPLE_RATE_HZ
        self._fed_ms += frame_ms
        if self._talk is not None:  # push-to-talk: the button, not the VAD, delimits speech
            self._talk.append(pcm)
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
            listener = self.daemon.make_listener(self)
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

    async def _heard(self, item: Any) -> None:
        upcoming = self.last_number + 1
        if isinstance(item, ev.SpeechStart):
            self.emit(ev.SpeechStart(turn=upcoming))
            # a finished turn may still be sounding from the local speaker (audio is sent faster
            # than it plays): barge-in stops that too
            if self.busy or (self.local is not None and self.local.playing):
                await self.interrupt()
            self.emit(ev.StateEvent(state="listening", turn=upcoming))
        elif isinstance(item, ev.SpeechEnd):
            self.emit(ev.SpeechEnd(turn=upcoming, duration_ms=round(item.duration_ms, 1)))
            self.emit(ev.StateEvent(state="transcribing", turn=upcoming))
        elif isinstance(item, ev.TranscriptEvent):
            if not item.final:
                self.emit(ev.TranscriptEvent(turn=upcoming, text=item.text, language=item.language, final=False))
        elif isinstance(item, ev.ErrorEvent):
            self.emit(ev.ErrorEvent(turn=upcoming, code=item.code, message=item.message))
            self.emit(ev.StateEvent(state="idle", turn=upcoming))
        elif isinstance(item, Heard):
            await self._question(item, upcoming)

    async def prepare(self, transcript: Transcript, answerable: Callable[[], None] | None) -> None:
        """The listener's ``ahead`` hook: ``transcript`` is the question so far, a partial one while
        the visitor talks (``answerable`` None) or the whole of it at a pause. Plan the answer now
        (retrieval, route), so that:

        - on the ``faq`` route, at a pause, the question is known to be answerable, and the turn may
          end after the short early silence (``[vad] early_faq``);
        - on the ``generated`` route the LLM processes the prompt while the visitor is still talking
          or the endpoint is still being decided (``[llm] prefill``); the turn's request then reuses
          it from the KV cache (all of it when the question is the same; else the common prefix:
          system prompt, history and the passages, which come before the question). A partial
          transcript nothing is relevant to yet may still prefill its best passage, a guess at where
          the finished question lands (``[llm] prefill_guess``, turn.guess_messages).

        The plan is kept for the turn, which uses it only if the final transcript is the same. All
        of this is speculative: the listener cancels it when the visitor speaks again, and the
        engine drops a prefill when a real request (any session's) needs the model for another prompt.
        """
        settings = self.daemon.settings
        if answerable is None and settings.llm.prefill != "speech":
            return  # a partial transcript is only worth planning to prefill on
        if self.echo is not None and self.echo.is_echo(transcript.text):
            return
        plan = await plan_answer(transcript, self.history, engines=self.engines, settings=settings)
        self._plan = plan
        log.debug(
            "session %s: planned ahead (%s) %r -> %s %s",
            self.id,
            "partial" if answerable is None else "pause",
            transcript.text,
            plan.decision.route,
            [p.id for p in plan.decision.passages],
        )
        if plan.decision.route == "faq":
            if answerable is not None and settings.vad.early_faq:
                answerable()
        elif settings.llm.prefill != "off":
            # at a pause only the plan's own prompt; on a partial also a guess (turn.guess_messages)
            messages = plan.messages if answerable is not None else guess_messages(plan, settings)
            prefill = getattr(self.engines.llm, "prefill", None)
            if prefill is not None and messages is not None:
                await prefill(messages)

    async def _question(self, heard: Heard, upcoming: int) -> None:
        transcript = heard.transcript
        plan, self._plan = self._plan, None
        if self.echo is not None and self.echo.is_echo(transcript.text):
            # our own reply came back through the microphone: as if nothing had been heard
            self.daemon.metrics.echo_dropped.inc()
            self.daemon.metrics.turns.inc(outcome="echo")
            log.info("session %s: echo filter dropped %r", self.id, transcript.text)
            self.emit(ev.StateEvent(state="idle", turn=upcoming))
            return
        if not transcript.text.strip():
            self.emit(ev.StateEvent(state="idle", turn=upcoming))
            return
        eos_ms = self._stream_to_clock(heard.utterance.end_of_speech_ms)
        endpoint_ms = max(0.0, heard.decided_ms - heard.utterance.end_of_speech_ms)
        self.emit(ev.TranscriptEvent(turn=upcoming, text=transcript.text, language=transcript.language, final=True))
        await self.ask(
            transcript,
            end_of_speech_ms=eos_ms,
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
            self.emit(ev.StateEvent(state="idle", turn=upcoming))
            return
        utt = Utterance(pcm=pcm, end_of_speech_ms=self._fed_ms)
        self.emit(ev.SpeechEnd(turn=upcoming, duration_ms=round(utt.duration_s * 1000.0, 1)))
        # the button's release is the end of speech: no endpointing wait at all
        await self.ask(utt, end_of_speech_ms=self.clock_ms(), endpoint_ms=0.0)


class _TurnEmitter:
    """The ``emit`` a session gives its turn: tells the echo filter what is about to be said."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def __call__(self, event: ev.Event) -> None:
        session = self.session
        if isinstance(event, ev.Sentence) and session.echo is not None:
            # known before it is heard: the microphone may pick it up while the turn still runs
            session.echo.said(event.text)
        session.emit(event)


# --- the daemon -----------------------------------------------------------------------------------


class Daemon:
    """Owns the sessions and implements the server's ``Hub``."""

    def __init__(
        self,
        settings: Settings,
        engines: Engines,
        *,
        metrics: DaemonMetrics | None = None,
        detector_factory: DetectorFactory | None = None,
        local_audio: LocalAudio | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or DaemonMetrics()
        self.engines, self.gates = fair_engines(engines)
        self.detector_factory = detector_factory
        self.sessions: dict[str, Session] = {}
        self._orphans: set[asyncio.Task[Any]] = set()
        self._local_task: asyncio.Task[None] | None = None
        self.started_s = time.monotonic()
        self._warned_no_asr = False
        self.replies = 0
        """Replies finished, in every session (background work watches it)."""
        self.background: dict[str, str] = {}
        """Start-up work still going on or done (``faq_cache``: rendering / ready / failed), for /healthz."""
        self.kiosk = self._new_session("kiosk")
        if local_audio is not None:
            self.attach_local_audio(local_audio)

    # -- sessions ----------------------------------------------------------------------------

    def _new_session(self, kind: SessionKind) -> Session:
        engines = self.engines
        echo = None
        sid = "kiosk" if kind == "kiosk" else "s-" + uuid.uuid4().hex[:10]
        session = Session(id=sid, kind=kind, daemon=self, engines=engines, echo=echo)
        self.sessions[sid] = session
        self.metrics.sessions.set(len(self.sessions))
        return session

    def make_listener(self, session: Session) -> Listener | None:
        """A session's ears: the Silero endpointer (or the injected detector) plus streaming ASR."""
        if self.engines.transcriber is None:
            if not self._warned_no_asr:
                log.warning("no transcriber is loaded: microphone audio is ignored, typed questions still work")
                self._warned_no_asr = True
            return None
        detector = self.detector_factory() if self.detector_factory is not None else None
        try:
            endpointer = Endpointer(self.settings.vad, detector=detector)
        except AssistantError as err:
            log.warning("session %s: no voice endpointing: %s", session.id, err.message)
            session.emit(ev.ErrorEvent(code=err.code, message=err.message))
            return None
        return Listener(self.engines.transcriber, self.settings, endpointer=endpointer, ahead=session.prepare)

    def attach_local_audio(self, local: LocalAudio) -> None:
        """Give the kiosk session the sound card: half-duplex gating and the echo filter come with it."""
        k = self.kiosk
        k.local = local
        k.echo = EchoFilter()
        self._local_task = asyncio.get_running_loop().create_task(self._pump_local(local), name="local-mic")

    async def _pump_local(self, local: LocalAudio) -> None:
        try:
            async for pcm in local.frames():
                await self.kiosk.hear(pcm)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the local microphone stopped; the kiosk goes on browser-only")

    def orphan(self, task: asyncio.Task[Any]) -> None:
        """Keep a reference to a turn that outlived its barge-in budget until it ends."""
        self._orphans.add(task)
        task.add_done_callback(self._orphans.discard)

    def session_of(self, client: Client) -> Session:
        return self.sessions.get(client.session_id) or self.kiosk

    def _hello(self, client: Client) -> None:
        client.send(
            ev.Hello(
                session=client.session_id,
                server=__version__,
                language=self.settings.general.language,
                sample_rate_hz=SAMPLE_RATE_HZ,
                role=client.role,
                t_ms=self.session_of(client).clock_ms(),
            )
        )
        session = self.session_of(client)
        client.send(ev.StateEvent(state=session.state, turn=session.last_number, t_ms=session.clock_ms()))

    def _become(self, client: Client, role: Role) -> Session:
        if role == client.role and client.session_id:
            return self.session_of(client)
        self.session_of(client).clients.discard(client)
        if role == "visitor":
            session = self._new_session("visitor")
        else:
            old = self.sessions.get(client.session_id)
            if old is not None and old.kind == "visitor":
                self._drop_session(old)
            session = self.kiosk
        client.role = role
        client.session_id = session.id
        session.clients.add(client)
        self._hello(client)
        return session

    def _drop_session(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        self.metrics.sessions.set(len(self.sessions))
        task = asyncio.get_running_loop().create_task(session.close(), name=f"close-{session.id}")
        self.orphan(task)

    # -- Hub ---------------------------------------------------------------------------------

    def attach(self, client: Client, role: Role) -> None:
        self._become(client, role)

    def detach(self, client: Client) -> None:
        session = self.sessions.get(client.session_id)
        if session is None:
            return
        session.clients.discard(client)
        if session.kind == "visitor":
            # the visitor vanished (maybe mid-turn): nobody is left to hear the reply
            self._drop_session(session)

    async def handle(self, client: Client, message: ClientMessage | MicFrame) -> None:
        if isinstance(message, MicFrame):
            session = self._visitor(client)
            await session.hear(message.pcm)
        elif isinstance(message, TextMessage):
            session = self._visitor(client)
            await session.ask(message.text)
        elif isinstance(message, InterruptMessage):
            await self.session_of(client).interrupt(message.played_ms, message.turn)
        elif isinstance(message, PlaybackMessage):
            session = self.session_of(client)
            # a kiosk with a speaker knows its own position; without one, its watchers play the reply
            if session.local is None:
                session.played_ms[message.turn] = message.played_ms
        elif isinstance(message, ModeMessage):
            await self._visitor(client).set_mode(message.mode)
        elif isinstance(message, TalkMessage):
            await self._visitor(client).talk(message.pressed)
        elif isinstance(message, HelloMessage):
            self._become(client, message.role)
        else:  # pragma: no cover - parse_text returns only the types above
            raise ProtocolError("unknown-type", f"unhandled message {type(message).__name__}")

    def _visitor(self, client: Client) -> Session:
        """Audio or text makes a client a visitor with its own session (watchers get one here)."""
        if client.role != "visitor":
            return self._become(client, "visitor")
        return self.session_of(client)

    async def wait_idle(self) -> None:
        """Return once no turn is running (background work waits on it, so live replies keep the CPU)."""
        while tasks := [s.task for s in self.sessions.values() if s.busy and s.task is not None]:
            await asyncio.wait(tasks)

    def busy(self) -> bool:
        """A visitor is being heard or answered somewhere, or a stage has work queued: background
        work (the prompt cache's warm-up) waits. Plain reads: safe from an engine's thread."""
        return any(g.busy for g in self.gates) or any(
            s.busy or s.state != "idle" for s in list(self.sessions.values())
        )

    def healthy(self) -> dict[str, object]:
        return {
            "ok": True,
            "version": __version__,
            "protocol": ev.PROTOCOL_VERSION,
            "sessions": len(self.sessions),
            "turns_running": sum(1 for s in self.sessions.values() if s.busy),
            "uptime_s": round(time.monotonic() - self.started_s, 1),
            "local_audio": self.kiosk.local is not None,
            **self.background,
        }

    # -- metrics -----------------------------------------------------------------------------

    _STAGES = ("endpoint", "transcript", "retrieve", "first_token", "first_sentence", "first_audio", "total")

    def observe(self, session: Session, event: ev.Event) -> None:
        m = self.metrics
        if isinstance(event, ev.ReplyStart):
            m.routes.inc(route=event.route)
        elif isinstance(event, ev.ReplyEnd):
            self.replies += 1
        elif isinstance(event, ev.ErrorEvent):
            m.errors.inc(code=event.code)
        elif isinstance(event, ev.Trace):
            for stage in self._STAGES:
                value = getattr(event, f"{stage}_ms")
                if value is not None:
                    m.stage_ms.observe(value, stage=stage)

    # -- shutdown ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Cancel every turn and the local audio; the server closes the clients (1001)."""
        if self._local_task is not None:
            self._local_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._local_task
        await asyncio.gather(*(s.close() for s in list(self.sessions.values())), return_exceptions=True)
        if self.kiosk.local is not None:
            with contextlib.suppress(Exception):
                await self.kiosk.local.aclose()
        for task in list(self._orphans):
            task.cancel()
        if self._orphans:
            await asyncio.wait(list(self._orphans), timeout=1.0)

    def gate_report(self) -> list[Gate]:
        return self.gates
