"""Checks on a generated reply before it is said. The number check: a piece of a reply that states a
number its passages do not hold is not said. The said-back check (``SaidBackCheck``, at the end): a
reply that only says the question back is not said either.

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

A number is also checked for what it counts. When the passages write it only with other units,
the answer's number is not held: "年终奖一般发10个月。" over a passage whose only 10 is "10天带薪年假"
(the 1.5B model's answer to a question the knowledge base does not answer). Units are compared as
kinds (days, months, money...), in either language ("10天" holds "10 days"); a number written
without a unit, or with one this list does not know, in the answer or in the passages, is matched
by value alone, so the unit check never withholds what the value check would keep for want of
knowing a unit.

Not checked: an invented name or a claim without a number ("公司的CEO叫张江高科站"); that needs a
model to judge, and the small models judge no better than they answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NUMBER = re.compile(r"\d+(?:[.,:：]\d+)*")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


# What a number counts, by kind: the unit written right after it. Longer spellings first.
_UNIT_KINDS: dict[str, tuple[str, ...]] = {
    "day": ("个工作日", "工作日", "天", "日", "working days", "working day", "days", "day"),
    "week": ("个星期", "星期", "周", "weeks", "week"),
    "month": ("个月", "月", "months", "month"),
    "year": ("年", "years", "year"),
    "hour": ("个小时", "小时", "个钟头", "hours", "hour", "hrs", "hr"),
    "minute": ("分钟", "minutes", "minute", "mins", "min"),
    "yuan": ("块钱", "元", "块", "yuan", "rmb", "cny"),
    "dollar": ("美元", "美金", "dollars", "dollar", "usd"),
    "person": ("个人", "人", "位", "people", "persons", "person"),
    "percent": ("%", "％", "percent"),
}
_UNIT_OF = {spelling: kind for kind, spellings in _UNIT_KINDS.items() for spelling in spellings}
_UNIT = re.compile(
    r"\s?(" + "|".join(re.escape(u) for u in sorted(_UNIT_OF, key=len, reverse=True)) + r")(?![a-z])",
    re.IGNORECASE,
)


def _unit_after(text: str, end: int) -> str:
    """The kind of unit written right after a number ending at ``end``, or "" for none known."""
    match = _UNIT.match(text, end)
    return _UNIT_OF[match.group(1).lower()] if match else ""


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


def _counted(text: str) -> list[tuple[int, str, str]]:
    """``(position, value, unit kind or "")`` for every plain number in ``text`` (not a time, date or
    list: those are matched by value only)."""
    out = []
    for match in _NUMBER.finditer(text):
        number = _THOUSANDS.sub("", match.group(0))
        if re.fullmatch(r"\d+(?:\.\d+)?", number):
            out.append((match.start(), _canonical(number), _unit_after(text, match.end())))
    return out


_ZH_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_EN_WORDS = "one two three four five six seven eight nine ten eleven twelve".split()
_WORD_NUMBER = re.compile(r"([一二两三四五六七八九十]{1,3})|\b(" + "|".join(_EN_WORDS) + r")\b", re.IGNORECASE)


def _word_value(zh: str | None, en: str | None) -> str:
    """The value of a number written in words ("一", "十五", "twelve"), or "" when it is not one."""
    if en:
        return str(_EN_WORDS.index(en.lower()) + 1)
    assert zh is not None
    tens, _, ones = zh.partition("十")
    if "十" not in zh:
        return str(_ZH_DIGITS[zh]) if len(zh) == 1 else ""
    if (tens and tens not in _ZH_DIGITS) or (ones and ones not in _ZH_DIGITS):
        return ""
    return str((_ZH_DIGITS[tens] if tens else 1) * 10 + (_ZH_DIGITS[ones] if ones else 0))


def _worded(text: str) -> list[tuple[str, str]]:
    """``(value, unit kind)`` for numbers written in words with a unit after them ("入职满一年",
    "one year of service"): in the passages, they say what a model's "1年" may count."""
    out = []
    for match in _WORD_NUMBER.finditer(text):
        value = _word_value(match.group(1), match.group(2))
        unit = _unit_after(text, match.end())
        if value and unit:
            out.append((value, unit))
    return out


class NumberCheck:
    """The numbers ``evidence`` holds, read once; ``ungrounded(text)`` checks a piece against them.

    A time on the hour also counts as its hour ("9:00" is held by "9点"), and any number is held by
    the same number inside a time or list of the evidence ("17" by "17:30"). A number with a unit
    the list knows ("10个月") is held only where the evidence writes it with a unit of that kind,
    or with none it knows (a bare "10", "10:30", "10 working hours")."""

    def __init__(self, evidence: Iterable[str]) -> None:
        self._have: set[str] = set()
        self._units: dict[str, set[str]] = {}
        """value -> the unit kinds the evidence writes it with ("" for none known)"""
        for e in evidence:
            values = _values(e)
            self._have |= values
            plain: dict[str, set[str]] = {}
            for _, value, unit in _counted(e):
                plain.setdefault(value, set()).add(unit)
            for value in values:
                # inside a time, date or list (or nowhere plain): no unit to hold it to
                self._units.setdefault(value, set()).update(plain.get(value, {""}))
            for value, unit in _worded(e):
                self._units.setdefault(value, set()).add(unit)

    def ungrounded(self, text: str) -> list[str]:
        """The numbers in ``text`` (in order, as written) that the evidence does not hold: by value,
        or written with a unit whose kind the evidence never gives that value."""
        units = {start: unit for start, _, unit in _counted(text)}
        missing: list[str] = []
        for match in _NUMBER.finditer(text):
            raw = match.group(0)
            value = _canonical(_THOUSANDS.sub("", raw).replace("：", ":"))
            hour, _, minutes = value.partition(":")
            if value not in self._have:
                if not (minutes and set(minutes.split(":")) <= {"0"} and hour in self._have):
                    missing.append(raw)
                continue
            unit = units.get(match.start(), "")
            kinds = self._units.get(value, {""})
            if unit and "" not in kinds and unit not in kinds:
                missing.append(raw)
        return missing


def ungrounded_numbers(text: str, evidence: Iterable[str]) -> list[str]:
    """``NumberCheck(evidence).ungrounded(text)``."""
    return NumberCheck(evidence).ungrounded(text)


# --------------------------------------------------------------------------------------------
# The question said back: a piece of a reply that only repeats what the model was asked
# --------------------------------------------------------------------------------------------

_SAID_BACK_UNIT = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W_]+")
SAID_BACK_MIN_UNITS = 4
"""A piece shorter than this (in CJK characters and words) is taken for the question said back only
when it says all of it ("Answer in English."): "可以。" answers "可以带宠物吗？", "有。" "有班车吗？"."""
SAID_BACK_SHARE = 0.6
"""... and it must say back at least this share of the question's own units."""


_ARTICLES = frozenset({"the", "a", "an"})
"""Not units: the question reworded with an article is still the question ("Which floor is Human
Resources on?" -> "The floor Human Resources is on.", the 0.5B model on the dev set)."""


def _units(text: str) -> list[str]:
    return [u for u in _SAID_BACK_UNIT.findall(text.lower()) if u not in _ARTICLES]


class SaidBackCheck:
    """Whether a piece of a generated reply only says back what the model was asked.

    The small model sometimes answers with the question itself ("年终奖一般发几个月？" -> "年终奖一
    般发几个月？"), or the question and the prompt's language reminder ("班车多长时间发一班？请用中文回
    答。"): 3 of the 0.5B model's 28 generated dev answers in ``bench/faithfulness.py``. Spoken, it
    sounds like an answer and holds none. ``said_back(piece)``: every CJK character and word of the
    piece is in one of ``asked`` (the question, the reminder), and the piece says back most of that
    text (``SAID_BACK_SHARE``) without being short (``SAID_BACK_MIN_UNITS``), or all of it. The turn drops
    such pieces at the start of a reply and declines when nothing else follows.
    """

    def __init__(self, asked: Iterable[str]) -> None:
        self._asked = [units for units in (set(_units(a)) for a in asked) if units]

    def said_back(self, piece: str) -> bool:
        units = set(_units(piece))
        return bool(units) and any(
            units <= asked and (units == asked or len(units) >= max(SAID_BACK_MIN_UNITS, SAID_BACK_SHARE * len(asked)))
            for asked in self._asked
        )
