"""The number check: a generated piece of a reply that states a number its passages do not hold is
not said.

A wrong figure is the costliest thing a front-desk assistant can say (a visitor acts on "12 months",
"room 301", "9:00"), and it is the one kind of invented content that can be checked without a
model: the passages the LLM was given are the only evidence it has, so every number in its answer
must be in them or in the question. The faithfulness benchmark's invented answers were exactly
these: "年终奖一般发12个月。" over passages about the company's address, "公司是1993年成立的。" over
passages that never say when it was founded. No generated answer that was right stated a number
the check would have withheld (``bench/faithfulness.py``, 0.5B and 1.5B, dev and held-out sets).

Matching is by value, not by spelling: "1,200" and "1200" are the same number, "09:00" and "9:00"
the same time, and a time on the hour is held by its hour ("9:00" by "9点"). Any part of a time, date
or list in the passages counts ("17" is held by "9:00-17:30"): the check stops invented figures, it
does not grade how an answer restates the right ones. Numbers written in words ("twelve", "十二") are
not checked: the prompt asks for numbers exactly as the passages write them, and the models write
digits.

Not checked: an invented name or a claim without a number ("公司的CEO叫张江高科站"); that needs a
model to judge, and the small models judge no better than they answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NUMBER = re.compile(r"\d+(?:[.,:：]\d+)*")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def _numbers(text: str) -> list[tuple[str, str]]:
    """``(as written, canonical value)`` for every number in ``text``: a comma between groups of three
    digits is a thousands separator ("1,200" is 1200), leading zeros and trailing decimal zeros go
    ("09" is 9, "2.50" is 2.5), a time keeps its form ("09:00" is "9:00")."""
    out = []
    for raw in _NUMBER.findall(text):
        number = _THOUSANDS.sub("", raw).replace("：", ":")
        out.append((raw, _canonical(number)))
    return out


def _canonical(number: str) -> str:
    if re.fullmatch(r"\d+\.\d+", number):
        whole, frac = number.split(".")
        frac = frac.rstrip("0")
        whole = whole.lstrip("0") or "0"
        return f"{whole}.{frac}" if frac else whole
    parts = [p.lstrip("0") or "0" for p in re.split(r"[.,:]", number)]
    sep = ":" if ":" in number else "."
    return sep.join(parts) if len(parts) > 1 else parts[0]


def _values(text: str) -> set[str]:
    """Every number in ``text`` by value, and the parts of times, dates and lists ("9:00-17:30" also
    holds 9, 17 and 30; "3,5" holds 3 and 5)."""
    out: set[str] = set()
    for _, value in _numbers(text):
        out.add(value)
        out.update(re.split(r"[.:,]", value))
    return out


class NumberCheck:
    """The numbers ``evidence`` holds, read once; ``ungrounded(text)`` checks a piece against them.

    A time on the hour also counts as its hour ("9:00" is held by "9点"), and any number is held by
    the same number inside a time or list of the evidence ("17" by "17:30")."""

    def __init__(self, evidence: Iterable[str]) -> None:
        self._have: set[str] = set()
        for e in evidence:
            self._have |= _values(e)

    def ungrounded(self, text: str) -> list[str]:
        """The numbers in ``text`` (in order, as written) whose value the evidence does not hold."""
        missing: list[str] = []
        for raw, value in _numbers(text):
            hour, _, minutes = value.partition(":")
            if value in self._have or (minutes and set(minutes.split(":")) <= {"0"} and hour in self._have):
                continue
            missing.append(raw)
        return missing


def ungrounded_numbers(text: str, evidence: Iterable[str]) -> list[str]:
    """``NumberCheck(evidence).ungrounded(text)``."""
    return NumberCheck(evidence).ungrounded(text)
