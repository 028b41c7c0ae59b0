"""FAQ tables (``.csv .tsv .jsonl .xlsx``) -> FAQ records.

A table needs a ``question`` and an ``answer`` column; ``id`` and ``alternates`` (other phrasings: a
JSON list, or a cell separated by ``|`` or new lines) are optional. Chinese headers are accepted too
(问题, 答案, 编号, 相似问题). A row without a question or an answer is left out with a warning; a table
with no usable row is skipped with the reason.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from assistant.kb.records import FileResult, Record, SkipFile, read_text
from assistant.language import detect_language

_COLUMN_ALIASES = {
    "question": {"question", "q", "问题", "标准问题", "标准问"},
    "answer": {"answer", "a", "答案", "回答", "标准答案"},
    "id": {"id", "编号", "序号"},
    "alternates": {"alternates", "alternate", "alternatives", "paraphrases", "相似问题", "相似问法", "相似问"},
}


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
        text = read_text(path)
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
        text = read_text(path)
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

