"""Hybrid search over one index generation: dense (faiss) + lexical (BM25), fused and calibrated.

Per query: embed it (one BLAS thread, ~3 ms), take the nearest keys from faiss and the best
records from BM25, score every candidate record on the features of ``calibration`` and return the
best ``k`` as Passages with scores in [0, 1]. An FAQ entry comes back as ``kind="faq"`` with the
phrasing that matched best as ``text`` and its canonical ``answer``.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assistant.kb import calibration as cal
from assistant.kb import views
from assistant.kb.classifier import EntryClassifier
from assistant.kb.lexical import LexicalIndex, novelty, tokenize
from assistant.kb.records import Record
from assistant.kb.store import flat_view, read_manifest, read_records, read_vectors
from assistant.kb.synthesis import record_language
from assistant.stages import Embedder, Passage, RetrieveError

TRANSLATION_COSINE = 0.6
"""How alike an English and a Chinese FAQ entry, each the other's nearest, must be to count as one
another's translation (``KnowledgeBase.twins``). Indexed together, the Debian FAQ's English and
Chinese tables (139 entries in both) get 133 pairs right this way and 2 wrong, against 49 right and
2 wrong by the plain ``cosine`` rule alone (bench/results/kb_twins.json)."""

DENSE_CANDIDATE_KEYS = 128
"""How many nearest keys faiss returns; their records become candidates."""
LEXICAL_CANDIDATES = 32
"""How many best BM25 records become candidates besides the dense ones."""
CLASSIFIER_CANDIDATES = 8
"""How many most probable entries of the FAQ classifier become candidates."""
ANSWER_CANDIDATES = 8
"""How many FAQ entries whose answers match best in BM25 become candidates."""
HNSW_EF_SEARCH = 128


@dataclass(frozen=True)
class _Found:
    """What one query found in each part of the index, before candidates are chosen."""

    records: np.ndarray
    """The records of the nearest keys, nearest first."""
    scores: np.ndarray
    """Their keys' cosines."""
    lexical: np.ndarray
    """Per record, its best key's normalised BM25."""
    answer_lexical: np.ndarray | None
    probs: np.ndarray | None
    """The FAQ classifier's probabilities, per entry class."""


class KnowledgeBase:
    """A loaded index generation; ``search_sync`` is thread-safe and does not block on I/O.

    ``view``: the English view's encoder (``views``), required when the generation was built with
    one (its manifest's ``view``), which ``open_retriever`` checks."""

    def __init__(self, generation: Path, embedder: Embedder, *, view: Embedder | None = None) -> None:
        self.generation = generation
        self.manifest = read_manifest(generation)
        self.records: list[Record] = read_records(generation)
        self.embedder = embedder
        built_view = self.manifest.get("view")
        if built_view and (view is None or view.identity != built_view.get("identity")):
            raise RetrieveError(
                "kb-view-mismatch",
                f"the index at {generation.parent} was built with the English view '{built_view.get('identity')}', "
                f"but it was opened with {'none' if view is None else repr(view.identity)}; "
                f"rebuild it with `assistant kb build --index {generation.parent}`",
            )
        self.view = view if built_view else None
        self._index = read_vectors(generation)
        import faiss

        # One query at a time: OpenMP fan-out costs more than it saves (65 ms instead of ~2 ms for a
        # 10k flat scan on 2 busy cores). Process-wide; builds raise it again for themselves.
        faiss.omp_set_num_threads(1)
        if hasattr(self._index, "hnsw"):
            self._index.hnsw.efSearch = HNSW_EF_SEARCH
        self._vectors = flat_view(self._index)
        self._lexical = LexicalIndex.load(generation / "lexical")
        # Load jieba's dictionary and the embedder's weights now (~3 s), not on the first visitor's turn.
        self._lexical.normalized_scores("预加载 preload")
        embedder.embed(["preload"])
        if self.view is not None:
            self.view.embed(["preload"])
        counts = np.fromiter((len(r.all_keys) for r in self.records), dtype=np.int64, count=len(self.records))
        self._key_start = np.zeros(len(self.records), dtype=np.int64)
        np.cumsum(counts[:-1], out=self._key_start[1:])
        self._key_count = counts
        self._key_record = np.repeat(np.arange(len(self.records)), counts)
        self._is_doc = np.fromiter((r.kind == "document" for r in self.records), dtype=bool, count=len(self.records))
        # Prototype (mean of the key vectors) of every FAQ entry with several phrasings.
        self._proto: dict[int, np.ndarray] = {}
        for i in np.flatnonzero(counts > 1):
            start = self._key_start[i]
            mean = self._vectors[start : start + counts[i]].mean(axis=0)
            self._proto[int(i)] = mean / max(float(np.linalg.norm(mean)), 1e-9)
        # Each index carries its own calibration, fitted at build time on its own synthetic questions
        # (assistant.kb.selfcal), or the prior when it was built without them.
        self.calibration = cal.Calibration.from_json(self.manifest["calibration"])
        self._classifier: EntryClassifier | None = None
        self._class_of = np.full(len(self.records), -1, dtype=np.int64)
        if (generation / "classifier.npz").exists():
            self._classifier = EntryClassifier.load(generation / "classifier.npz")
            self._class_of[self._classifier.records] = np.arange(len(self._classifier.records))
        # The FAQ answers' own evidence (kept where the classifier is trained): their vectors, and
        # BM25 over their text, for detail questions that no phrasing of the entry resembles.
        self._answers: np.ndarray | None = None
        self._answer_lexical: LexicalIndex | None = None
        self._faq_records = np.flatnonzero(~self._is_doc)
        if (generation / "answers.npy").exists():
            answers = np.load(generation / "answers.npy")
            if answers.shape == (len(self.records), self._vectors.shape[1]):
                self._answers = answers
        if self._answers is not None and (generation / "answers_lexical").is_dir():  # not in older indexes
            self._answer_lexical = LexicalIndex.load(generation / "answers_lexical")
        # faiss releases the GIL and keeps per-call state, but one search at a time keeps latency
        # predictable and the HNSW efSearch setting shared.
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------

    def candidates(
        self, query: str, q: np.ndarray, *, exclude: Collection[int] = ()
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Candidate record ids and their signals (``calibration.feature_matrix``'s arguments, by
        name); ``q`` is the query's vector. ``exclude``: records to search as if they were not in
        the knowledge base (self-calibration's held-out questions): never candidates, and the
        classifier's probabilities are those of the remaining entries."""
        return self._assemble(self._search(query, q), q, exclude)

    def _search(self, query: str, q: np.ndarray) -> _Found:
        """What the query finds in each part of the index (the costly part of a search)."""
        n_keys = len(self._vectors)
        with self._lock:
            found_scores, ids = self._index.search(q[None, :], min(DENSE_CANDIDATE_KEYS, n_keys))
        lexical_keys = self._lexical.normalized_scores(query)
        lexical_records = np.maximum.reduceat(lexical_keys, self._key_start) if n_keys else lexical_keys
        valid = ids[0] >= 0
        answer_lexical = None
        if self._answer_lexical is not None:
            answer_lexical = np.zeros(len(self.records), dtype=np.float32)
            answer_lexical[self._faq_records] = self._answer_lexical.normalized_scores(query)
        probs = None
        if self._classifier is not None:
            probs = self._classifier.probabilities(self._classifier_input(query, q), query)
        return _Found(self._key_record[ids[0][valid]], found_scores[0][valid], lexical_records, answer_lexical, probs)

    def _assemble(self, found: _Found, q: np.ndarray, exclude: Collection[int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        lexical_records, answer_lexical, probs = found.lexical, found.answer_lexical, found.probs
        cand = set(found.records.tolist())
        if len(lexical_records):
            top = np.argpartition(-lexical_records, min(LEXICAL_CANDIDATES, len(lexical_records) - 1))[:LEXICAL_CANDIDATES]
            cand.update(int(i) for i in top if lexical_records[i] > 0)
        if answer_lexical is not None:
            top = np.argsort(-answer_lexical)[:ANSWER_CANDIDATES]
            cand.update(int(i) for i in top if answer_lexical[i] > 0)
        if probs is not None and self._classifier is not None:
            if exclude:
                gone = self._class_of[list(exclude)]
                probs = probs.copy()
                probs[gone[gone >= 0]] = 0.0
                probs = probs / max(float(probs.sum()), 1e-12)
            top_classes = np.argsort(-probs)[:CLASSIFIER_CANDIDATES]
            cand.update(int(i) for i in self._classifier.records[top_classes])
        cand.difference_update(exclude)
        rec = np.fromiter(cand, dtype=np.int64, count=len(cand))
        # A record with any key among the nearest keys has its best key among them too (the list is
        # sorted by score): its dense signal is exact without touching its other keys. Only records
        # that came from BM25 or the classifier alone are scored key by key.
        best_found: dict[int, float] = {}
        for r, score in zip(found.records.tolist(), found.scores.tolist(), strict=True):
            if r not in best_found:
                best_found[r] = score
        dense = np.empty(len(rec), dtype=np.float32)
        proto = np.empty(len(rec), dtype=np.float32)
        for j, r in enumerate(rec.tolist()):
            if r in best_found:
                dense[j] = best_found[r]
            else:
                start, count = self._key_start[r], self._key_count[r]
                dense[j] = float((self._vectors[start : start + count] @ q).max())
            p = self._proto.get(r)
            proto[j] = float(p @ q) if p is not None else dense[j]
        classes = self._class_of[rec]
        clf = np.where(classes >= 0, cal.classifier_signal(probs[classes]) if probs is not None else 0.0, 0.0)
        zeros = np.zeros(len(rec), dtype=np.float32)
        signals = {
            "dense": dense,
            "proto": proto,
            "lexical": lexical_records[rec],
            "classifier": clf.astype(np.float32),
            "has_classifier": (classes >= 0).astype(np.float32),
            "doc": self._is_doc[rec].astype(np.float32),
            "answer": (self._answers[rec] @ q).astype(np.float32) if self._answers is not None else zeros,
            "answer_lexical": answer_lexical[rec] if answer_lexical is not None else zeros,
        }
        return rec, signals

    def _classifier_input(self, query: str, q: np.ndarray) -> np.ndarray:
        """The query as the classifier reads it: its vector, and its English view's beside it."""
        if self.view is None:
            return q
        return views.classifier_input(q[None, :], views.view_vectors(self.view, [query]))[0]

    def novelty(self, query: str, *, exclude: Collection[int] = ()) -> float:
        """``lexical.novelty`` of the query against every phrasing, chunk and FAQ answer here (as if
        the ``exclude`` records were not: their words count as unseen unless another record has them)."""
        others = [self._answer_lexical] if self._answer_lexical is not None else []
        if not exclude:
            return novelty(query, self._lexical, *others)
        own: Counter[str] = Counter()
        for r in exclude:
            record = self.records[r]
            for text in record.all_keys:
                own.update(set(tokenize(text)))
            if record.answer and self._answer_lexical is not None:
                own.update(set(tokenize(record.answer)))
        return novelty(query, self._lexical, *others, unless=own)

    def labelled_features(
        self, query: str, *, exclude: Collection[int] = (), q: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Candidate record ids, their calibration features and the query's novelty, with the
        ``exclude`` records held out (``candidates``): one labelled query of self-calibration."""
        (result,) = self.labelled_variants(query, [exclude], q=q)
        return result

    def labelled_variants(
        self, query: str, excludes: Sequence[Collection[int]], *, q: np.ndarray | None = None
    ) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """``labelled_features`` for each of ``excludes``, searching once."""
        if q is None:
            q = self.embedder.embed([query])[0]
        found = self._search(query, q)
        out = []
        for exclude in excludes:
            rec, signals = self._assemble(found, q, exclude)
            out.append((rec, cal.feature_matrix(**signals), self.novelty(query, exclude=exclude)))
        return out

    def twins(self, cosine: float, translation: float = TRANSLATION_COSINE) -> dict[int, set[int]]:
        """Records that say the same thing as another: the centres of their key vectors, or their FAQ
        answers, at least ``cosine`` alike (a repeated entry); or, for FAQ entries in two languages,
        each the other's nearest entry in the other language at least ``translation`` alike (a
        translation: a multilingual encoder puts most translated pairs well under ``cosine``).
        Record index -> its twins."""
        n = len(self.records)
        if not n:
            return {}
        centres = np.stack([self._proto.get(i, self._vectors[self._key_start[i]]) for i in range(n)])
        similar = centres @ centres.T
        if self._answers is not None:
            norms = np.linalg.norm(self._answers, axis=1, keepdims=True)
            unit = self._answers / np.maximum(norms, 1e-9)
            has = norms[:, 0] > 0
            similar = np.maximum(similar, np.where(has[:, None] & has[None, :], unit @ unit.T, np.float32(-1.0)))
        alike = similar >= cosine
        language = np.array([record_language(r) for r in self.records])
        faq = np.array([r.kind == "faq" for r in self.records])
        ours, theirs = np.flatnonzero(faq & (language == "en")), np.flatnonzero(faq & (language == "zh"))
        if len(ours) and len(theirs):
            across = similar[np.ix_(ours, theirs)]
            best_theirs, best_ours = across.argmax(axis=1), across.argmax(axis=0)
            for a, b in enumerate(best_theirs):
                if best_ours[b] == a and across[a, b] >= translation:
                    alike[ours[a], theirs[b]] = alike[theirs[b], ours[a]] = True
        np.fill_diagonal(alike, False)
        return {int(i): set(np.flatnonzero(row).tolist()) for i, row in enumerate(alike) if row.any()}

    def features(self, query: str, q: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Candidate record ids and their calibration features (``calibration.FEATURES``)."""
        if q is None:
            q = self.embedder.embed([query])[0]
        rec, signals = self.candidates(query, q)
        return rec, cal.feature_matrix(**signals)

    def search_sync(self, query: str, *, k: int, exclude: Collection[int] = ()) -> list[Passage]:
        """The best ``k`` passages, scores calibrated. ``exclude``: records searched as if they were
        not here (``kb eval``'s questions the knowledge base would not answer)."""
        query = query.strip()
        if not query or not self.records:
            return []
        q_vec = self.embedder.embed([query])[0]
        rec, signals = self.candidates(query, q_vec, exclude=exclude)
        x = cal.feature_matrix(**signals)
        scores = self.calibration.scores(x, novelty=self.novelty(query, exclude=exclude))
        order = np.argsort(-scores, kind="stable")[:k]
        out: list[Passage] = []
        for j in order:
            r = self.records[int(rec[j])]
            text = r.text
            if r.kind == "faq" and len(r.keys) > 1:
                # Show the phrasing that matched best (what the visitor's question resembled).
                start = self._key_start[rec[j]]
                best = int(np.argmax(self._vectors[start : start + len(r.keys)] @ q_vec))
                text = r.keys[best]
            out.append(passage_of(r, text, round(float(scores[j]), 4)))
        return out


def passage_of(r: Record, text: str, score: float) -> Passage:
    """The passage a record gives, showing ``text`` (for an FAQ entry, one of its phrasings)."""
    return Passage(
        id=r.id,
        text=text,
        source=r.source,
        score=score,
        kind=r.kind,
        answer=r.answer,
        title=r.title,
        section=r.section,
        page=r.page,
        language=r.language,
    )


class IndexRetriever:
    """The ``Retriever`` the turn uses: ``search`` runs the (CPU-bound) work off the event loop."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb

    async def search(self, query: str, *, k: int) -> list[Passage]:
        return await asyncio.to_thread(self.kb.search_sync, query, k=k)

    def search_sync(self, query: str, *, k: int) -> list[Passage]:
        return self.kb.search_sync(query, k=k)

    def all_passages(self) -> list[Passage]:
        """Every passage a search can return, as the prompt would show it: a document chunk once,
        an FAQ entry once per phrasing (the prompt shows the phrasing that matched). Score 1."""
        out: list[Passage] = []
        for r in self.kb.records:
            texts = r.keys if r.kind == "faq" and len(r.keys) > 1 else [r.text]
            out.extend(passage_of(r, text, 1.0) for text in texts)
        return out

    @property
    def manifest(self) -> dict[str, Any]:
        return self.kb.manifest
