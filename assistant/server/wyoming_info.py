"""What the Wyoming server offers, as plain data (``Catalogue``), and the ``info`` event made from it.

The composition root fills the catalogue from the settings, the model pack catalogue and the voice
folders, once at start; ``describe`` then costs one serialisation, well within Home Assistant's 1 s
(no model is loaded or asked).
"""

from __future__ import annotations

from dataclasses import dataclass

from wyoming.info import (
    AsrModel,
    AsrProgram,
    Attribution,
    HandleModel,
    HandleProgram,
    Info,
    TtsProgram,
    TtsVoice,
)


@dataclass(frozen=True)
class Offer:
    """One model or voice, with who made it and where it is from."""

    name: str
    description: str
    languages: tuple[str, ...]
    made_by: str
    url: str
    version: str | None = None


@dataclass(frozen=True)
class Catalogue:
    """What this daemon serves. An empty ``asr`` or ``voices`` means no transcriber or synthesizer is
    loaded: that program is left out of ``info`` (and its requests get an ``error`` event)."""

    asr: tuple[Offer, ...]
    voices: tuple[Offer, ...]
    handle: tuple[Offer, ...]
    version: str
    """The daemon's version (``assistant.__version__``)."""
    url: str
    """Where the daemon itself is found (its avatar page): the programs' attribution."""


def info(catalogue: Catalogue) -> Info:
    """The ``info`` answer to ``describe``: one program per service, each listing its real offers."""
    made = Attribution(name="assistant (knowledge-base voice assistant daemon)", url=catalogue.url)

    def attribution(offer: Offer) -> Attribution:
        return Attribution(name=offer.made_by, url=offer.url)

    out = Info()
    if catalogue.asr:
        models = [
            AsrModel(o.name, attribution(o), True, o.description, o.version, list(o.languages))
            for o in catalogue.asr
        ]
        out.asr.append(
            AsrProgram(
                "assistant-asr", made, True, "Speech to text on the daemon's shared Whisper", catalogue.version,
                models, supports_transcript_streaming=False,
            )
        )
    if catalogue.voices:
        voices = [
            TtsVoice(o.name, attribution(o), True, o.description, o.version, list(o.languages))
            for o in catalogue.voices
        ]
        out.tts.append(
            TtsProgram(
                "assistant-tts", made, True, "Text to speech, sentence by sentence, on the daemon's voices",
                catalogue.version, voices, supports_synthesize_streaming=True,
            )
        )
    if catalogue.handle:
        handlers = [
            HandleModel(o.name, attribution(o), True, o.description, o.version, list(o.languages))
            for o in catalogue.handle
        ]
        out.handle.append(
            HandleProgram(
                "assistant", made, True,
                "Answers from the organisation's knowledge base (stored FAQ answers, grounded LLM replies, "
                "an honest decline otherwise)",
                catalogue.version, handlers, supports_handled_streaming=True,
            )
        )
    return out
