"""Hearing a question: endpointing, transcription ahead of the end, and the end-of-turn decision.

``policy``: the decisions, pure, on stream time (what to transcribe when, when the turn ends);
``listener``: the runner that carries them out for one audio stream.
"""

from assistant.audio.vad import VoiceEnd, VoiceStart
from assistant.listening.listener import (
    Heard,
    Listener,
    ListenItem,
    NotHeard,
    Partial,
    PrepareHook,
    transcribe_stream,
)
from assistant.listening.policy import ends_sentence

__all__ = [
    "Heard",
    "ListenItem",
    "Listener",
    "NotHeard",
    "Partial",
    "PrepareHook",
    "VoiceEnd",
    "VoiceStart",
    "ends_sentence",
    "transcribe_stream",
]
