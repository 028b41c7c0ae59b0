"""What the FAQ entry classifier trains on: each entry's phrasings and answer, in the main
embedding and (for English text) the English view (``assistant.kb.classifier``, ``assistant.kb.views``).

A build (``assistant.kb.build``) calls these with its rows; vectors of unchanged files are reused.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from assistant.kb import classifier, views
from assistant.kb.records import Record
from assistant.stages import Embedder

EMBED_BATCH = 256
"""Texts per embedder call during a build."""

class Row(Protocol):
    """A record of the new generation with what it reuses (``assistant.kb.reuse.Row``)."""

    record: Record
    answer: np.ndarray | None
    view: tuple[np.ndarray, np.ndarray] | None


def classifier_trains(records: Sequence[Record]) -> bool:
    from assistant.kb import classifier

    return classifier.should_train([len(r.all_keys) for r in records if r.kind == "faq"])


def read_answers(generation: Path, n_records: int) -> np.ndarray | None:
    """The old generation's answer vectors, or None (none stored, or not one row per record)."""
    try:
        answers = np.load(generation / "answers.npy")
    except (OSError, ValueError):
        return None
    return answers if answers.ndim == 2 and len(answers) == n_records else None


def answer_vectors(embedder: Embedder, rows: Sequence[Row], progress: bool) -> np.ndarray:
    """One row per record: its FAQ answer's vector (reused when the file did not change), zeros for
    document chunks."""
    out = np.zeros((len(rows), embedder.dimensions), dtype=np.float32)
    fresh = []
    for i, row in enumerate(rows):
        if row.record.kind != "faq" or not row.record.answer:
            continue
        if row.answer is not None and row.answer.any():
            out[i] = row.answer
        else:
            fresh.append(i)
    if fresh:
        out[fresh] = embed_all(embedder, [str(rows[i].record.answer) for i in fresh], progress)
    return out


def english_entries(records: Sequence[Record]) -> int:
    return sum(1 for r in records if r.kind == "faq" and any(views.is_english(k) for k in r.keys))


def read_view(generation: Path, records: Sequence[Record]) -> list[tuple[np.ndarray, np.ndarray] | None] | None:
    """Per old record: its view vectors (key rows, answer row) for FAQ entries, None for chunks; None
    when the old generation has no view (or it does not fit its records)."""
    try:
        with np.load(generation / "view.npz") as z:
            keys, answers = z["keys"], z["answers"]
    except (OSError, ValueError, KeyError):
        return None
    faq = [r for r in records if r.kind == "faq"]
    if len(answers) != len(faq) or len(keys) != sum(len(r.all_keys) for r in faq):
        return None
    out: list[tuple[np.ndarray, np.ndarray] | None] = []
    row = entry = 0
    for r in records:
        if r.kind != "faq":
            out.append(None)
            continue
        out.append((keys[row : row + len(r.all_keys)], answers[entry]))
        row += len(r.all_keys)
        entry += 1
    return out


def view_vectors(
    view: Embedder, rows: Sequence[Row], *, reuse: bool, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The view's vectors of every FAQ entry's phrasings (in key order) and answers (one row per
    entry), zeros for non-English text; with ``reuse``, kept rows where the entry's file did not
    change (the live generation read this view too)."""
    faq = [(row.record, row.view if reuse else None) for row in rows if row.record.kind == "faq"]
    fresh = [t for r, v in faq if v is None for t in (*r.all_keys, str(r.answer or ""))]
    english = [t for t in fresh if views.is_english(t)]
    embedded = iter(embed_all(view, english, progress))
    fresh_rows = iter([next(embedded) if views.is_english(t) else np.zeros(view.dimensions, dtype=np.float32) for t in fresh])
    keys: list[np.ndarray] = []
    answers: list[np.ndarray] = []
    for r, v in faq:
        if v is None:
            vectors = [next(fresh_rows) for _ in range(len(r.all_keys) + 1)]
            v = (np.stack(vectors[:-1]), vectors[-1])
        keys.append(v[0])
        answers.append(v[1])
    dims = view.dimensions
    return (
        np.concatenate(keys).astype(np.float32) if keys else np.zeros((0, dims), dtype=np.float32),
        np.stack(answers).astype(np.float32) if answers else np.zeros((0, dims), dtype=np.float32),
    )


def train_classifier(
    records: Sequence[Record],
    matrix: np.ndarray,
    answers: np.ndarray,
    path: Path,
    view: tuple[np.ndarray, np.ndarray] | None = None,
    start: tuple[classifier.EntryClassifier, np.ndarray] | None = None,
) -> bool:
    """Fit the FAQ entry classifier (see ``classifier``); True when written.

    Each entry's examples are its phrasings and its answer. The answer holds what detail questions
    ask about ("how many days of fully paid sick leave": "5 days of fully paid sick leave a year"),
    which no phrasing of the question does (docs/configuration.md, "How a score is made", has what
    it gained).

    ``view``: the English view's vectors of the FAQ entries' phrasings and answers (``view_vectors``),
    set beside the main vectors (``views.classifier_input``). ``start``: the live generation's
    classifier and, per FAQ entry here, its class there (``classifier.train``)."""
    faq = [i for i, r in enumerate(records) if r.kind == "faq"]
    starts = np.zeros(len(records) + 1, dtype=np.int64)
    np.cumsum([len(r.all_keys) for r in records], out=starts[1:])
    rows = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in faq])
    labels = np.concatenate([np.full(starts[i + 1] - starts[i], c) for c, i in enumerate(faq)])
    texts = [k for i in faq for k in records[i].all_keys]
    with_answer = [c for c, i in enumerate(faq) if records[i].answer]
    vectors = np.concatenate(
        [
            views.classifier_input(matrix[rows], None if view is None else view[0]),
            views.classifier_input(answers[[faq[c] for c in with_answer]], None if view is None else view[1][with_answer]),
        ]
    )
    labels = np.concatenate([labels, np.asarray(with_answer, dtype=labels.dtype)])
    texts += [str(records[faq[c]].answer) for c in with_answer]
    model = classifier.train(vectors, labels, len(faq), np.asarray(faq), texts, start=start)
    model.save(path)
    return True


def embed_all(embedder: Embedder, texts: Sequence[str], progress: bool) -> np.ndarray:
    if not texts:
        return np.zeros((0, embedder.dimensions), dtype=np.float32)
    out = np.empty((len(texts), embedder.dimensions), dtype=np.float32)
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(texts), desc="embedding", unit="text", file=sys.stderr, leave=False)
    try:
        for start in range(0, len(texts), EMBED_BATCH):
            batch = texts[start : start + EMBED_BATCH]
            out[start : start + len(batch)] = embedder.embed(batch)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    return out
