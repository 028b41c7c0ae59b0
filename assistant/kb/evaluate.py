"""``kb eval``: recall@1, recall@5 and MRR of a retriever over labelled queries.

A line of the file is ``{"query": "...", "expected": "ID"}`` or ``{"query": ..., "expected": [...]}``;
an expected value is an FAQ id or a document's source path (any chunk of it counts).
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
