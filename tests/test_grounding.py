"""The number check (assistant.grounding) and how a turn applies it to a generated reply."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from fakes import FakeLanguageModel, event_types, fake_engines, settings_for_tests

from assistant import events as ev
from assistant import prompts
from assistant.grounding import ungrounded_numbers
from assistant.turn import Turn

ADDRESS = ["公司地址是碧波路690号，离2号线张江高科站步行5分钟。"]
LEAVE = "入职满一年后每年有10天带薪年假，之后每多一年工龄加1天，最多15天；当年未休可顺延到次年3月31日。"


@pytest.mark.parametrize(
    ("text", "evidence", "missing"),
    [
        ("年终奖一般发12个月。", ADDRESS, ["12"]),  # the benchmark's invented answers
        ("公司是1993年成立的。", ADDRESS, ["1993"]),
        ("从2号线张江高科站步行5分钟，地址是碧波路690号。", ADDRESS, []),
        ("The hotel cap is 1,200 yuan a night.", ["每晚不超过1200元"], []),  # by value
        ("The subsidy is 2.50 yuan.", ["补贴2.5元"], []),
        ("The desk opens at 09:00.", ["前台9点开门"], []),  # a time on the hour is its hour
        ("前台9点开门，17:30下班。", ["Open 9:00-17:30 on weekdays."], []),
        ("The desk opens at 9:30.", ["Open 9:00-17:30 on weekdays."], ["9:30"]),
        ("IT is in room 301 on the 3rd floor.", ["IT服务台在3F的301室"], []),
        ("Visitors get a badge at reception.", [], []),
        ("It costs 50 yuan, or 60 for a visitor.", ["补办工牌50元"], ["60"]),
        # what the number counts: the 1.5B model's answer to a question the KB does not answer
        ("年终奖一般发10个月。", [LEAVE], ["10"]),
        ("年假有10天，最多15天。", [LEAVE], []),
        ("You get 10 days a year, at most 15 days.", [LEAVE], []),  # kinds, not spellings
        ("After 1 year you get 10 days.", [LEAVE], []),  # "一年" counts years
        ("The per diem is 50 dollars.", ["国外出差每天补贴50美元"], []),
        ("The per diem is 50 yuan.", ["国外出差每天补贴50美元"], ["50"]),
        ("Claims are paid within 10 days.", ["报销10个工作日内到账"], []),
        ("It opens at 10 each day.", [LEAVE], []),  # no unit in the answer: by value
        ("可以订3个小时。", ["会议室最多订3h"], []),  # a unit the list does not know: by value
        ("顺延到3月31日。", [LEAVE], []),
    ],
)
def test_ungrounded_numbers(text: str, evidence: list[str], missing: list[str]) -> None:
    assert ungrounded_numbers(text, evidence) == missing


def run(question: str, reply: str, *, check: bool = True, speak: bool = True):
    llm = FakeLanguageModel(reply=reply, piece_chars=3)
    settings = settings_for_tests()
    settings = dataclasses.replace(settings, answer=dataclasses.replace(settings.answer, check_numbers=check))
    seen: list[ev.Event] = []
    turn = Turn(1, engines=fake_engines(llm=llm, speak=speak), settings=settings, emit=seen.append)
    result = asyncio.run(turn.run(question))
    return result, seen, llm


def deltas(seen: list[ev.Event]) -> str:
    return "".join(e.text for e in seen if isinstance(e, ev.ReplyDelta))


def test_an_invented_number_in_the_first_sentence_becomes_the_decline() -> None:
    # The document passage says nothing about fees: "50 yuan" is the model's own.
    result, seen, llm = run(
        "Where do visitors get a badge?", "A visitor badge costs 50 yuan at reception. Enjoy your visit, and more."
    )
    assert result.route == "generated"
    assert result.withheld == ["50"]
    assert result.reply == prompts.decline_line("en")
    assert llm.stopped_early  # generation really stopped
    assert deltas(seen) == result.reply == next(e for e in seen if isinstance(e, ev.ReplyEnd)).text
    assert [e.text for e in seen if isinstance(e, ev.Sentence)] == [result.reply]
    assert "50" not in "".join(e.text for e in seen if isinstance(e, ev.Sentence))
    assert event_types(seen)[-2:] == ["trace", "state:idle"]


def test_the_grounded_sentences_before_an_invented_number_are_kept() -> None:
    result, seen, llm = run(
        "Where do visitors get a badge?",
        "Visitors get a badge at reception. The Wi-Fi is Acme-Guest. It is open 24 hours. Goodbye now.",
    )
    assert result.withheld == ["24"]
    assert result.reply == "Visitors get a badge at reception. The Wi-Fi is Acme-Guest."
    assert deltas(seen).strip() == result.reply
    assert [e.text for e in seen if isinstance(e, ev.Sentence)] == [
        "Visitors get a badge at reception.",
        "The Wi-Fi is Acme-Guest.",
    ]
    assert llm.stopped_early


def test_a_reply_without_a_sentence_end_is_checked_too() -> None:
    result, _, _ = run("Where do visitors get a badge?", "Reception hands out 3 badges", speak=False)
    assert result.withheld == ["3"] and result.reply == prompts.decline_line("en")


def test_a_grounded_reply_passes_whole_and_deltas_add_up() -> None:
    # "2" is in the question, so the model may repeat it
    result, seen, llm = run("Where do 2 visitors get a badge?", "Both get one at reception. The Wi-Fi is Acme-Guest.")
    assert result.withheld == [] and result.reply == "Both get one at reception. The Wi-Fi is Acme-Guest."
    assert deltas(seen) == result.reply
    assert not llm.stopped_early


def test_the_check_can_be_turned_off() -> None:
    reply = "A visitor badge costs 50 yuan at reception. Enjoy the guest Wi-Fi while you wait for your host."
    result, seen, _ = run("Where do visitors get a badge?", reply, check=False)
    assert result.withheld == [] and result.reply == reply
    # without the check the reply streams as the model writes it, once its first piece is known not to
    # be the question said back
    pieces = [e.text for e in seen if isinstance(e, ev.ReplyDelta)]
    assert pieces[0] == "A visitor badge costs 50 yuan at reception." and len(pieces) > 3
    assert "".join(pieces) == reply


@pytest.mark.parametrize("check", [True, False])
def test_a_reply_that_only_says_the_question_back_becomes_the_decline(check: bool) -> None:
    # the 0.5B model's reply to "年终奖一般发几个月？" (bench/faithfulness.py), and the question with the
    # prompt's language reminder
    for question, reply in [
        ("Where do visitors get a badge?", "Where do visitors get a badge?"),
        ("Where do visitors get a badge?", "Where do visitors get a badge? Answer in English."),
    ]:
        result, seen, _ = run(question, reply, check=check)
        assert result.reply == prompts.decline_line("en")
        assert deltas(seen) == result.reply
        assert [e.text for e in seen if isinstance(e, ev.Sentence)] == [result.reply]


def test_the_question_said_back_before_an_answer_is_dropped_and_the_answer_kept() -> None:
    result, seen, _ = run("Where do visitors get a badge?", "Where do visitors get a badge? At reception, on arrival.")
    assert result.reply == "At reception, on arrival."
    assert deltas(seen).strip() == result.reply
    assert "Where do" not in " ".join(e.text for e in seen if isinstance(e, ev.Sentence))


def test_a_short_answer_in_the_question_own_words_is_kept() -> None:
    # "可以。" answers "可以带宠物吗？": too short to be taken for the question said back
    result, _, _ = run("Can visitors get a badge at reception?", "Yes, they can. Reception gives one.")
    assert result.reply == "Yes, they can. Reception gives one."
    from assistant.grounding import SaidBackCheck

    assert not SaidBackCheck(["可以带宠物来公司吗？"]).said_back("可以。")
    assert SaidBackCheck(["年终奖一般发几个月？"]).said_back("年终奖一般发几个月？")
    assert not SaidBackCheck(["年终奖一般发几个月？"]).said_back("年终奖一般发两个月。")
    # reworded with an article it is still the question; with the answer in it, it is an answer
    assert SaidBackCheck(["Which floor is Human Resources on?"]).said_back("The floor Human Resources is on.")
    assert not SaidBackCheck(["Which floor is the gym on?"]).said_back("The gym is on the fourth floor.")
    assert not SaidBackCheck(["Which floor is the gym on?"]).said_back("The gym is on floor 4.")
