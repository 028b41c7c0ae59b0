"""The daemon: the sessions, the hub the server talks to, metrics, and shutdown.

There is one kiosk session (the local microphone and speaker, when the machine has them), which
watcher clients follow, and one session per browser client that asks questions (by microphone audio
or typed text). All sessions share one set of engines behind FIFO gates (``assistant.sharing``), so
concurrent turns queue fairly instead of failing or mixing state. The daemon implements the
server's ``Hub`` (``assistant.server.app``) without importing the server: clients are
``Subscriber``s that also carry their role and session id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from assistant import __version__
from assistant import events as ev
from assistant.ahead import Preparer
from assistant.audio.vad import VoiceDetector
from assistant.config import Settings
from assistant.echo import EchoGuard
from assistant.errors import AssistantError
from assistant.events import (
    ClientMessage,
    HelloMessage,
    InterruptMessage,
    MicFrame,
    ModeMessage,
    NotHelpfulMessage,
    PlaybackMessage,
    Role,
    TalkEndMessage,
    TalkStartMessage,
    TextMessage,
)
from assistant.listening import Listener, make_endpointer
from assistant.metrics import DaemonMetrics
from assistant.reload import IndexSource, Reloader, ReloadResult
from assistant.session import LocalAudio, Session, SessionKind
from assistant.sharing import share, with_retriever
from assistant.stages import SAMPLE_RATE_HZ, Engines, QueueRecorder, Retriever
from assistant.turn import TurnResult

log = logging.getLogger(__name__)

DetectorFactory = Callable[[], VoiceDetector]
"""Makes one stream's voice detector; the default is Silero (``assistant.audio.vad.SileroVAD``)."""


class Client(Protocol):
    """A connected client as the daemon sees it (``assistant.server.app.Client``)."""

    id: str
    role: Role
    session_id: str

    def send(self, frame: ev.Event | str | bytes) -> bool: ...


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
        recorder: QueueRecorder | None = None,
        index: IndexSource | None = None,
    ) -> None:
        """``recorder``: where turns that need an owner's eye go (``assistant.kb.queue_writer``, which
        the composition root opens); None records nothing (they are still counted in /metrics).
        ``index``: how the knowledge base is rebuilt and reopened (``registry.index_source``) for live
        reload (``assistant.reload``); None: the index the engines opened answers until a restart."""
        self.settings = settings
        self.recorder = recorder
        self.metrics = metrics or DaemonMetrics()
        self.engines, self.gates = share(engines)
        self.detector_factory = detector_factory
        self.sessions: dict[str, Session] = {}
        self._orphans: set[asyncio.Task[Any]] = set()
        self._local_task: asyncio.Task[None] | None = None
        self.started_s = time.monotonic()
        self._warned_no_asr = False
        self.replies = 0
        """Replies finished, in every session (background work watches it)."""
        self.background: dict[str, str] = {}
        """Idle-time work still going on or done (``assistant.ahead.Background.status``), for /healthz."""
        self._listeners: dict[str, Callable[[ev.Event], None]] = {}
        self.kiosk = self._new_session("kiosk")
        self.reloader: Reloader | None = None
        if index is not None:
            self.reloader = Reloader(
                index,
                settings,
                engines=lambda: self.engines,
                swap=self.swap_index,
                announce=self.announce,
                busy=self.busy,
                wait_idle=self.wait_idle,
            )
            self.reloader.start()
        if local_audio is not None:
            self.attach_local_audio(local_audio)

    # -- sessions ----------------------------------------------------------------------------

    def _new_session(self, kind: SessionKind, engines: Engines | None = None) -> Session:
        sid = "kiosk" if kind == "kiosk" else "s-" + uuid.uuid4().hex[:10]
        session = Session(id=sid, kind=kind, host=self, engines=engines or self.engines)
        session.preparer = Preparer(
            self.engines,
            self.settings,
            history=lambda: session.history,
            is_echo=lambda text: session.echo is not None and session.echo.is_echo(text),
        )
        self.sessions[sid] = session
        self.metrics.sessions.set(len(self.sessions))
        return session

    def open_session(self, *, speak: bool = True) -> Session:
        """A visitor session with no client of its own (another protocol's conversation: Wyoming's
        handle); ``speak=False`` answers in text only (no synthesis). End it with ``end_session``."""
        engines = self.engines if speak else replace(self.engines, synthesizer=None, voices=None, prerenderer=None)
        return self._new_session("visitor", engines)

    def listen(self, session: Session, listener: Callable[[ev.Event], None]) -> None:
        """Hand every event ``session`` emits to ``listener`` too (it must not block)."""
        self._listeners[session.id] = listener

    def end_session(self, session: Session) -> None:
        self._listeners.pop(session.id, None)
        if session.id in self.sessions:
            self._drop_session(session)

    def make_listener(self, session: Session) -> Listener | None:
        """A session's ears: the Silero endpointer (or the injected detector) plus streaming ASR."""
        if self.engines.transcriber is None:
            if not self._warned_no_asr:
                log.warning("no transcriber is loaded: microphone audio is ignored, typed questions still work")
                self._warned_no_asr = True
            return None
        detector = self.detector_factory() if self.detector_factory is not None else None
        turn_detector = self.engines.turn_detector if self.settings.asr.partials else None
        try:
            endpointer = make_endpointer(self.settings, judged=turn_detector is not None, detector=detector)
        except AssistantError as err:
            log.warning("session %s: no voice endpointing: %s", session.id, err.message)
            session.emit(ev.ErrorEvent(code=err.code, message=err.message))
            return None
        return Listener(
            self.engines.transcriber,
            self.settings,
            endpointer=endpointer,
            prepare=session.preparer,
            turn_detector=turn_detector,
        )

    def attach_local_audio(self, local: LocalAudio) -> None:
        """Give the kiosk session the sound card: half-duplex gating and the echo filter come with it."""
        k = self.kiosk
        k.local = local
        k.echo = EchoGuard(clock=k.clock)
        self._local_task = asyncio.get_running_loop().create_task(self._pump_local(local), name="local-mic")

    async def _pump_local(self, local: LocalAudio) -> None:
        try:
            async for pcm in local.frames():
                await self.kiosk.hear(pcm)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the local microphone stopped; the kiosk goes on browser-only")

    def orphan(self, task: asyncio.Task[TurnResult | None]) -> None:
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

    # -- the knowledge base --------------------------------------------------------------------

    async def reload_kb(self) -> ReloadResult:
        """Rebuild the knowledge base from its files and swap the new index in between turns (the
        owner's page calls this after an edit); a failure leaves the live index answering and is
        in the result. Raises ``AssistantError("kb-reload-off")`` when the daemon was started
        without an index to rebuild."""
        if self.reloader is None:
            raise AssistantError("kb-reload-off", "this daemon was started without a knowledge-base index to rebuild")
        return await self.reloader.reload()

    def swap_index(self, retriever: Retriever) -> None:
        """New turns search ``retriever``; a turn in flight keeps the engines it started with, so it
        finishes on the index it began on. Plans made ahead on the old index are dropped."""
        self.engines = with_retriever(self.engines, retriever)
        for session in list(self.sessions.values()):
            session.engines = with_retriever(session.engines, retriever)
            if session.preparer is not None:
                session.preparer.engines = with_retriever(session.preparer.engines, retriever)
                session.preparer.take()

    def announce(self, event: ev.Event) -> None:
        """Send an event outside any turn to every client of every session (each on its own clock)."""
        for session in list(self.sessions.values()):
            session.emit(replace(event))

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
            await self._visitor(client).hear(message.pcm)
        elif isinstance(message, TextMessage):
            await self._visitor(client).ask(message.text)
        elif isinstance(message, InterruptMessage):
            await self.session_of(client).interrupt(message.played_ms, message.turn)
        elif isinstance(message, PlaybackMessage):
            self.session_of(client).playback(message.turn, message.played_ms)
        elif isinstance(message, ModeMessage):
            await self._visitor(client).set_mode(message.mode)
        elif isinstance(message, TalkStartMessage | TalkEndMessage):
            await self._visitor(client).talk(isinstance(message, TalkStartMessage))
        elif isinstance(message, HelloMessage):
            self._become(client, message.role)
        elif isinstance(message, NotHelpfulMessage):
            if not self.session_of(client).not_helpful(message.turn):
                log.info("client %s marked turn %d not helpful, which its session does not know", client.id, message.turn)

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
            **(self.reloader.status if self.reloader is not None else {}),
        }

    # -- metrics -----------------------------------------------------------------------------

    _STAGES = ("endpoint", "transcript", "retrieve", "first_token", "first_sentence", "first_audio", "total")

    def observe(self, session: Session, event: ev.Event) -> None:
        listener = self._listeners.get(session.id)
        if listener is not None:
            listener(event)
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
        """Cancel every turn, a reload under way and the local audio; the server closes the clients (1001)."""
        if self.reloader is not None:
            await self.reloader.close()
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

