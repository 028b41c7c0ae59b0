"""Raw retrieval signals -> one score in [0, 1] that reads as a probability.

For every candidate record the retriever measures:

- ``dense``: the best cosine between the query and any of the record's keys (an FAQ entry's
  question and alternates, a chunk's text);
- ``proto``: the cosine between the query and the mean of the record's key vectors (an FAQ entry
  with many phrasings is a cloud; its centre is a steadier target than its nearest point);
- ``lexical``: the best normalised BM25 over the record's keys (``lexical.normalized_scores``);
- ``classifier``: the probability ``classifier.EntryClassifier`` gives the entry, on a log scale
  (``classifier_signal``: 1 at p=1, 0.5 at p=0.01, ~0 at p=0.0001), for FAQ entries of a knowledge
  base with alternates; 0 elsewhere, with ``has_classifier`` 0 to say so;
- ``doc``: 1 for a document chunk, 0 for an FAQ entry (chunks are longer, so their cosines run lower);
- ``answer``: the cosine between the query and the FAQ entry's answer, and ``answer_lexical`` its
  normalised BM25 against the answer's text (detail questions are worded like the answer: "how
  often does the shuttle run" / "every 15 minutes"), where the classifier's answers are kept; 0
  elsewhere.

Two fitted stages make the score (``fit_two_stage``): a ranking value ``z = Σ weight·feature``
(a conditional logit over each query's candidates: the fusion of dense and lexical evidence), then
``score = 1 / (1 + exp(-(scale·z + lead_weight·lead + novelty_weight·novelty + offset)))`` (Platt
scaling on the top candidates of real queries, ``lead`` being how far the best candidate is ahead
of the runner-up and ``novelty`` how much of the question's wording the knowledge base has never
seen, ``lexical.novelty``: it says nothing about which candidate is right, only how likely any is).
Both are fitted on labelled (query, candidate, correct?) pairs from real data
(``bench/retrieval.py --only calibration``; see docs/configuration.md), so a score reads as "the
chance that this passage is the answer": ``[answer] faq_threshold`` 0.80 means "answer verbatim
when at least 4 times in 5 the match is right", ``relevance_threshold`` 0.45 "drop what is more
likely wrong than right".
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = (
    "dense", "proto", "lexical", "classifier", "has_classifier", "doc", "doc_dense", "doc_lexical", "answer", "answer_lexical"
)  # fmt: skip


def classifier_signal(p: np.ndarray) -> np.ndarray:
    """The classifier's probability on a log scale in [0, 1]: the log-odds a classifier speaks in
    fuse better than raw probabilities (0.01 and 0.0001 are very different verdicts)."""
    return np.clip(1.0 + np.log10(np.asarray(p, dtype=np.float64) + 1e-4) / 4.0, 0.0, 1.0).astype(np.float32)


def feature_matrix(
    dense: np.ndarray,
    proto: np.ndarray,
    lexical: np.ndarray,
    classifier: np.ndarray,
    has_classifier: np.ndarray,
    doc: np.ndarray,
    answer: np.ndarray | None = None,
    answer_lexical: np.ndarray | None = None,
) -> np.ndarray:
    """Stack the raw signals (each shape (n,)) into the model's design matrix, shape (n, len(FEATURES));
    ``answer`` and ``answer_lexical`` are 0 where not given (no answers kept)."""
    doc = doc.astype(np.float32)
    zeros = np.zeros(len(dense), dtype=np.float32)
    return np.stack(
        [
            dense, proto, lexical, classifier, has_classifier.astype(np.float32), doc, doc * dense, doc * lexical,
            zeros if answer is None else answer, zeros if answer_lexical is None else answer_lexical,
        ],
        axis=1,
    ).astype(np.float32)  # fmt: skip


GAP_CAP = 4.0
"""The lead of a candidate over the best other one counts up to this many logits."""


def lead(z: np.ndarray) -> np.ndarray:
    """How far the best candidate is ahead of the runner-up (clipped to GAP_CAP); 0 for the others.

    Only a lead counts, never a lag: a question that needs two entries ("hotel cap and per diem")
    has two right answers, and the second must not be marked down for not being the first."""
    if len(z) == 0:
        return z
    if len(z) == 1:
        return np.full(1, GAP_CAP, dtype=np.float32)
    order = np.argsort(-z)
    best, second = z[order[0]], z[order[1]]
    other = np.where(np.arange(len(z)) == order[0], second, best)
    return np.clip(z - other, 0.0, GAP_CAP).astype(np.float32)


@dataclass(frozen=True)
class Calibration:
    """Two stages: ``logits`` ranks (fusion of the signals); ``scores`` maps a candidate's ranking
    logit and its lead over the best other candidate to a probability (Platt scaling, fitted on the
    top candidates of real queries, where the thresholds are applied)."""

    bias: float
    weights: tuple[float, ...]
    source: str = ""
    """Where the weights come from (data set and date), shown by `assistant kb stats`."""
    scale: float = 1.0
    lead_weight: float = 0.0
    offset: float = 0.0
    novelty_weight: float = 0.0

    def logits(self, x: np.ndarray) -> np.ndarray:
        return (x @ np.asarray(self.weights, dtype=np.float32) + np.float32(self.bias)).astype(np.float32)

    def scores(self, x: np.ndarray, *, novelty: float = 0.0) -> np.ndarray:
        """Probabilities for one query's candidates (all of them together: the lead compares them);
        ``novelty`` is the query's (``lexical.novelty``)."""
        z = self.logits(x)
        t = np.clip(self.scale * z + self.lead_weight * lead(z) + self.novelty_weight * novelty + self.offset, -30.0, 30.0)
        return (1.0 / (1.0 + np.exp(-t))).astype(np.float32)

    def to_json(self) -> dict[str, object]:
        return {
            "bias": self.bias,
            "weights": dict(zip(FEATURES, self.weights, strict=True)),
            "scale": self.scale,
            "lead_weight": self.lead_weight,
            "offset": self.offset,
            "novelty_weight": self.novelty_weight,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        weights = data["weights"]
        return cls(
            float(data["bias"]),
            tuple(float(weights.get(f, 0.0)) for f in FEATURES),  # a feature added since: weight 0
            str(data.get("source", "")),
            float(data.get("scale", 1.0)),
            float(data.get("lead_weight", 0.0)),
            float(data.get("offset", 0.0)),
            float(data.get("novelty_weight", 0.0)),
        )


def fit_two_stage(
    queries_x: Sequence[np.ndarray],
    queries_y: Sequence[np.ndarray],
    query_weight: Sequence[float],
    *,
    novelty: Sequence[float] | None = None,
    top: int = 3,
    use_lead: bool = True,
    source: str = "",
) -> Calibration:
    """Stage 1 ranks: a conditional logit (softmax over each query's candidates, the right ones
    against the rest), so only differences *within* a query count and a feature that is constant
    for a knowledge base (has a classifier, has documents) cannot stand in for a bias. Stage 2
    calibrates: Platt scaling of the ranking logit, the candidate's lead and (given) the query's
    ``novelty`` on each query's ``top`` candidates, the ones a threshold is ever applied to,
    off-topic queries included. ``query_weight`` balances the query sets."""
    ranking = _conditional_logit(queries_x, queries_y, query_weight)
    return refit_scores(ranking, queries_x, queries_y, query_weight, novelty=novelty, top=top, use_lead=use_lead, source=source)


def _score_rows(
    ranking: Calibration,
    queries_x: Sequence[np.ndarray],
    queries_y: Sequence[np.ndarray],
    query_weight: Sequence[float],
    novelty: Sequence[float] | None,
    top: int,
    use_lead: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stage 2's rows: (ranking logit, lead, novelty) of each query's ``top`` candidates, with labels
    and weights."""
    feats, labels, weights = [], [], []
    novelties = novelty if novelty is not None else [0.0] * len(queries_x)
    for xq, yq, wq, nq in zip(queries_x, queries_y, query_weight, novelties, strict=True):
        if len(xq) == 0:
            continue
        z = ranking.logits(xq)
        g = lead(z)
        for i in np.argsort(-z)[:top]:
            feats.append((z[i], g[i] if use_lead else 0.0, nq))
            labels.append(yq[i])
            weights.append(wq)
    return np.asarray(feats, dtype=np.float64).reshape(-1, 3), np.asarray(labels, dtype=np.float64), np.asarray(weights)


def refit_scores(
    ranking: Calibration,
    queries_x: Sequence[np.ndarray],
    queries_y: Sequence[np.ndarray],
    query_weight: Sequence[float],
    *,
    novelty: Sequence[float] | None = None,
    top: int = 3,
    use_lead: bool = True,
    prior_weight: float = 0.0,
    source: str = "",
) -> Calibration:
    """``ranking``'s ranking stage with its score mapping (stage 2) fitted on these queries. With
    ``prior_weight`` > 0 the fit is pulled towards ``ranking``'s own mapping (a penalty of that many
    times the data's total weight on the squared distance of the parameters): what a knowledge base
    fitting itself on a little evidence does."""
    f, y, w = _score_rows(ranking, queries_x, queries_y, query_weight, novelty, top, use_lead)
    columns = [0] + ([1] if use_lead else []) + ([2] if novelty is not None else [])
    if prior_weight > 0:
        centre = np.array([ranking.offset, ranking.scale, ranking.lead_weight, ranking.novelty_weight])
        centre = centre[[0, *(c + 1 for c in columns)]]
        platt = _logistic(f[:, columns], y, w, l2=prior_weight, centre=centre, penalise_bias=True)
    else:
        platt = _logistic(f[:, columns], y, w, l2=1e-4)
    fitted = dict(zip(columns, platt[1:], strict=True))
    return Calibration(
        ranking.bias,
        ranking.weights,
        source or ranking.source,
        scale=float(fitted[0]),
        lead_weight=float(fitted.get(1, 0.0)),
        offset=float(platt[0]),
        novelty_weight=float(fitted.get(2, 0.0)),
    )


def _logistic(
    x: np.ndarray,
    y: np.ndarray,
    sw: np.ndarray | None,
    *,
    l2: float,
    iterations: int = 50,
    centre: np.ndarray | None = None,
    penalise_bias: bool = False,
) -> np.ndarray:
    """Weighted L2 logistic regression by Newton's method (IRLS); returns [bias, *weights]. The
    penalty pulls the weights (and, with ``penalise_bias``, the bias) towards ``centre`` (default 0)."""
    x64 = np.hstack([np.ones((len(x), 1)), x.astype(np.float64)])
    y64 = y.astype(np.float64)
    sw = np.ones(len(x64)) if sw is None else sw.astype(np.float64) * len(x64) / sw.sum()
    c = np.zeros(x64.shape[1]) if centre is None else np.asarray(centre, dtype=np.float64)
    w = c.copy()
    ridge = l2 * len(x64) * np.eye(x64.shape[1])
    if not penalise_bias:
        ridge[0, 0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x64 @ w, -30, 30)))
        grad = x64.T @ (sw * (p - y64)) + ridge @ (w - c)
        hess = (x64 * (sw * p * (1 - p))[:, None]).T @ x64 + ridge
        step = np.linalg.solve(hess + 1e-9 * np.eye(len(w)), grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return w


def _conditional_logit(
    queries_x: Sequence[np.ndarray], queries_y: Sequence[np.ndarray], query_weight: Sequence[float], *, l2: float = 1e-3
) -> Calibration:
    from scipy.optimize import minimize

    data = [
        (xq.astype(np.float64), yq.astype(np.float64) / yq.sum(), wq)
        for xq, yq, wq in zip(queries_x, queries_y, query_weight, strict=True)
        if len(xq) and yq.sum() > 0
    ]
    total = sum(wq for _, _, wq in data)

    def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        loss = 0.5 * l2 * float(w @ w)
        grad = l2 * w
        for xq, target, wq in data:
            z = xq @ w
            z -= z.max()
            p = np.exp(z)
            p /= p.sum()
            loss -= wq / total * float(target @ np.log(p + 1e-300))
            grad += wq / total * (xq.T @ (p - target))
        return loss, grad

    dims = data[0][0].shape[1]
    # Evidence never counts against a match: the signal weights are kept >= 0 (a signal the others
    # already carry, like BM25 beside the classifier's n-grams, gets 0 rather than a negative weight).
    signals = {"dense", "proto", "lexical", "classifier", "answer", "answer_lexical"}
    bounds = [(0.0, None) if name in signals else (None, None) for name in FEATURES]
    result = minimize(
        loss_grad, np.zeros(dims), jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 500}
    )
    return Calibration(0.0, tuple(float(v) for v in result.x))


def fit(
    x: np.ndarray,
    y: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
    l2: float = 1e-3,
    source: str = "",
) -> Calibration:
    """One-stage logistic model over ``feature_matrix`` rows, ``y`` in {0, 1} (no Platt stage).

    ``sample_weight`` lets each data set count equally however many pairs it has. A constant
    feature (e.g. no documents in the training data) gets weight 0 through the ridge term.
    """
    w = _logistic(x, y, sample_weight, l2=l2)
    return Calibration(float(w[0]), tuple(float(v) for v in w[1:]), source)


def reliability(scores: Sequence[float], labels: Sequence[int], bins: int = 10) -> list[dict[str, float]]:
    """Per score bin: mean predicted score, observed precision and count (a reliability diagram)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    out = []
    for i in range(bins):
        lo, hi = i / bins, (i + 1) / bins
        mask = (s >= lo) & ((s < hi) if i < bins - 1 else (s <= hi))
        if mask.any():
            out.append({"from": lo, "to": hi, "mean_score": float(s[mask].mean()), "precision": float(y[mask].mean()), "n": int(mask.sum())})
    return out


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


PRIORS = Path(__file__).resolve().parent / "priors"
"""One JSON per embedder family (the part of its identity before the first space or colon): the
calibration fitted across many knowledge bases' synthetic questions (``bench/kb_transfer.py
--write-prior``), which an index without its own questions keeps and one with them starts from."""

# Until a prior exists for an embedder: a conservative hand-set model, documented as such (dense
# cosine 0.9 with a good lexical match -> ~0.9; cosine 0.5 and no shared words -> ~0.1).
GENERIC = Calibration(-9.0, (6.0, 4.0, 5.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0), "generic prior (not fitted)")


def prior_for(identity: str) -> Calibration:
    """The prior for an embedder (by its identity's family): what an index without its own synthetic
    questions keeps, and what one with them starts from (``assistant.kb.selfcal``)."""
    family = identity.split(" ")[0].split(":")[0]
    try:
        return Calibration.from_json(json.loads((PRIORS / f"{family}.json").read_text(encoding="utf-8")))
    except FileNotFoundError:
        return GENERIC
