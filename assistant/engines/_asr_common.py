"""What the three Whisper-family transcribers share: the terms prompt, language choice, and
running an in-process model off the event loop. Text clean-up is ``assistant.transcripts``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np

from assistant.language import detect_language
from assistant.stages import SAMPLE_RATE_HZ, TranscribeError, Transcript, Utterance

log = logging.getLogger(__name__)


def pick_language(probabilities: Sequence[tuple[str, float]], allowed: Sequence[str]) -> str:
    """The most probable language among ``allowed`` (all when empty); codes as Whisper names them."""
    for code, _ in sorted(probabilities, key=lambda p: -p[1]):
        code = code.strip("<|>")
        if not allowed or code in allowed:
            return code
    return allowed[0] if allowed else ""


def language_of(text: str, hint: str = "") -> str:
    return hint or (detect_language(text) if text else "")



# --------------------------------------------------------------------------------------------
# What the engine classes share
# --------------------------------------------------------------------------------------------


class PromptTerms:
    """Domain vocabulary (product names, 商旅, 报销...) offered to Whisper as its initial prompt."""

    prompt_terms: tuple[str, ...] = ()
    prompt_languages: tuple[str, ...] | None = None
    """The languages whose speech is prompted with the terms (None: every language)."""

    def set_prompt_terms(self, terms: Sequence[str], *, languages: Sequence[str] | None = None) -> None:
        """``assistant.stages.TermsPrompted``: the composition root passes the knowledge base's terms
        (``[asr] prompt_from_kb``) for speech in ``[asr] prompt_languages``."""
        self.prompt_terms = tuple(terms)
        self.prompt_languages = None if languages is None else tuple(languages)

    def terms_for(self, language: str) -> tuple[str, ...]:
        """The terms to prompt speech in ``language`` with (``build_prompt`` keeps those written in it);
        speech in a language not known yet (a server detects it) gets them as before."""
        if self.prompt_languages is not None and language and language not in self.prompt_languages:
            return ()
        return self.prompt_terms


class LocalWhisper(PromptTerms):
    """An in-process Whisper: the async Transcriber method runs the engine's blocking
    ``transcribe_sync`` (one model, serialised by the engine's lock) in a worker thread."""

    language: str = ""

    async def transcribe(self, utterance: Utterance) -> Transcript:
        if utterance.sample_rate_hz != SAMPLE_RATE_HZ:
            raise TranscribeError(
                "asr-input", f"utterances must be {SAMPLE_RATE_HZ} Hz, got {utterance.sample_rate_hz}"
            )
        audio = utterance.float32()
        language = utterance.language or self.language
        return await asyncio.to_thread(
            self.transcribe_sync,
            audio,
            language=language,
            previous_text=utterance.previous_text,
            draft=utterance.draft,
        )

    def transcribe_sync(
        self, audio: np.ndarray, *, language: str = "", previous_text: str = "", draft: bool = False
    ) -> Transcript:
        """``previous_text``, ``draft``: ``Utterance.previous_text``, ``Utterance.draft``."""
        raise NotImplementedError
