"""When a pause ends the visitor's turn: one pure rule over what the listener knows at the pause.

Silence alone cannot tell a pause inside a question ("How do I... print?") from the end of one, so
at each pause the listener gathers evidence and asks this rule how much silence ends the turn:

- the transcript made at the pause (``[vad] pause_ms``): does it read as finished, a sentence end
  (. ? ! 。？！), or a question the work ahead can answer (an FAQ entry)?
- with a ``[turn] model`` (``assistant.stages.TurnDetector``, smart-turn v3.2), asked once per pause
  after ``[turn] ask_ms`` of silence: does the voice sound finished (probability above
  ``[turn] complete_above``)?

With the model, both saying finished ends the turn at once; one of them, after
``[turn] unsure_ms``; neither, after ``[turn] wait_ms`` (the limit, which always ends). Without it
(none configured, not fetched, or it failed at this pause) the rule is the silence rule:
``[vad] early_silence_ms`` after a finished transcript, ``[vad] silence_ms`` otherwise. The values
were chosen on the hesitation set (bench/end_of_turn.py, docs/measurements.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from assistant.config import Settings

_SENTENCE_END = (".", "?", "!", "。", "？", "！")


def ends_sentence(text: str) -> bool:
    """True when a transcript reads as a finished sentence (not trailing off with '...')."""
    text = text.rstrip().rstrip("\"'”’)")
    return bool(text) and text.endswith(_SENTENCE_END) and not text.endswith(("...", "…"))


@dataclass(frozen=True)
class Evidence:
    """What the listener knows at one pause."""

    transcript: str | None = None
    """The transcript made at this pause; None until it is ready."""
    answerable: bool = False
    """The work ahead found the question, as transcribed at this pause, answerable (an FAQ entry)."""
    judged: bool = False
    """A turn model listens: its verdict counts (``probability``, once it is known)."""
    probability: float | None = None
    """The model's probability that the turn is complete; None until it answered."""

    @property
    def finished_text(self) -> bool:
        return self.transcript is not None and (self.answerable or ends_sentence(self.transcript))


def end_after_ms(evidence: Evidence, settings: Settings) -> int:
    """The silence (ms after the last voiced sample) that ends the turn, given ``evidence``.

    Called again whenever the evidence grows (the transcript, the answerable mark, the model's
    answer): the caller ends the turn once the silence has reached the value returned last.
    """
    vad, turn = settings.vad, settings.turn
    if not evidence.judged:
        return vad.early_silence_ms if evidence.finished_text and vad.early_silence_ms > 0 else vad.silence_ms
    if evidence.probability is None:
        return turn.wait_ms
    votes = int(evidence.probability > turn.complete_above) + int(evidence.finished_text)
    return (turn.wait_ms, turn.unsure_ms, turn.ask_ms)[votes]


def limit_ms(settings: Settings, *, judged: bool) -> int:
    """The longest silence ``end_after_ms`` can return: where the endpointer must stop waiting by
    itself (with a model it would otherwise cut at ``[vad] silence_ms``, before the rule could wait)."""
    return max(settings.vad.silence_ms, settings.turn.wait_ms) if judged else settings.vad.silence_ms
