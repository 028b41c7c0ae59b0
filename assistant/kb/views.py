"""The English view: a second encoder that the FAQ entry classifier reads beside the main one.

The embedded multilingual encoder (USE) puts Chinese and English in one space, which cross-lingual
questions need, but it separates close English intents less well than an English-only model. On
BANKING77 with 5 alternates per intent (dev split of train.csv, `bench/retrieval.py --only
banking77-ablation`), the classifier alone reached recall@1 0.768 on USE, 0.811 on all-MiniLM-L6-v2
and 0.815 on both side by side. So where ``[kb] english_view`` names a model, the classifier's input is
``[main vector; VIEW_WEIGHT * view vector]``, the view vector being the English encoder's for
English text and zeros for anything else (Chinese). A classifier trained on zeros for an entry's
Chinese phrasings gives them no view weights, so Chinese questions and entries are scored as
before, and a knowledge base with no English FAQ phrasing is built without the view at all (the
same model, without loading the encoder).

Only the classifier uses the view (nearest-phrasing and BM25 signals are unchanged): adding the
view's phrasing cosines to the fusion gained nothing on dev.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from assistant.stages import Embedder

VIEW_WEIGHT = 1.5
"""Scale of the (unit) view vector beside the (unit) main vector in the classifier's input; chosen
on BANKING77's dev split (1.0: 0.811, 1.5: 0.815, 2.0: 0.813 classifier recall@1)."""
MIN_ENGLISH_ENTRIES = 3
"""Fewer FAQ entries with an English phrasing than this: the view is not worth its encoder."""

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


class ViewLoader(NamedTuple):
    """A view by name (its model pack, recorded in the manifest) and how to load its encoder; a build
    calls ``load`` only when the view will be used."""

    name: str
    load: Callable[[], Embedder]


def is_english(text: str) -> bool:
    """Latin letters and no CJK character: what an English-only encoder reads well. Mixed text
    ("U盘能用吗") counts as Chinese."""
    return bool(_LATIN.search(text)) and not _CJK.search(text)


def view_vectors(view: Embedder, texts: Sequence[str]) -> np.ndarray:
    """The view's vectors of the English ``texts``, zeros for the others; shape (len(texts), dims)."""
    out = np.zeros((len(texts), view.dimensions), dtype=np.float32)
    english = [i for i, t in enumerate(texts) if is_english(t)]
    if english:
        out[english] = view.embed([texts[i] for i in english])
    return out


def classifier_input(main: np.ndarray, view: np.ndarray | None) -> np.ndarray:
    """The classifier's input rows: the main vectors, with the weighted view vectors beside them."""
    if view is None:
        return main
    return np.hstack([main, VIEW_WEIGHT * view]).astype(np.float32)
