"""The daemon's services for other protocols' servers (Wyoming, OpenAI-compatible HTTP): transcribe,
speak, answer.

Everything runs on the daemon's shared engines behind the fair gates (``Daemon.engines``), so a
Home Assistant request queues with the avatar pages' turns instead of racing them. ``answer`` is
a turn in a daemon session of its own per conversation (text only: Home Assistant speaks the reply
with whatever voice its pipeline names), with the same routes, the same decline line and the same
history rules as a visitor at the kiosk; ``answer_once`` is one turn on a history the caller
brings (an OpenAI chat request's ``messages``) in a session that ends with it. Implements
``assistant.server.wyoming.Services`` and ``assistant.server.openai_api.Services`` without importing
the server.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence

from assistant import events as ev
from assistant.daemon import Daemon
from assistant.errors import AssistantError
from assistant.language import detect_language
from assistant.session import HISTORY_MESSAGES, Session
from assistant.stages import AudioChunk, Message, SynthesizeError, Transcript, Utterance, Voice, closing

MAX_CONVERSATIONS = 64
"""Conversations kept (each a session with its history); the one unused longest goes first (more are
kept only while each of them has an answer in flight)."""

_TURN_EVENTS = (ev.Sources, ev.ReplyStart, ev.ReplyDelta, ev.ReplyEnd, ev.ErrorEvent, ev.Interrupted)


class _Conversation:
    """A text-only daemon session, and the turns whose events someone is waiting for."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.waiting: dict[int, asyncio.Queue[ev.Event]] = {}

    def hear(self, event: ev.Event) -> None:
        queue = self.waiting.get(event.turn)
        if queue is not None:
            queue.put_nowait(event)


class Services:
    def __init__(self, daemon: Daemon, *, voices: Mapping[str, Voice]) -> None:
        """``voices``: the voice folders a client may name (``voices/<name>``), by name."""
        self.daemon = daemon
        self.voices = dict(voices)
        self._conversations: OrderedDict[str, _Conversation] = OrderedDict()

    async def transcribe(self, utterance: Utterance) -> Transcript:
        transcriber = self.daemon.engines.transcriber
        if transcriber is None:
            raise AssistantError("asr-unavailable", "this daemon has no transcriber loaded ([asr])")
        return await transcriber.transcribe(utterance)

    async def speak(
        self, sentence: str, *, voice: str | None = None, language: str | None = None
    ) -> AsyncIterator[AudioChunk]:
        engines = self.daemon.engines
        if engines.synthesizer is None or engines.voices is None:
            raise SynthesizeError("tts-unavailable", "this daemon has no synthesizer loaded ([tts] enabled)")
        if voice:
            if voice not in self.voices:
                known = ", ".join(sorted(self.voices)) or "none"
                raise SynthesizeError("tts-voice-missing", f"no voice named '{voice}' (known: {known})")
            chosen = self.voices[voice]
        else:
            chosen = engines.voices.voice_for(language or detect_language(sentence))
        async with closing(engines.synthesizer.synthesize(sentence, voice=chosen)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def answer(self, question: Transcript, *, conversation: str) -> AsyncIterator[ev.Event]:
        async with closing(self._turn(self._conversation(conversation), question)) as events:
            async for event in events:
                yield event

    async def answer_once(self, question: Transcript, *, history: Sequence[Message]) -> AsyncIterator[ev.Event]:
        """One turn with ``history`` (oldest first; the latest ``HISTORY_MESSAGES`` count, as in a
        visitor's session) in a text-only session of its own, which ends with the turn."""
        session = self.daemon.open_session(speak=False)
        session.history = list(history)[-HISTORY_MESSAGES:]
        talk = _Conversation(session)
        self.daemon.listen(session, talk.hear)
        try:
            async with closing(self._turn(talk, question)) as events:
                async for event in events:
                    yield event
        finally:
            self.daemon.end_session(session)

    async def _turn(self, talk: _Conversation, question: Transcript) -> AsyncIterator[ev.Event]:
        session = talk.session
        await session.ask(question)
        # the turn's task has not run yet: nothing of it is missed
        number = session.last_number
        queue: asyncio.Queue[ev.Event] = asyncio.Queue()
        talk.waiting[number] = queue
        try:
            while True:
                event = await queue.get()
                if isinstance(event, _TURN_EVENTS):
                    yield event
                elif isinstance(event, ev.StateEvent) and event.state == "idle":
                    return
        finally:
            del talk.waiting[number]
            if session.turn is not None and session.turn.number == number and session.busy:
                # the client went away mid-answer: nobody is left to read the reply
                await session.interrupt()

    def _forget(self, conversation: str) -> None:
        talk = self._conversations.pop(conversation, None)
        if talk is not None:
            self.daemon.end_session(talk.session)

    def _conversation(self, key: str) -> _Conversation:
        talk = self._conversations.get(key)
        if talk is None:
            if len(self._conversations) >= MAX_CONVERSATIONS:
                # the one unused longest, but never one with an answer in flight (its reader would
                # wait for the end of a turn that its closed session no longer reports)
                idle = next((k for k, t in self._conversations.items() if not t.waiting), None)
                if idle is not None:
                    self._forget(idle)
            session = self.daemon.open_session(speak=False)
            talk = _Conversation(session)
            self.daemon.listen(session, talk.hear)
            self._conversations[key] = talk
        self._conversations.move_to_end(key)
        return talk
