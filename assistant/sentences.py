"""Token stream -> sentence stream, for speaking a reply while it is still being written.

Chinese and Latin punctuation both end sentences; a decimal point (3.5), an abbreviation (e.g.,
Mr., U.S.) or an initial (J. Smith) does not. The first piece of a reply may be cut early at a clause
boundary (a comma), because the visitor hears nothing until the first piece is synthesised: a short
first clause is the cheapest latency win there is.

Pure and synchronous: ``SentenceSplitter.feed(delta)`` returns the sentences completed so far,
``flush()`` the rest at the end of the reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_CJK_END = "。！？；…"
_LATIN_END = "!?"
_CLOSERS = "\"'”’」』）)]】》"
_CLAUSE = "，、,：:;—"
_CJK_RE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_WORD_BEFORE_DOT = re.compile(r"([A-Za-z][A-Za-z.]*)$")

ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st vs etc e.g i.e eg ie inc ltd co corp no nos approx dept est fig
    u.s u.k a.m p.m jan feb mar apr jun jul aug sep sept oct nov dec mt ave rd tel ext min max
    vol ph.d m.d""".split()
)


def _weight(text: str) -> float:
    """Roughly how long a piece takes to say: a CJK character weighs about three Latin letters."""
    cjk = len(_CJK_RE.findall(text))
    return cjk + (len(text) - cjk) / 3.0


def _is_space_or_cjk(ch: str) -> bool:
    return ch.isspace() or bool(_CJK_RE.match(ch))


@dataclass
class SentenceSplitter:
    """Incremental sentence splitter.

    ``first_clause_weight``: the first piece may end at a comma once it weighs this much (CJK
    characters, or Latin letters / 3); 0 disables early clauses. ``max_weight``: a piece with no
    boundary is cut at the last clause or space once it weighs this much, so synthesis never waits
    on a run-on sentence.
    """

    first_clause_weight: float = 6.0
    max_weight: float = 60.0
    _buffer: str = field(default="", init=False)
    _emitted: int = field(default=0, init=False)

    @property
    def pending(self) -> str:
        """The text fed so far that no returned piece holds yet (the start of the next one)."""
        return self._buffer

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        return self._drain(final=False)

    def flush(self) -> list[str]:
        out = self._drain(final=True)
        rest = self._buffer.strip()
        self._buffer = ""
        if rest and _has_content(rest):
            out.append(rest)
            self._emitted += 1
        elif rest and out:
            out[-1] += rest
        return out

    def _drain(self, *, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            cut = _find_boundary(self._buffer, final=final)
            if cut is None and self._emitted == 0 and not out and self.first_clause_weight > 0:
                cut = _find_clause(self._buffer, self.first_clause_weight)
            if cut is None and _weight(self._buffer) >= self.max_weight:
                cut = _find_fallback_cut(self._buffer)
            if cut is None:
                return out
            piece, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
            if not piece:
                continue
            if not _has_content(piece) and out:
                out[-1] += piece
                continue
            out.append(piece)
            self._emitted += 1


def _has_content(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def _skip(buf: str, j: int, chars: str) -> int:
    while j < len(buf) and buf[j] in chars:
        j += 1
    return j


def _find_boundary(buf: str, *, final: bool) -> int | None:
    """Index just past the first sentence end in ``buf``, or None (no end yet, or not sure yet)."""
    for i, ch in enumerate(buf):
        if ch == "\n":
            if buf[:i].strip():
                return i + 1
            continue
        if ch in _CJK_END:
            j = _skip(buf, i + 1, _CJK_END + _CLOSERS)
            if j == len(buf) and not final:
                return None  # a closing quote may still follow
            return j
        if ch in _LATIN_END or ch == ".":
            j = _skip(buf, i + 1, _LATIN_END + "." + _CLOSERS)
            if j == len(buf):
                if not final:
                    return None  # "3." may become "3.5"; "e." may become "e.g."
                return j if _sentence_dot_ok(buf, i) else None
            if not _is_space_or_cjk(buf[j]):
                continue  # 3.5, www.example.com, Yahoo!Inc
            if ch == "." and not _sentence_dot_ok(buf, i):
                continue
            return j
    return None


def _sentence_dot_ok(buf: str, i: int) -> bool:
    """Whether the '.' at ``i`` may end a sentence (not an abbreviation or an initial)."""
    if buf[i] != ".":
        return True
    m = _WORD_BEFORE_DOT.search(buf[:i])
    if not m:
        return True
    word = m.group(1)
    if word.lower().rstrip(".") in ABBREVIATIONS:
        return False
    if len(word) == 1 and word.isupper():
        return False  # an initial: "J. Smith"
    return True


def _find_clause(buf: str, min_weight: float) -> int | None:
    for i, ch in enumerate(buf):
        if ch not in _CLAUSE:
            continue
        if ch in ",:;" and (i + 1 >= len(buf) or not buf[i + 1].isspace()):
            continue  # 1,200 or 10:30, or not sure yet
        if _weight(buf[:i]) >= min_weight:
            return i + 1
    return None


def _find_fallback_cut(buf: str) -> int | None:
    for chars in (_CLAUSE, " "):
        idx = max(buf.rfind(c) for c in chars)
        if idx > 0:
            return idx + 1
    return None


_CJK_TEXT = re.compile(
    r"[\u2e80-\u303f\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
)
"""Han, kana, Hangul and CJK full-width punctuation: no space goes next to them."""


def join_sentences(parts: list[str]) -> str:
    """Sentences joined as written text: a space between Latin-script ones ("... cover that. Please
    ask ..."), none where either side is Chinese or already has one. By the text, not by the reply's
    language: a Chinese reply may quote an English sentence. (The avatar page's captions use the
    same rule, ``separator`` in assistant/web/captions.js.)"""
    out = ""
    for part in parts:
        if not part:
            continue
        glue = out and not out[-1].isspace() and not part[0].isspace()
        if glue and not (_CJK_TEXT.match(out[-1]) or _CJK_TEXT.match(part[0])):
            out += " "
        out += part
    return out


def speech_units(text: str) -> list[str]:
    """The pieces a finished text is spoken in: exactly what a turn's streaming splitter yields for
    it, so audio rendered ahead of time (the instant FAQ replies) matches what a turn asks for."""
    splitter = SentenceSplitter()
    return splitter.feed(text) + splitter.flush()


def split_sentences(text: str, *, first_clause_weight: float = 0.0) -> list[str]:
    """All sentences of a finished text (no early first clause unless asked)."""
    splitter = SentenceSplitter(first_clause_weight=first_clause_weight)
    return splitter.feed(text) + splitter.flush()
