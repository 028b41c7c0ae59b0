"""The listener's decisions (assistant.listening.policy), pure: speech states in, actions out, on
stream time only (no audio, no tasks, no clock)."""

from __future__ import annotations

import pytest

from assistant.audio.vad import SpeechState
from assistant.config import Settings
from assistant.listening import policy
from assistant.listening.policy import Hearing, ends_sentence
from assistant.stages import SAMPLE_RATE_HZ, Transcript

MS = SAMPLE_RATE_HZ // 1000


def state(now_ms: int, last_voiced_ms: int, *, gap_ms: int = 0, start_ms: int = 0) -> SpeechState:
    return SpeechState(start_ms * MS, last_voiced_ms * MS, now_ms * MS, True, gap_ms * MS)


def kinds(actions: list[policy.Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def hearing() -> Hearing:
    s = Settings()
    s.asr.partial_interval_ms = 700
    return Hearing(s, commit_sample=0)


def test_a_pause_transcribes_everything_voiced_since_the_last_commit() -> None:
    h = hearing()
    assert kinds(h.step(state(1500, 1500))) == ["Transcribe"]  # a partial while talking
    h.partial = None  # (dropped: the test is about the pause)
    actions = h.step(state(1600, 1536))  # 64 ms of silence: [vad] pause_ms
    (ahead,) = [a for a in actions if isinstance(a, policy.Transcribe)]
    assert ahead.job.kind == "ahead" and (ahead.job.from_sample, ahead.job.to_sample) == (0, 1600 * MS)
    assert ahead.job.last_voiced == 1536 * MS and h.spec is ahead.job


def test_a_finished_sentence_ends_the_turn_after_the_early_silence_only() -> None:
    h = hearing()
    h.step(state(1600, 1536))
    assert h.spec is not None
    h.spec.result = Transcript("Where is the canteen?", "en")
    actions = h.step(state(1700, 1536))  # 164 ms of silence: not yet
    assert kinds(actions) == ["StopPreparing", "Prepare"]  # the work ahead gets the whole question
    assert not h.ended
    assert kinds(h.step(state(1786, 1536)))[-1] == "EndTurn"  # 250 ms: [vad] early_silence_ms
    assert h.ended and h.step(state(1800, 1536)) == []


def test_an_unfinished_transcript_waits_unless_the_work_ahead_found_it_answerable() -> None:
    h = hearing()
    h.step(state(1600, 1536))
    assert h.spec is not None
    h.spec.result = Transcript("where is the canteen", "en")
    h.step(state(1700, 1536))
    assert "EndTurn" not in kinds(h.step(state(1900, 1536)))
    h.spec.answerable = True  # an FAQ entry answers it
    assert kinds(h.step(state(1900, 1536)))[-1] == "EndTurn"


def test_voice_after_a_real_pause_commits_the_first_part_as_context() -> None:
    h = hearing()
    h.step(state(1600, 1536))
    assert h.spec is not None
    h.spec.result = Transcript("Where do visitors", "en")
    h.step(state(1700, 1536))
    actions = h.step(state(1900, 1900, gap_ms=300))  # the visitor goes on after 300 ms
    assert policy.StopPreparing(h.spec) not in actions and h.spec is None
    assert h.committed == ["Where do visitors"] and h.commit_sample == 1600 * MS
    assert h.previous_text == "Where do visitors"
    assert h.so_far(Transcript("get a badge?", "en")).text == "Where do visitors get a badge?"


def test_a_dip_inside_a_word_is_not_a_commit_point() -> None:
    h = hearing()
    h.step(state(1600, 1536))
    assert h.spec is not None
    h.spec.result = Transcript("Where do visi", "en")
    h.step(state(1900, 1900, gap_ms=96))  # 96 ms < 160 ms: a dip inside "visitors"
    assert h.committed == [] and h.commit_sample == 0 and h.spec is None


def test_partials_are_spaced_and_a_pause_drops_one_still_waiting_for_the_model() -> None:
    h = hearing()
    (first,) = h.step(state(800, 800))
    assert isinstance(first, policy.Transcribe) and first.job.kind == "partial"
    assert h.step(state(1100, 1100)) == []  # one at a time
    first.job.result = Transcript("where", "en")
    actions = h.step(state(1200, 1200))
    assert policy.ShowPartial(Transcript("where", "en")) in actions and "Prepare" in kinds(actions)
    assert "Transcribe" not in kinds(actions)  # 700 ms since the last partial had not passed
    (second,) = [a for a in h.step(state(1500, 1500)) if isinstance(a, policy.Transcribe)]
    dropping = h.step(state(1600, 1536))  # a pause while the partial waits for the model
    assert policy.Drop(second.job) in dropping and h.partial is None
    h2 = hearing()
    (running,) = h2.step(state(800, 800))
    assert policy.Drop(running.job) not in h2.step(state(900, 836), holder=running.job)  # the model has it


def test_a_slow_machine_spaces_partials_by_three_times_the_last_transcription() -> None:
    h = hearing()
    h.busy_samples = 400 * MS  # the last transcription took 400 ms
    assert h.step(state(800, 800)) == []  # 800 ms < 3 x 400 ms since the stream began
    (first,) = h.step(state(1200, 1200))
    first.job.result = Transcript("", "en")
    h.step(state(1300, 1300))
    assert "Transcribe" not in kinds(h.step(state(2100, 2100)))  # 900 ms < 3 x 400 ms
    assert "Transcribe" in kinds(h.step(state(2400, 2400)))


def test_the_final_job_is_the_pause_transcription_only_when_it_covers_every_voiced_sample() -> None:
    h = hearing()
    h.step(state(1600, 1536))
    assert h.final_job(1536 * MS) is h.spec
    assert h.final_job(1700 * MS) is None  # voice came back after it: the tail is transcribed


def test_ends_sentence() -> None:
    assert ends_sentence("Where is it?") and ends_sentence("在哪里。") and not ends_sentence("and then...")


# -- with a turn model ([turn] model): the policy asks it once per pause and weighs its answer ------


def judged_hearing() -> Hearing:
    s = Settings()
    s.asr.partial_interval_ms = 700
    s.turn.ask_ms, s.turn.complete_above, s.turn.unsure_ms, s.turn.wait_ms = 200, 0.5, 1000, 2000
    return Hearing(s, commit_sample=0, judged=True)


def at_pause(h: Hearing, text: str) -> None:
    """A pause at 1536 ms whose transcription ahead came back as ``text``."""
    h.step(state(1600, 1536))
    assert h.spec is not None
    h.spec.result = Transcript(text, "en")


def test_the_model_is_asked_once_per_pause_after_ask_ms_on_the_utterance_so_far() -> None:
    h = judged_hearing()
    at_pause(h, "Where is the canteen?")
    assert "Judge" not in kinds(h.step(state(1700, 1536, start_ms=100)))  # 164 ms: not yet
    (judge,) = [a for a in h.step(state(1750, 1536, start_ms=100)) if isinstance(a, policy.Judge)]
    j = judge.judgement
    assert (j.from_sample, j.to_sample, j.last_voiced) == (100 * MS, 1750 * MS, 1536 * MS)
    assert "Judge" not in kinds(h.step(state(1800, 1536, start_ms=100)))  # once per pause
    # A finished sentence does not end the turn before the model has answered (without a model
    # it would have at 250 ms: [vad] early_silence_ms).
    assert "EndTurn" not in kinds(h.step(state(1900, 1536, start_ms=100)))
    j.probability = 0.9
    assert h.step(state(1900, 1536, start_ms=100))[-1] == policy.EndTurn("early")
    assert h.ended


def test_a_new_pause_is_judged_afresh_and_a_late_answer_for_an_old_one_is_ignored() -> None:
    h = judged_hearing()
    at_pause(h, "Where do")
    (judge,) = [a for a in h.step(state(1750, 1536)) if isinstance(a, policy.Judge)]
    h.step(state(2000, 2000, gap_ms=400))  # the visitor goes on
    judge.judgement.probability = 0.99  # ...and the model's answer about the old pause comes late
    h.step(state(2600, 2528))  # a new pause
    assert h.spec is not None
    h.spec.result = Transcript("visitors park?", "en")
    actions = h.step(state(2600 + 200, 2528))
    (again,) = [a for a in actions if isinstance(a, policy.Judge)]
    assert again.judgement.last_voiced == 2528 * MS and "EndTurn" not in kinds(actions)


@pytest.mark.parametrize(
    ("text", "probability", "ends_at_ms", "endpoint"),
    [
        ("Where is the canteen?", 0.9, 200, "early"),  # both: at once
        ("where is the", 0.9, 1000, "early"),  # only the voice: [turn] unsure_ms
        ("Where is the.", 0.1, 1000, "early"),  # only the transcript: unsure_ms
        ("where is the", 0.1, 2000, "silence"),  # neither: [turn] wait_ms, which always ends
    ],
)
def test_the_silence_that_ends_the_turn_follows_the_evidence(
    text: str, probability: float, ends_at_ms: int, endpoint: str
) -> None:
    h = judged_hearing()
    at_pause(h, text)
    for judge in (a for a in h.step(state(1536 + 200, 1536)) if isinstance(a, policy.Judge)):
        judge.judgement.probability = probability
    ended_at = next(ms for ms in range(1536 + 200, 1536 + 3000, 32) if "EndTurn" in kinds(h.step(state(ms, 1536))))
    assert ended_at - 1536 == pytest.approx(ends_at_ms, abs=32)
    assert h.ended


def test_a_failed_model_leaves_that_pause_to_the_silence_rule() -> None:
    h = judged_hearing()
    at_pause(h, "where is the")
    (judge,) = [a for a in h.step(state(1750, 1536)) if isinstance(a, policy.Judge)]
    judge.judgement.failed = True
    assert "EndTurn" not in kinds(h.step(state(1536 + 480, 1536)))
    assert h.step(state(1536 + 500, 1536))[-1] == policy.EndTurn("silence")  # [vad] silence_ms, not 2000
