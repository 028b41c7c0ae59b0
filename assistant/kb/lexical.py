"""The lexical half of search: BM25 (``bm25s``) over jieba-segmented, lower-cased tokens.

Raw BM25 scores grow with the query's length and the corpus' statistics, so ``normalized_scores``
divides by the score a perfect match would get (every query term present once in a document of
the query's own length). The result lies in [0, 1] and means the same for any knowledge base,
which is what the calibration needs. A query term the corpus has never seen counts against the
match with the highest IDF: "火星" (Mars) makes any front-desk entry a weak lexical match.
"""

from __future__ import annotations

import json
import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

K1 = 1.2
B = 0.75

# Words that carry no topic: particles and question frames in Chinese, function words in English.
# Question words that distinguish intents ("how", "when", "哪里", "多少") are kept on purpose.
_STOPWORDS = frozenset(
    """
    的 了 吗 呢 吧 啊 呀 嘛 是 我 你 您 他 她 它 们 我们 你们 在 和 与 及 或 就 都 也 还 要 想 请 请问 一下 一个
    这 那 这个 那个 有 没有 会 能 可以 该 个 把 被 给 让 对 从 向 到 上 中 里 之 其 而 并 又 等 啥 么
    a an the is are was were be been being am do does did doing of to in on at by for with from as
    and or but if then so than that this these those it its i me my we our you your he she they them
    their his her there here can could would should will shall may might must have has had having
    please just about into onto also very really hi hello thanks thank
    """.split()
)



def _quiet_bm25s() -> None:
    # bm25s sets its own logger to DEBUG at import ("Building index from tokens" on every build).
    logging.getLogger("bm25s").setLevel(logging.WARNING)


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


_CJK_RUN = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)")
_LATIN_WORD = re.compile(r"[\w@]+(?:[-./:][\w@]+)*", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased words: jieba for Chinese runs, whole tokens for Latin (``hb-guest``, ``8:30``).

    Only the Chinese runs go through jieba (its dictionary walk is ~20x slower than a regex, which
    matters when a build tokenizes 100k passages).
    """
    out: list[str] = []
    for i, run in enumerate(_CJK_RUN.split(_norm(text))):
        if not run:
            continue
        if i % 2 == 1:  # a Chinese run (split() puts captured groups at odd positions)
            import jieba

            if jieba.default_logger.level < logging.WARNING:
                jieba.setLogLevel(logging.WARNING)
            out.extend(w for w in jieba.lcut(run) if w.strip() and w not in _STOPWORDS)
        else:
            out.extend(w for w in _LATIN_WORD.findall(run) if w not in _STOPWORDS and (len(w) > 1 or w.isdigit()))
    return out


class LexicalIndex:
    """BM25 over the index's keys, with the document frequencies needed to normalise scores."""

    def __init__(self, model: Any, df: dict[str, int], n_docs: int, avg_len: float) -> None:
        self._model = model
        self._df = df
        self._n = n_docs
        self._avg_len = max(avg_len, 1.0)

    @classmethod
    def build(cls, texts: Sequence[str]) -> LexicalIndex:
        import bm25s

        _quiet_bm25s()
        tokens = [tokenize(t) for t in texts]
        # bm25s needs at least one token per document to keep document ids aligned.
        corpus = [t if t else ["\u0000"] for t in tokens]
        model = bm25s.BM25(k1=K1, b=B, method="lucene")
        model.index(corpus, show_progress=False)
        df: Counter[str] = Counter()
        for t in tokens:
            df.update(set(t))
        avg = sum(len(t) for t in tokens) / max(len(tokens), 1)
        return cls(model, dict(df), len(tokens), avg)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._model.save(str(folder), show_progress=False)
        (folder / "stats.json").write_text(
            json.dumps({"df": self._df, "n_docs": self._n, "avg_len": self._avg_len}, ensure_ascii=False),
            encoding="utf-8",
        )

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        import bm25s

        _quiet_bm25s()
        model = bm25s.BM25.load(str(folder), show_progress=False, verbosity=0)
        stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
        return cls(model, stats["df"], int(stats["n_docs"]), float(stats["avg_len"]))

    def _idf(self, term: str) -> float:
        df = self._df.get(term, 0)
        return math.log(1.0 + (self._n - df + 0.5) / (df + 0.5))

    def normalized_scores(self, query: str) -> np.ndarray:
        """BM25 of every key for ``query``, divided by a perfect match's score; shape (n_keys,), in [0, 1]."""
        terms = tokenize(query)
        if not terms or self._n == 0:
            return np.zeros(self._n, dtype=np.float32)
        unique = list(dict.fromkeys(terms))
        known = [t for t in unique if t in self._df]
        raw = (
            np.asarray(self._model.get_scores(known), dtype=np.float32)
            if known
            else np.zeros(self._n, dtype=np.float32)
        )
        # A perfect document holds every query term once and is as long as the query.
        length_norm = 1.0 - B + B * len(terms) / self._avg_len
        ceiling = sum(self._idf(t) / (1.0 + K1 * length_norm) for t in unique)
        if ceiling <= 0:
            return np.zeros(self._n, dtype=np.float32)
        return np.clip(raw / ceiling, 0.0, 1.0)

    def vocabulary_size(self) -> int:
        return len(self._df)

    def knows(self, term: str) -> bool:
        return term in self._df

    def document_frequency(self, term: str) -> int:
        """How many documents (keys) hold ``term``."""
        return self._df.get(term, 0)

    def idf(self, term: str) -> float:
        """BM25's inverse document frequency of ``term`` here (the highest for an unseen term)."""
        return self._idf(term)


def novelty(query: str, index: LexicalIndex, *others: LexicalIndex, unless: Mapping[str, int] | None = None) -> float:
    """How much of ``query`` the knowledge base has never seen: the share of its words' IDF (from
    ``index``) carried by words that neither ``index`` nor ``others`` contain, in [0, 1]; 0 for a
    query with no content word. "产假有多少天" against a front desk FAQ that never mentions 产假
    (maternity leave) is 0.44; paraphrases of what it does answer are mostly 0-0.3. ``unless``: how
    many of the indexes' documents to discount per word (records held out): a word only they have
    counts as unseen."""
    terms = list(dict.fromkeys(tokenize(query)))
    if not terms:
        return 0.0
    weights = [index.idf(t) for t in terms]
    held = unless or {}

    def seen(t: str) -> bool:
        count = sum(i.document_frequency(t) for i in (index, *others))
        return count > held.get(t, 0)

    unseen = sum(w for t, w in zip(terms, weights, strict=True) if not seen(t))
    total = sum(weights)
    return float(unseen / total) if total > 0 else 0.0
