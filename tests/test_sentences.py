from __future__ import annotations

import pytest

from assistant.sentences import SentenceSplitter, join_sentences, split_sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("出差需要提前三天申请。住宿标准为每晚500元！请问还有问题吗？",
         ["出差需要提前三天申请。", "住宿标准为每晚500元！", "请问还有问题吗？"]),
        ("Visitors sign in at reception. The Wi-Fi is Acme-Guest! Any questions?",
         ["Visitors sign in at reception.", "The Wi-Fi is Acme-Guest!", "Any questions?"]),
        ("The rate is 3.5 percent. It was 2.75 before.", ["The rate is 3.5 percent.", "It was 2.75 before."]),
        ("Mr. Smith and Dr. Lee met at 9 a.m. today. See e.g. the U.S. office.",
         ["Mr. Smith and Dr. Lee met at 9 a.m. today.", "See e.g. the U.S. office."]),
        ("Ask J. Smith in room 3. He knows.", ["Ask J. Smith in room 3.", "He knows."]),
        ("Visit www.acme-example.com for details. Thanks.", ["Visit www.acme-example.com for details.", "Thanks."]),
        ("请下载滴滴APP。Then sign in with your work email. 完成后即可叫车。",
         ["请下载滴滴APP。", "Then sign in with your work email.", "完成后即可叫车。"]),
        ("他说：“好的。”然后走了。", ["他说：“好的。”", "然后走了。"]),
        ("Total: 1,200 yuan at 10:30.", ["Total: 1,200 yuan at 10:30."]),
        ("Wait... really? Yes!", ["Wait...", "really?", "Yes!"]),
        ("第一行\n第二行", ["第一行", "第二行"]),
        ("no final punctuation", ["no final punctuation"]),
        ("", []),
    ],
)
def test_split_finished_text(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def stream(pieces: list[str], **kw: float) -> list[str]:
    s = SentenceSplitter(**kw)
    out: list[str] = []
    for p in pieces:
        out += s.feed(p)
    return out + s.flush()


def test_streaming_matches_whole_text_for_every_cut() -> None:
    text = "The fee is 3.5 dollars. Mr. Lee pays at 9 a.m. on Monday. 费用是3.5元。谢谢！"
    whole = split_sentences(text)
    for cut in range(1, len(text)):
        assert stream([text[:cut], text[cut:]], first_clause_weight=0) == whole, cut


def test_decimal_split_across_tokens_is_not_a_boundary() -> None:
    s = SentenceSplitter(first_clause_weight=0)
    assert s.feed("The price is 3") == []
    assert s.feed(".") == []  # could still be 3.5
    assert s.feed("5 dollars. Next") == ["The price is 3.5 dollars."]
    assert s.flush() == ["Next"]


def test_first_clause_comes_early_only_once() -> None:
    out = stream(["您好，", "商旅出差制度如下：", "国内出差需提前申请，", "住宿按城市分级。"])
    assert out == ["您好，商旅出差制度如下：", "国内出差需提前申请，住宿按城市分级。"]


def test_first_clause_needs_enough_weight_and_a_real_comma() -> None:
    assert stream(["Sure, the password is acme2024. ", "It changes monthly."]) == [
        "Sure, the password is acme2024.",
        "It changes monthly.",
    ]
    # 1,200 is a number, not a clause boundary
    assert stream(["The total comes to 1,200 yuan for the whole trip"], first_clause_weight=3)[0].startswith(
        "The total comes to 1,200"
    )


def test_long_run_on_is_cut_at_a_clause() -> None:
    text = "，".join(["这是一个很长的句子"] * 12)
    out = stream([text], first_clause_weight=0, max_weight=40)
    assert len(out) > 1
    assert "".join(out) == text


def test_punctuation_only_tail_sticks_to_the_sentence() -> None:
    assert split_sentences("好的。」") == ["好的。」"]
    assert split_sentences("Done!)") == ["Done!)"]


@pytest.mark.parametrize(
    ("parts", "joined"),
    [
        # issue 24: "Sorry, my documents don't cover that.Please ask the front desk staff."
        (["Sorry, my documents don't cover that.", "Please ask the front desk staff."],
         "Sorry, my documents don't cover that. Please ask the front desk staff."),
        (["抱歉，我的资料里没有这个问题的答案，", "请咨询前台工作人员。"], "抱歉，我的资料里没有这个问题的答案，请咨询前台工作人员。"),
        (["出差需提前三个工作日申请。", "Please ask HR."], "出差需提前三个工作日申请。Please ask HR."),
        (["Badges at reception, ", "", "and Wi-Fi."], "Badges at reception, and Wi-Fi."),
        ([], ""),
    ],
)
def test_join_sentences_reads_as_written_text(parts: list[str], joined: str) -> None:
    assert join_sentences(parts) == joined
