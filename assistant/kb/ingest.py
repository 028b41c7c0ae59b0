"""Files -> knowledge-base records: FAQ tables and chunked documents.

FAQ tables (``.csv .tsv .jsonl .xlsx``) need a ``question`` and an ``answer`` column; ``id`` and
``alternates`` (other phrasings: a JSON list, or a cell separated by ``|`` or new lines) are
optional. Chinese headers are accepted too (问题, 答案, 编号, 相似问题).

Documents (``.md .markdown .txt .html .htm .pdf .docx``) become blocks (a piece of text with its
section and page), which ``chunking`` packs into passages.

This module picks the reader by suffix (``tables``, ``documents``) and finds the files in folders;
``records`` holds what they produce.

Anything that cannot be read raises ``SkipFile`` with a reason a person understands; the build
reports it and goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from assistant.kb.documents import read_document
from assistant.kb.records import FileResult, SkipFile
from assistant.kb.tables import read_faq

FAQ_SUFFIXES = {".csv", ".tsv", ".jsonl", ".xlsx"}
DOCUMENT_SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx"}
SUPPORTED_SUFFIXES = FAQ_SUFFIXES | DOCUMENT_SUFFIXES


def read_file(path: Path, source: str, *, chunk_chars: int, overlap_chars: int) -> FileResult:
    """Read one file; raises SkipFile with the reason when it cannot be ingested."""
    suffix = path.suffix.lower()
    if suffix in FAQ_SUFFIXES:
        return read_faq(path, source)
    if suffix in DOCUMENT_SUFFIXES:
        return read_document(path, source, chunk_chars=chunk_chars, overlap_chars=overlap_chars)
    raise SkipFile(f"unsupported file type '{suffix or path.name}'")


def discover(paths: Iterable[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand folders (recursively, sorted, hidden entries ignored); returns (files, missing)."""
    files: list[Path] = []
    missing: list[tuple[Path, str]] = []
    for p in paths:
        if p.is_dir():
            for child in sorted(p.rglob("*")):
                rel = child.relative_to(p)
                if any(part.startswith((".", "~$")) for part in rel.parts) or not child.is_file():
                    continue
                files.append(child)
        elif p.is_file():
            files.append(p)
        else:
            missing.append((p, "no such file or folder"))
    seen: set[Path] = set()
    unique = []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    return unique, missing
