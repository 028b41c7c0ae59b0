"""Whole turns with fake engines: the event sequences are pinned, because they are the contract the
daemon, the protocol and every avatar rely on."""

from __future__ import annotations

import asyncio

import pytest
from fakes import (
    FakeLanguageModel,
    FakeRetriever,
    FakeSynthesizer,
    event_types,
    fake_engines,
    settings_for_tests,
    speech_utterance,
)

from assistant import events as ev
from assistant import prompts
from assistant.routing import decide_route
from assistant.sentences import speech_units
from assistant.stages import Passage, RetrieveError
from assistant.turn import Turn, TurnResult


def run_turn(question, engines, *, history=None) -> tuple[TurnResult, list[ev.Event]]:
    seen: list[ev.Event] = []
    turn = Turn(1, engines=engines, settings=settings_for_tests(), history=history, emit=seen.append)
    result = asyncio.run(turn.run(question))
    return result, seen


def test_faq_turn_answers_verbatim_without_the_llm() -> None:
    engines = fake_engines()
    result, seen = run_turn("请问商旅的出差制度", engines)
    assert event_types(seen) == [
        "state:thinking", "sources", "reply-start", "reply-delta", "reply-end",
        "sentence", "state:speaking", "audio-start", "audio", "audio-end",
        "sentence", "audio-start", "audio", "audio-end", "trace", "state:idle",
    ]
    # spoken in the units the instant-reply cache renders ahead of time
    assert [e.text for e in seen if isinstance(e, ev.Sentence)] == speech_units(result.reply)
    assert result.route == "faq"
    assert result.reply.startswith("出差需提前三个工作日")
    assert [s.id for s in result.sources] == ["travel-policy"]
    assert engines.llm.calls == []  # type: ignore[attr-defined]
    sources = next(e for e in seen if isinstance(e, ev.Sources))
    assert sources.sources[0].id == "travel-policy" and sources.sources[0].kind == "faq"
    assert all(e.turn == 1 for e in seen)
    assert [e.t_ms for e in seen] == sorted(e.t_ms for e in seen)


def test_voice_turn_transcribes_first() -> None:
    result, seen = run_turn(speech_utterance(), fake_engines())
    assert event_types(seen)[:4] == ["state:transcribing", "transcript", "state:thinking", "sources"]
    transcript = next(e for e in seen if isinstance(e, ev.TranscriptEvent))
    assert transcript.final and transcript.text == "请问商旅的出差制度" and transcript.language == "zh"
    assert result.route == "faq"
    trace = next(e for e in seen if isinstance(e, ev.Trace))
    assert trace.transcript_ms is not None and trace.first_audio_ms is not None
    assert trace.transcript_ms <= trace.retrieve_ms <= trace.first_audio_ms <= trace.total_ms  # type: ignore[operator]


def test_generated_turn_streams_sentences_and_audio() -> None:
    engines = fake_engines()
    result, seen = run_turn("Where do visitors get a badge?", engines)
    types = event_types(seen)
    assert types[:3] == ["state:thinking", "sources", "reply-start"]
    assert types[-2:] == ["trace", "state:idle"]
    assert result.route == "generated"
    assert [s.id for s in result.sources] == ["kb/docs/visitor-guide.md#2"]
    # the reply text streams in deltas that add up to the answer
    deltas = "".join(e.text for e in seen if isinstance(e, ev.ReplyDelta))
    assert deltas.strip() == result.reply
    # every sentence is announced, then spoken, in order; audio sequence counts from 0 without gaps
    sentences = [e for e in seen if isinstance(e, ev.Sentence)]
    # the first clause is cut early (it is all the visitor waits for), later ones are whole sentences
    assert [s.text for s in sentences] == [
        "Visitors get a badge at reception,",
        "and the guest Wi-Fi is Acme-Guest.",
        "Enjoy your visit.",
    ]
    audio = [e for e in seen if isinstance(e, ev.Audio)]
    assert [a.sequence for a in audio] == list(range(len(audio)))
    assert [a.sentence for a in audio] == [0, 0, 1, 1, 2, 2]
    assert sum(1 for e in seen if isinstance(e, ev.StateEvent) and e.state == "speaking") == 1
    # the LLM saw the passage, numbered, and the question
    prompt = "\n".join(m.content for m in engines.llm.calls[0])  # type: ignore[attr-defined]
    assert "Acme-Guest" in prompt and "Where do visitors get a badge?" in prompt


def test_first_sentence_is_spoken_while_the_llm_is_still_writing() -> None:
    llm = FakeLanguageModel(delay_s=0.01)
    _, seen = run_turn("Where do visitors get a badge?", fake_engines(llm=llm))
    first_audio = next(i for i, e in enumerate(seen) if isinstance(e, ev.Audio))
    last_delta = max(i for i, e in enumerate(seen) if isinstance(e, ev.ReplyDelta))
    assert first_audio < last_delta


@pytest.mark.parametrize(("question", "language"), [("火星上今天天气怎么样", "zh"), ("what's the weather on Mars", "en")])
def test_fallback_turn_says_it_does_not_know_in_the_question_language(question: str, language: str) -> None:
    engines = fake_engines()
    result, seen = run_turn(question, engines)
    assert result.route == "fallback"
    assert result.language == language
    assert result.sources == []
    assert engines.llm.calls == []  # type: ignore[attr-defined]
    units = speech_units(result.reply)
    assert len(units) == 2
    assert event_types(seen) == [
        "state:thinking", "sources", "reply-start", "reply-delta", "reply-end",
        "sentence", "state:speaking", "audio-start", "audio", "audio-end",
        "sentence", "audio-start", "audio", "audio-end", "trace", "state:idle",
    ]
    sentences = [e for e in seen if isinstance(e, ev.Sentence)]
    assert [e.text for e in sentences] == units
    assert {e.language for e in sentences} == {language}


def test_text_only_turn_emits_captions_without_audio() -> None:
    result, seen = run_turn("Where do visitors get a badge?", fake_engines(speak=False))
    assert not any(isinstance(e, ev.Audio | ev.AudioStart) for e in seen)
    assert [e.text for e in seen if isinstance(e, ev.Sentence)][-1] == "Enjoy your visit."
    assert result.reply.endswith("Enjoy your visit.")


def test_retrieval_error_becomes_an_error_event_and_the_turn_ends_idle() -> None:
    engines = fake_engines(retriever=FakeRetriever(fail=RetrieveError("kb-missing", "no index; run `assistant kb build`")))
    result, seen = run_turn("hello", engines)
    assert event_types(seen) == ["state:thinking", "error", "state:idle"]
    error = next(e for e in seen if isinstance(e, ev.ErrorEvent))
    assert error.code == "kb-missing" and "kb build" in error.message
    assert result.error is not None and result.error.code == "kb-missing"


def test_llm_failure_mid_reply_is_reported_once() -> None:
    engines = fake_engines(llm=FakeLanguageModel(fail_after=3))
    result, seen = run_turn("Where do visitors get a badge?", engines)
    assert [e.code for e in seen if isinstance(e, ev.ErrorEvent)] == ["llm-failed"]
    assert event_types(seen)[-1] == "state:idle"
    assert "trace" not in event_types(seen)
    assert result.error is not None


def test_unexpected_exception_is_wrapped_as_internal() -> None:
    engines = fake_engines(retriever=FakeRetriever(fail=ZeroDivisionError("boom")))
    result, _ = run_turn("hello", engines)
    assert result.error is not None and result.error.code == "internal"
    assert "ZeroDivisionError" in result.error.message


def test_barge_in_stops_generation_and_reports_what_was_heard() -> None:
    llm = FakeLanguageModel(delay_s=0.02)
    synth = FakeSynthesizer(delay_s=0.01)
    engines = fake_engines(llm=llm, synthesizer=synth)
    seen: list[ev.Event] = []

    async def scenario() -> Turn:
        first_sentence_spoken = asyncio.Event()

        def emit(event: ev.Event) -> None:
            seen.append(event)
            if isinstance(event, ev.AudioEnd):
                first_sentence_spoken.set()

        turn = Turn(3, engines=engines, settings=settings_for_tests(), emit=emit)
        task = asyncio.create_task(turn.run("Where do visitors get a badge?"))
        await first_sentence_spoken.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return turn

    turn = asyncio.run(scenario())
    assert llm.stopped_early
    assert event_types(seen)[-2:] == ["interrupted", "state:idle"]
    interrupted = next(e for e in seen if isinstance(e, ev.Interrupted))
    first = "Visitors get a badge at reception,"
    assert interrupted.heard_text == first
    assert turn.result.interrupted
    # with a playback position, only what was played counts; half a sentence keeps half its text
    first_ms = next(e for e in seen if isinstance(e, ev.AudioEnd)).duration_ms
    assert turn.heard_text(first_ms / 2) == first[: len(first) // 2]
    assert turn.heard_text(0) == ""


def test_marks_and_playback_position_reach_the_trace_and_the_interruption() -> None:
    synth = FakeSynthesizer(delay_s=0.01)
    seen: list[ev.Event] = []

    async def scenario() -> None:
        spoken = asyncio.Event()

        def emit(event: ev.Event) -> None:
            seen.append(event)
            if isinstance(event, ev.AudioEnd):
                spoken.set()

        turn = Turn(4, engines=fake_engines(synthesizer=synth, llm=FakeLanguageModel(delay_s=0.02)),
                    settings=settings_for_tests(), emit=emit, played_ms=lambda: 0.0)
        task = asyncio.create_task(turn.run("Where do visitors get a badge?", marks={"endpoint": 250.0, "transcript": 300.0}))
        await spoken.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert turn.result.timings_ms["endpoint"] == 250.0 and turn.result.timings_ms["transcript"] == 300.0

    asyncio.run(scenario())
    # the client reported that nothing was played yet: nothing was heard
    assert next(e for e in seen if isinstance(e, ev.Interrupted)).heard_text == ""


def test_history_reaches_the_prompt() -> None:
    from assistant.stages import Message

    engines = fake_engines()
    history = [Message("user", "Where is the canteen?"), Message("assistant", "On the second floor.")]
    run_turn("Where do visitors get a badge?", engines, history=history)
    contents = [m.content for m in engines.llm.calls[0]]  # type: ignore[attr-defined]
    assert any("second floor" in c for c in contents)


def p(score: float, kind: str = "document", answer: str | None = None) -> Passage:
    return Passage(id=f"{kind}-{score}", text="q", source="s", score=score, kind=kind, answer=answer)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("passages", "route", "ids"),
    [
        ([p(0.9, "faq", "a"), p(0.2)], "faq", ["faq-0.9"]),
        # a runner-up within a quarter of the best makes the match ambiguous: the model reads both
        ([p(0.9, "faq", "a"), p(0.3, "faq", "b"), p(0.1)], "generated", ["faq-0.9", "faq-0.3"]),
        ([p(0.9, "faq", "a"), p(0.7), p(0.5), p(0.46)], "generated", ["faq-0.9", "document-0.7", "document-0.5"]),
        ([p(0.7), p(0.79, "faq", "a"), p(0.3)], "generated", ["faq-0.79", "document-0.7"]),
        ([p(0.44), p(0.2, "faq", "a")], "fallback", []),
        ([], "fallback", []),
        ([p(0.95, "faq", None), p(0.5)], "generated", ["faq-0.95", "document-0.5"]),
    ],
)
def test_decide_route_thresholds(passages: list[Passage], route: str, ids: list[str]) -> None:
    decision = decide_route(passages, settings_for_tests(faq_threshold=0.8, relevance_threshold=0.45))
    assert decision.route == route
    assert [x.id for x in decision.passages] == ids


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        ("出差时住宿标准和每天的出差补贴分别是多少？", ["出差时住宿标准", "每天的出差补贴分别是多少"]),
        ("What is the hotel cap and the daily allowance on a business trip?",
         ["What is the hotel cap", "the daily allowance on a business trip"]),
        ("访客Wi-Fi密码是什么，停车怎么收费？", ["访客Wi-Fi密码是什么", "停车怎么收费"]),
        ("请问商旅的出差制度", []),
        # a part may be vague ("怎么操作"): it only counts if it strongly matches an entry of its own
        ("我想预订会议室，怎么操作？", ["我想预订会议室", "怎么操作"]),
        ("我想订会议室，谢谢", []),
        ("Where is the canteen?", []),
    ],
)
def test_sub_questions(question: str, parts: list[str]) -> None:
    from assistant.kb.query import sub_questions

    assert sub_questions(question) == parts


def test_two_strong_part_matches_make_a_generated_answer_from_both() -> None:
    full = [p(0.84, "faq", "per diem"), p(0.17, "faq", "hotel")]
    hotel = Passage(id="hotel", text="q", source="s", score=0.99, kind="faq", answer="600 yuan")
    perdiem = Passage(id="perdiem", text="q", source="s", score=0.98, kind="faq", answer="150 yuan")
    settings = settings_for_tests(faq_threshold=0.8, relevance_threshold=0.45)
    decision = decide_route(full, settings, parts=[[hotel], [perdiem]])
    assert decision.route == "generated"
    assert [x.id for x in decision.passages] == ["hotel", "perdiem", "faq-0.84"]
    # one strong part (the other part is weak or the same entry): the whole question decides
    weak = Passage(id="other", text="q", source="s", score=0.2, kind="faq", answer="a")
    assert decide_route(full, settings, parts=[[hotel], [weak]]).route == "faq"
    assert decide_route(full, settings, parts=[[hotel], [hotel]]).route == "faq"


def test_a_two_part_question_reaches_the_llm_with_both_entries() -> None:
    engines = fake_engines()
    result, _ = run_turn("请问商旅的出差制度, and how do I download the DiDi app?", engines)
    assert result.route == "generated"
    assert {s.id for s in result.sources} >= {"travel-policy", "didi-app"}
    assert len(engines.retriever.queries) == 3  # type: ignore[attr-defined]


def _verifying_turn(question: str, verdict: str | None, *, below: float) -> tuple[TurnResult, FakeLanguageModel]:
    llm = FakeLanguageModel(reply=verdict or "", fail_after=0 if verdict is None else None)
    settings = settings_for_tests()
    settings.answer.verify_faq_below = below
    turn = Turn(1, engines=fake_engines(llm=llm), settings=settings, emit=lambda _e: None)
    return asyncio.run(turn.run(question)), llm


@pytest.mark.parametrize(("verdict", "route"), [("否", "fallback"), ("No.", "fallback"), ("是", "faq"), ("Yes", "faq")])
def test_an_faq_match_under_verify_faq_below_is_put_to_the_llm_first(verdict: str, route: str) -> None:
    result, llm = _verifying_turn("请问商旅的出差制度", verdict, below=0.99)  # the fake scores it 0.95
    assert result.route == route
    assert len(llm.calls) == 1 and llm.temperatures == [0.0]  # a judgement is decoded greedily, not sampled
    asked = llm.calls[0][-1].content
    assert "请问商旅的出差制度" in asked and "出差需提前三个工作日" in asked  # the question and the entry
    if route == "fallback":
        assert result.reply == prompts.fallback_line("zh") and result.sources == []


def test_a_sure_faq_match_or_no_verification_costs_no_llm_call() -> None:
    for below in (0.0, 0.9):  # off, and a match above the bar
        result, llm = _verifying_turn("请问商旅的出差制度", "否", below=below)
        assert result.route == "faq" and llm.calls == []


def test_a_failing_llm_keeps_the_faq_answer() -> None:
    result, _llm = _verifying_turn("请问商旅的出差制度", None, below=0.99)
    assert result.route == "faq" and result.reply.startswith("出差需提前三个工作日")


@pytest.mark.parametrize(("reply", "no"), [("否", True), ("不是。", True), ("No", True), ("no, it does not", True),
                                          ("是", False), ("Yes.", False), ("", False), ("资料回答了", False)])
def test_only_a_clear_no_declines(reply: str, no: bool) -> None:
    assert prompts.verdict_is_no(reply) is no
