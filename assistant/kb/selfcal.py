"""Each knowledge base calibrates itself: labelled pairs it makes from its own synthetic questions.

A score must mean the same on every knowledge base: the chance that this match answers the question.
A mapping fitted on other knowledge bases does not carry over (one phrasing per entry and long
answers read differently from many short alternates), so at build time every index fits its own,
starting from a prior fitted across many knowledge bases (``calibration.PRIOR``) and moved only as
far as its own evidence says (a maximum a posteriori fit: a one-entry knowledge base stays near the
prior, a large one speaks for itself).

The labelled query groups (``labelled``), from the synthetic questions (``assistant.kb.synthesis``):

- ``match``: each question against every candidate: its own record (and that record's *twins*, the
  same content in the other language or repeated) are the right ones;
- ``held_out``: the same question with its record and twins removed from the candidates: what a
  question on the knowledge base's topic that it does not answer looks like; every candidate wrong;
- ``off_topic``: a shipped set of off-topic visitor utterances (``offtopic.txt``), every candidate wrong.

The groups are weighed so that a knowledge base sees, in effect, as many answerable questions as
unanswerable ones, half of those on its topic (``GROUP_WEIGHTS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from assistant.kb import calibration as cal
from assistant.kb.synthesis import Synthetic

OFFTOPIC_FILE = Path(__file__).resolve().parent / "offtopic.txt"
GROUP_WEIGHTS = {"match": 0.5, "held_out": 0.25, "off_topic": 0.25}
"""Each group's share of the fit: as many answerable questions as unanswerable ones."""
TWIN_COSINE = 0.85
"""Two records whose key centres (or answers) are this close say the same thing (a translation, a
repeated entry): holding one out, the other still answers, so both are held out together."""
PRIOR_STRENGTH = 20.0
"""How many queries' worth of evidence the prior counts for in a knowledge base's own fit."""
MAX_QUERIES = 600
"""At most this many synthetic questions (and off-topic lines) enter a fit: an even sample of a large
knowledge base's, which keeps a rebuild's fit to seconds."""


@dataclass
class Group:
    """Labelled queries: per query its candidates' features, their labels (1: answers) and novelty."""

    xs: list[np.ndarray] = field(default_factory=list)
    ys: list[np.ndarray] = field(default_factory=list)
    novelty: list[float] = field(default_factory=list)

    def add(self, x: np.ndarray, y: np.ndarray, novelty: float) -> None:
        if len(x):
            self.xs.append(x)
            self.ys.append(y)
            self.novelty.append(novelty)

    def __len__(self) -> int:
        return len(self.xs)


def offtopic_questions() -> list[str]:
    return [line.strip() for line in OFFTOPIC_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


def labelled(kb: object, questions: Mapping[int, Sequence[Synthetic]], offtopic: Sequence[str] = ()) -> dict[str, Group]:
    """The ``match``, ``held_out`` and ``off_topic`` groups of ``kb`` (an ``assistant.kb.search.
    KnowledgeBase``) for the synthetic ``questions`` per record index."""
    from assistant.kb.search import KnowledgeBase

    assert isinstance(kb, KnowledgeBase)
    twins = kb.twins(TWIN_COSINE)
    groups = {name: Group() for name in GROUP_WEIGHTS}
    items = [(r, q.text) for r, qs in questions.items() for q in qs]
    step = max(1, -(-len(items) // MAX_QUERIES))
    items = items[::step]
    vectors = _embed(kb, [text for _, text in items])
    for (record, text), q in zip(items, vectors, strict=True):
        answers = {record, *twins.get(record, ())}
        (rec, x, novelty), (held_rec, held_x, held_novelty) = kb.labelled_variants(text, [(), answers], q=q)
        groups["match"].add(x, np.isin(rec, list(answers)).astype(np.float64), novelty)
        groups["held_out"].add(held_x, np.zeros(len(held_rec)), held_novelty)
    off = list(offtopic[:MAX_QUERIES])
    for text, q in zip(off, _embed(kb, off), strict=True):
        rec, x, novelty = kb.labelled_features(text, q=q)
        groups["off_topic"].add(x, np.zeros(len(rec)), novelty)
    return groups


def _embed(kb: object, texts: Sequence[str], batch: int = 256) -> np.ndarray:
    """The texts' vectors, embedded in batches (a knowledge base's own encoder)."""
    from assistant.kb.search import KnowledgeBase

    assert isinstance(kb, KnowledgeBase)
    if not texts:
        return np.zeros((0, kb.embedder.dimensions), dtype=np.float32)
    return np.concatenate([kb.embedder.embed(texts[i : i + batch]) for i in range(0, len(texts), batch)])


def _weights(groups: Mapping[str, Group]) -> tuple[list[np.ndarray], list[np.ndarray], list[float], list[float]]:
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ns: list[float] = []
    ws: list[float] = []
    present = {name: g for name, g in groups.items() if len(g)}
    share = sum(GROUP_WEIGHTS.get(name, 0.0) for name in present) or 1.0
    for name, g in present.items():
        w = GROUP_WEIGHTS.get(name, 0.0) / share / len(g)
        xs += g.xs
        ys += g.ys
        ns += g.novelty
        ws += [w] * len(g)
    return xs, ys, ns, ws


def fit_prior(knowledge_bases: Sequence[Mapping[str, Group]], *, source: str) -> cal.Calibration:
    """A calibration fitted from scratch across several knowledge bases' groups, each knowledge base
    weighing the same (the prior a knowledge base without synthetic questions falls back to)."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ns: list[float] = []
    ws: list[float] = []
    for groups in knowledge_bases:
        x, y, n, w = _weights(groups)
        xs += x
        ys += y
        ns += n
        ws += [v / len(knowledge_bases) for v in w]
    return cal.fit_two_stage(xs, ys, ws, novelty=ns, source=source)


def fit_own(prior: cal.Calibration, groups: Mapping[str, Group], *, source: str) -> cal.Calibration:
    """This knowledge base's calibration: the prior's ranking, and its score mapping refitted on the
    knowledge base's own groups, pulled towards the prior's by ``PRIOR_STRENGTH`` queries' worth."""
    xs, ys, ns, ws = _weights(groups)
    if not xs:
        return prior
    n = sum(len(g) for g in groups.values())
    return cal.refit_scores(prior, xs, ys, ws, novelty=ns, prior_weight=PRIOR_STRENGTH / max(n, 1), source=source)


def report(calibration: cal.Calibration, groups: Mapping[str, Group], thresholds: Mapping[str, float]) -> dict[str, object]:
    """How the knowledge base's own held-out synthetic questions fare at ``thresholds`` (``faq``,
    ``relevance``): per group, the share whose best match is right and clears each threshold."""
    out: dict[str, object] = {}
    for name, g in groups.items():
        if not len(g):
            continue
        rows: dict[str, float] = {"queries": len(g)}
        best_ok, best_score = [], []
        for x, y, nov in zip(g.xs, g.ys, g.novelty, strict=True):
            s = calibration.scores(x, novelty=nov)
            i = int(np.argmax(s))
            best_ok.append(bool(y[i]))
            best_score.append(float(s[i]))
        ok = np.array(best_ok)
        score = np.array(best_score)
        for label, t in thresholds.items():
            rows[f"right_at_{label}"] = round(float((ok & (score >= t)).mean()), 3)
            rows[f"wrong_at_{label}"] = round(float((~ok & (score >= t)).mean()), 3)
        out[name] = rows
    return out
