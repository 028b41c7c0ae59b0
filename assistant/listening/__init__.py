"""Hearing a question: endpointing, transcription ahead of the end, and the end-of-turn decision.

``policy``: the decisions, pure, on stream time (what to transcribe when, when the turn ends);
``ending``: the end-of-turn rule it applies at each pause (pure); ``listener``: the runner that
carries them out for one audio stream.
"""

from assistant.audio.vad import VoiceEnd, VoiceStart
from assistant.listening.ending import ends_sentence
from assistant.listening.listener import (
    Heard,
    Listener,
    ListenItem,
    NotHeard,
    Partial,
    PrepareHook,
    make_endpointer,
    transcribe_stream,
)

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
    "make_endpointer",
    "transcribe_stream",
]
