"""Transcript clean-up every Whisper engine shares (assistant.transcripts): Simplified Chinese,
prompts, loops, joining; and the engines' language choice."""

from __future__ import annotations

from assistant.engines._asr_common import pick_language
from assistant.transcripts import (
    build_prompt,
    clean_text,
    collapse_repeats,
    compression_ratio,
    hotwords,
    join_texts,
    repeats_prompt,
    to_simplified,
)


def test_traditional_chinese_becomes_simplified() -> None:
    assert to_simplified("請問報銷流程是什麼？") == "请问报销流程是什么？"
    assert to_simplified("滴滴APP怎麼下載") == "滴滴APP怎么下载"
    assert to_simplified("Hello world.") == "Hello world."
    assert clean_text("  商旅   報銷 ", "zh") == "商旅报销"
    assert clean_text("请问流程是什么, 我需要 提交哪些发票 。", "zh") == "请问流程是什么,我需要提交哪些发票。"
    assert clean_text("滴滴 APP 怎麼下載", "zh") == "滴滴 APP 怎么下载"
    assert clean_text(" Fine. ", "en") == "Fine."


def test_prompt_puts_vocabulary_first_and_stays_bounded() -> None:
    assert build_prompt(["商旅", "报销", "DiDi", "  "], "我想", language="zh") == "以下是访客的提问，可能提到商旅、报销、DiDi。 我想"
    assert build_prompt([], "") == ""
    long = build_prompt([f"term{i}" for i in range(500)], "previous words", language="en")
    assert len(long) <= 460 and long.endswith("previous words")
    assert long.startswith("A visitor's question, which may mention term0, term1")


def test_hotwords_are_the_same_terms_as_a_bare_list() -> None:
    assert hotwords(["商旅", "DiDi", "OA"], "zh") == "商旅, DiDi, OA"
    assert hotwords(["商旅", "DiDi", "OA"], "en") == "DiDi, OA"
    assert hotwords(["商旅"], "en") == ""


def test_prompt_offers_only_terms_in_the_utterance_language() -> None:
    # Chinese terms in front of English speech made Whisper answer in Chinese
    assert build_prompt(["商旅", "DiDi", "OA"], language="en") == "A visitor's question, which may mention DiDi, OA."
    assert build_prompt(["商旅", "DiDi"], language="") == "A visitor's question, which may mention DiDi."
    assert build_prompt(["商旅"], language="en") == ""


def test_a_restart_cut_off_by_the_token_cap_is_dropped() -> None:
    assert collapse_repeats("Where can visitors park their car? Where can visitors") == "Where can visitors park their car?"
    assert collapse_repeats("请问商旅的出差制度。请问商") == "请问商旅的出差制度。"
    assert collapse_repeats("Yes. No") == "Yes. No"


def test_a_loop_that_varies_a_word_is_collapsed_when_the_cap_cut_it() -> None:
    # whisper-base on bench/latency.py's recorded questions, with the knowledge-base prompt
    loop = "How much does visitor parking cost? How much does parking cost? How much does visitor parking cost?"
    assert collapse_repeats(loop, cut_by_cap=True) == "How much does visitor parking cost?"
    assert collapse_repeats("食堂起点开饭。实堂起点开饭。", cut_by_cap=True) == "食堂起点开饭。"
    assert collapse_repeats("反客、Wi-Fi、密码是多少?密码是多少?", cut_by_cap=True) == "反客、Wi-Fi、密码是多少?"
    # within the cap the audio could hold both: two questions alike are two questions
    assert collapse_repeats("年假多少天？产假多少天？") == "年假多少天？产假多少天？"
    assert collapse_repeats("Where is room 301? Where is room 302?") == "Where is room 301? Where is room 302?"


def test_a_misheard_restart_cut_off_by_the_cap_is_dropped() -> None:
    # bench/results/latency.json: the sequential baseline's and the daemon's transcripts ended so
    loop = "How much does visitor parking cost? How much does parking cost? How much does a"
    assert collapse_repeats(loop, cut_by_cap=True) == "How much does visitor parking cost?"
    # "实" begins the repeat that was dropped ("实堂起点开饭"), not the sentence kept
    assert collapse_repeats("食堂起点开饭。实堂起点开饭。实", cut_by_cap=True) == "食堂起点开饭。"
    # without the cap the audio could hold a new sentence: only a literal restart goes
    assert collapse_repeats("How much does visitor parking cost? How much does a") == (
        "How much does visitor parking cost? How much does a"
    )
    assert collapse_repeats("Where is the gym? Is it", cut_by_cap=True) == "Where is the gym? Is it"


def test_language_choice_is_restricted() -> None:
    probs = [("<|ja|>", 0.5), ("<|zh|>", 0.3), ("<|en|>", 0.2)]
    assert pick_language(probs, ("zh", "en")) == "zh"
    assert pick_language(probs, ()) == "ja"
    assert pick_language([("<|ko|>", 1.0)], ("en",)) == "en"


def test_joining_chunks_and_loop_detection() -> None:
    assert join_texts(["Had he married", " a more amiable woman."]) == "Had he married a more amiable woman."
    assert join_texts(["我想报销", "商旅费用。"]) == "我想报销商旅费用。"
    assert join_texts(["", "ok"]) == "ok"
    assert compression_ratio("10 of clubs " * 20) > 2.4 > compression_ratio("Had he married a more amiable woman")


def test_loops_are_collapsed_but_real_repetition_stays() -> None:
    from assistant.transcripts import collapse_repeats

    assert collapse_repeats("Cold hearted. Cold hearted. Cold hearted.") == "Cold hearted."
    assert collapse_repeats("10 of clubs 10 of clubs 10 of clubs 10 of") == "10 of clubs"
    assert collapse_repeats("请问报销。请问报销。") == "请问报销。"
    assert collapse_repeats("five five") == "five five"
    assert collapse_repeats("He was. He was not.") == "He was. He was not."


def test_chinese_loops_without_spaces_are_collapsed() -> None:
    from assistant.transcripts import collapse_repeats

    # what Whisper base wrote for the first 0.64 s of "加班怎么申请？"
    assert collapse_repeats("加班、加班、加班、加班、加班、加班、加班、") == "加班"
    assert collapse_repeats("工牌、工牌、工牌、工牌、工牌、") == "工牌"
    assert collapse_repeats("请问加班怎么申请加班怎么申请加班怎么申请") == "请问加班怎么申请"
    # said as such: a word doubled, a laugh, a short reduplication
    assert collapse_repeats("谢谢谢谢") == "谢谢谢谢"
    assert collapse_repeats("哈哈哈") == "哈哈哈"
    assert collapse_repeats("看看") == "看看"
    assert collapse_repeats("加班可以调休吗？") == "加班可以调休吗？"


def test_a_loop_cut_off_by_the_token_cap_needs_less_repetition() -> None:
    from assistant.transcripts import collapse_repeats

    looped = "食堂器点开,食堂器点开,食堂器"  # Whisper base at its cap on the first 1.2 s of 食堂几点开饭
    assert collapse_repeats(looped) == looped  # said once and a half: could be speech
    assert collapse_repeats(looped, cut_by_cap=True) == "食堂器点开"
    assert collapse_repeats("访客、WiFi、密码、密码、密码、密\ufffd", cut_by_cap=True) == "访客、WiFi、密码"
    assert collapse_repeats("Where is the desk? Where is the desk? Where is", cut_by_cap=True) == "Where is the desk?"
    assert collapse_repeats("How do I print?", cut_by_cap=True) == "How do I print?"


def test_a_tail_that_repeats_the_prompt_is_an_echo() -> None:
    # what whisper-base wrote for the noise after two questions in bench/latency.py
    assert repeats_prompt("How much does visitor parking cost?", "How much does a visitor parking cost?")
    assert repeats_prompt("食堂起点开饭。", "实堂起点开饭。")
    assert repeats_prompt("Hello. Where is the canteen?", "Where is the canteen")  # the last sentence
    assert repeats_prompt("Hello. Where is the canteen?", "Hello, where is the canteen?")  # all of it


def test_new_words_after_the_prompt_are_not_an_echo() -> None:
    assert not repeats_prompt("How much does visitor parking cost?", "And for interns?")
    assert not repeats_prompt("How much does visitor parking cost?", "cost?")  # a word said again
    assert not repeats_prompt("年假有多少天", "产假呢？")
    assert not repeats_prompt("", "Where is the canteen?") and not repeats_prompt("Where?", "...")
