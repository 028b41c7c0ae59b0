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
import itertools
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from assistant import __version__
from assistant import events as ev
from assistant.config import Settings
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
from assistant.turn import Engines, Turn, TurnResult

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


# --- endpointing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeechStarted:
    at_ms: float
    """Stream time (ms of audio fed so far) where speech began."""


@dataclass(frozen=True)
class SpeechEnded:
    utterance: Utterance
    """``end_of_speech_ms`` is in stream time, like ``SpeechStarted.at_ms``."""


class Endpointer(Protocol):
    """Turns a stream of 16 kHz int16 frames into speech-start / speech-end decisions."""

    def feed(self, pcm: np.ndarray) -> Iterable[SpeechStarted | SpeechEnded]: ...

    def reset(self) -> None: ...


EndpointerFactory = Callable[[Settings], Endpointer]


def default_endpointer(settings: Settings) -> Endpointer:
    """The ears' Silero endpointer, adapted to the shape the daemon consumes."""
    from assistant.server.ears import SileroEndpointing

    return SileroEndpointing(settings)


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


class EchoDropped(AssistantError):
    """Raised by the kiosk's transcriber wrapper: the utterance was the assistant's own voice."""

    def __init__(self, text: str) -> None:
        super().__init__("asr-echo", f"dropped a transcript that matched our own reply: {text[:60]!r}")


class _EchoFilteringTranscriber:
    def __init__(self, inner: Any, echo: EchoFilter, metrics: DaemonMetrics) -> None:
        self.inner = inner
        self.echo = echo
        self.metrics = metrics

    async def transcribe(self, utterance: Utterance) -> Transcript:
        transcript: Transcript = await self.inner.transcribe(utterance)
        if self.echo.is_echo(transcript.text):
            self.metrics.echo_dropped.inc()
            log.info("echo filter: dropped %r", transcript.text)
            raise EchoDropped(transcript.text)
        return transcript


# --- local audio (the kiosk's own sound card) ----------------------------------------------------


class LocalAudio(Protocol):
    """The kiosk's microphone and speaker, as the daemon uses them (see ``assistant.server.ears``)."""

    def frames(self) -> Any:
        """An async iterator of int16 16 kHz microphone frames."""

    def play(self, chunk: Any) -> None:
        """Queue reply audio; returns at once."""

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
    endpointer: Endpointer | None = None
    echo: EchoFilter | None = None
    local: LocalAudio | None = None
    results: deque[TurnResult] = field(default_factory=lambda: deque(maxlen=8))
    _turns: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _started: float = field(default_factory=time.monotonic)
    _fed_ms: float = 0.0
    _talk: list[np.ndarray] | None = None
    _speaking_until: float = 0.0
    _switch: asyncio.Lock = field(default_factory=asyncio.Lock)

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
        if isinstance(event, ev.Audio) and self.local is not None:
            self.local.play(event.chunk)
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
        self, question: Question, *, end_of_speech_ms: float | None = None, endpoint_ms: float | None = None
    ) -> None:
        """Start a turn for ``question``, interrupting the running one first (a new question is barge-in)."""
        async with self._switch:
            await self._interrupt()
            number = next(self._turns)
            emitter = _TurnEmitter(self)
            turn = Turn(
                number,
                engines=self.engines,
                settings=self.daemon.settings,
                history=self.history,
                emit=emitter,
                clock_ms=self.clock_ms,
            )
            emitter.turn = turn
            if endpoint_ms is not None:
                # the endpointer decided before the turn existed; the trace still reports it
                turn.result.timings_ms["endpoint"] = round(endpoint_ms, 1)
            if self.local is not None:
                self.local.new_reply()
            self.turn = turn
            self.task = asyncio.create_task(
                self._run(turn, question, end_of_speech_ms), name=f"turn-{self.id}-{number}"
            )

    async def _run(self, turn: Turn, question: Question, end_of_speech_ms: float | None) -> TurnResult | None:
        try:
            result = await turn.run(question, end_of_speech_ms=end_of_speech_ms)
        except asyncio.CancelledError:
            heard = turn.heard_text(self._played(turn.number))
            self._remember(turn.result, heard)
            self.daemon.metrics.turns.inc(outcome="interrupted")
            raise
        self.results.append(result)
        if result.error is None:
            self._remember(result, result.answer)
            self.daemon.metrics.turns.inc(outcome="answered")
        elif result.error.code == "asr-echo":
            self.daemon.metrics.turns.inc(outcome="echo")
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
        if played_ms is not None and self.turn is not None and turn in (None, self.turn.number):
            self.played_ms[self.turn.number] = played_ms
        async with self._switch:
            await self._interrupt()

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
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=1.0)

    # -- hearing -----------------------------------------------------------------------------

    def gated(self) -> bool:
        """Half-duplex: is the local speaker (or its echo tail) sounding right now?"""
        if self.local is None:
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
        if self.mode != "hands-free" or self.endpointer is None:
            return
        if self.gated():
            # Do not even feed the endpointer: its state must not fill with our own voice.
            self.endpointer.reset()
            return
        for decision in self.endpointer.feed(pcm):
            if isinstance(decision, SpeechStarted):
                self.emit(ev.SpeechStart(turn=self._current_number()))
                if self.busy:
                    await self.interrupt()
                self.emit(ev.StateEvent(state="listening"))
            else:
                utt = decision.utterance
                now = self.clock_ms()
                # the endpointer decides after the silence it waits for: map stream time to the clock
                endpoint_ms = max(0.0, self._fed_ms - utt.end_of_speech_ms)
                self.emit(ev.SpeechEnd(duration_ms=round(utt.duration_s * 1000.0, 1)))
                await self.ask(utt, end_of_speech_ms=now - endpoint_ms, endpoint_ms=endpoint_ms)

    def _current_number(self) -> int:
        return self.turn.number if self.turn is not None else 0

    async def talk(self, pressed: bool) -> None:
        if pressed:
            if self.busy:
                await self.interrupt()
            self._talk = []
            self.emit(ev.SpeechStart(turn=self._current_number()))
            self.emit(ev.StateEvent(state="listening"))
            return
        if self._talk is None:
            return
        frames, self._talk = self._talk, None
        pcm = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)
        if len(pcm) < SAMPLE_RATE_HZ // 10:
            self.emit(ev.ErrorEvent(code="asr-empty", message="push-to-talk released with (almost) no audio"))
            self.emit(ev.StateEvent(state="idle"))
            return
        utt = Utterance(pcm=pcm, end_of_speech_ms=self._fed_ms)
        self.emit(ev.SpeechEnd(duration_ms=round(utt.duration_s * 1000.0, 1)))
        await self.ask(utt, end_of_speech_ms=self.clock_ms(), endpoint_ms=0.0)


class _TurnEmitter:
    """The ``emit`` a session gives its turn: adjusts two events before they reach the clients."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.turn: Turn | None = None

    def __call__(self, event: ev.Event) -> None:
        session, turn = self.session, self.turn
        if isinstance(event, ev.ErrorEvent) and event.code == "asr-echo":
            return  # our own voice: as far as anyone watching is concerned, nothing happened
        if isinstance(event, ev.Interrupted) and turn is not None:
            # the turn only knows what was sent; the listener's playback position says what was heard
            event.heard_text = turn.heard_text(session._played(turn.number))
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
        endpointer_factory: EndpointerFactory | None = default_endpointer,
        local_audio: LocalAudio | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or DaemonMetrics()
        self.engines, self.gates = fair_engines(engines)
        self.endpointer_factory = endpointer_factory
        self.sessions: dict[str, Session] = {}
        self._orphans: set[asyncio.Task[Any]] = set()
        self._local_task: asyncio.Task[None] | None = None
        self.started_s = time.monotonic()
        self.kiosk = self._new_session("kiosk")
        if local_audio is not None:
            self.attach_local_audio(local_audio)

    # -- sessions ----------------------------------------------------------------------------

    def _new_session(self, kind: SessionKind) -> Session:
        engines = self.engines
        echo = None
        sid = "kiosk" if kind == "kiosk" else "s-" + uuid.uuid4().hex[:10]
        session = Session(id=sid, kind=kind, daemon=self, engines=engines, echo=echo)
        if self.endpointer_factory is not None:
            try:
                session.endpointer = self.endpointer_factory(self.settings)
            except AssistantError as err:
                log.warning("no voice endpointing for session %s: %s", sid, err.message)
        self.sessions[sid] = session
        self.metrics.sessions.set(len(self.sessions))
        return session

    def attach_local_audio(self, local: LocalAudio) -> None:
        """Give the kiosk session the sound card: half-duplex gating and the echo filter come with it."""
        k = self.kiosk
        k.local = local
        k.echo = EchoFilter()
        if self.engines.transcriber is not None:
            from dataclasses import replace

            k.engines = replace(
                self.engines, transcriber=_EchoFilteringTranscriber(self.engines.transcriber, k.echo, self.metrics)
            )
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
        client.send(ev.StateEvent(state=session.state, turn=session._current_number(), t_ms=session.clock_ms()))

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
            if session.kind == "visitor":  # the kiosk's position is its own speaker's
                session.played_ms[message.turn] = message.played_ms
        elif isinstance(message, ModeMessage):
            session = self._visitor(client)
            session.mode = message.mode
            if session.endpointer is not None:
                session.endpointer.reset()
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

    def healthy(self) -> dict[str, object]:
        return {
            "ok": True,
            "version": __version__,
            "protocol": ev.PROTOCOL_VERSION,
            "sessions": len(self.sessions),
            "turns_running": sum(1 for s in self.sessions.values() if s.busy),
            "uptime_s": round(time.monotonic() - self.started_s, 1),
            "local_audio": self.kiosk.local is not None,
        }

    # -- metrics -----------------------------------------------------------------------------

    _STAGES = ("endpoint", "transcript", "retrieve", "first_token", "first_sentence", "first_audio", "total")

    def observe(self, session: Session, event: ev.Event) -> None:
        m = self.metrics
        if isinstance(event, ev.ReplyStart):
            m.routes.inc(route=event.route)
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
