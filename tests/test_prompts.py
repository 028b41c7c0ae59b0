"""Grounded prompt assembly in both languages, the fallback line, and follow-up query rewriting."""

from __future__ import annotations

import dataclasses

import pytest

from assistant import prompts
from assistant.stages import Message, Passage

FAQ_ZH = Passage(
    id="zh-travel-hotel",
    text="出差住酒店的标准是多少",
    source="kb/faq_zh.csv",
    score=0.7,
    kind="faq",
    answer="北京、上海每晚不超过600元，其他城市不超过450元。",
)
DOC_ZH = Passage(
    id="kb/docs/员工手册节选.md#3",
    text="实习生每月有 1 天带薪假，\n不累计到下个月。",
    source="kb/docs/员工手册节选.md",
    score=0.6,
    title="员工手册",
    section="假期",
)
FAQ_EN = Passage(
    id="en-wifi",
    text="What is the guest Wi-Fi password?",
    source="kb/faq_en.jsonl",
    score=0.66,
    kind="faq",
    answer="The guest network is HB-Guest and the password is on your visitor badge.",
)


def test_chinese_prompt_numbers_passages_and_ends_with_the_question() -> None:
    history = [Message("user", "你好"), Message("assistant", "你好，请问有什么可以帮您？")]
    messages = prompts.build_messages("住酒店每晚能报多少钱？", [FAQ_ZH, DOC_ZH], history, language="zh")
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    system, last = messages[0].content, messages[-1].content
    assert "根据资料回答问题" in system and "不要添加资料里没有的内容" in system
    assert prompts.decline_line("zh") in system  # the exact sentence to say when the passages lack the answer
    assert "一到三句" in system and "用中文直接回答" in system
    assert last.split("\n\n") == [
        "资料：\n[1] 问：出差住酒店的标准是多少\n答：北京、上海每晚不超过600元，其他城市不超过450元。",
        "[2] 员工手册 - 假期: 实习生每月有 1 天带薪假， 不累计到下个月。",  # a chunk is one line
        "问题：住酒店每晚能报多少钱？\n请用中文回答。",
    ]
    assert messages[1:3] == history


def test_english_prompt_asks_for_english_even_from_chinese_passages() -> None:
    messages = prompts.build_messages("  What's the hotel cap?  ", [FAQ_ZH, FAQ_EN], [], language="en")
    assert [m.role for m in messages] == ["system", "user"]
    system, last = messages[0].content, messages[-1].content
    assert "from the passages" in system and "add nothing that is not in them" in system
    assert "in English" in system
    assert "one to three" in system
    assert prompts.decline_line("en") in system
    # one worked example: without it Qwen 0.5B declined English questions whose FAQ answer it had in front of it
    assert 'Example: passage "[1] Q: Is there a library?' in system
    assert last.startswith("Passages:\n[1] Q: 出差住酒店的标准是多少\nA: 北京")
    assert "\n\n[2] Q: What is the guest Wi-Fi password?\nA: The guest network is HB-Guest" in last
    # the answer language is said again last: with a Chinese passage, the small models answered in Chinese
    assert last.endswith("Question: What's the hotel cap?\nAnswer in English.")


def test_passages_are_numbered_most_relevant_first() -> None:
    low, high = dataclasses.replace(FAQ_EN, score=0.5), dataclasses.replace(DOC_ZH, score=0.9)
    last = prompts.build_messages("q?", [low, high], [], language="en")[-1].content
    assert last.index("[1] 员工手册") < last.index("[2] Q: What is the guest")
    tie = dataclasses.replace(FAQ_ZH, score=0.5)
    last = prompts.build_messages("q?", [low, tie], [], language="en")[-1].content
    assert last.index("[1] Q: What is the guest") < last.index("[2] Q: 出差")  # a tie keeps retrieval's order


@pytest.mark.parametrize("language", ["zh", "en"])
def test_the_system_prompt_is_one_stable_short_prefix(language: str) -> None:
    # llama.cpp reuses the prefill of an unchanged prefix: nothing that varies may be in the system message.
    first = prompts.build_messages("问题一？", [FAQ_ZH], [], language=language)
    later = prompts.build_messages("Another one?", [FAQ_EN, DOC_ZH], [Message("user", "hi")], language=language)
    assert first[0] == later[0]
    assert first[0].content == prompts.PROMPTS[language].system.format(decline=prompts.decline_line(language))
    assert "{" not in first[0].content
    # a short system prompt is also a faster first token on the embedded CPU models when it is not cached
    # (after a switch of language): the first session's were 287 and 934 characters; both now carry one
    # worked example, an answer and a decline
    assert len(first[0].content) < (300 if language == "zh" else 900)


def test_unknown_language_is_detected_from_the_question() -> None:
    zh = prompts.build_messages("前台几点下班", [DOC_ZH], [], language="")
    en = prompts.build_messages("When does reception close?", [DOC_ZH], [], language="")
    assert zh[0].content == prompts.build_messages("x", [], [], language="zh")[0].content
    assert en[0].content == prompts.build_messages("x", [], [], language="en")[0].content


def test_history_drops_empty_and_system_messages() -> None:
    history = [
        Message("system", "old rules"),
        Message("user", " "),
        Message("user", "hi"),
        Message("assistant", "hello"),
    ]
    messages = prompts.build_messages("q?", [FAQ_EN], history, language="en")
    assert [m.content for m in messages[1:-1]] == ["hi", "hello"]


@pytest.mark.parametrize("language, words", [("zh", "前台"), ("en", "front desk")])
def test_fallback_line_is_an_honest_hand_off(language: str, words: str) -> None:
    line = prompts.fallback_line(language)
    assert words in line
    assert line != prompts.fallback_line("en" if language == "zh" else "zh")
    assert "*" not in line and "\n" not in line


ZH_HISTORY = [Message("user", "正式员工有几天年假？"), Message("assistant", "入职满一年有5天年假。")]
EN_HISTORY = [Message("user", "How many days of annual leave do employees get?"), Message("assistant", "Five days.")]


@pytest.mark.parametrize(
    "question",
    ["那实习生呢？", "实习生呢", "还有实习生", "那外包同事的话", "他们也有吗"],
)
def test_chinese_follow_ups_are_joined_to_the_previous_question(question: str) -> None:
    assert prompts.rewrite_query(question, ZH_HISTORY) == f"正式员工有几天年假？ {question}"


@pytest.mark.parametrize("question", ["and for interns?", "What about interns?", "interns?", "Do they get it too?"])
def test_english_follow_ups_are_joined_to_the_previous_question(question: str) -> None:
    assert prompts.rewrite_query(question, EN_HISTORY) == f"How many days of annual leave do employees get? {question}"


@pytest.mark.parametrize(
    "question, history",
    [
        ("如何下载滴滴APP", ZH_HISTORY),
        ("请问商旅的出差制度", ZH_HISTORY),
        ("食堂在几楼？", ZH_HISTORY),
        ("Where is the cafeteria?", EN_HISTORY),
        ("Is there parking for visitors?", EN_HISTORY),
        ("How do I log in to the admin console?", EN_HISTORY),
        ("and for interns?", []),  # nothing to lean on
    ],
)
def test_standalone_questions_are_left_alone(question: str, history: list[Message]) -> None:
    assert prompts.rewrite_query(f"  {question} ", history) == question


def test_a_chain_of_follow_ups_anchors_on_the_last_standalone_question() -> None:
    history = [*EN_HISTORY, Message("user", "and for interns?"), Message("assistant", "One day a month.")]
    assert prompts.rewrite_query("and contractors?", history) == (
        "How many days of annual leave do employees get? and contractors?"
    )


@pytest.mark.parametrize("language, marker", [("zh", "没有找到相关资料"), ("en", "no relevant passages")])
def test_no_passages_is_said_not_left_blank(language: str, marker: str) -> None:
    messages = prompts.build_messages(
        "年终奖发几个月？" if language == "zh" else "How big is the bonus?", [], [], language=language
    )
    assert marker in messages[-1].content


@pytest.mark.parametrize(
    "question, anchor",
    [
        ("那员工停车呢？", "访客停车怎么收费"),
        ("And how about sick leave?", "How many days of annual leave do I get?"),
    ],
)
def test_a_follow_up_that_restates_the_topic_is_searched_alone(question: str, anchor: str) -> None:
    history = [Message("user", anchor), Message("assistant", "...")]
    assert prompts.rewrite_query(question, history) == question


@pytest.mark.parametrize(
    ("question", "language", "passages"),
    [
        ("出差住酒店每晚能报多少？", "zh", [FAQ_ZH, DOC_ZH]),
        ("实习生有带薪假吗？", "zh", [DOC_ZH]),
        ("What is the Wi-Fi password?", "en", [FAQ_EN]),
        ("Where is the hotel policy?", "en", [FAQ_ZH, FAQ_EN]),
    ],
)
def test_a_first_turn_prompt_begins_with_its_best_passages_prefix(
    question: str, language: str, passages: list[Passage]
) -> None:
    # what the engine's prompt cache is warmed with must be exactly how the real prompt begins
    messages = prompts.build_messages(question, passages, [], language=language)
    best = max(passages, key=lambda p: p.score)
    prefix = prompts.passage_prefix(dataclasses.replace(best, score=1.0), language=language)
    assert prefix[0] == messages[0]
    assert messages[1].content.startswith(prefix[1].content)
    assert messages[1].content[len(prefix[1].content) :].startswith("\n\n")


def test_a_passage_prefix_defaults_to_the_passages_own_language() -> None:
    assert prompts.passage_prefix(DOC_ZH)[0] == prompts.system_message("zh")
    assert prompts.passage_prefix(FAQ_EN)[0] == prompts.system_message("en")
    assert prompts.passage_prefix(dataclasses.replace(FAQ_ZH, language="zh"))[1].content.startswith("资料：\n[1] 问：")
