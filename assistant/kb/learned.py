"""The FAQ file the owner's page writes (``[admin] learned_path``, e.g. ``kb/learned.csv``).

The project owns this file; the owner's own files are never rewritten. A new entry is a row with
its question, answer and the visitors' phrasings as alternates. Phrasings added to an entry of the
owner's files go into a *twin* row here (same question and answer, id ``<entry>+learned``, the new
phrasings as its alternates): a search that matches a phrasing returns that answer, and the owner's
file stays as they wrote it. (The twin copies the answer as it was: an answer changed later in the
owner's file should be changed here too, or the twin removed.) The file is the columns ``id,
question, answer, alternates`` that ``assistant.kb.tables`` reads, alternates as a JSON list.

Every write replaces the whole file atomically (a temporary file, then a rename); a file that no
longer parses (edited by hand into something else) is refused, never overwritten.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from assistant.errors import RetrieveError
from assistant.kb.queue import question_key

COLUMNS = ("id", "question", "answer", "alternates")
ID_PREFIX = "learned-"
TWIN_SUFFIX = "+learned"


@dataclass
class LearnedEntry:
    id: str
    question: str
    answer: str
    alternates: list[str] = field(default_factory=list)


class LearnedFile:
    """``path``: the CSV file; missing is empty. Not thread-safe: the owner's desk holds one lock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[LearnedEntry]:
        """The entries; raises ``RetrieveError("kb-learned", ...)`` for a file that does not parse."""
        if not self.path.exists():
            return []
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise RetrieveError("kb-learned", f"cannot read {self.path}: {err}") from err
        if not text.strip():
            return []
        rows = csv.DictReader(io.StringIO(text))
        if rows.fieldnames is None or not {"id", "question", "answer"} <= set(rows.fieldnames):
            raise RetrieveError(
                "kb-learned",
                f"{self.path} is not the page's FAQ file any more (its columns are "
                f"{', '.join(rows.fieldnames or []) or 'none'}; expected {', '.join(COLUMNS)}): "
                "fix or move it, nothing was written",
            )
        entries = []
        try:
            for row in rows:
                raw = (row.get("alternates") or "").strip()
                alternates = json.loads(raw) if raw.startswith("[") else [a for a in raw.split("|") if a]
                if not isinstance(alternates, list):
                    raise ValueError("alternates is not a list")
                entries.append(
                    LearnedEntry(
                        str(row.get("id") or ""),
                        str(row.get("question") or ""),
                        str(row.get("answer") or ""),
                        [str(a) for a in alternates],
                    )
                )
        except (ValueError, csv.Error) as err:
            raise RetrieveError("kb-learned", f"{self.path} does not parse ({err}): fix or move it, nothing was written") from err
        return entries

    def add_entry(self, question: str, answer: str, alternates: list[str]) -> LearnedEntry:
        """A new entry; raises ``RetrieveError("kb-duplicate", ...)`` when this file already has the question."""
        entries = self.read()
        key = question_key(question)
        for e in entries:
            if key and key in {question_key(q) for q in (e.question, *e.alternates)}:
                raise RetrieveError("kb-duplicate", f"'{question}' is already entry {e.id} ('{e.question}')")
        numbers = [int(e.id[len(ID_PREFIX) :]) for e in entries if e.id.startswith(ID_PREFIX) and e.id[len(ID_PREFIX) :].isdigit()]
        n = max(numbers, default=0) + 1  # after the highest, so a new entry never takes a listed id
        entry = LearnedEntry(f"{ID_PREFIX}{n}", question, answer, _distinct(alternates, question))
        self._write([*entries, entry])
        return entry

    def extend(self, entry_id: str, question: str, answer: str, phrasings: list[str]) -> LearnedEntry:
        """Add ``phrasings`` to entry ``entry_id`` (``question`` and ``answer`` are that entry's): to
        its own row when the entry is this file's, else to its twin row here (made when missing)."""
        entries = self.read()
        for e in entries:
            if e.id in (entry_id, entry_id + TWIN_SUFFIX):
                e.alternates = _distinct([*e.alternates, *phrasings], e.question)
                self._write(entries)
                return e
        twin = LearnedEntry(entry_id + TWIN_SUFFIX, question, answer, _distinct(phrasings, question))
        self._write([*entries, twin])
        return twin

    def _write(self, entries: list[LearnedEntry]) -> None:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for e in entries:
            writer.writerow((e.id, e.question, e.answer, json.dumps(e.alternates, ensure_ascii=False)))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".learned-", suffix=".csv", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                    f.write(out.getvalue())
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as err:  # a full disk, a read-only folder: the old file is intact
            raise RetrieveError("kb-learned", f"cannot write {self.path}: {err}") from err


def _distinct(phrasings: list[str], question: str) -> list[str]:
    """The phrasings once each (compared as ``question_key`` does), without the question itself."""
    seen = {question_key(question)}
    kept = []
    for p in phrasings:
        p = p.strip()
        key = question_key(p)
        if p and key not in seen:
            seen.add(key)
            kept.append(p)
    return kept
