"""Chinese-aware, heading-aware chunking: no word cut in half, overlap between neighbours."""

from __future__ import annotations

import jieba
import pytest

from assistant.kb.chunking import Block, chunk_blocks, split_sentences

ZH = (
    "出差须先在OA提交出差申请并经直属上级审批。机票、火车票和酒店统一通过海桥商旅预订，公司直接结算。"
    "飞机坐经济舱，高铁坐二等座。住宿费按城市封顶：北京、上海、广州、深圳每晚不超过600元，其他城市每晚不超过450元。"
    "国内出差每天补贴150元，包含伙食和市内交通；海外出差每天50美元。补贴按出差自然天数计算，随报销单一起发放。"
)


def test_sentences_split_on_chinese_and_latin_punctuation() -> None:
    assert split_sentences("你好。请问几点？Hello there. It is 3.5 km away! 好的") == [
        "你好。",
        "请问几点？",
        "Hello there.",
        "It is 3.5 km away!",
        "好的",
    ]


def test_chinese_chunks_end_at_sentences_and_overlap() -> None:
    chunks = chunk_blocks([Block(ZH, "差旅")], chunk_chars=80, overlap_chars=30)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert len(chunk.text) <= 80
        assert chunk.text[-1] in "。；" or chunk is chunks[-1]
        assert chunk.section == "差旅"
    # every sentence of the source is whole in some chunk
    for sentence in split_sentences(ZH):
        assert any(sentence in c.text for c in chunks), sentence
    # neighbours share a whole sentence (the overlap)
    shared = [s for s in split_sentences(chunks[1].text) if s in chunks[0].text]
    assert shared, (chunks[0].text, chunks[1].text)


def test_overlong_chinese_sentence_is_cut_between_words() -> None:
    long_sentence = "，".join(["海桥科技员工食堂在二楼提供早餐午餐和晚餐并且支持刷工牌消费"] * 8) + "。"
    chunks = chunk_blocks([Block(long_sentence)], chunk_chars=60, overlap_chars=20)
    assert len(chunks) > 2
    words = jieba.lcut(long_sentence)
    boundaries = {0}
    pos = 0
    for w in words:
        pos += len(w)
        boundaries.add(pos)
    cursor = 0
    for chunk in chunks:
        start = long_sentence.find(chunk.text, max(0, cursor - 60))
        assert start >= 0, chunk.text
        assert start in boundaries and start + len(chunk.text) in boundaries, chunk.text
        cursor = start + len(chunk.text)
    assert cursor == len(long_sentence)


def test_latin_long_sentence_keeps_words_and_numbers_whole() -> None:
    text = " ".join(f"word{i} 3.5" for i in range(60))
    chunks = chunk_blocks([Block(text)], chunk_chars=50, overlap_chars=10)
    tokens = set(text.split())
    for chunk in chunks:
        assert set(chunk.text.split()) <= tokens


def test_headings_start_new_chunks_and_pages_are_kept() -> None:
    blocks = [Block("First part.", "A", 1), Block("Still A.", "A", 2), Block("Other section.", "B", 2)]
    chunks = chunk_blocks(blocks, chunk_chars=200, overlap_chars=20)
    assert [(c.section, c.page) for c in chunks] == [("A", 1), ("B", 2)]
    assert chunks[0].text == "First part. Still A."


def test_overlap_must_be_below_size() -> None:
    with pytest.raises(ValueError):
        chunk_blocks([Block("x")], chunk_chars=50, overlap_chars=50)


def test_table_rows_and_list_items_stay_apart_in_a_chunk() -> None:
    # Rows joined by a bare space read "4F | HR, gym 5F | Hall": the gym's floor looks like 5F.
    rows = [Block("Floor | What is there", "Floors"), Block("4F | Human Resources, staff gym", "Floors"),
            Block("5F | Starsea Hall", "Floors"), Block("Lifts are by the lobby.", "Floors")]  # fmt: skip
    (chunk,) = chunk_blocks(rows, chunk_chars=400, overlap_chars=80)
    assert (
        chunk.text
        == "Floor | What is there; 4F | Human Resources, staff gym; 5F | Starsea Hall; Lifts are by the lobby."
    )
    (zh,) = chunk_blocks([Block("年假 | 10天", "假期"), Block("病假 | 5天", "假期")], chunk_chars=400, overlap_chars=80)
    assert zh.text == "年假 | 10天；病假 | 5天"
    # a block that ends a sentence needs no separator, and none is added after the last block
    (plain,) = chunk_blocks([Block("One.", "s"), Block("Two", "s")], chunk_chars=400, overlap_chars=80)
    assert plain.text == "One. Two"
