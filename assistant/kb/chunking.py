"""Blocks of a document -> passages of about ``chunk_chars`` characters.

Rules, in order of importance:
- a chunk never spans two sections (a heading starts a new chunk), so each chunk has one section;
- chunks end at sentence ends (Chinese 。！？； and Latin . ! ? ; followed by a space);
- a sentence longer than a chunk is cut between words: jieba words for Chinese, spaces for Latin,
  never inside a word or a number;
- consecutive chunks of a section share up to ``overlap_chars`` of whole sentences (or words), so a
  fact near a boundary is whole in at least one chunk;
- a block that ends without punctuation (a table row, a list item) is followed by a semicolon, so
  the rows of a table stay apart in a chunk: "4F | HR, gym; 5F | Hall", not "4F | HR, gym 5F | Hall"
  (a reader, or a model, took the gym's floor for 5F).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from assistant.language import has_cjk

# A sentence ends after CJK end punctuation (optionally followed by a closing quote/bracket), or after
# Latin end punctuation followed by whitespace. Lookbehind keeps the punctuation with its sentence.
_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])[”’」』）)]*\s*|(?<=[.!?;:])\s+|\n+")
_CLOSED = re.compile(r"[。！？；：…!?;:.,，、][”’」』）)\"']*$")

CHUNK_FORMAT = 2
"""Changes when the same blocks would give different chunks (an index re-reads its documents):
2 = blocks that end without punctuation are separated by a semicolon."""


@dataclass(frozen=True)
class Block:
    """A paragraph-like piece of a document: its text, the section it is in and its page (PDF)."""

    text: str
    section: str = ""
    page: int | None = None


@dataclass(frozen=True)
class Chunk:
    text: str
    section: str
    page: int | None


def split_sentences(text: str) -> list[str]:
    parts = [p for p in _SENTENCE_END.split(text) if p and p.strip()]
    return [p.strip() for p in parts]


def split_words(text: str) -> list[str]:
    """Pieces that may be joined back with ``"".join``: jieba words for Chinese, space-led words otherwise."""
    if has_cjk(text):
        import jieba

        return [w for w in jieba.lcut(text) if w]
    return re.findall(r"\S+\s*", text)


def _pack(pieces: list[str], limit: int) -> list[str]:
    """Greedily join word pieces into strings of at most ``limit`` characters (a longer word stays whole)."""
    out: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + len(piece) > limit:
            out.append(current.strip())
            current = ""
        current += piece
    if current.strip():
        out.append(current.strip())
    return out


def _joiner(a: str, b: str) -> str:
    # Chinese text runs together; Latin sentences need a space between them.
    if not a or not b:
        return ""
    return "" if (has_cjk(a[-1]) or has_cjk(b[0])) else " "


def _join(units: list[tuple[str, bool]]) -> str:
    """Join (text, open) units; ``open`` marks a block's last unit that has no closing punctuation."""
    text = ""
    after_open = False
    for unit, is_open in units:
        if after_open:
            text += "；" if has_cjk(text[-1]) else ";"
        text += _joiner(text, unit) + unit
        after_open = is_open
    return text


def chunk_blocks(blocks: Iterable[Block], *, chunk_chars: int = 400, overlap_chars: int = 80) -> list[Chunk]:
    """Pack blocks into chunks as the module docstring describes."""
    if overlap_chars >= chunk_chars:
        raise ValueError("overlap_chars must be below chunk_chars")
    chunks: list[Chunk] = []
    # units: (text, page, open) sentence-or-word pieces of the current section; ``open``: the last
    # piece of a block that does not end in punctuation (a separator follows it inside a chunk)
    section: str | None = None
    units: list[tuple[str, int | None, bool]] = []

    def flush() -> None:
        if not units:
            return
        current: list[tuple[str, int | None, bool]] = []
        size = 0
        for unit in units:
            text = unit[0]
            if current and size + len(text) + 1 > chunk_chars:
                chunks.append(Chunk(_join([(u[0], u[2]) for u in current]), section or "", current[0][1]))
                # Overlap: the last whole units of the emitted chunk, up to overlap_chars.
                tail: list[tuple[str, int | None, bool]] = []
                tail_size = 0
                for prev in reversed(current):
                    if tail_size + len(prev[0]) > overlap_chars:
                        break
                    tail.insert(0, prev)
                    tail_size += len(prev[0]) + 1 + prev[2]
                current, size = tail, tail_size
            current.append(unit)
            size += len(text) + 1 + unit[2]  # the joining space, and the separator after an open unit
        if current:
            chunks.append(Chunk(_join([(u[0], u[2]) for u in current]), section or "", current[0][1]))
        units.clear()

    for block in blocks:
        if block.section != section:
            flush()
            section = block.section
        first = len(units)
        for sentence in split_sentences(block.text):
            if len(sentence) <= chunk_chars:
                units.append((sentence, block.page, False))
                continue
            # An over-long sentence: cut between words into pieces small enough to overlap.
            piece_limit = max(chunk_chars - overlap_chars, chunk_chars // 2)
            for piece in _pack(split_words(sentence), piece_limit):
                units.append((piece, block.page, False))
        if len(units) > first and not _CLOSED.search(units[-1][0]):
            units[-1] = (units[-1][0], units[-1][1], True)
    flush()
    return chunks
