"""Which language a piece of text is in, cheaply: enough to route answers and voices."""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def detect_language(text: str, *, default: str = "en") -> str:
    """``"zh"`` when Chinese characters make up a fair share of the letters, ``"en"`` for Latin text.

    One Chinese character carries about as much as a short English word, so each counts as three
    Latin letters: "如何下载滴滴APP" is Chinese, "What is 商旅?" is English.
    """
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    if cjk == 0 and latin == 0:
        return default
    return "zh" if cjk * 3 >= latin else "en"


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))
