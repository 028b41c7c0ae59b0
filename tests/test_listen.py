"""The Listener: endpointing + transcription ahead, on real recordings with a scripted transcriber.

Recordings are played at 4x real time on a loop with virtual time (tests/virtual_time.py): the
listener sees the stream a live microphone would give, and the tests take milliseconds. The fake
transcriber answers after a fixed delay and says what it was given (duration, context), so the
tests pin which audio was transcribed when.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from audio_data import recording, silence, trimmed, with_silence

from assistant.audio.sources import ArraySource
from assistant.config import Settings
from assistant.listening import Heard, Listener, NotHeard, Partial, VoiceEnd, VoiceStart, ends_sentence
from assistant.stages import TranscribeError, Transcript, Utterance

pytestmark = pytest.mark.virtual_time


@dataclass
class FakeTranscriber:
    """Answers ``words`` for an utterance, with ``suffix`` (a full stop makes it a sentence)."""

    suffix: str = "."
    delay_s: float = 0.01
    fail: bool = False
    calls: list[tuple[float, str]] = field(default_factory=list)
    drafts: list[bool] = field(default_factory=list)

    async def transcribe(self, utterance: Utterance) -> Transcript:
        self.calls.append((utterance.duration_s, utterance.previous_text))
        self.drafts.append(utterance.draft)
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise TranscribeError("asr-failed", "the model fell over")
        return Transcript(f"chunk{len(self.calls)} {utterance.duration_s:.1f}s{self.suffix}", "en")


def settings(partials: bool = True, **vad: int) -> Settings:
    s = Settings()
    s.asr.partials = partials
    s.asr.partial_interval_ms = 700
    for key, value in vad.items():
        setattr(s.vad, key, value)
    return s


async def listen(transcriber: FakeTranscriber, s: Settings, pcm: np.ndarray, speed: float = 4.0) -> list[object]:
    source = ArraySource(pcm, realtime=True, speed=speed)
    return [item async for item in Listener(transcriber, s).listen(source)]


def names(items: list[object]) -> list[str]:
    out = []
    for item in items:
        if isinstance(item, Partial):
            out.append("partial")
        else:
            out.append(type(item).__name__)
    return out


def test_ends_sentence() -> None:
    assert ends_sentence("He was not an ill-disposed young man.") and ends_sentence("请问在哪里？")
    assert not ends_sentence("and then...") and not ends_sentence("ten of clubs") and not ends_sentence("")


async def test_a_complete_sentence_ends_the_turn_early_with_its_transcript_ready() -> None:
    fake = FakeTranscriber(suffix=".")
    pcm = with_silence(recording("librivox/sense_and_sensibility_01_austen_64kb-0930.wav"), 500, 1500)
    items = await listen(fake, settings(), pcm)
    seq = names(items)
    assert seq[0] == "VoiceStart" and seq[-2:] == ["VoiceEnd", "Heard"]
    assert "partial" in seq[1:-3]  # partials while talking
    heard = items[-1]
    assert isinstance(heard, Heard) and heard.endpoint == "early"
    # Decided after early_silence_ms, not silence_ms (the transcript was already there).
    waited = heard.decided_stream_ms - heard.utterance.end_of_speech_ms
    assert 250 <= waited < 500
    final = heard.transcript
    assert final.final and final.text
    partials = [i for i in items if isinstance(i, Partial)]
    assert all(p.stream_ms <= heard.ready_stream_ms for p in partials)


async def test_partials_are_drafts_and_the_transcript_that_ends_the_turn_is_not() -> None:
    fake = FakeTranscriber(suffix="")
    items = await listen(fake, settings(), with_silence(recording("cards/005.wav"), 500, 1500))
    partial_texts = [i.transcript.text for i in items if isinstance(i, Partial)]
    heard = items[-1]
    assert isinstance(heard, Heard) and partial_texts

    def last_call(text: str) -> int:  # "chunk2 1.2s chunk5 0.8s": committed text, then the newest call's
        return int(re.findall(r"chunk(\d+)", text)[-1]) - 1

    assert fake.drafts[last_call(heard.transcript.text)] is False  # the pause's (or the tail's): a real one
    assert all(fake.drafts[last_call(text)] for text in partial_texts)  # each partial shown: a draft


async def test_an_unfinished_sentence_waits_for_the_full_silence() -> None:
    fake = FakeTranscriber(suffix="")
    pcm = with_silence(recording("cards/005.wav"), 500, 1500)
    items = await listen(fake, settings(), pcm)
    heard = items[-1]
    assert isinstance(heard, Heard) and heard.endpoint == "silence"
    assert heard.decided_stream_ms - heard.utterance.end_of_speech_ms == pytest.approx(500, abs=40)
    # The transcription made at the pause covered every voiced sample: reused, nothing new after the end.
    assert f"chunk{len(fake.calls)} " in heard.transcript.text


async def test_a_pause_inside_a_question_commits_the_first_part() -> None:
    fake = FakeTranscriber(suffix="")  # never a sentence: only silence_ms ends the turn
    a, b = trimmed(recording("cards/003.wav")), trimmed(recording("cards/002.wav"))
    pcm = np.concatenate([silence(400), a, silence(300), b, silence(1500)])  # 300 ms < silence_ms
    items = await listen(fake, settings(), pcm)
    heard = [i for i in items if isinstance(i, Heard)]
    assert len(heard) == 1 and heard[0].pieces == 2
    text = heard[0].transcript.text
    first, second = text.split(" chunk")
    assert first.startswith("chunk") and "s" in second
    # The second chunk was transcribed with the first as context, and covers only the second part.
    context_calls = [c for c in fake.calls if c[1]]
    assert context_calls and context_calls[-1][1] == first
    assert context_calls[-1][0] < len(b) / 16_000 + 1.0


@dataclass
class EchoingTranscriber(FakeTranscriber):
    """Given context, writes the context out again with a word misheard, as Whisper does over a tail
    of noise; without context, answers like FakeTranscriber."""

    async def transcribe(self, utterance: Utterance) -> Transcript:
        if not utterance.previous_text:
            return await super().transcribe(utterance)
        self.calls.append((utterance.duration_s, utterance.previous_text))
        await asyncio.sleep(self.delay_s)
        return Transcript(utterance.previous_text.replace("chunk", "chunks", 1), "en")


async def test_a_transcription_that_repeats_the_committed_part_adds_nothing() -> None:
    fake = EchoingTranscriber(suffix="")
    a, b = trimmed(recording("cards/002.wav")), trimmed(recording("cards/003.wav"))
    blip = b[: len(b) // 4]  # a breath or a cough after the question: too short to say it again
    pcm = np.concatenate([silence(400), a, silence(300), blip, silence(1500)])
    items = await listen(fake, settings(), pcm)
    heard = [i for i in items if isinstance(i, Heard)]
    assert len(heard) == 1
    context_calls = [c for c in fake.calls if c[1]]
    assert context_calls  # the second part was transcribed with the first as context...
    first = context_calls[-1][1]
    assert heard[0].transcript.text == first  # ...and its echo of the first part was dropped
    partials = [i.transcript.text for i in items if isinstance(i, Partial | Heard)]
    assert all(text.count("chunk") == 1 for text in partials)  # no partial asked it twice either


async def test_a_part_as_long_as_the_committed_one_is_kept_even_if_it_reads_the_same() -> None:
    fake = EchoingTranscriber(suffix="")
    a, b = trimmed(recording("cards/003.wav")), trimmed(recording("cards/002.wav"))
    pcm = np.concatenate([silence(400), a, silence(300), b, silence(1500)])  # said again, in full
    items = await listen(fake, settings(), pcm)
    heard = [i for i in items if isinstance(i, Heard)]
    assert len(heard) == 1 and heard[0].transcript.text.count("chunk") == 2


async def test_without_partials_the_whole_utterance_is_transcribed_after_the_silence() -> None:
    fake = FakeTranscriber(suffix=".")
    speech = recording("librivox/sense_and_sensibility_01_austen_64kb-0930.wav")
    items = await listen(fake, settings(partials=False), with_silence(speech, 500, 1500))
    assert names(items) == ["VoiceStart", "VoiceEnd", "Heard"]
    heard = items[-1]
    assert isinstance(heard, Heard) and heard.endpoint == "silence" and heard.pieces == 1
    assert heard.transcript.final and heard.transcript.text.endswith(".")  # the fake's one transcription
    assert len(fake.calls) == 1 and fake.calls[0][0] == pytest.approx(heard.utterance.duration_s)
    assert 2.5 < fake.calls[0][0] < len(speech) / 16_000 + 0.5  # the voiced part, + pre/post roll


async def test_a_failed_final_transcription_is_an_error_event() -> None:
    fake = FakeTranscriber(fail=True)
    items = await listen(fake, settings(partials=False), with_silence(recording("cards/001.wav"), 300, 1000))
    assert names(items) == ["VoiceStart", "VoiceEnd", "NotHeard"]
    error = items[-1]
    assert isinstance(error, NotHeard) and error.code == "asr-failed"


async def test_pause_gates_the_microphone_while_the_assistant_speaks() -> None:
    fake = FakeTranscriber()
    speech = recording("cards/001.wav")
    pcm = np.concatenate([silence(300), speech, silence(1000), speech, silence(1000)])
    listener = Listener(fake, settings())
    source = ArraySource(pcm, realtime=True, speed=4.0)
    items: list[object] = []
    async for item in listener.listen(source):
        items.append(item)
        if isinstance(item, VoiceStart) and len(items) == 1:
            assert listener.pause() is True  # the first question is dropped mid-way
            asyncio.get_running_loop().call_later(1.5 / 4, listener.resume)
    heard = [i for i in items if isinstance(i, Heard)]
    assert len(heard) == 1 and heard[0].utterance.start_ms > 1500
    assert sum(isinstance(i, VoiceEnd) for i in items) == 1


async def test_closing_the_iteration_stops_everything() -> None:
    fake = FakeTranscriber(delay_s=5)
    source = ArraySource(with_silence(recording("cards/001.wav"), 300, 3000), realtime=True, speed=4.0)
    listener = Listener(fake, settings())
    gen = listener.listen(source)
    async for item in gen:
        if isinstance(item, VoiceEnd):
            break
    await gen.aclose()
    await asyncio.sleep(0)
    assert all(t.done() for t in listener._tasks)


@pytest.mark.embedded
async def test_whisper_base_through_the_listener(models_dir: object) -> None:
    from assistant.engines.faster_whisper import FasterWhisperTranscriber

    s = settings()
    s.asr.prompt_from_kb = False
    transcriber = FasterWhisperTranscriber.from_settings(s)
    pcm = with_silence(recording("librivox/sense_and_sensibility_01_austen_64kb-0920.wav"), 500, 1500)
    items = [i async for i in Listener(transcriber, s).listen(ArraySource(pcm, realtime=True))]
    heard = [i for i in items if isinstance(i, Heard)]
    assert len(heard) == 1
    assert "amiable" in heard[0].transcript.text.lower() and heard[0].transcript.language == "en"


async def test_long_speech_without_pauses_is_cut_at_a_dip_between_words() -> None:
    fake = FakeTranscriber(suffix=".")
    pcm = with_silence(recording("librivox/sense_and_sensibility_01_austen_64kb-0870.wav"), 500, 1500)
    s = settings()
    s.asr.dip_cut_after_s = 2.5
    items = await listen(fake, s, pcm)
    heard = [i for i in items if isinstance(i, Heard)]
    assert len(heard) == 1 and heard[0].pieces >= 2
    # The committed chunk lost the full stop Whisper put at the cut; the last one keeps its own.
    parts = heard[0].transcript.text.split(" chunk")
    assert not parts[0].endswith(".") and heard[0].transcript.text.endswith(".")
    # Every chunk is shorter than the utterance: the end only waited for the last part.
    assert max(d for d, _ in fake.calls) < heard[0].utterance.duration_s - 1.0


async def test_without_dip_cuts_long_speech_is_one_chunk() -> None:
    fake = FakeTranscriber(suffix=".")
    pcm = with_silence(recording("librivox/sense_and_sensibility_01_austen_64kb-0920.wav"), 500, 1500)
    items = await listen(fake, settings(), pcm)  # dip_cut_after_s = 0: off
    heard = [i for i in items if isinstance(i, Heard)]
    assert len(heard) == 1 and heard[0].pieces == 1


@dataclass
class AheadHook:
    """Records what the listener offers ahead; ``answer`` marks it answerable; ``hold_s`` keeps the
    hook busy (a prefill) so a test can see it cancelled. Partial transcripts (``answerable`` None)
    are recorded in ``partials`` and held for ``partial_hold_s``."""

    answer: bool = False
    hold_s: float = 0.0
    partial_hold_s: float = 0.0
    seen: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    partials: list[str] = field(default_factory=list)
    partials_cancelled: int = 0

    async def __call__(self, transcript: Transcript, answerable: Callable[[], None] | None) -> None:
        if answerable is None:
            self.partials.append(transcript.text)
            try:
                await asyncio.sleep(self.partial_hold_s)
            except asyncio.CancelledError:
                self.partials_cancelled += 1
                raise
            return
        self.seen.append(transcript.text)
        if self.answer:
            answerable()
        try:
            await asyncio.sleep(self.hold_s)
        except asyncio.CancelledError:
            self.cancelled.append(transcript.text)
            raise
        self.finished.append(transcript.text)


async def listen_ahead(fake: FakeTranscriber, s: Settings, pcm: np.ndarray, hook: AheadHook) -> list[object]:
    source = ArraySource(pcm, realtime=True, speed=4.0)
    return [item async for item in Listener(fake, s, prepare=hook).listen(source)]


async def test_an_answerable_question_ends_early_without_punctuation() -> None:
    fake = FakeTranscriber(suffix="")  # no full stop: only the hook can end it early
    pcm = with_silence(recording("cards/005.wav"), 500, 1500)
    hook = AheadHook(answer=True)
    items = await listen_ahead(fake, settings(), pcm, hook)
    heard = items[-1]
    assert isinstance(heard, Heard) and heard.endpoint == "early"
    assert 250 <= heard.decided_stream_ms - heard.utterance.end_of_speech_ms < 450
    # the hook saw the very transcript the turn gets
    assert hook.seen[-1] == heard.transcript.text


async def test_the_hook_runs_on_and_is_not_cancelled_when_the_turn_ends() -> None:
    fake = FakeTranscriber(suffix="")
    hook = AheadHook(hold_s=0.3)  # a prefill still running when the endpoint is decided
    items = await listen_ahead(fake, settings(), with_silence(recording("cards/005.wav"), 500, 1500), hook)
    heard = items[-1]
    assert isinstance(heard, Heard) and heard.endpoint == "silence"  # not answerable: full silence
    # (a pause inside the recording offered a first part, cancelled when the voice came back)
    assert hook.finished == [heard.transcript.text] and heard.transcript.text not in hook.cancelled


async def test_speech_resuming_after_a_pause_cancels_the_hook() -> None:
    fake = FakeTranscriber(suffix="")
    hook = AheadHook(hold_s=1.0)
    a, b = trimmed(recording("cards/003.wav")), trimmed(recording("cards/002.wav"))
    pcm = np.concatenate([silence(400), a, silence(300), b, silence(1500)])  # a pause inside the question
    items = await listen_ahead(fake, settings(), pcm, hook)
    heard = [i for i in items if isinstance(i, Heard)]
    assert len(heard) == 1 and len(hook.seen) >= 2
    # each part was offered at a pause, then dropped when the visitor went on; the last one is the question
    assert hook.cancelled == hook.seen[:-1] and hook.seen[-1] == heard[0].transcript.text
    assert hook.seen[0] in hook.seen[-1]


async def test_an_unanswerable_pause_inside_a_question_does_not_end_it() -> None:
    fake = FakeTranscriber(suffix="")
    hook = AheadHook(answer=False)
    a, b = trimmed(recording("cards/003.wav")), trimmed(recording("cards/002.wav"))
    pcm = np.concatenate([silence(400), a, silence(300), b, silence(1500)])
    items = await listen_ahead(fake, settings(), pcm, hook)
    heard = [i for i in items if isinstance(i, Heard)]
    assert len(heard) == 1 and heard[0].pieces == 2 and heard[0].endpoint == "silence"


async def test_partial_transcripts_are_offered_while_talking_and_superseded() -> None:
    fake = FakeTranscriber(suffix="")
    hook = AheadHook(partial_hold_s=10.0)  # a prefill that would outlast the question
    s = settings()
    s.asr.partial_interval_ms = 300
    speech = recording("librivox/sense_and_sensibility_01_austen_64kb-0930.wav")
    items = await listen_ahead(fake, s, with_silence(speech, 500, 1500), hook)
    partial_events = [i.transcript.text for i in items if isinstance(i, Partial)]
    assert hook.partials and hook.partials == partial_events  # each partial, as shown to the visitor
    # none outlives its successor: every partial's task was cancelled by a newer one or the pause's
    assert hook.partials_cancelled == len(hook.partials)
    assert hook.seen and hook.seen[-1] == items[-1].transcript.text  # type: ignore[attr-defined]


# -- the semantic end of turn: a turn model (faked) at each pause ---------------------------------

CLIP = "librivox/sense_and_sensibility_01_austen_64kb-0870.wav"
CUT_S = 4.185
"""A word boundary in CLIP: "...to consider how much | there might be prudently in his power..."."""


@dataclass
class FakeTurnDetector:
    """``probability(pcm)`` after ``delay_s`` (as smart-turn takes ~0.1 s); ``fail``: raises."""

    probability: Callable[[np.ndarray], float]
    delay_s: float = 0.08
    fail: bool = False
    calls: list[float] = field(default_factory=list)
    """The length (s) of each audio judged."""

    async def judge(self, pcm: np.ndarray) -> float:
        self.calls.append(len(pcm) / 16_000)
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise TranscribeError("turn-model", "the model fell over")
        return self.probability(pcm)


def turn_settings(**turn: int) -> Settings:
    s = settings()
    s.turn.ask_ms, s.turn.complete_above, s.turn.unsure_ms, s.turn.wait_ms = 200, 0.5, 1000, 2000
    for key, value in turn.items():
        setattr(s.turn, key, value)
    return s


async def judged_listen(
    transcriber: FakeTranscriber, detector: FakeTurnDetector, s: Settings, pcm: np.ndarray
) -> list[object]:
    # Real-time pace (on virtual time: at once), so that the model's delay is stream time too.
    source = ArraySource(pcm, realtime=True)
    return [item async for item in Listener(transcriber, s, turn_detector=detector).listen(source)]


def waited_ms(heard: Heard) -> float:
    return heard.decided_stream_ms - heard.utterance.end_of_speech_ms


async def test_a_turn_the_model_and_the_transcript_call_complete_ends_at_once() -> None:
    speech = trimmed(recording(CLIP))
    detector = FakeTurnDetector(lambda pcm: 0.95)
    items = await judged_listen(FakeTranscriber(suffix="."), detector, turn_settings(), with_silence(speech, 500, 3000))
    (heard,) = [i for i in items if isinstance(i, Heard)]
    assert heard.endpoint == "early"
    # 200 ms of silence, then the model's 80 ms: far sooner than [vad] silence_ms alone would have
    assert 200 <= waited_ms(heard) < 200 + 80 + 64
    assert detector.calls and detector.calls[-1] > len(speech) / 16_000  # the whole utterance so far


async def test_a_finished_sentence_the_model_hears_as_unfinished_waits_unsure_ms() -> None:
    detector = FakeTurnDetector(lambda pcm: 0.1)
    pcm = with_silence(trimmed(recording(CLIP)), 500, 3000)
    items = await judged_listen(FakeTranscriber(suffix="."), detector, turn_settings(), pcm)
    (heard,) = [i for i in items if isinstance(i, Heard)]
    assert heard.endpoint == "early" and waited_ms(heard) == pytest.approx(1000, abs=40)


async def test_a_hesitation_mid_sentence_does_not_end_the_turn() -> None:
    # The recording cut at a word boundary, a 1.5 s hesitation, then the rest: as a visitor searching
    # for a word. The (fake) model hears the cut as unfinished and the end as finished; the transcript
    # has no full stop at the cut. One turn, both parts in it.
    speech = recording(CLIP)
    cut = int(CUT_S * 16_000)
    pcm = np.concatenate([silence(500), speech[:cut], silence(1500), speech[cut:], silence(3000)])
    end_of_cut = 500 * 16 + cut + 1500 * 16  # samples up to the end of the hesitation
    detector = FakeTurnDetector(lambda pcm: 0.9 if len(pcm) > end_of_cut else 0.1)

    class Transcriber(FakeTranscriber):
        async def transcribe(self, utterance: Utterance) -> Transcript:
            out = await super().transcribe(utterance)
            whole = utterance.start_ms / 1000 + utterance.duration_s > (500 * 16 + len(speech)) / 16_000
            return Transcript(out.text.rstrip(".") + ("." if whole else ""), out.language)

    items = await judged_listen(Transcriber(suffix=""), detector, turn_settings(), pcm)
    heard = [i for i in items if isinstance(i, Heard)]
    assert len(heard) == 1 and heard[0].endpoint == "early"
    assert heard[0].utterance.end_of_speech_ms > (500 * 16 + cut + 1500 * 16) / 16  # the rest is in it
    assert waited_ms(heard[0]) < 400


async def test_the_longer_limit_always_ends_the_turn() -> None:
    detector = FakeTurnDetector(lambda pcm: 0.05)  # never hears the visitor finish
    items = await judged_listen(
        FakeTranscriber(suffix=""), detector, turn_settings(), with_silence(recording("cards/005.wav"), 500, 3000)
    )
    (heard,) = [i for i in items if isinstance(i, Heard)]
    assert heard.endpoint == "silence" and waited_ms(heard) == pytest.approx(2000, abs=40)  # [turn] wait_ms


async def test_a_failing_model_falls_back_to_silence_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    detector = FakeTurnDetector(lambda pcm: 0.9, fail=True)
    speech = trimmed(recording("cards/001.wav"))
    pcm = np.concatenate([silence(500), speech, silence(1500), speech, silence(1500)])
    with caplog.at_level("WARNING", logger="assistant.listening.listener"):
        items = await judged_listen(FakeTranscriber(suffix=""), detector, turn_settings(), pcm)
    heard = [i for i in items if isinstance(i, Heard)]
    assert len(heard) == 2 and all(h.endpoint == "silence" for h in heard)
    assert all(waited_ms(h) == pytest.approx(500, abs=40) for h in heard)  # [vad] silence_ms
    assert len(detector.calls) >= 2
    assert sum("turn model failed" in r.getMessage() for r in caplog.records) == 1


async def test_without_partials_no_turn_model_is_asked() -> None:
    detector = FakeTurnDetector(lambda pcm: 0.9)
    items = await judged_listen(
        FakeTranscriber(suffix="."), detector, turn_settings(), with_silence(recording("cards/001.wav"), 500, 1500)
    )
    assert detector.calls
    s = turn_settings()
    s.asr.partials = False
    detector.calls.clear()
    items = await judged_listen(FakeTranscriber(suffix="."), detector, s, with_silence(recording("cards/001.wav"), 500, 1500))
    (heard,) = [i for i in items if isinstance(i, Heard)]
    assert detector.calls == [] and heard.endpoint == "silence" and waited_ms(heard) == pytest.approx(500, abs=40)
