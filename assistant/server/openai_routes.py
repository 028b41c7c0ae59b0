"""The OpenAI-compatible routes: read a request (bounded), ask ``Services``, answer in OpenAI's shape.

Every fault raises ``openai_wire.ApiError``; ``openai_api``'s middleware writes it. A chat
completion is written from the turn's events by ``openai_chat``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from aiohttp import BodyPartReader, ClientPayloadError, web

from assistant import events as ev
from assistant.audio.codecs import decode_file
from assistant.audio.pcm import join_chunks, resample_int16, wav_bytes
from assistant.errors import AssistantError
from assistant.sentences import split_sentences
from assistant.server import openai_wire as wire
from assistant.server.openai_chat import stream, whole
from assistant.server.openai_wire import ApiError
from assistant.stages import SAMPLE_RATE_HZ, AudioChunk, Message, Transcript, Utterance, closing

FIELD_BYTES = 65_536
"""The largest text field of an upload (``prompt``, ``language`` ...)."""


class Services(Protocol):
    """What the endpoints need from the daemon (``assistant.services.Services``)."""

    async def transcribe(self, utterance: Utterance) -> Transcript:
        """The shared transcriber's transcript; raises ``AssistantError``."""
        ...

    def speak(
        self, sentence: str, *, voice: str | None = None, language: str | None = None
    ) -> AsyncIterator[AudioChunk]:
        """One sentence's audio in ``voice``; raises ``AssistantError``."""
        ...

    def answer_once(self, question: Transcript, *, history: Sequence[Message]) -> AsyncIterator[ev.Event]:
        """One knowledge-base turn on ``history``, as the daemon's events (``sources``, ``reply-*``,
        ``error``, ``interrupted``)."""
        ...


def from_assistant(err: AssistantError, *, param: str | None = None) -> ApiError:
    """The daemon's error as an HTTP one: a service not loaded is 503, bad audio 400, the rest 500."""
    if err.code.endswith("-unavailable"):
        return ApiError(503, err.message, code=err.code)
    if err.code.startswith("audio-"):
        return ApiError(400, err.message, code=err.code, param=param)
    return ApiError(500, err.message, code=err.code)


async def read_bounded(stream: Any, limit: int, what: str) -> bytes:
    """All of ``stream`` (an aiohttp body or body part), refusing it past ``limit`` bytes with 413."""
    parts: list[bytes] = []
    size = 0
    while True:
        piece = await (stream.read_chunk(65_536) if isinstance(stream, BodyPartReader) else stream.read(65_536))
        if not piece:
            return b"".join(parts)
        size += len(piece)
        if size > limit:
            raise ApiError(413, f"{what} is over {limit} bytes", code="request_too_large")
        parts.append(piece)


class Routes:
    def __init__(
        self,
        services: Services,
        *,
        models: dict[str, dict[str, Any]],
        voices: Sequence[str],
        max_upload_bytes: int,
        max_body_bytes: int,
        max_audio_s: float,
        max_input_chars: int,
    ) -> None:
        self.services = services
        self.models = models
        self.voices = tuple(voices)
        self.max_upload_bytes = max_upload_bytes
        self.max_body_bytes = max_body_bytes
        self.max_audio_s = max_audio_s
        self.max_input_chars = max_input_chars

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_get("/v1/models/{model}", self.get_model)
        app.router.add_post("/v1/audio/transcriptions", self.transcriptions)
        app.router.add_post("/v1/audio/speech", self.speech)
        app.router.add_post("/v1/chat/completions", self.chat)

    async def _json(self, request: web.Request) -> dict[str, Any]:
        return wire.parse_json(await read_bounded(request.content, self.max_body_bytes, "the body"))

    # -- models ------------------------------------------------------------------------------

    async def list_models(self, request: web.Request) -> web.Response:
        return web.json_response(wire.model_list(self.models))

    async def get_model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        if name not in self.models:
            raise ApiError(404, f"the model '{name}' does not exist", code="model_not_found", param="model")
        return web.json_response(wire.model_card(name, self.models[name]))

    # -- transcriptions ----------------------------------------------------------------------

    async def transcriptions(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise ApiError(
                400, "send the audio as multipart/form-data with a 'file' part", code="invalid_request", param="file"
            )
        try:
            audio, fields = await self._form(request)
        except (ValueError, AssertionError, ClientPayloadError) as err:  # aiohttp's reader on a broken body
            raise ApiError(400, f"the multipart body is malformed ({err})", code="invalid_request") from None
        if audio is None:
            raise ApiError(400, "'file' is required", code="missing_required_parameter", param="file")
        if not audio:
            raise ApiError(400, "the uploaded file is empty (0 bytes)", code="audio-empty", param="file")
        fmt = fields.get("response_format", "json")
        if fmt not in wire.TRANSCRIPTION_FORMATS:
            raise ApiError(
                400,
                f"response_format '{fmt}' is not one of {', '.join(wire.TRANSCRIPTION_FORMATS)}",
                code="invalid_value",
                param="response_format",
            )
        language = fields.get("language", "").split("-")[0].lower()
        pcm = await asyncio.to_thread(_decode, audio)
        duration_s = len(pcm) / SAMPLE_RATE_HZ
        if duration_s > self.max_audio_s:
            raise ApiError(
                400,
                f"the audio is {duration_s:.0f} s long; at most {self.max_audio_s:.0f} s",
                code="audio-too-long",
                param="file",
            )
        utterance = Utterance(
            pcm,
            end_of_speech_ms=duration_s * 1000.0,
            language=language if language in ("zh", "en") else "",
            previous_text=fields.get("prompt", ""),
        )
        try:
            transcript = await self.services.transcribe(utterance)
        except AssistantError as err:
            raise from_assistant(err, param="file") from err
        content_type, body = wire.transcription(
            fmt, transcript.text, language=transcript.language, duration_s=duration_s
        )
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _form(self, request: web.Request) -> tuple[bytes | None, dict[str, str]]:
        """The ``file`` part and the text fields, each bounded, all of them within the upload limit."""
        fields: dict[str, str] = {}
        audio: bytes | None = None
        left = self.max_upload_bytes
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader):
                raise ApiError(400, "nested multipart bodies are not supported", code="invalid_request")
            if part.name == "file":
                audio = await read_bounded(part, left, "the upload")
                left -= len(audio)
            else:
                value = await read_bounded(part, min(FIELD_BYTES, left), f"the field '{part.name}'")
                left -= len(value)
                fields[str(part.name)] = value.decode("utf-8", "replace")
        return audio, fields

    # -- speech ------------------------------------------------------------------------------

    async def speech(self, request: web.Request) -> web.StreamResponse:
        asked = wire.parse_speech(await self._json(request), voices=self.voices, max_input_chars=self.max_input_chars)
        sentences = split_sentences(asked.text) or [asked.text]
        chunks = self._speak(sentences, asked.voice)
        try:
            first = await anext(chunks)  # the first audio, or the error, before any status is sent
        except StopAsyncIteration:
            raise ApiError(500, "the synthesizer produced no audio", code="tts-failed") from None
        except AssistantError as err:
            raise from_assistant(err) from err
        if asked.response_format == "wav":
            rest = [c async for c in chunks]  # a WAV header states its length: the whole file first
            pcm, rate = join_chunks([first, *rest])
            return web.Response(body=wav_bytes(pcm, rate), headers={"Content-Type": "audio/wav"})
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        async with closing(chunks):
            await response.write(_pcm24(first))
            async for piece in chunks:
                await response.write(_pcm24(piece))
        await response.write_eof()
        return response

    async def _speak(self, sentences: list[str], voice: str) -> AsyncIterator[AudioChunk]:
        for sentence in sentences:
            async with closing(self.services.speak(sentence, voice=voice)) as chunks:
                async for piece in chunks:
                    yield piece

    # -- chat --------------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        asked = wire.parse_chat(await self._json(request))
        cid, created = "chatcmpl-" + uuid.uuid4().hex, int(time.time())
        question = Transcript(asked.question)
        async with closing(self.services.answer_once(question, history=asked.history)) as events:
            if not asked.stream:
                return web.json_response(await whole(events, cid, created))
            return await stream(request, events, cid, created)


def _decode(audio: bytes) -> np.ndarray:
    """Any file the daemon can read (WAV, FLAC, MP3, OGG ...) as 16 kHz mono int16."""
    with tempfile.TemporaryDirectory(prefix="assistant-upload-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(audio)
        try:
            return decode_file(path)
        except AssistantError as err:
            raise from_assistant(err, param="file") from err


def _pcm24(piece: AudioChunk) -> bytes:
    pcm = np.frombuffer(piece.pcm, dtype="<i2")
    return resample_int16(pcm, piece.sample_rate_hz, wire.PCM_RATE_HZ).astype("<i2").tobytes()
