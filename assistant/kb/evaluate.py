"""``kb eval``: how well the knowledge base answers, before any visitor asks.

With a question file: recall@1, recall@5 and MRR over labelled queries. A line of the file is
``{"query": "...", "expected": "ID"}`` or ``{"query": ..., "expected": [...]}``; an expected value
is an FAQ id or a document's source path (any chunk of it counts).

Without one (``self_check``): the knowledge base's own synthetic questions that its calibration was
not fitted on, routed at the configured thresholds: how many would be answered right, wrongly or
declined, how the same questions would fare if their entry were missing, and which entries are
confusable with each other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.stages import Passage, RetrieveError

MRR_DEPTH = 10


@dataclass
class EvalCase:
    query: str
    expected: list[str]


@dataclass
class EvalResult:
    n: int = 0
    recall_at_1: float = 0.0
    recall_at_5: float = 0.0
    mrr: float = 0.0
    misses: list[dict[str, Any]] = field(default_factory=list)
    """Queries whose expected answer is not in the top 5: query, expected, what came first."""

    def to_json(self) -> dict[str, Any]:
        return {
            "recall_at_1": round(self.recall_at_1, 4),
            "recall_at_5": round(self.recall_at_5, 4),
            "mrr": round(self.mrr, 4),
            "n": self.n,
            "misses": self.misses,
        }


def load_cases(path: Path) -> list[EvalCase]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise RetrieveError("kb-eval-file", f"cannot read {path}: {err.strerror or err}") from err
    cases = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise RetrieveError("kb-eval-file", f"{path} line {n}: not JSON ({err.msg})") from err
        if not isinstance(obj, dict) or not isinstance(obj.get("query"), str) or "expected" not in obj:
            raise RetrieveError("kb-eval-file", f'{path} line {n}: expected {{"query": "...", "expected": "ID" or [...]}}')
        expected = obj["expected"]
        expected = [expected] if isinstance(expected, str) else [str(e) for e in expected]
        cases.append(EvalCase(obj["query"], expected))
    if not cases:
        raise RetrieveError("kb-eval-file", f"{path} holds no queries")
    return cases


def hit(passage: Passage, expected: Sequence[str]) -> bool:
    return passage.id in expected or passage.source in expected


def evaluate(cases: Sequence[EvalCase], search: Callable[[str, int], list[Passage]]) -> EvalResult:
    result = EvalResult(n=len(cases))
    r1 = r5 = rr = 0.0
    for case in cases:
        passages = search(case.query, MRR_DEPTH)
        rank = next((i for i, p in enumerate(passages, start=1) if hit(p, case.expected)), None)
        if rank is not None:
            rr += 1.0 / rank
            r1 += rank == 1
            r5 += rank <= 5
        if rank is None or rank > 5:
            result.misses.append(
                {
                    "query": case.query,
                    "expected": case.expected,
                    "rank": rank,
                    "got": [{"id": p.id, "score": p.score} for p in passages[:3]],
                }
            )
    n = max(len(cases), 1)
    result.recall_at_1, result.recall_at_5, result.mrr = r1 / n, r5 / n, rr / n
    return result


# --------------------------------------------------------------------------------------------
# Without a question file: the knowledge base's own held-out synthetic questions
# --------------------------------------------------------------------------------------------

Route = Callable[[list[Passage]], tuple[str, list[Passage]]]
"""``route(passages) -> (route, passages shown)``: the turn's routing at the configured thresholds
(``assistant.routing.decide_route``), handed in by the command."""

CONFUSABLE_SHARE = 0.3
"""Two entries are confusable when at least this share of one's questions land first on the other."""


@dataclass
class SelfCheck:
    """How the knowledge base's own held-out synthetic questions fare (``self_check``)."""

    questions: int = 0
    answerable: dict[str, float] = field(default_factory=dict)
    """Asked of the full index: ``right`` (the FAQ route read its entry, or the generated route had
    it among its sources), ``wrong_faq`` (another entry read out verbatim), ``wrong`` (generated
    from other passages only), ``declined``."""
    uncovered: dict[str, float] = field(default_factory=dict)
    """The same questions with their own entry held out: ``declined`` (right), ``wrong_faq``,
    ``answered``: what an uncovered question on the knowledge base's topic would get."""
    confusable: list[dict[str, Any]] = field(default_factory=list)
    """Pairs of entries whose questions land on each other, most confused first."""
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    """Pairs of FAQ entries asking the same question with different answers: which one a visitor
    gets is down to chance (the FAQ route declines to read either when they score alike)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "answerable": self.answerable,
            "uncovered": self.uncovered,
            "confusable": self.confusable,
            "duplicates": self.duplicates,
        }


def self_check(kb: Any, questions: dict[int, list[str]], route: Route, *, k: int = 5) -> SelfCheck:
    """Ask ``kb`` (an ``assistant.kb.search.KnowledgeBase``) the held-out synthetic ``questions``
    (per record index) twice: as they are, and with their record (and its twins) held out."""
    from collections import Counter

    from assistant.kb import selfcal

    twins = kb.twins(selfcal.TWIN_COSINE)
    answered: Counter[str] = Counter()
    uncovered: Counter[str] = Counter()
    lands: Counter[tuple[int, int]] = Counter()
    asked: Counter[int] = Counter()
    index_of = {r.id: i for i, r in enumerate(kb.records)}
    total = 0
    for record, texts in questions.items():
        right = {kb.records[i].id for i in (record, *twins.get(record, ()))}
        for text in texts:
            total += 1
            asked[record] += 1
            passages = kb.search_sync(text, k=k)
            chosen, shown = route(passages)
            if chosen == "faq":
                answered["right" if shown[0].id in right else "wrong_faq"] += 1
            elif chosen == "generated":
                answered["right" if any(p.id in right for p in shown) else "wrong"] += 1
            else:
                answered["declined"] += 1
            if passages and passages[0].id not in right and kb.records[record].kind == "faq":
                lands[(record, index_of[passages[0].id])] += 1
            held = {record, *twins.get(record, ())}
            chosen, shown = route(kb.search_sync(text, k=k, exclude=held))
            uncovered["declined" if chosen == "fallback" else "wrong_faq" if chosen == "faq" else "answered"] += 1
    check = SelfCheck(questions=total)
    check.answerable = {key: round(answered[key] / max(total, 1), 3) for key in ("right", "wrong_faq", "wrong", "declined")}
    check.uncovered = {key: round(uncovered[key] / max(total, 1), 3) for key in ("declined", "wrong_faq", "answered")}
    pairs = []
    for (a, b), n in lands.most_common():
        share = n / max(asked[a], 1)
        if share >= CONFUSABLE_SHARE and kb.records[b].kind == "faq":
            pairs.append({"entry": kb.records[a].id, "lands_on": kb.records[b].id, "share": round(share, 2),
                          "question": kb.records[a].text, "other": kb.records[b].text})
    check.confusable = pairs
    for a, others in sorted(twins.items()):
        for b in sorted(others):
            ra, rb = kb.records[a], kb.records[b]
            if a < b and ra.kind == rb.kind == "faq" and (ra.answer or "").strip() != (rb.answer or "").strip():
                check.duplicates.append({"entry": ra.id, "other": rb.id, "question": ra.text, "other_question": rb.text})
    return check
