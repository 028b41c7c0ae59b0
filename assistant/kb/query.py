"""Questions that ask two things at once.

"出差时住宿标准和每天的出差补贴分别是多少？" asks for two FAQ entries. Scored as a whole, it matches
one of them well and the other poorly (a score estimates "this passage is *the* answer"), so the
second entry would be lost. Split into its parts, each part matches its own entry almost surely;
the turn then answers from both (route ``generated``).
"""

from __future__ import annotations

import re

# Clause punctuation and conjunctions, Chinese and English.
_SEPARATORS = re.compile(r"[，,；;。！？!?]+|以及|还有|并且|另外|同时|和|跟|与|\b(?:and|also|plus)\b", re.IGNORECASE)
_CJK = re.compile(r"[\u3400-\u9fff]")
_WORD = re.compile(r"[A-Za-z]+")


def sub_questions(text: str) -> list[str]:
    """The substantial parts of a question (at least 4 Chinese characters or 3 English words each),
    or ``[]`` when it has fewer than two: a single question is retrieved whole."""
    parts = [p.strip() for p in _SEPARATORS.split(text) if p and p.strip()]
    parts = [p for p in parts if len(_CJK.findall(p)) >= 4 or len(_WORD.findall(p)) >= 3]
    return parts if len(parts) >= 2 else []
