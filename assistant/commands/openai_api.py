"""The OpenAI-compatible endpoints, composed: the models and voices they offer (from the settings
and the voice folders, read once at start) and the daemon's services on the shared engines."""

from __future__ import annotations

from typing import Any

from assistant.config import Settings
from assistant.daemon import Daemon
from assistant.server.openai_api import OpenAIServer
from assistant.server.openai_routes import Routes
from assistant.server.openai_wire import CHAT_MODEL
from assistant.services import Services
from assistant.tts.voices import list_voices

SPEECH_MODEL = "assistant-speech"


def models(settings: Settings, *, asr: bool, voices: list[str]) -> dict[str, dict[str, Any]]:
    """``/v1/models``: the knowledge-base answer, and the transcriber and the voices when loaded.
    Transcription and speech take any ``model`` name (``whisper-1``, ``tts-1``): the daemon has one of each."""
    offered: dict[str, dict[str, Any]] = {
        CHAT_MODEL: {"serves": "chat.completions", "knowledge_base": list(settings.kb.paths), "llm": settings.llm.model}
    }
    if asr:
        offered[settings.asr.model] = {"serves": "audio.transcriptions", "engine": settings.asr.engine}
    if voices:
        offered[SPEECH_MODEL] = {"serves": "audio.speech", "voices": voices}
    return offered


def openai_server(settings: Settings, daemon: Daemon) -> OpenAIServer:
    """The server for ``[openai]`` (not started), on the daemon's shared engines."""
    engines = daemon.engines
    voices = {v.name: v for v in list_voices(settings)} if engines.synthesizer is not None else {}
    o = settings.openai
    routes = Routes(
        Services(daemon, voices=voices),
        models=models(settings, asr=engines.transcriber is not None, voices=sorted(voices)),
        voices=sorted(voices),
        max_upload_bytes=o.max_upload_bytes,
        max_body_bytes=o.max_body_bytes,
        max_audio_s=o.max_audio_s,
        max_input_chars=o.max_input_chars,
    )
    return OpenAIServer(o.uri, routes, token=settings.server.token, allowed_origins=settings.server.allowed_origins)
