"""The speakable-text rules, Chinese and English."""

from __future__ import annotations

import pytest

from assistant.tts.speakable import (
    en_integer,
    en_ordinal,
    en_year,
    make_speakable,
    split_by_language,
    strip_markup,
    zh_integer,
)


@pytest.mark.parametrize(
    ("n", "spoken"),
    [(0, "零"), (10, "十"), (15, "十五"), (105, "一百零五"), (1200, "一千二百"), (2000, "两千"), (10001, "一万零一"),
     (20000, "两万"), (110000, "十一万"), (100000000, "一亿"), (-3, "负三")],
)
def test_chinese_integers(n: int, spoken: str) -> None:
    assert zh_integer(n) == spoken


@pytest.mark.parametrize(
    ("n", "spoken"),
    [(0, "zero"), (21, "twenty-one"), (105, "one hundred five"), (1200, "one thousand two hundred"),
     (2_000_000, "two million"), (-3, "minus three")],
)
def test_english_integers(n: int, spoken: str) -> None:
    assert en_integer(n) == spoken


def test_english_years_and_ordinals() -> None:
    assert en_year(2024) == "twenty twenty-four"
    assert en_year(2005) == "two thousand five"
    assert en_year(1900) == "nineteen hundred"
    assert en_year(1905) == "nineteen oh five"
    assert [en_ordinal(n) for n in (1, 2, 3, 5, 12, 21, 30)] == [
        "first", "second", "third", "fifth", "twelfth", "twenty-first", "thirtieth"
    ]


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("价格是¥1,200。", "价格是一千二百元。"),
        ("共3.5公斤", "共三点五公斤"),
        ("折扣3.5%", "折扣百分之三点五"),
        ("会议在2024年3月5日举行", "会议在二零二四年三月五日举行"),
        ("截止日期2024-03-05", "截止日期二零二四年三月五日"),
        ("下午14:30开始", "下午十四点三十分开始"),
        ("9:05到", "九点零五分到"),
        ("温度25℃", "温度二十五摄氏度"),
        ("距离5km，重3kg", "距离五公里，重三公斤"),
        ("100元", "一百元"),
        ("$5美金", "五美元美金"),
        ("3-5天", "三到五天"),
        ("第3个", "第三个"),
        ("2000人", "两千人"),
        ("电话010-12345678", "电话零一零一二三四五六七八"),
        ("房间0101", "房间零一零一"),
        ("1.5万元", "一点五万元"),
        ("请到301室", "请到三零一室"),
        ("分机8021", "分机八零二一"),
    ],
)
def test_chinese_figures(text: str, spoken: str) -> None:
    assert make_speakable(text, language="zh") == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("It is 3.5 km away.", "It is three point five kilometers away."),
        ("It costs $1,200.", "It costs one thousand two hundred dollars."),
        ("It costs $1,200.50.", "It costs one thousand two hundred dollars and fifty cents."),
        ("Pay ¥1,200 at the desk.", "Pay one thousand two hundred yuan at the desk."),
        ("Pay 100元 now.", "Pay one hundred yuan now."),
        ("Save 50% today.", "Save fifty percent today."),
        ("It weighs 1 kg.", "It weighs one kilogram."),
        ("It is 25℃ outside.", "It is twenty-five degrees Celsius outside."),
        ("On 2024-03-05 we open.", "On March fifth, twenty twenty-four we open."),
        ("On March 5, 2024 we open.", "On March fifth, twenty twenty-four we open."),
        ("Open at 9:05 daily.", "Open at nine oh five o'clock daily.".replace(" o'clock", "")),
        ("Open at 14:00.", "Open at fourteen o'clock."),
        ("Open 9am to 5pm.", "Open nine a m to five p m."),
        ("In 2024 we served 10,000 people.", "In twenty twenty-four we served ten thousand people."),
        ("The 21st floor.", "The twenty-first floor."),
        ("Wait 3-5 days.", "Wait three to five days."),
        ("Go to room 301.", "Go to room three oh one."),
        ("Call ext. 8021 now.", "Call extension eight oh two one now."),
    ],
)
def test_english_figures(text: str, spoken: str) -> None:
    assert make_speakable(text, language="en") == spoken


def test_language_defaults_to_the_texts_own() -> None:
    assert make_speakable("价格3.5元") == "价格三点五元"
    assert make_speakable("It is 3.5 meters") == "It is three point five meters"


def test_markdown_urls_emoji_and_citations_are_removed() -> None:
    text = (
        "## Opening hours\n"
        "**Visit** the [front desk](https://example.com/desk) 😀 at www.example.com or mail desk@example.com [1][2].\n"
        "- Monday: `9:00`\n"
        "- Sunday: closed 🎉\n"
        "> Note: see [^3] and 【4】."
    )
    spoken = make_speakable(text, language="en")
    for gone in ("#", "**", "http", "www", "example", "@", "😀", "🎉", "[1]", "[2]", "[^3]", "【4】", "`", ">", "- "):
        assert gone not in spoken, gone
    assert spoken.startswith("Opening hours. Visit the front desk at")
    assert "Monday: nine o'clock" in spoken
    assert "Sunday: closed" in spoken


def test_a_url_that_is_an_object_points_to_the_screen() -> None:
    assert make_speakable("The console is at https://admin.example.com: sign in.", language="en") == (
        "The console is at the address shown on screen: sign in."
    )
    assert make_speakable("管理员后台地址是https://admin.example.com，用公司账号登录。", language="zh") == (
        "管理员后台地址是屏幕上显示的网址，用公司账号登录。"
    )
    assert make_speakable("Details: https://example.com/a.", language="en") == "Details."


def test_chinese_markup_and_citations() -> None:
    spoken = make_speakable("请访问**官网** https://didi.com 下载【1】。👍", language="zh")
    assert spoken == "请访问官网 下载。"


def test_strip_markup_keeps_words_of_code_and_tables() -> None:
    assert strip_markup("Run `assistant say`") == "Run assistant say"
    assert strip_markup("| a | b |\n|---|---|\n| 1 | 2 |") == "a, b\n\n1, 2"


def test_model_names_are_not_read_as_numbers() -> None:
    assert make_speakable("版本v2和GPT4", language="zh") == "版本v2和GPT4"


def test_split_by_language_keeps_every_character_in_order() -> None:
    text = "请下载滴滴APP，然后点击Login按钮。"
    runs = split_by_language(text)
    assert [lang for lang, _ in runs] == ["zh", "en", "zh", "en", "zh"]
    assert "".join(part for _, part in runs).replace(" ", "") == text.replace(" ", "")


def test_split_by_language_single_language() -> None:
    assert split_by_language("Hello there, friend.") == [("en", "Hello there, friend.")]
    assert split_by_language("您好，欢迎光临。") == [("zh", "您好，欢迎光临。")]
    assert split_by_language("") == []


def test_empty_after_cleaning() -> None:
    assert make_speakable("😀 [1] https://x.y") == ""
