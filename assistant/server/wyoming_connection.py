"""One Wyoming client's connection: events in, in order, and the daemon's answers out.

Bad input costs its own connection at most: an event that is not Wyoming (a broken header, a
length that lies) gets an ``error`` event and the connection closes; a well-formed event the server
cannot serve (audio at 96 kHz, no text) gets an ``error`` event and the connection goes on. Sending
never waits inside a fair gate: a sentence's audio is written to the socket's buffer as it comes and
drained after the sentence, so a stalled client holds up nobody else's speech.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import numpy as np
from wyoming.asr import Transcript as WyTranscript
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled, HandledChunk, HandledStart, HandledStop, NotHandled
from wyoming.info import Info
from wyoming.ping import Pong
from wyoming.server import AsyncEventHandler
from wyoming.tts import SynthesizeStopped

from assistant import events as ev
from assistant.errors import AssistantError
from assistant.sentences import SentenceSplitter
from assistant.server.wyoming_wire import (
    AudioFormat,
    AudioFormatError,
    AudioIn,
    AudioOut,
    WireError,
    asked_language,
    asked_voice,
    event_text,
    frame,
    read_event,
)
from assistant.stages import SAMPLE_RATE_HZ, AudioChunk, Transcript, Utterance, closing

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 30.0
"""A client that takes no bytes for this long is gone: its connection closes."""
INBOX_EVENTS = 256
"""Events read ahead of the one being handled (audio chunks during a transcription); then reading waits."""
MIN_AUDIO_S = 0.1
"""Less speech than this is no question (``audio-empty``)."""


class Services(Protocol):
    """What the Wyoming server needs from the daemon (``assistant.services.Services``)."""

    async def transcribe(self, utterance: Utterance) -> Transcript:
        """The shared transcriber's transcript; raises ``AssistantError``."""
        ...

    def speak(self, sentence: str, *, voice: str | None = None, language: str | None = None) -> AsyncIterator[AudioChunk]:
        """One sentence's audio, in ``voice`` (a voice folder's name) or the configured voice for its
        language; raises ``AssistantError`` (``tts-voice-missing`` for an unknown voice)."""
        ...

    def answer(self, question: Transcript, *, conversation: str) -> AsyncIterator[ev.Event]:
        """One turn on ``conversation``'s history, as the daemon's events (``sources``,
        ``reply-start``, ``reply-delta``, ``reply-end``, ``error``, ``interrupted``). A conversation
        outlives its connection (a client may name it again: Home Assistant sends its own
        ``conversation_id`` on a new connection each time); the daemon keeps the latest few."""
        ...


class Serving(Protocol):
    """What a connection needs from its server (``assistant.server.wyoming.WyomingServer``)."""

    services: Services
    info: Info
    max_audio_s: float
    max_event_bytes: int


class Connection(AsyncEventHandler):
    """One client. Events are handled one after another; a streaming synthesis runs in its own task
    so that text chunks keep arriving while earlier sentences are spoken."""

    _ids = itertools.count(1)

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Serving) -> None:
        super().__init__(reader, writer)
        self.server = server
        self.id = f"wyoming-{next(self._ids)}"
        self._audio: AudioIn | None = None
        self._audio_refused = False
        self._asr_language = ""
        self._stream: asyncio.Queue[str | None] | None = None
        self._splitter = SentenceSplitter()
        self._speaker: asyncio.Task[None] | None = None

    # -- sending, never inside a gate --------------------------------------------------------

    def send(self, event: Event) -> None:
        """Queue an event without waiting; raises ``ConnectionResetError`` once the client has gone,
        which stops the work done for it (a turn, a synthesis) at its next piece."""
        if self.writer.is_closing():
            raise ConnectionResetError("the client went away")
        self.writer.write(frame(event))

    async def drain(self) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that meets a finished drain
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            await self.writer.drain()

    def error(self, code: str, message: str) -> None:
        self.send(Error(text=message, code=code).event())

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Read events while a worker handles them in order, so that the end of the stream is seen at
        once: a client that leaves (Wyoming clients close, they never half-close) cancels the work
        done for it (a turn, a synthesis) instead of leaving it to run to its end."""
        inbox: asyncio.Queue[Event] = asyncio.Queue(maxsize=INBOX_EVENTS)  # full: reading waits
        worker = asyncio.get_running_loop().create_task(self._work(inbox), name=f"{self.id}-work")
        try:
            while not worker.done():
                try:
                    event = await read_event(self.reader, max_bytes=self.server.max_event_bytes)
                except WireError as err:
                    log.info("wyoming %s: %s; closing", self.id, err.message)
                    self.error(err.code, err.message)
                    await self.drain()
                    return
                if event is None:
                    return
                await inbox.put(event)
        except (ConnectionError, TimeoutError) as err:
            log.info("wyoming %s: the client went away (%s)", self.id, type(err).__name__)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
            await self.disconnect()
            self.writer.close()

    async def _work(self, inbox: asyncio.Queue[Event]) -> None:
        try:
            while True:
                await self.handle_event(await inbox.get())
                await self.drain()
        except (ConnectionError, TimeoutError) as err:
            log.info("wyoming %s: the client went away (%s)", self.id, type(err).__name__)
            self.reader.feed_eof()  # ends the reading loop

    async def disconnect(self) -> None:
        if self._speaker is not None and not self._speaker.done():
            self._speaker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._speaker

    async def handle_event(self, event: Event) -> bool:
        try:
            await self._dispatch(event)
        except WireError as err:  # a whole event, but not one this server can read: it goes on
            self.error(err.code, err.message)
        except AudioFormatError as err:
            self._audio, self._audio_refused = None, True
            self.error(err.code, str(err))
        except AssistantError as err:
            self.error(err.code, err.message)
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            raise
        except Exception as err:
            log.exception("wyoming %s: %s failed", self.id, event.type)
            self.error("internal", f"{type(err).__name__}: {err}")
        return True

    async def _dispatch(self, event: Event) -> None:
        kind, data = event.type, event.data
        if kind == "describe":
            self.send(self.server.info.event())
        elif kind == "ping":
            self.send(Pong(text=data.get("text") if isinstance(data.get("text"), str) else None).event())
        elif kind == "transcribe":
            self._asr_language = asked_language(data)
        elif kind == "audio-start":
            self._audio, self._audio_refused = None, False
            self._audio = AudioIn(AudioFormat.of(data), max_s=self.server.max_audio_s)
        elif kind == "audio-chunk":
            if not self._audio_refused:
                if self._audio is None:  # no audio-start: the chunk announces the format
                    self._audio = AudioIn(AudioFormat.of(data), max_s=self.server.max_audio_s)
                self._audio.add(data, event.payload)
        elif kind == "audio-stop":
            await self._transcribe()
        elif kind == "synthesize":
            if self._stream is None:  # during a stream it only repeats the chunks (for older servers)
                await self._synthesize(event_text(data), *asked_voice(data))
        elif kind == "synthesize-start":
            self._open_stream(*asked_voice(data))
        elif kind == "synthesize-chunk":
            self._feed(self._splitter.feed(event_text(data)))
        elif kind == "synthesize-stop":
            await self._close_stream()
        elif kind == "transcript":
            await self._handle(event_text(data), data)
        else:
            log.debug("wyoming %s: ignored a %s event", self.id, kind)

    # -- asr ---------------------------------------------------------------------------------

    async def _transcribe(self) -> None:
        audio, refused, language = self._audio, self._audio_refused, self._asr_language
        self._audio, self._audio_refused, self._asr_language = None, False, ""
        if refused:
            return  # its error was sent when the audio was refused
        pcm = audio.pcm() if audio is not None else np.zeros(0, dtype=np.int16)
        if len(pcm) < MIN_AUDIO_S * SAMPLE_RATE_HZ:
            self.error("audio-empty", f"no audio to transcribe ({len(pcm) * 1000 / SAMPLE_RATE_HZ:.0f} ms; at least {MIN_AUDIO_S * 1000:.0f} ms)")
            return
        transcript = await self.server.services.transcribe(Utterance(pcm=pcm, language=language))
        self.send(WyTranscript(text=transcript.text, language=transcript.language or None).event())

    # -- tts ---------------------------------------------------------------------------------

    async def _speak(self, sentence: str, voice: str | None, language: str | None, out: AudioOut) -> None:
        async with closing(self.server.services.speak(sentence, voice=voice, language=language)) as chunks:
            async for chunk in chunks:
                out.chunk(chunk)
        await self.drain()

    async def _synthesize(self, text: str, voice: str | None, language: str | None) -> None:
        splitter = SentenceSplitter()
        sentences = [s for s in splitter.feed(text) + splitter.flush() if s.strip()]
        if not sentences:
            raise WireError("tts-empty", "nothing to say: the text is empty")
        out = AudioOut(self.send)
        for sentence in sentences:  # the first sentence is heard while the next is synthesised
            await self._speak(sentence, voice, language, out)
        out.stop()

    def _open_stream(self, voice: str | None, language: str | None) -> None:
        if self._stream is not None:
            raise WireError("wyoming-bad-order", "synthesize-start while a synthesis stream is open")
        self._stream = asyncio.Queue()
        self._splitter = SentenceSplitter()
        self._speaker = asyncio.get_running_loop().create_task(
            self._speak_stream(self._stream, voice, language), name=f"{self.id}-speak"
        )

    def _feed(self, sentences: list[str]) -> None:
        if self._stream is None:
            raise WireError("wyoming-bad-order", "synthesize-chunk without synthesize-start")
        for sentence in sentences:
            if sentence.strip():
                self._stream.put_nowait(sentence)

    async def _close_stream(self) -> None:
        if self._stream is None or self._speaker is None:
            raise WireError("wyoming-bad-order", "synthesize-stop without synthesize-start")
        self._feed(self._splitter.flush())
        self._stream.put_nowait(None)
        speaker = self._speaker
        try:
            await speaker
        finally:
            self._stream, self._speaker = None, None

    async def _speak_stream(self, queue: asyncio.Queue[str | None], voice: str | None, language: str | None) -> None:
        out = AudioOut(self.send)
        failed = False
        while (sentence := await queue.get()) is not None:
            if failed:
                continue  # the error was sent; the stream still ends with synthesize-stopped
            try:
                await self._speak(sentence, voice, language, out)
            except AssistantError as err:
                self.error(err.code, err.message)
                failed = True
        out.stop()
        self.send(SynthesizeStopped().event())

    # -- handle ------------------------------------------------------------------------------

    async def _handle(self, text: str, data: dict[str, Any]) -> None:
        context = data.get("context")
        given = context.get("conversation_id") if isinstance(context, dict) else None
        conversation = given if isinstance(given, str) and given else self.id
        language = asked_language(data)
        question = Transcript(text.strip(), language if language in ("zh", "en") else "")
        if not question.text:
            raise WireError("handle-empty", "nothing to answer: the transcript is empty")
        reply: dict[str, Any] = {"conversation_id": conversation}
        started = False
        async with closing(self.server.services.answer(question, conversation=conversation)) as events:
            async for event in events:
                if isinstance(event, ev.Sources):
                    reply["sources"] = [{"id": s.id, "source": s.source, "score": s.score} for s in event.sources]
                elif isinstance(event, ev.ReplyStart):
                    reply["route"] = event.route
                    # no sources yet: a reply that turns out to be a decline withdraws them (an empty
                    # ``sources`` event after its first words); ``handled`` carries the final ones
                    self.send(HandledStart(context={k: v for k, v in reply.items() if k != "sources"}).event())
                    started = True
                elif isinstance(event, ev.ReplyDelta):
                    self.send(HandledChunk(text=event.text).event())
                elif isinstance(event, ev.ReplyEnd):
                    self.send(HandledStop().event())
                    self.send(Handled(text=event.text, context=reply).event())
                    return
                elif isinstance(event, ev.ErrorEvent | ev.Interrupted):
                    if started:
                        self.send(HandledStop().event())
                    if isinstance(event, ev.ErrorEvent):
                        message, reply["code"] = event.message, event.code
                    else:
                        message, reply["code"] = "interrupted by a newer question", "interrupted"
                    self.send(NotHandled(text=message, context=reply).event())
                    return
