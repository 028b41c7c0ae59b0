"""Speech out: speakable text, voices, the voice router and the instant-reply cache (the mouth envelope
and PCM helpers are ``assistant.audio``).

The turn speaks through one Synthesizer, the voice router (``assistant.registry.synthesizer`` makes
it), which routes each sentence to the engine (and, per language, the voice) that should speak it.
"""

from assistant.tts.cache import CachedReply, ReplyCache
from assistant.tts.router import VoiceRouter
from assistant.tts.speakable import make_speakable, split_by_language, strip_markup
from assistant.tts.voices import ClipReport, add_voice, check_clip, find_voice, list_voices, load_voice, voice_identity

__all__ = [
    "CachedReply",
    "ClipReport",
    "ReplyCache",
    "VoiceRouter",
    "add_voice",
    "check_clip",
    "find_voice",
    "list_voices",
    "load_voice",
    "make_speakable",
    "split_by_language",
    "strip_markup",
    "voice_identity",
]
