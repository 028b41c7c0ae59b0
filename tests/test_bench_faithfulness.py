"""bench/faithfulness.py's scoring: fact matching, and sorting misses into retrieval and generation ones."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from assistant.stages import Passage

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_faithfulness", ROOT / "bench" / "faithfulness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_faithfulness"] = module
    spec.loader.exec_module(module)
    return module


BADGE = Passage(
    id="en-badge-lost",
    text="I lost my employee badge. What should I do?",
    source="kb/faq_en.jsonl",
    score=0.58,
    kind="faq",
    answer="Report it at the front desk. A replacement costs 50 yuan.",
    language="en",
)
PERDIEM = Passage(
    id="en-travel-perdiem",
    text="What is the daily allowance on business trips?",
    source="kb/faq_en.jsonl",
    score=0.3,
    kind="faq",
    answer="150 yuan a day in China and 50 US dollars a day abroad.",
    language="en",
)
MEETING_ZH = Passage(
    id="zh-meeting-room",
    text="怎么预订会议室",
    source="kb/faq_zh.csv",
    score=0.6,
    kind="faq",
    answer="在企业微信的“会议室”应用里预订，单次最长4小时。",
    language="zh",
)
BADGE_Q = {"id": "en-badge-fee", "question": "How much does it cost to replace a lost badge?", "facts": [["50"]]}


def row(bench: ModuleType, item: dict[str, Any], answer: str, route: str) -> dict[str, Any]:
    return {"route": route, "answerable": item.get("answerable", True), **bench.score(item, answer)}


def test_a_number_must_stand_alone_and_full_width_digits_count(bench: ModuleType) -> None:
    assert bench.has_fact("A replacement costs 50 yuan.", ["50"])
    assert not bench.has_fact("It costs 150 yuan.", ["50"])
    assert bench.has_fact("前台１８：３０下班", ["18:30"])  # NFKC
    assert bench.has_fact("预算是2,000元", ["2000"])
    # a Chinese spelling that starts with a digit does not continue a longer number
    assert not bench.has_fact("最多15天", ["5天", "五天"])
    assert bench.has_fact("每年有5天全薪病假", ["5天", "五天"])


def test_a_numeric_fact_is_found_in_a_passage_of_the_other_language(bench: ModuleType) -> None:
    # an English question answered from a Chinese passage: "4 hours" is there as "4小时"
    assert bench.fact_present(bench.passage_content(MEETING_ZH), ["4 hours", "four hours"])
    assert not bench.fact_present(bench.passage_content(MEETING_ZH), ["14 hours"])
    assert not bench.fact_present("room 301", ["orange"])


def test_a_decline_with_the_fact_in_front_of_the_model_is_a_generation_miss(bench: ModuleType) -> None:
    answer = "Sorry, my documents don't cover that. Please ask the front desk staff."
    r = row(bench, BADGE_Q, answer, "generated")
    assert r["declined"] and not r["facts_ok"]
    assert bench.classify_miss(BADGE_Q, r, [PERDIEM, BADGE]) == "generation"
    assert bench.classify_miss(BADGE_Q, row(bench, BADGE_Q, "It costs 50 yuan.", "generated"), [BADGE]) is None


def test_missing_passages_or_a_wrong_faq_entry_are_retrieval_misses(bench: ModuleType) -> None:
    fallback = row(bench, BADGE_Q, "Sorry, I don't know the answer to that.", "fallback")
    assert bench.classify_miss(BADGE_Q, fallback, []) == "retrieval"
    wrong_entry = row(bench, BADGE_Q, PERDIEM.answer or "", "faq")  # "50 US dollars": right number, wrong entry
    wrong_entry["facts_ok"] = False
    assert bench.classify_miss(BADGE_Q, wrong_entry, [PERDIEM]) == "retrieval"
    item = {"id": "x", "question": "What's the longest a meeting room can be booked?", "facts": [["4 hours"]]}
    assert bench.classify_miss(item, row(bench, item, "Ask the front desk.", "generated"), [BADGE]) == "retrieval"


def test_an_unanswerable_question_answered_is_classed_by_its_route(bench: ModuleType) -> None:
    item = {"id": "en-none-maternity", "question": "How many weeks of maternity leave?", "answerable": False}
    answered = "You get 10 days of annual leave."
    assert bench.classify_miss(item, row(bench, item, answered, "faq"), [BADGE]) == "retrieval"
    assert bench.classify_miss(item, row(bench, item, answered, "generated"), [BADGE]) == "generation"
    declined = "Sorry, my documents don't cover that."
    assert bench.classify_miss(item, row(bench, item, declined, "generated"), [BADGE]) is None


def test_expected_sources_prefer_the_entry_about_the_question(bench: ModuleType) -> None:
    # both entries contain "50"; only the badge entry shares the question's words
    assert bench.expected_sources(BADGE_Q, [PERDIEM, BADGE, MEETING_ZH]) == ["en-badge-lost"]
    unanswerable = {"id": "x", "question": "Who is the CEO?", "answerable": False}
    assert bench.expected_sources(unanswerable, [BADGE]) == []


@pytest.mark.parametrize("name", ["faithfulness.jsonl", "faithfulness_holdout.jsonl"])
def test_question_sets_are_well_formed_and_disjoint(bench: ModuleType, name: str) -> None:
    items = bench.read_questions(ROOT / "bench" / name)
    assert len({i["id"] for i in items}) == len(items)
    assert any(not i["answerable"] for i in items) and any(i["answerable"] for i in items)
    other = "faithfulness_holdout.jsonl" if name == "faithfulness.jsonl" else "faithfulness.jsonl"
    other_questions = {
        json.loads(line)["question"] for line in (ROOT / "bench" / other).read_text().splitlines() if line
    }
    assert not {i["question"] for i in items} & other_questions


def test_split_takes_every_nth_question(bench: ModuleType) -> None:
    assert bench._split("2/3") == (2, 3)
    with pytest.raises(Exception, match="K/N"):
        bench._split("4/3")


def test_combine_pools_the_answers_of_systems_measured_in_both_sets(bench: ModuleType, tmp_path: Path) -> None:
    unanswerable = {"id": "en-none", "question": "Who is the CEO?", "answerable": False, "facts": []}

    def answer(item: dict[str, Any], text: str) -> dict[str, Any]:
        return {**row(bench, item, text, "generated"), "language": "en", "spoken_s": 1.0, "spoken_units": 5}

    right, wrong = answer(BADGE_Q, "It costs 50 yuan."), answer(BADGE_Q, "It is free.")
    declined = answer(unanswerable, "Sorry, my documents don't cover that. Please ask the front desk staff.")
    settings = {"relevance_threshold": 0.15, "verify_faq_below": 0.98, "faq_threshold": 0.8}
    dev = {"systems": {"m": settings, "only-dev": settings}, "answers": {"m": [right, right, declined], "only-dev": [right]}}
    holdout = {"systems": {"m": settings}, "answers": {"m": [wrong, declined]}}
    paths = [tmp_path / "dev.json", tmp_path / "holdout.json"]
    for p, data in zip(paths, (dev, holdout), strict=True):
        p.write_text(json.dumps(data), encoding="utf-8")
    assert bench.combine(paths, tmp_path / "combined.json") == 0
    systems = json.loads((tmp_path / "combined.json").read_text(encoding="utf-8"))["systems"]
    assert set(systems) == {"m"}  # measured in one set only: not pooled
    assert systems["m"]["answerable"] == 3 and systems["m"]["fact_accuracy"] == round(2 / 3, 4)
    assert systems["m"]["decline_rate"] == 1.0 and systems["m"]["settings"]["relevance_threshold"] == 0.15
