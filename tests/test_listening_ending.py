"""The end-of-turn rule (assistant.listening.ending), pure: evidence at a pause in, silence out."""

from __future__ import annotations

import pytest

from assistant.config import Settings
from assistant.listening.ending import Evidence, end_after_ms, ends_sentence, limit_ms


def settings() -> Settings:
    s = Settings()
    s.vad.silence_ms, s.vad.early_silence_ms = 500, 250
    s.turn.ask_ms, s.turn.complete_above, s.turn.unsure_ms, s.turn.wait_ms = 200, 0.5, 1000, 2000
    return s


def test_without_a_model_a_finished_sentence_ends_early_and_anything_else_on_silence() -> None:
    s = settings()
    assert end_after_ms(Evidence(), s) == 500  # nothing transcribed yet
    assert end_after_ms(Evidence(transcript="where is the canteen"), s) == 500
    assert end_after_ms(Evidence(transcript="Where is the canteen?"), s) == 250
    assert end_after_ms(Evidence(transcript="where is the canteen", answerable=True), s) == 250
    s.vad.early_silence_ms = 0  # early ends off
    assert end_after_ms(Evidence(transcript="Where is the canteen?"), s) == 500


@pytest.mark.parametrize(
    ("transcript", "answerable", "probability", "expected"),
    [
        ("Where is the canteen?", False, 0.9, 200),  # both say finished: at once
        ("where is the canteen", True, 0.9, 200),  # answerable counts as finished text
        ("where is the", False, 0.9, 1000),  # only the voice
        ("Where is the.", False, 0.1, 1000),  # only the transcript
        ("where is the", False, 0.1, 2000),  # neither: the limit
        (None, False, 0.9, 1000),  # the transcript not ready yet: the voice alone, for now
        ("Where is the canteen?", False, None, 2000),  # the model not asked yet: nothing ends before it
        ("Where is the canteen?", False, 0.5, 1000),  # "above" is strict
    ],
)
def test_with_a_model_the_more_evidence_says_finished_the_sooner_the_end(
    transcript: str | None, answerable: bool, probability: float | None, expected: int
) -> None:
    evidence = Evidence(transcript=transcript, answerable=answerable, judged=True, probability=probability)
    assert end_after_ms(evidence, settings()) == expected


def test_the_endpointer_waits_as_long_as_the_rule_can() -> None:
    s = settings()
    assert limit_ms(s, judged=False) == 500
    assert limit_ms(s, judged=True) == 2000
    s.turn.unsure_ms = s.turn.wait_ms = 300  # a limit shorter than the silence rule's keeps the silence rule's
    assert limit_ms(s, judged=True) == 500


def test_ends_sentence() -> None:
    assert ends_sentence("Where is it?") and ends_sentence("在哪里？") and ends_sentence('He said "yes."')
    assert not ends_sentence("and then...") and not ends_sentence("so…") and not ends_sentence("  ")
