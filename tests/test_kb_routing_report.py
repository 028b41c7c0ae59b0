"""The retrieval-only faithfulness check (`bench/retrieval.py --only sample`): what counts as a
grounded route, a reachable fact and a declined question, with hand-made passages and the real
``decide_route``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from assistant.config import Settings
from assistant.routing import decide_route
from assistant.stages import Passage

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_retrieval", ROOT / "bench" / "retrieval.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_retrieval"] = module
    spec.loader.exec_module(module)
    return module


def faq(id_: str, answer: str, score: float) -> Passage:
    return Passage(id=id_, text=id_, source="faq.csv", score=score, kind="faq", answer=answer)


def chunk(id_: str, text: str, score: float) -> Passage:
    return Passage(id=id_, text=text, source="kb/docs/guide.md", score=score, kind="document", section="Guide")


RETRIEVED: dict[str, list[Passage]] = {
    # a detail question whose answer is in a document chunk that scores below 0.45
    "doc-low": [
        chunk("guide#3", "Phone booths on every floor need no booking.", 0.18),
        faq("en-gym", "Gym: 22:00.", 0.05),
    ],
    # a confident FAQ hit holding the fact
    "faq-hit": [faq("en-canteen", "Lunch is served from 11:30 to 13:30.", 0.95)],
    # a confident FAQ hit on the wrong entry: the fact (5 days) is elsewhere, lower down
    "faq-wrong": [
        faq("en-annual-leave", "10 to 15 days of annual leave.", 0.92),
        faq("en-sick", "5 days of sick leave.", 0.2),
    ],
    # unanswerable: one strong wrong match, one weak one
    "none-strong": [faq("en-annual-leave", "10 to 15 days of annual leave.", 0.85)],
    "none-weak": [faq("en-address", "1 Harbor Road.", 0.12)],
}
ITEMS: list[dict[str, Any]] = [
    {"id": "doc-low", "question": "Do I need to book a phone booth?", "facts": [["no booking", "not needed"]]},
    {"id": "faq-hit", "question": "When is lunch?", "facts": [["11:30"]]},
    {"id": "faq-wrong", "question": "How many sick days?", "facts": [["5", "five"]]},
    {"id": "none-strong", "question": "How long is paternity leave?", "answerable": False},
    {"id": "none-weak", "question": "Who founded the company?", "answerable": False},
]


def route(item: dict[str, Any], settings: Settings) -> tuple[Any, list[Passage]]:
    passages = RETRIEVED[item["id"]]
    return decide_route(passages, settings), passages


def test_grounded_reachable_and_declines_at_the_configured_thresholds(bench: ModuleType) -> None:
    report = bench.routing_report(ITEMS, route, Settings())
    assert report["answerable"] == 3 and report["unanswerable"] == 2
    # Only the FAQ hit answers from what holds its fact: the chunk falls back, the wrong entry wins.
    assert report["grounded"] == pytest.approx(1 / 3, abs=1e-3)
    # ... although every fact was retrieved somewhere.
    assert report["reachable"] == 1.0
    assert report["answerable_routes"] == {"fallback": 1, "faq": 2}
    assert report["unanswerable_fallback"] == 0.5 and report["unanswerable_faq_answered"] == 1
    assert [m["id"] for m in report["misses"]] == ["doc-low", "faq-wrong", "none-strong"]


def test_the_sweep_shows_what_a_lower_relevance_threshold_does(bench: ModuleType) -> None:
    sweep = bench.routing_report(ITEMS, route, Settings())["relevance_sweep"]
    # At 0.15 the chunk reaches the generated route; at 0.1 the weak unanswerable match does too.
    assert sweep["0.15"] == {"grounded": pytest.approx(2 / 3, abs=1e-3), "unanswerable_fallback": 0.5}
    assert sweep["0.1"] == {"grounded": pytest.approx(2 / 3, abs=1e-3), "unanswerable_fallback": 0.0}
    assert sweep["0.2"] == {"grounded": pytest.approx(1 / 3, abs=1e-3), "unanswerable_fallback": 0.5}
    # The configured value is one of the rows and agrees with the main figures.
    assert sweep["0.45"]["grounded"] == pytest.approx(1 / 3, abs=1e-3)


def test_a_fact_is_found_across_languages_by_its_number(bench: ModuleType) -> None:
    assert bench._evidence_has("会议室每次最多预订4小时", ["4 hours", "four hours"])
    assert not bench._evidence_has("年假最多15天", ["5", "five"])  # "5" is not "15"
    assert bench._evidence_has("Lunch from 11:30", ["11:30"])
    assert not bench._evidence_has("Lunch from 11:30", ["12:30"])


def test_fusion_refit_weights_the_signal_that_ranks_the_right_entry(bench: ModuleType) -> None:
    """The BANKING77 ablation's dev-split fusion: a signal that puts the right entry first gets the
    weight, one that is noise gets little, and no weight goes negative."""
    import numpy as np

    rng = np.random.default_rng(0)
    queries, entries = 200, 6
    y = rng.integers(0, entries, size=queries)
    good = rng.normal(0.0, 0.3, size=(queries, entries))
    good[np.arange(queries), y] += 1.0
    noise = rng.normal(0.0, 1.0, size=(queries, entries))
    w = bench._fit_fusion(np.stack([good, noise], axis=2), y)
    assert w[0] > 1.0 and 0.0 <= w[1] < 0.3 * w[0]
    assert float(((np.stack([good, noise], axis=2) @ w).argmax(axis=1) == y).mean()) > 0.9
