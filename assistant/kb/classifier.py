"""A softmax classifier over the FAQ entries, trained at build time on their own phrasings.

Nearest-phrasing search treats every dimension of the embedding alike; a linear classifier fitted
on an entry's question and alternates learns which directions separate *this* knowledge base's
entries (on BANKING77 with 5 alternates per intent: recall@1 0.67 nearest phrasing, 0.70 nearest
centre, 0.77 classifier). Its probability for an entry is one more feature for the calibration.
The index build also gives it each entry's answer as one more example (``index._train_classifier``).

Trained only where it can help and stays cheap: at least ``MIN_ENTRIES`` entries, at most
``MAX_ENTRIES`` (the weights are dimensions x entries), and at least a third of the entries with
alternates (with one phrasing per entry a classifier is a nearest-neighbour search in disguise).
"""

from __future__ import annotations

import math
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MIN_ENTRIES = 3
MAX_ENTRIES = 5000
C = 30.0
"""Inverse L2 strength per training example (as scikit-learn's ``C``); chosen on BANKING77's
training split (queries not used as alternates), not on its test set."""
MAX_ITERATIONS = 300
TEXT_BUCKETS = 1 << 14
"""Hashed character n-gram features beside the embedding: spelling-level evidence ("refund" vs
"refunded", 商旅 vs 差旅) that a sentence embedding blurs. +2 points recall@1 on BANKING77 (5
alternates) over the embedding alone."""
TEXT_WEIGHT = 0.5
"""Scale of the (L2-normalised) n-gram vector against the (unit) embedding."""
TEXT_MAX_ENTRIES = 1000
"""Above this many entries the n-gram weights (TEXT_BUCKETS x entries) would be too large: embedding only."""

_WORD = re.compile(r"\w+", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def char_ngrams(text: str) -> Counter[int]:
    """Hashed n-grams: 2-4 characters inside each padded Latin word; 1-2 characters of Chinese runs."""
    counts: Counter[int] = Counter()
    for word in _WORD.findall(unicodedata.normalize("NFKC", text).lower()):
        if _CJK.search(word):
            grams = list(word) + [word[i : i + 2] for i in range(len(word) - 1)]
        else:
            padded = f" {word} "
            grams = [padded[i : i + n] for n in (2, 3, 4) for i in range(len(padded) - n + 1)]
        counts.update(zlib.crc32(g.encode("utf-8")) % TEXT_BUCKETS for g in grams)
    return counts


def _text_vectors(texts: Sequence[str], idf: np.ndarray) -> Any:
    """Sparse (len(texts), TEXT_BUCKETS) sublinear tf-idf of char n-grams, rows L2-normalised."""
    from scipy.sparse import csr_matrix

    indptr, indices, data = [0], [], []
    for text in texts:
        counts = char_ngrams(text)
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        val = np.fromiter(((1 + math.log(c)) for c in counts.values()), dtype=np.float64, count=len(counts)) * idf[idx]
        norm = float(np.linalg.norm(val)) or 1.0
        indices.extend(idx.tolist())
        data.extend((val / norm).tolist())
        indptr.append(len(indices))
    return csr_matrix((data, indices, indptr), shape=(len(texts), TEXT_BUCKETS))


@dataclass
class EntryClassifier:
    weights: np.ndarray
    """(dimensions, entries) float32, over the embedding"""
    bias: np.ndarray
    """(entries,) float32"""
    records: np.ndarray
    """(entries,) the record index of each class"""
    text_weights: np.ndarray | None = None
    """(TEXT_BUCKETS, entries) float32 over the n-gram vector, or None (embedding only)"""
    idf: np.ndarray | None = None
    iterations: int = 0
    """L-BFGS iterations the fit took (not saved)."""

    def probabilities(self, q: np.ndarray, text: str = "") -> np.ndarray:
        z = q @ self.weights + self.bias
        if self.text_weights is not None and self.idf is not None and text:
            t = _text_vectors([text], self.idf)
            z = z + TEXT_WEIGHT * (t.data.astype(np.float32) @ self.text_weights[t.indices])
        z -= z.max()
        e = np.exp(z)
        return (e / e.sum()).astype(np.float32)

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {"weights": self.weights, "bias": self.bias, "records": self.records}
        if self.text_weights is not None:
            arrays.update(text_weights=self.text_weights, idf=self.idf)
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> EntryClassifier:
        with np.load(path) as z:
            text = (z["text_weights"], z["idf"]) if "text_weights" in z.files else (None, None)
            return cls(z["weights"], z["bias"], z["records"], *text)


def should_train(key_counts: list[int]) -> bool:
    n = len(key_counts)
    with_alternates = sum(1 for c in key_counts if c > 1)
    return MIN_ENTRIES <= n <= MAX_ENTRIES and with_alternates * 3 >= n


def train(
    vectors: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    records: np.ndarray,
    texts: Sequence[str] | None = None,
    start: tuple[EntryClassifier, np.ndarray] | None = None,
) -> EntryClassifier:
    """Multinomial logistic regression (L-BFGS) on key vectors ``vectors`` (and, given ``texts`` and
    few enough entries, their character n-grams) with class ``labels``.

    ``start``: a classifier fitted before on mostly the same entries, and for each class here the
    index of its class there (-1: a new entry). The fit starts from its weights instead of zeros. The
    loss is strictly convex (L2), so the optimum is the same; only the way there is shorter, which is
    what keeps a one-entry edit of a large table from refitting thousands of classes from scratch."""
    from scipy.optimize import minimize
    from scipy.sparse import csr_matrix, hstack

    idf = None
    # float32 products (half the time of float64 on a large table) with float64 sums: the optimum
    # moves by ~1e-6 relative, far below what a probability feature can tell apart.
    x: Any = vectors.astype(np.float32)
    if texts is not None and n_classes <= TEXT_MAX_ENTRIES:
        df = np.zeros(TEXT_BUCKETS)
        for text in texts:
            df[list(char_ngrams(text))] += 1
        idf = np.log((1 + len(texts)) / (1 + df)) + 1.0
        x = hstack([csr_matrix(x), TEXT_WEIGHT * _text_vectors(texts, idf)]).tocsr().astype(np.float32)
    n, d = x.shape
    rows = np.arange(n)
    labels = np.asarray(labels, dtype=np.int64)
    l2 = 1.0 / (C * n)

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: d * n_classes].reshape(d, n_classes)
        b = theta[d * n_classes :]
        z = np.asarray(x @ w.astype(np.float32)) + b.astype(np.float32)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        total = e.sum(axis=1, dtype=np.float64)
        loss = -(z[rows, labels].astype(np.float64) - np.log(total)).sum() / n + 0.5 * l2 * float((w * w).sum())
        e /= total[:, None].astype(np.float32)  # the probabilities
        e[rows, labels] -= 1.0
        e /= n  # the loss's gradient in the logits
        grad_w = np.asarray(x.T @ e, dtype=np.float64) + l2 * w
        grad_b = e.sum(axis=0, dtype=np.float64)
        return loss, np.concatenate([grad_w.ravel(), grad_b])

    theta0 = np.zeros(d * n_classes + n_classes)
    if start is not None:
        _warm(theta0, start, d, n_classes, vectors.shape[1], idf is not None)
    result = minimize(loss_grad, theta0, jac=True, method="L-BFGS-B", options={"maxiter": MAX_ITERATIONS})
    w = result.x[: d * n_classes].reshape(d, n_classes).astype(np.float32)
    b = result.x[d * n_classes :].astype(np.float32)
    dims = vectors.shape[1]
    text_w = np.ascontiguousarray(w[dims:]) if idf is not None else None
    return EntryClassifier(
        np.ascontiguousarray(w[:dims]),
        b,
        records.astype(np.int64),
        text_w,
        None if idf is None else idf.astype(np.float32),
        iterations=int(result.nit),
    )


def _warm(theta0: np.ndarray, start: tuple[EntryClassifier, np.ndarray], d: int, n_classes: int, dims: int, text: bool) -> None:
    """Fill ``theta0`` (weights then biases, as ``train`` lays them out) from the earlier classifier's
    classes; a class with no earlier one, or an earlier classifier over other features, starts at 0."""
    old, old_class = start
    old_class = np.asarray(old_class, dtype=np.int64)
    if len(old_class) != n_classes or old.weights.shape[0] != dims:
        return
    known = np.flatnonzero((old_class >= 0) & (old_class < len(old.bias)))
    if not len(known):
        return
    w0 = theta0[: d * n_classes].reshape(d, n_classes)
    w0[:dims, known] = old.weights[:, old_class[known]]
    if text and old.text_weights is not None and old.text_weights.shape[0] == d - dims:
        w0[dims:, known] = old.text_weights[:, old_class[known]]
    theta0[d * n_classes + known] = old.bias[old_class[known]]
