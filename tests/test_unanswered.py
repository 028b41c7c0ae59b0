"""Which turns need an owner's eye (assistant.unanswered), how a decline is recognised
(assistant.prompts.decline_state), and what a declining turn does with its sources (assistant.turn)."""

from __future__ import annotations

import asyncio

import pytest
from fakes import FakeLanguageModel, fake_engines, settings_for_tests

from assistant import events as ev
from assistant import prompts
from assistant.errors import AssistantError
from assistant.stages import Passage
from assistant.turn import Turn, TurnResult
from assistant.unanswered import finished_reason, interrupted_early, queue_record, unanswered


def passage(score: float, *, kind: str = "document", id: str = "doc#1") -> Passage:
    return Passage(id=id, text="Pets are not allowed.", source="kb/handbook.md", score=score, kind=kind, title="Handbook")


def result(**kw: object) -> TurnResult:
    base: dict[str, object] = {"turn": 3, "question": "Can I bring my dog?", "language": "en", "reply": "..."}
    return TurnResult(**(base | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"route": "fallback"}, "fallback"),
        ({"route": "generated", "declined": True, "candidates": [passage(0.9)]}, "declined"),
        ({"route": "generated", "candidates": [passage(0.79), passage(0.5)]}, "weak"),
        ({"route": "generated", "candidates": []}, "weak"),
        # a strong match that was ambiguous (two entries close): generated, but not weak
        ({"route": "generated", "candidates": [passage(0.85, kind="faq")]}, None),
        ({"route": "faq", "candidates": [passage(0.95, kind="faq")]}, None),
        ({"route": "fallback", "error": AssistantError("llm-failed", "x")}, None),
        ({"route": None}, None),
        ({"route": "fallback", "question": ""}, None),
    ],
)
def test_finished_reason(kw: dict[str, object], reason: str | None) -> None:
    assert finished_reason(result(**kw), settings_for_tests()) == reason


def test_unanswered_is_the_fallback_line_or_a_decline() -> None:
    assert unanswered(result(route="fallback"))
    assert unanswered(result(route="generated", declined=True))
    assert not unanswered(result(route="generated", candidates=[passage(0.5)]))
    assert not unanswered(result(route="fallback", error=AssistantError("x", "y")))


def test_interrupted_early_uses_the_configured_window() -> None:
    settings = settings_for_tests()
    settings.queue.interrupted_within_s = 4.0
    started = result(route="faq", reply_started_ms=1000.0)
    assert interrupted_early(started, 3999.0, settings)
    assert not interrupted_early(started, 4001.0, settings)
    assert not interrupted_early(started, None, settings)
    # cut before the reply began (still thinking): not an answer the visitor rejected
    assert not interrupted_early(result(route="faq"), 100.0, settings)


def test_queue_record_keeps_text_and_the_best_five_candidates() -> None:
    faq = Passage(id="pets", text="Can I bring pets?", source="kb/faq.csv", score=0.4, kind="faq", answer="No.")
    r = result(route="generated", candidates=[faq, *[passage(0.3 - i / 100, id=f"d{i}") for i in range(6)]])
    record = queue_record(r, "weak", time_s=12.5, turn_id="abc/3")
    assert (record.reason, record.question, record.language, record.route, record.reply) == (
        "weak", "Can I bring my dog?", "en", "generated", "...",
    )
    assert [c.id for c in record.candidates] == ["pets", "d0", "d1", "d2", "d3"]
    assert record.candidates[0].title == "Can I bring pets?" and record.candidates[1].title == "Handbook"
    assert (record.time_s, record.turn_id) == (12.5, "abc/3")


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("", None),
        ("Sorry,", None),
        ("Sorry, my documents", None),
        ("Sorry, my documents don't cover that.", True),
        ("sorry my documents dont cover that please ask", True),
        (prompts.decline_line("en"), True),
        ("抱歉，我的资料里没有这个问题的答案，", True),
        (prompts.decline_line("zh"), True),
        ("抱歉，", None),
        (prompts.fallback_line("en"), False),
        (prompts.fallback_line("zh"), False),
        ("Visitors get a badge at reception.", False),
        ("Sorry to hear that: the badge is at reception.", False),
    ],
)
def test_decline_state(text: str, state: bool | None) -> None:
    assert prompts.decline_state(text) is state


def run(question: str, llm: FakeLanguageModel) -> tuple[TurnResult, list[ev.Event]]:
    seen: list[ev.Event] = []
    turn = Turn(4, engines=fake_engines(llm=llm), settings=settings_for_tests(), emit=seen.append)
    return asyncio.run(turn.run(question)), seen


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_declining_reply_withdraws_its_sources_before_it_is_spoken(language: str) -> None:
    question = "Can visitors bring a dog?" if language == "en" else "访客可以带宠物吗？"
    result, seen = run(question, FakeLanguageModel(reply=prompts.decline_line(language)))
    assert result.route == "generated" and result.declined and result.sources == []
    assert result.turn == 4 and result.candidates and result.reply_started_ms is not None
    sources = [e for e in seen if isinstance(e, ev.Sources)]
    assert [len(s.sources) for s in sources] == [1, 0]
    kinds = [type(e).__name__ for e in seen]
    assert kinds.index("Sources", kinds.index("ReplyStart")) < kinds.index("Sentence")


def test_an_answer_keeps_its_sources_and_is_not_a_decline() -> None:
    result, seen = run("Where do visitors get a badge?", FakeLanguageModel())
    assert not result.declined and [p.id for p in result.sources] == ["kb/docs/visitor-guide.md#2"]
    assert len([e for e in seen if isinstance(e, ev.Sources)]) == 1
