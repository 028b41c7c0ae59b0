"""What an index build reuses from the live generation: per source file, its records with their
vectors (key, answer and English-view vectors), and the live FAQ classifier as the new fit's start.

A record is reused when its ``content`` (kind, keys, answer) is unchanged, wherever it sits in its
file; the build (``assistant.kb.build``) embeds only the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import RetrieveError
from assistant.kb import classifier as classifier_module
from assistant.kb import entries
from assistant.kb.records import Record
from assistant.kb.store import flat_view, read_manifest, read_records, read_vectors
from assistant.stages import Embedder


@dataclass
class Row:
    """One record of the new generation and what it reuses from the live one (None: compute it)."""

    record: Record
    keys: np.ndarray | None = None
    """Its key vectors, one per key."""
    answer: np.ndarray | None = None
    """Its FAQ answer's vector."""
    view: tuple[np.ndarray, np.ndarray] | None = None
    """Its English view's vectors (keys, answer), FAQ entries only."""


@dataclass
class Previous:
    """What the live generation offers for reuse, per source file: its rows, with their vectors."""

    files: dict[str, Any] = field(default_factory=dict)
    """The manifest's ``files``: sha256 and chunking per source."""
    rows: dict[str, list[Row]] = field(default_factory=dict)
    view_identity: str | None = None
    index: Any = None
    """The live generation's faiss index: the rows' key vectors are views into its memory (no copy),
    so it is kept here as long as they are used."""
    classifier: classifier_module.EntryClassifier | None = None
    classes: dict[tuple[str, tuple[str, ...], str], int] = field(default_factory=dict)
    """The live classifier's class of each FAQ entry, by ``content``."""

    @classmethod
    def read(cls, generation: Path | None, embedder: Embedder, warnings: list[str]) -> Previous:
        """The live generation's reusable parts; nothing (and a warning) when it was built with
        another embedder or cannot be read (said in ``warnings``)."""
        if generation is None:
            return cls()
        try:
            manifest = read_manifest(generation)
            built = manifest.get("embedder", {}).get("identity")
            if built != embedder.identity:
                warnings.append(f"the old index was built with '{built}': everything is embedded again")
                return cls()
            records = read_records(generation)
            index = read_vectors(generation)
            vectors = flat_view(index)
        except (RetrieveError, OSError, ValueError, KeyError, RuntimeError) as err:
            warnings.append(f"the old index could not be read ({err}): everything is embedded again")
            return cls()
        answers = entries.read_answers(generation, len(records))
        view = entries.read_view(generation, records)
        out = cls(
            files=manifest.get("files", {}), view_identity=(manifest.get("view") or {}).get("identity"), index=index
        )
        if (generation / "classifier.npz").exists():
            try:
                out.classifier = classifier_module.EntryClassifier.load(generation / "classifier.npz")
                out.classes = {content(records[int(r)]): c for c, r in enumerate(out.classifier.records)}
            except (OSError, ValueError, KeyError, IndexError):
                out.classifier = None  # the new one is fitted from zeros: slower, the same result
        offset = 0
        for position, rec in enumerate(records):
            row = Row(
                rec,
                vectors[offset : offset + len(rec.all_keys)],
                answers[position] if answers is not None else None,
                view[position] if view is not None else None,
            )
            out.rows.setdefault(rec.source, []).append(row)
            offset += len(rec.all_keys)
        return out

    def classifier_start(self, records: Sequence[Record]) -> tuple[classifier_module.EntryClassifier, np.ndarray] | None:
        """Where the new classifier's fit starts (``classifier.train``): per FAQ entry of ``records``
        its class in the live classifier (-1: none); None when nothing carries over."""
        if self.classifier is None:
            return None
        old = np.array([self.classes.get(content(r), -1) for r in records if r.kind == "faq"], dtype=np.int64)
        return (self.classifier, old) if (old >= 0).any() else None


def content(record: Record) -> tuple[str, tuple[str, ...], str]:
    """What a record's vectors are made of: its keys and its answer (not its id, position or file
    metadata, which an edit elsewhere in the file may shift)."""
    return (record.kind, tuple(record.keys), record.answer or "")
