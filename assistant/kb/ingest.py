"""Files -> knowledge-base records: FAQ tables and chunked documents.

FAQ tables (``.csv .tsv .jsonl .xlsx``) need a ``question`` and an ``answer`` column; ``id`` and
``alternates`` (other phrasings: a JSON list, or a cell separated by ``|`` or new lines) are
optional. Chinese headers are accepted too (问题, 答案, 编号, 相似问题).

Documents (``.md .markdown .txt .html .htm .pdf .docx``) become blocks (a piece of text with its
section and page), which ``chunking`` packs into passages.

Anything that cannot be read raises ``SkipFile`` with a reason a person understands; the build
reports it and goes on.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from assistant.kb.chunking import Block, chunk_blocks
from assistant.language import detect_language

FAQ_SUFFIXES = {".csv", ".tsv", ".jsonl", ".xlsx"}
DOCUMENT_SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx"}
SUPPORTED_SUFFIXES = FAQ_SUFFIXES | DOCUMENT_SUFFIXES

_COLUMN_ALIASES = {
    "question": {"question", "q", "问题", "标准问题", "标准问"},
    "answer": {"answer", "a", "答案", "回答", "标准答案"},
    "id": {"id", "编号", "序号"},
    "alternates": {"alternates", "alternate", "alternatives", "paraphrases", "相似问题", "相似问法", "相似问"},
}


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


# --------------------------------------------------------------------------------------------
# Text decoding
# --------------------------------------------------------------------------------------------


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


def _read_text(path: Path) -> str:
    try:
        return decode_bytes(path.read_bytes(), path.name)
    except OSError as err:
        raise SkipFile(f"cannot read: {err.strerror or err}") from err


# --------------------------------------------------------------------------------------------
# FAQ tables
# --------------------------------------------------------------------------------------------


def _canonical_columns(headers: Iterable[Any]) -> dict[str, int]:
    found: dict[str, int] = {}
    for i, header in enumerate(headers):
        name = str(header or "").strip().lower()
        for canon, aliases in _COLUMN_ALIASES.items():
            if name in aliases and canon not in found:
                found[canon] = i
    return found


def _split_alternates(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        items = [str(v) for v in value]
    else:
        text = str(value).strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                parsed = json.loads(text)
                items = [str(v) for v in parsed] if isinstance(parsed, list) else [text]
            except json.JSONDecodeError:
                items = re.split(r"[|\n]", text)
        else:
            items = re.split(r"[|\n]", text)
    return [s.strip() for s in items if s and s.strip()]


def _faq_rows(rows: Iterable[dict[str, Any]], source: str, stem: str) -> FileResult:
    records: list[Record] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for n, row in enumerate(rows, start=1):
        question = str(row.get("question") or "").strip()
        answer = str(row.get("answer") or "").strip()
        if not question or not answer:
            warnings.append(f"row {n}: no {'question' if not question else 'answer'}, left out")
            continue
        entry_id = str(row.get("id") or "").strip() or f"{stem}-{n}"
        if entry_id in seen:
            warnings.append(f"row {n}: id '{entry_id}' repeats an earlier row, renamed '{entry_id}#{n}'")
            entry_id = f"{entry_id}#{n}"
        seen.add(entry_id)
        alternates = [a for a in _split_alternates(row.get("alternates")) if a != question]
        records.append(
            Record(
                id=entry_id,
                kind="faq",
                text=question,
                source=source,
                answer=answer,
                alternates=alternates,
                language=detect_language(question + answer),
                keys=[question, *alternates],
            )
        )
    if not records:
        raise SkipFile("no FAQ rows with both a question and an answer" + (f" ({warnings[0]})" if warnings else ""))
    return FileResult(records, "faq", warnings)


def _table_to_dicts(header: list[Any], body: Iterable[list[Any]], path: Path) -> Iterator[dict[str, Any]]:
    columns = _canonical_columns(header)
    missing = [c for c in ("question", "answer") if c not in columns]
    if missing:
        shown = ", ".join(str(h) for h in header if h is not None) or "none"
        raise SkipFile(f"not an FAQ table: no {' or '.join(missing)} column (columns found: {shown})")
    for raw in body:
        if not any(str(c or "").strip() for c in raw):
            continue
        yield {name: (raw[i] if i < len(raw) else None) for name, i in columns.items()}


def read_faq(path: Path, source: str) -> FileResult:
    suffix = path.suffix.lower()
    stem = path.stem
    if suffix in {".csv", ".tsv"}:
        text = _read_text(path)
        sample = text[:4096]
        if suffix == ".tsv":
            delimiter = "\t"
        else:
            try:
                delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
            except csv.Error:
                delimiter = ","
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
        if not rows:
            raise SkipFile("empty table")
        return _faq_rows(_table_to_dicts(rows[0], rows[1:], path), source, stem)
    if suffix == ".jsonl":
        text = _read_text(path)
        objects: list[dict[str, Any]] = []
        bad: list[str] = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as err:
                # one broken line (a hand edit, a cut copy) loses that line, not the whole table
                bad.append(f"line {n} is not JSON ({getattr(err, 'msg', 'nested too deeply')}), left out")
                continue
            if not isinstance(obj, dict):
                bad.append(f"line {n} is not a JSON object, left out")
                continue
            objects.append(obj)
        if not objects:
            raise SkipFile(bad[0] if bad else "no JSON lines")
        header = sorted({k for obj in objects for k in obj})
        result = _faq_rows(_table_to_dicts(header, ([obj.get(h) for h in header] for obj in objects), path), source, stem)
        result.warnings[:0] = bad
        return result
    if suffix == ".xlsx":
        try:
            import openpyxl

            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as err:  # openpyxl raises zipfile, KeyError and its own errors alike
            raise SkipFile(f"not a readable XLSX workbook: {err}") from err
        try:
            sheet = book.worksheets[0]
            all_rows = [list(r) for r in sheet.iter_rows(values_only=True)]
        finally:
            book.close()
        if not all_rows:
            raise SkipFile("empty workbook")
        return _faq_rows(_table_to_dicts(all_rows[0], all_rows[1:], path), source, stem)
    raise SkipFile(f"unsupported FAQ table type {suffix}")


# --------------------------------------------------------------------------------------------
# Documents -> blocks
# --------------------------------------------------------------------------------------------


def _markdown_blocks(text: str) -> tuple[str, list[Block]]:
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    title = ""
    headings: list[str] = []
    blocks: list[Block] = []
    row: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open":
            level = int(tok.tag[1])
            heading = _inline_text(tokens[i + 1])
            if level == 1 and not title:
                title = heading
            headings = _push_heading(headings, level, heading)
            i += 3
            continue
        if tok.type == "tr_open":
            row = []
        elif tok.type == "tr_close" and row:
            blocks.append(Block(" | ".join(row), _section(headings)))
        elif tok.type == "inline":
            content = _inline_text(tok)
            parent = tokens[i - 1].type if i else ""
            if parent in {"th_open", "td_open"}:
                row.append(content)
            elif content:
                blocks.append(Block(content, _section(headings)))
        elif tok.type in {"fence", "code_block"} and tok.content.strip():
            blocks.append(Block(tok.content.strip(), _section(headings)))
        i += 1
    return title, blocks


_CJK_BREAK = re.compile(
    r"(?<=[\u3000-\u303f\u3400-\u9fff\uff00-\uffef])\n(?=[\u3000-\u303f\u3400-\u9fff\uff00-\uffef])"
)


def _inline_text(tok: Any) -> str:
    if not tok.children:
        return str(tok.content).strip()
    parts: list[str] = []
    for child in tok.children:
        if child.type in {"text", "code_inline"}:
            parts.append(child.content)
        elif child.type in {"softbreak", "hardbreak"}:
            parts.append("\n")
    # A line break inside Chinese text is no space ("设备，\n确有" is "设备，确有"); elsewhere it is one.
    return _CJK_BREAK.sub("", "".join(parts)).replace("\n", " ").strip()


def _push_heading(headings: list[str], level: int, text: str) -> list[str]:
    """The heading path after a level-``level`` heading (1-based); skipped levels stay empty."""
    path = headings[: level - 1]
    path += [""] * (level - 1 - len(path))
    return [*path, text]


def _section(headings: list[str]) -> str:
    # The document's own title (H1) is the title, not a section; sections are H2 and below.
    inner = [h for h in headings[1:] if h]
    return " > ".join(inner)


def _text_blocks(text: str) -> list[Block]:
    return [Block(p.strip(), "") for p in re.split(r"\n\s*\n", text) if p.strip()]


def _html_blocks(text: str) -> tuple[str, list[Block]]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "noscript", "nav", "header", "footer", "template"]):
        tag.decompose()
    # Page furniture of generated manuals (DocBook's navigation bars, tables of contents).
    for tag in soup.select(".navheader, .navfooter, .toc, .breadcrumb, .breadcrumbs, [role=navigation]"):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    headings: list[str] = []
    blocks: list[Block] = []
    body = soup.body or soup
    for el in body.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "tr", "pre", "blockquote", "dd", "dt"]):
        if el.name in {"p", "li", "blockquote", "dd", "dt"} and el.find_parent(["li", "blockquote", "tr"]):
            continue  # nested text is already part of its container's block
        if el.name and el.name[0] == "h" and len(el.name) == 2:
            level = int(el.name[1])
            heading = el.get_text(" ", strip=True)
            if level == 1 and not title:
                title = heading
            headings = _push_heading(headings, level, heading)
            continue
        if el.name == "tr":
            content = " | ".join(c.get_text(" ", strip=True) for c in el.find_all(["td", "th"]))
        else:
            content = el.get_text(" ", strip=True)
        if content:
            blocks.append(Block(content, _section(headings)))
    if not blocks:
        loose = body.get_text("\n", strip=True)
        blocks = _text_blocks(loose)
    return title, blocks


def _pdf_blocks(path: Path) -> tuple[str, list[Block]]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError

        reader = PdfReader(str(path))
    except Exception as err:  # pypdf raises many types for a broken file
        raise SkipFile(f"corrupt or unreadable PDF: {err}") from err
    if reader.is_encrypted:
        try:
            if not reader.decrypt(""):
                raise SkipFile("encrypted PDF (needs a password)")
        except SkipFile:
            raise
        except Exception as err:
            raise SkipFile(f"encrypted PDF that cannot be opened: {err}") from err
    title = ""
    try:
        meta = reader.metadata
        title = str(meta.title) if meta and meta.title else ""
        blocks: list[Block] = []
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            for para in re.split(r"\n\s*\n", text):
                # PDF text breaks lines mid-sentence: join them (with a space only between Latin words).
                para = re.sub(r"(?<=[^\u3000-\u9fff])\n(?=[^\u3000-\u9fff])", " ", para.strip())
                para = para.replace("\n", "")
                if para:
                    blocks.append(Block(para, "", number))
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as err:
        raise SkipFile(f"corrupt PDF: {err}") from err
    if not blocks:
        raise SkipFile("no extractable text (a scanned PDF needs OCR first)")
    return title, blocks


def _docx_blocks(path: Path) -> tuple[str, list[Block]]:
    try:
        import docx

        document = docx.Document(str(path))
    except Exception as err:  # python-docx raises zipfile/KeyError/its own for a broken file
        raise SkipFile(f"not a readable DOCX document: {err}") from err
    title = document.core_properties.title or ""
    headings: list[str] = []
    blocks: list[Block] = []
    for para in document.paragraphs:
        text = para.text.strip()
        if not text:
            continue
        style = (para.style.name if para.style is not None else "") or ""
        if style == "Title":
            title = title or text
            continue
        match = re.match(r"Heading (\d)", style)
        if match:
            level = int(match.group(1)) + 1  # Heading 1 is a section below the document title
            headings = _push_heading(headings, level, text)
            continue
        blocks.append(Block(text, _section(headings)))
    for table in document.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells]
            if any(cells):
                blocks.append(Block(" | ".join(cells), _section(headings)))
    if not blocks:
        raise SkipFile("empty document (no text)")
    return title, blocks


def read_document(path: Path, source: str, *, chunk_chars: int, overlap_chars: int) -> FileResult:
    suffix = path.suffix.lower()
    if suffix in {".md", ".markdown"}:
        title, blocks = _markdown_blocks(_read_text(path))
    elif suffix == ".txt":
        title, blocks = "", _text_blocks(_read_text(path))
    elif suffix in {".html", ".htm"}:
        title, blocks = _html_blocks(_read_text(path))
    elif suffix == ".pdf":
        title, blocks = _pdf_blocks(path)
    elif suffix == ".docx":
        title, blocks = _docx_blocks(path)
    else:
        raise SkipFile(f"unsupported document type {suffix}")
    if not blocks:
        raise SkipFile("no text")
    title = title.strip() or path.stem
    records: list[Record] = []
    for n, chunk in enumerate(chunk_blocks(blocks, chunk_chars=chunk_chars, overlap_chars=overlap_chars)):
        heading = chunk.section or title
        records.append(
            Record(
                id=f"{source}#{n}",
                kind="document",
                text=chunk.text,
                source=source,
                title=title,
                section=chunk.section,
                page=chunk.page,
                language=detect_language(chunk.text),
                keys=[f"{heading}: {chunk.text}"],
            )
        )
    return FileResult(records, "document")


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
