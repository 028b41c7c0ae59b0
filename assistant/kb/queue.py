"""The unanswered queue on disk: one SQLite file (WAL) of the turns that need an owner's eye.

``QueueStore`` is the file: its schema, adding records, deleting those past retention, reading them
back. ``summarize`` groups identical questions for a listing (newest first, with counts); grouping
by meaning is the owner's page's job. Only text is stored (``assistant.stages.QueueRecord``), never
audio. A store is used by one thread at a time: the daemon writes through
``assistant.kb.queue_writer.QueueWriter`` (its own thread), ``assistant kb queue`` reads.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from assistant.stages import QueueCandidate, QueueReason, QueueRecord

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 1.0
"""How long a write waits for another process's lock before it fails (on the writer's thread)."""
DAY_S = 86_400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY,
    time_s REAL NOT NULL,
    reason TEXT NOT NULL,
    question TEXT NOT NULL,
    language TEXT NOT NULL,
    route TEXT NOT NULL,
    reply TEXT NOT NULL,
    candidates TEXT NOT NULL,
    turn_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_time ON queue (time_s);
CREATE TABLE IF NOT EXISTS turns (
    day INTEGER PRIMARY KEY,
    turns INTEGER NOT NULL
);
"""
# ``turns``: every finished turn per UTC day (``day`` = Unix time // 86400), queued or not: the
# denominator of the owner's page's unanswered rate. Added within schema 1 (a file made before it
# gets the table the next time the writer opens it; until then there are no totals).


class QueueStore:
    """The queue file. Opening creates it (and its folder) when missing; raises ``sqlite3.Error`` or
    ``OSError`` when the file cannot be used (the writer logs that, a turn never sees it)."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise FileNotFoundError(f"no queue file at {path}")
        self._db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it consistent; a power cut may lose the last rows
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"{path} has queue schema {version}; this version knows {SCHEMA_VERSION}")
            if create:
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self._db.commit()
        except BaseException:
            self._db.close()
            raise

    def add(self, records: Iterable[QueueRecord]) -> int:
        """Store ``records`` in one transaction; returns how many."""
        rows = [
            (
                r.time_s,
                r.reason,
                r.question,
                r.language,
                r.route,
                r.reply,
                json.dumps([c.__dict__ for c in r.candidates], ensure_ascii=False),
                r.turn_id,
            )
            for r in records
        ]
        with self._db:
            self._db.executemany(
                "INSERT INTO queue (time_s, reason, question, language, route, reply, candidates, turn_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def prune(self, before_s: float) -> int:
        """Delete the records (and the days of turn totals) older than ``before_s`` (Unix time);
        returns how many records went."""
        with self._db:
            self._db.execute("DELETE FROM turns WHERE day < ?", (int(before_s // DAY_S),))
            return self._db.execute("DELETE FROM queue WHERE time_s < ?", (before_s,)).rowcount

    def count_turns(self, time_s: Sequence[float]) -> None:
        """Add finished turns (their Unix times) to the per-day totals, in one transaction."""
        days: dict[int, int] = {}
        for t in time_s:
            days[int(t // DAY_S)] = days.get(int(t // DAY_S), 0) + 1
        with self._db:
            self._db.executemany(
                "INSERT INTO turns (day, turns) VALUES (?, ?) ON CONFLICT(day) DO UPDATE SET turns = turns + excluded.turns",
                list(days.items()),
            )

    def turns_per_day(self) -> dict[int, int]:
        """``day -> finished turns`` (day = Unix time // 86400); empty for a file without totals."""
        try:
            rows = self._db.execute("SELECT day, turns FROM turns").fetchall()
        except sqlite3.OperationalError:  # a file made before the table, not opened by the writer since
            return {}
        return {int(day): int(turns) for day, turns in rows}

    def records(self, *, limit: int | None = None) -> list[QueueRecord]:
        """The records, newest first (``limit``: at most that many)."""
        sql = (
            "SELECT time_s, reason, question, language, route, reply, candidates, turn_id FROM queue "
            "ORDER BY time_s DESC, id DESC"
        )
        rows = self._db.execute(sql + (" LIMIT ?" if limit is not None else ""), (limit,) if limit is not None else ())
        return [_record(row) for row in rows]

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM queue").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def _record(row: Sequence[object]) -> QueueRecord:
    time_s, reason, question, language, route, reply, candidates, turn_id = row
    try:
        listed = json.loads(str(candidates))
        found = tuple(
            QueueCandidate(str(c["id"]), str(c.get("title", "")), str(c.get("kind", "")), float(c["score"]))
            for c in listed
        )
    except (ValueError, KeyError, TypeError):
        found = ()  # a row edited by hand: its question still counts
    return QueueRecord(
        reason=str(reason),  # type: ignore[arg-type]
        question=str(question),
        language=str(language),
        route=str(route),
        reply=str(reply),
        candidates=found,
        time_s=float(time_s),  # type: ignore[arg-type]
        turn_id=str(turn_id),
    )


# --- a listing ----------------------------------------------------------------------------------


@dataclass
class QueueGroup:
    """Every record of one question (compared without case, spaces or punctuation)."""

    question: str
    """The newest phrasing."""
    count: int
    """How many turns asked it (a turn recorded for two reasons counts once)."""
    first_s: float
    last_s: float
    languages: list[str]
    reasons: list[QueueReason]
    routes: list[str]
    reply: str
    """What the assistant said the last time."""
    candidates: tuple[QueueCandidate, ...]
    """The best passages the last time."""

    def to_json(self) -> dict[str, object]:
        return {
            "question": self.question,
            "count": self.count,
            "first_s": round(self.first_s, 3),
            "last_s": round(self.last_s, 3),
            "languages": self.languages,
            "reasons": self.reasons,
            "routes": self.routes,
            "reply": self.reply,
            "candidates": [{**c.__dict__, "score": round(c.score, 4)} for c in self.candidates],
        }


_NOT_WORDS = re.compile(r"[\W_]+")


def question_key(question: str) -> str:
    """What makes two questions identical here: the same words, whatever the case, spacing and
    punctuation ("Can I bring my dog?" and "can i bring my dog")."""
    return _NOT_WORDS.sub("", question.casefold())


def summarize(records: Iterable[QueueRecord]) -> list[QueueGroup]:
    """Group identical questions; newest group first. ``records`` may come in any order."""
    groups: dict[str, QueueGroup] = {}
    turns: dict[str, set[str]] = {}
    for n, r in enumerate(sorted(records, key=lambda r: r.time_s)):
        key = question_key(r.question) or r.question
        seen = turns.setdefault(key, set())
        turn = r.turn_id or f"#{n}"
        new_turn = turn not in seen
        seen.add(turn)
        g = groups.get(key)
        if g is None:
            groups[key] = QueueGroup(
                r.question, 1, r.time_s, r.time_s, [r.language], [r.reason], [r.route], r.reply, r.candidates
            )
            continue
        g.question, g.last_s, g.reply, g.candidates = r.question, r.time_s, r.reply, r.candidates
        g.count += new_turn
        for values, value in ((g.languages, r.language), (g.reasons, r.reason), (g.routes, r.route)):
            if value not in values:
                values.append(value)  # type: ignore[arg-type]
    return sorted(groups.values(), key=lambda g: -g.last_s)
