"""Speech out: speakable text, voices, the mouth envelope, the voice router and the instant-reply cache.

The daemon and the turn use ``router_from_settings(settings)``: a Synthesizer that routes each sentence
to the engine (and, per language, the voice) that should speak it.
"""

from assistant.tts.cache import CachedReply, ReplyCache
from assistant.tts.envelope import CEILING_DBFS, FLOOR_DBFS, EnvelopeFollower, envelope, visemes
from assistant.tts.faq import faq_answers, prerender_faq
from assistant.tts.pcm import chunks_from_pcm, join_chunks, resample_int16, write_wav
from assistant.tts.router import VoiceRouter, router_from_settings
from assistant.tts.speakable import make_speakable, split_by_language, strip_markup
from assistant.tts.voices import ClipReport, add_voice, check_clip, find_voice, list_voices, load_voice, voice_identity

__all__ = [
    "CEILING_DBFS",
    "FLOOR_DBFS",
    "CachedReply",
    "ClipReport",
    "EnvelopeFollower",
    "ReplyCache",
    "VoiceRouter",
    "add_voice",
    "check_clip",
    "chunks_from_pcm",
    "envelope",
    "faq_answers",
    "find_voice",
    "join_chunks",
    "list_voices",
    "load_voice",
    "make_speakable",
    "prerender_faq",
    "resample_int16",
    "router_from_settings",
    "split_by_language",
    "strip_markup",
    "visemes",
    "voice_identity",
    "write_wav",
]
