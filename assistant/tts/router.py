"""The voice router: the one Synthesizer the turn talks to.

For each sentence it (1) replays the instant-reply cache when the sentence is a cached FAQ answer,
else (2) makes the text speakable, (3) cuts it into language runs and gives each run to a voice that
speaks that language (the sentence's own voice when it can, else ``[tts] voice`` for English and
``[tts] voice_zh`` for Chinese), and (4) dispatches to the engine the voice names. Engine instances
are created on first use and shared by every session; each engine guards its own model.

All audio of one sentence leaves at one sample rate (the first run's), because the wire announces the
rate once per sentence (``audio-start``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping

import numpy as np

from assistant.audio.envelope import EnvelopeFollower
from assistant.audio.pcm import chunks_from_pcm, resample_int16
from assistant.config import Settings
from assistant.stages import (
    AssistantError,
    AsyncClosing,
    AudioChunk,
    Closing,
    ModelMissingError,
    SynthesizeError,
    Synthesizer,
    Versioned,
    Voice,
    VoiceLoading,
)
from assistant.tts.cache import ReplyCache
from assistant.tts.speakable import make_speakable, split_by_language
from assistant.tts.voices import find_voice, voice_identity

log = logging.getLogger(__name__)

EngineFactory = Callable[[str], Synthesizer]
"""Makes the engine a voice.toml names (``assistant.registry.synthesizer_engine``)."""


def engine_version(engine: Synthesizer) -> str:
    """An engine's ``version`` (model + library versions), or its class name when it has none."""
    return engine.version if isinstance(engine, Versioned) else type(engine).__name__


class VoiceRouter:
    """A ``Synthesizer``; also a ``VoiceSelector`` (``voice_for``), a ``SpeechPrerenderer``
    (``prerender``), ``Preloading`` and ``AsyncClosing`` (its engines)."""

    def __init__(
        self,
        settings: Settings,
        *,
        engines: Mapping[str, Synthesizer] | None = None,
        engine_factory: EngineFactory | None = None,
        cache: ReplyCache | None = None,
    ) -> None:
        self.settings = settings
        self._engines: dict[str, Synthesizer] = dict(engines or {})
        self._factory = engine_factory
        self._lock = threading.Lock()
        self._voices: dict[str, Voice] = {}
        self._identities: dict[str, str] = {}
        self._fallen_back: dict[str, Voice] = {}
        self.cache = cache or ReplyCache(settings.path(settings.general.cache_dir))
        self._faq_texts: set[str] = set()

    # --- voices and engines ----------------------------------------------------------------

    def voice(self, name: str) -> Voice:
        if name not in self._voices:
            self._voices[name] = find_voice(self.settings, name)
        return self._voices[name]

    def voice_for(self, language: str) -> Voice:
        """The configured voice for a language: ``[tts] voice_zh`` for Chinese, ``[tts] voice`` otherwise."""
        name = self.settings.tts.voice_zh if language.lower().startswith("zh") else self.settings.tts.voice
        return self.voice(name)

    def engine(self, name: str) -> Synthesizer:
        """The shared engine instance for an engine name, created on first use."""
        with self._lock:
            if name not in self._engines:
                if self._factory is None:
                    raise SynthesizeError("tts-engine", f"no TTS engine '{name}' was given to the voice router")
                self._engines[name] = self._factory(name)
            return self._engines[name]

    def _usable(self, voice: Voice) -> Voice:
        """The voice itself, or its ``fallback`` voice when its engine is not installed here."""
        if voice.name in self._fallen_back:
            return self._fallen_back[voice.name]
        return voice

    def _fall_back(self, voice: Voice, err: AssistantError) -> Voice | None:
        name = voice.options.get("fallback")
        if not name or not isinstance(err, ModelMissingError):
            return None
        replacement = self.voice(str(name))
        log.warning("voice '%s' is unavailable (%s); speaking with '%s' instead", voice.name, err.message, name)
        self._fallen_back[voice.name] = replacement
        return replacement

    def identity(self, voice: Voice) -> str:
        """Voice identity plus engine version: what cached audio for this voice depends on."""
        key = f"{voice.name}@{voice.path}"
        if key not in self._identities:
            self._identities[key] = voice_identity(voice)
        parts = [self._identities[key], engine_version(self.engine(self._usable(voice).engine))]
        return "/".join(parts)

    def _cache_key(self, voice: Voice) -> tuple[str, str]:
        """(voice identity, engine versions) covering every voice a sentence may be routed to."""
        voices = [voice]
        for language in ("en", "zh"):
            try:
                voices.append(self.voice_for(language))
            except AssistantError:
                # A missing routing voice must not stop this voice from speaking; it fails (with
                # its own message) only if a sentence actually needs it.
                continue
        identities = []
        versions = []
        for v in voices:
            v = self._usable(v)
            key = f"{v.name}@{v.path}"
            if key not in self._identities:
                self._identities[key] = voice_identity(v)
            identities.append(self._identities[key])
            versions.append(engine_version(self.engine(v.engine)))
        return "+".join(identities), "+".join(versions)

    async def preload(self) -> None:
        """Load the default voices' engines now (seconds), so the first reply does not wait for them."""
        for language in ("en", "zh"):
            voice = self._usable(self.voice_for(language))
            engine = self.engine(voice.engine)
            if not isinstance(engine, VoiceLoading):
                continue
            try:
                await asyncio.to_thread(engine.load, voice)
            except AssistantError as err:
                if self._fall_back(voice, err) is None:
                    raise

    async def aclose(self) -> None:
        """Close every engine created so far (worker threads, processes, connections)."""
        with self._lock:
            engines = list(self._engines.values())
        for engine in engines:
            try:
                if isinstance(engine, AsyncClosing):
                    await engine.aclose()
                elif isinstance(engine, Closing):
                    await asyncio.to_thread(engine.close)
            except Exception as err:  # shutting down: one engine's failure must not keep the others open
                log.warning("closing %s failed: %s", type(engine).__name__, err)

    # --- speaking --------------------------------------------------------------------------

    async def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
        if self.settings.ahead.faq_audio:
            identity, versions = self._cache_key(voice)
            cached = self.cache.get(sentence, voice_name=voice.name, voice_identity=identity, engine_version=versions)
            if cached is not None:
                for chunk in cached.chunks():
                    yield chunk
                return
            if sentence.strip() in self._faq_texts:
                # First use of a known FAQ answer's unit: play it as it renders, and store it once it
                # was rendered completely (a barge-in leaves nothing half-made in the cache).
                chunks: list[AudioChunk] = []
                async with contextlib.aclosing(self._render(sentence, voice)) as rendered:
                    async for chunk in rendered:
                        chunks.append(chunk)
                        yield chunk
                if chunks:
                    # Keyed by what actually spoke (a voice may have fallen back while rendering).
                    identity, versions = self._cache_key(voice)
                    self.cache.put(sentence, chunks, voice_name=voice.name, voice_identity=identity, engine_version=versions)
                return
        # Closed explicitly (barge-in): the engine's worker stops now, not when garbage is collected.
        async with contextlib.aclosing(self._render(sentence, voice)) as rendered:
            async for chunk in rendered:
                yield chunk

    async def _render(self, sentence: str, voice: Voice) -> AsyncGenerator[AudioChunk, None]:
        # Figures are read in the sentence's own language, not the voice's.
        text = make_speakable(sentence)
        if not text:
            return
        runs = [(lang_, part) for lang_, part in split_by_language(text)]
        runs = _merge_runs(runs, voice)
        rate: int | None = None
        follower = EnvelopeFollower()
        for run_lang, part in runs:
            run_voice = voice if _covers(voice, run_lang) else self.voice_for(run_lang)
            async with contextlib.aclosing(self._speak_run(part, run_voice)) as run_chunks:
                async for chunk in run_chunks:
                    rate = rate or chunk.sample_rate_hz
                    if chunk.sample_rate_hz != rate:
                        pcm = resample_int16(np.frombuffer(chunk.pcm, dtype="<i2"), chunk.sample_rate_hz, rate)
                        for piece in chunks_from_pcm(pcm, rate, follower=follower):
                            yield piece
                    else:
                        yield chunk

    async def _speak_run(self, text: str, voice: Voice) -> AsyncGenerator[AudioChunk, None]:
        voice = self._usable(voice)
        try:
            engine = self.engine(voice.engine)
            async with contextlib.aclosing(engine.synthesize(text, voice=voice)) as stream:  # type: ignore[type-var]
                async for chunk in stream:
                    yield chunk
        except AssistantError as err:
            replacement = self._fall_back(voice, err)
            if replacement is None:
                raise
            async for chunk in self._speak_run(text, replacement):
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as err:
            raise SynthesizeError("tts-failed", f"voice '{voice.name}' ({voice.engine}) failed: {err}") from err

    # --- the instant-reply cache ---------------------------------------------------------------

    async def prerender(
        self,
        texts: Iterable[str],
        *,
        voices: Iterable[Voice] | None = None,
        wait_idle: Callable[[], Awaitable[None]] | None = None,
    ) -> int:
        """Render FAQ answers into the cache (each in the voice of its language unless ``voices``).

        Returns how many were rendered now (already-cached ones are skipped). Also remembers the texts
        as FAQ answers, so one not rendered yet is cached on first use. ``wait_idle`` is awaited before
        each unit: the daemon passes one that waits while a turn runs, because rendering ahead on the
        same two cores made a live reply wait 16-20 s for its first audio right after start.
        """
        made = 0
        wanted = list(voices) if voices is not None else None
        units = list(_units(texts))
        self._faq_texts.update(unit for unit, _ in units)
        for unit, language in units:
            text = unit
            for voice in wanted or [self.voice_for(language)]:
                identity, versions = self._cache_key(voice)
                if self.cache.get(text, voice_name=voice.name, voice_identity=identity, engine_version=versions):
                    continue
                if wait_idle is not None:
                    await wait_idle()
                chunks = [c async for c in self._render(text, voice)]
                if chunks:
                    identity, versions = self._cache_key(voice)  # after a fallback, keyed by what spoke
                    self.cache.put(text, chunks, voice_name=voice.name, voice_identity=identity, engine_version=versions)
                    made += 1
        return made

    def remember_faq(self, texts: Iterable[str]) -> None:
        """Mark texts as FAQ answers without rendering them now: each is cached the first time it is spoken."""
        self._faq_texts.update(unit for unit, _ in _units(texts))


def _units(texts: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(speech unit, its language) for each stored answer: the turn speaks an answer in exactly these
    units (assistant.sentences.speech_units) and picks each unit's voice the same way."""
    from assistant.language import detect_language
    from assistant.sentences import speech_units

    for text in texts:
        text = text.strip()
        if not text:
            continue
        whole = detect_language(text)
        for unit in speech_units(text):
            yield unit, detect_language(unit, default=whole)


def _covers(voice: Voice, language: str) -> bool:
    return any(language.startswith(lang) or lang.startswith(language) for lang in voice.languages)


def _merge_runs(runs: list[tuple[str, str]], voice: Voice) -> list[tuple[str, str]]:
    """Runs the sentence's voice can speak all together stay one run (no needless cuts)."""
    out: list[tuple[str, str]] = []
    previous = ""
    for lang, part in runs:
        key = "voice" if _covers(voice, lang) else lang
        if out and out[-1][0] == key:
            sep = "" if lang == previous == "zh" else " "
            out[-1] = (key, out[-1][1] + sep + part)
        else:
            out.append((key, part))
        previous = lang
    return [(voice.languages[0] if key == "voice" else key, part) for key, part in out]
