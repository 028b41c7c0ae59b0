"""The knowledge base's own vocabulary (names, places, products), for the Whisper prompt.

Computed at build time (``distinctive_terms``) and kept in the manifest, so reading it loads no model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from assistant.errors import RetrieveError
from assistant.kb.records import Record
from assistant.kb.store import current_generation, read_manifest

_NOT_TERMS = frozenset(
    "https http com www example 怎么 什么 哪里 多少 如何 可以 需要 请问 公司 员工 每天 每个 之后 以后 以上 之前".split()
)


def distinctive_terms(records: Sequence[Record], limit: int = 200) -> list[str]:
    """Words of this knowledge base that general language rarely uses (jieba's TF-IDF keywords):
    names, places, products. Whisper, prompted with them, spells them as the knowledge base does."""
    import jieba.analyse

    parts: list[str] = []
    # Keyword extraction reads every character; on a large knowledge base an even sample of
    # records finds the same distinctive words in a bounded time.
    step = max(1, len(records) // 2000)
    for r in records[::step]:
        parts.append(r.text)
        parts.extend(r.alternates[:3])
        if r.answer:
            parts.append(r.answer)
        if r.section:
            parts.append(r.section)
    text = "\n".join(parts)
    terms = jieba.analyse.extract_tags(text, topK=limit * 4)
    out = []
    for t in terms:
        t = t.strip()
        if len(t) < 2 or t.isdigit() or t.lower() in _NOT_TERMS:
            continue
        if t.isascii():
            # Latin words: only names and codes (DiDi, WeCom, HB-Guest, OA, 8:30), not "How" or "desk".
            if not (any(c.isupper() for c in t[1:]) or any(c.isdigit() or c in "-_" for c in t)):
                continue
        out.append(t)
    # jieba splits "HB-Guest" into "HB", "-", "Guest": put hyphenated names back whole, where their
    # first part ranked, so the prompt spells them as the knowledge base does.
    compounds: dict[str, str] = {}
    for name in re.findall(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+", text):
        compounds.setdefault(name.split("-")[0], name)
    merged: list[str] = []
    for t in out:
        whole = compounds.pop(t, None)
        if whole and whole not in merged:
            merged.append(whole)
        if t not in merged:
            merged.append(t)
    return merged[:limit]


def stored_terms(index_dir: Path, limit: int = 50) -> list[str]:
    """The live generation's terms in ``index_dir``, most distinctive first; empty without an index."""
    generation = current_generation(index_dir)
    if generation is None:
        return []
    try:
        manifest = read_manifest(generation)
    except RetrieveError:
        return []  # only a hint for Whisper: a damaged index is reported where it is opened
    return [str(t) for t in manifest.get("domain_terms", [])[:limit]]
