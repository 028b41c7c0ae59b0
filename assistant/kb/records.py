"""What ingestion produces and the errors it raises: a ``Record`` (an FAQ entry or a document chunk),
a file's ``FileResult``, ``SkipFile`` with a reason a person understands, and text decoding that
refuses to guess (shared by the table and document readers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class SkipFile(Exception):
    """This file cannot be ingested; ``str(err)`` is the reason shown to the user."""


@dataclass
class Record:
    """One retrievable unit: an FAQ entry or a document chunk.

    ``keys`` are the texts that are embedded and indexed for this record: an FAQ entry's question and
    its alternates; a chunk's text (prefixed with its section so the heading's words count).
    ``extra_keys``: synthetic phrasings written at build time (``assistant.kb.synthesis``), indexed
    after ``keys`` but never shown: ``all_keys`` is what the index holds.
    """

    id: str
    kind: Literal["faq", "document"]
    text: str
    source: str
    answer: str | None = None
    alternates: list[str] = field(default_factory=list)
    title: str = ""
    section: str = ""
    page: int | None = None
    language: str = ""
    keys: list[str] = field(default_factory=list)
    extra_keys: list[str] = field(default_factory=list)

    @property
    def all_keys(self) -> list[str]:
        return [*self.keys, *self.extra_keys]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "text": self.text,
            "source": self.source,
            "answer": self.answer,
            "alternates": self.alternates,
            "title": self.title,
            "section": self.section,
            "page": self.page,
            "language": self.language,
            "keys": self.keys,
            "extra_keys": self.extra_keys,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(**data)


@dataclass
class FileResult:
    records: list[Record]
    kind: Literal["faq", "document"]
    warnings: list[str] = field(default_factory=list)



def decode_bytes(data: bytes, name: str = "") -> str:
    """Bytes -> text: UTF-8 (with or without BOM) first, else the encoding charset-normalizer detects.

    Chinese files from Windows are often GBK/GB18030; guessing UTF-8 with ``errors="replace"``
    would silently index mojibake, so an undecodable file is skipped instead.
    """
    if not data.strip():
        raise SkipFile("empty file")
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return data.decode(codec)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise SkipFile("cannot detect the text encoding (not UTF-8, GBK, Big5, ...)")
    encoding = best.encoding
    # charset-normalizer names GB18030's subsets differently depending on the sample; GB18030 is a
    # superset of GB2312 and GBK, so decoding with it never loses characters those would read.
    if encoding.lower() in {"gb2312", "gbk", "gb18030", "hz"}:
        encoding = "gb18030"
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as err:
        raise SkipFile(f"cannot decode as {encoding}: {err}") from err


def read_text(path: Path) -> str:
    """A text file, decoded by ``decode_bytes``; SkipFile when it cannot be read or decoded."""
    try:
        return decode_bytes(path.read_bytes(), path.name)
    except OSError as err:
        raise SkipFile(f"cannot read: {err.strerror or err}") from err
