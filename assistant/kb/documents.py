"""Documents (``.md .markdown .txt .html .htm .pdf .docx``) -> blocks (a piece of text with its
section and page) -> chunked document records (``chunking`` packs the blocks into passages)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from assistant.kb.chunking import Block, chunk_blocks
from assistant.kb.records import FileResult, Record, SkipFile, read_text
from assistant.language import detect_language


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
        title, blocks = _markdown_blocks(read_text(path))
    elif suffix == ".txt":
        title, blocks = "", _text_blocks(read_text(path))
    elif suffix in {".html", ".htm"}:
        title, blocks = _html_blocks(read_text(path))
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
