"""The owner's desk: the unanswered queue grouped by meaning, and the edits that answer it (issue 24).

What the owner's page (``/admin``) asks for goes through here; the server only checks the token and
carries the messages (``assistant.server.admin``). The desk reads the queue file, groups its
questions with the index's own embedder (``assistant.kb.grouping``), and writes edits to the
project's FAQ file (``assistant.kb.learned``) with a line in the audit trail (``assistant.kb.audit``)
for each, then asks the daemon to reload when it can (``Reloading``). File and model work runs in a
thread, one request at a time: two tabs editing at once are serialised, and the second one's edit of
a group the first already handled is refused with ``stale-group`` (the page then shows the queue as
it is).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from assistant.errors import AssistantError
from assistant.kb.audit import AuditLine, AuditLog, handled_since
from assistant.kb.grouping import group_by_meaning
from assistant.kb.learned import LearnedFile
from assistant.kb.queue import QueueGroup, QueueStore, question_key, summarize
from assistant.owner_wire import (
    OwnerAddMessage,
    OwnerAnswerMessage,
    OwnerDismissMessage,
    OwnerDone,
    OwnerEdit,
    OwnerQueue,
)
from assistant.stages import Embedder, PassageCatalog, QueueCandidate, QueueRecord

log = logging.getLogger(__name__)

DAYS_SHOWN = 14
MAX_CANDIDATES = 3
DAY_S = 86_400.0


@runtime_checkable
class ReloadOutcome(Protocol):
    """What a reload says: whether the new index is live, and why not."""

    ok: bool
    generation: str
    message: str


@runtime_checkable
class Reloading(Protocol):
    """What the desk needs from the daemon to apply an edit now (live reload, issue 24's other
    half): ``reload_kb()`` rebuilds the index from ``[kb] paths`` and swaps it in between turns; a
    failed build leaves the live index answering and says so in its outcome. A daemon without it
    gets edits applied at the next build and restart (``pending``)."""

    async def reload_kb(self) -> ReloadOutcome: ...


@dataclass
class MeaningGroup:
    """Queued questions that mean the same thing."""

    id: str
    exact: list[QueueGroup]
    """The identical-question groups it joins, most asked first."""
    candidates: list[QueueCandidate] = field(default_factory=list)
    """The best passages retrieval offered for any of its turns, best first (one per passage)."""

    @property
    def count(self) -> int:
        return sum(g.count for g in self.exact)

    @property
    def phrasings(self) -> list[str]:
        return [g.question for g in self.exact]

    def to_json(self) -> dict[str, Any]:
        latest = max(self.exact, key=lambda g: g.last_s)
        languages = sorted({lang for g in self.exact for lang in g.languages if lang})
        return {
            "id": self.id,
            "count": self.count,
            "languages": languages,
            "first_s": round(min(g.first_s for g in self.exact), 3),
            "last_s": round(latest.last_s, 3),
            "reply": latest.reply,
            "phrasings": [{"question": g.question, "count": g.count} for g in self.exact],
            "candidates": [
                {"id": c.id, "title": c.title, "kind": c.kind, "score": round(c.score, 4)}
                for c in self.candidates[:MAX_CANDIDATES]
            ],
        }


def group_id(questions: list[str]) -> str:
    """Stable while the group holds the same questions: a group that changed is a stale one."""
    digest = hashlib.sha1("\n".join(sorted(question_key(q) for q in questions)).encode()).hexdigest()
    return "g-" + digest[:12]


def days_of(
    records: list[QueueRecord], *, now_s: float, turns: dict[int, int] | None = None, days: int = DAYS_SHOWN
) -> list[dict[str, Any]]:
    """Unanswered turns per UTC day for the last ``days`` days, oldest first (a turn recorded for
    two reasons counts once), with every finished turn of the day (``turns``: day -> count, from
    ``QueueStore.turns_per_day``) and the rate; a day without a total (before totals were kept)
    has ``turns`` 0 and ``rate`` None."""
    turns = turns or {}
    today = int(now_s // DAY_S)
    queued: dict[int, set[str]] = {d: set() for d in range(today - days + 1, today + 1)}
    for n, r in enumerate(records):
        day = int(r.time_s // DAY_S)
        if day in queued:
            queued[day].add(r.turn_id or f"#{n}")
    out = []
    for d, t in sorted(queued.items()):
        total = turns.get(d, 0)
        rate = round(min(1.0, len(t) / total), 4) if total else None
        out.append({"day": time.strftime("%Y-%m-%d", time.gmtime(d * DAY_S)), "unanswered": len(t), "turns": total, "rate": rate})
    return out


class OwnerDesk:
    """``embedder``: loads the index's embedder on first use (a callable, so a daemon whose owner
    never opens the page loads nothing); ``catalog``: the live index's passages now (to find the
    entry that phrasings are added to; a callable, as a reload swaps the index); ``reloader``: the daemon, when it can reload."""

    def __init__(
        self,
        *,
        queue_path: Path,
        learned_path: Path,
        audit_path: Path,
        embedder: Callable[[], Embedder],
        catalog: Callable[[], PassageCatalog | None] = lambda: None,
        reloader: object | None = None,
        similarity: float = 0.75,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue_path = queue_path
        self.learned = LearnedFile(learned_path)
        self.audit = AuditLog(audit_path)
        self._embedder_factory = embedder
        self._embedder: Embedder | None = None
        self.catalog = catalog
        self.reloader = reloader if isinstance(reloader, Reloading) else None
        self.similarity = similarity
        self.clock = clock
        self._lock = asyncio.Lock()

    @property
    def reloadable(self) -> bool:
        return self.reloader is not None

    # -- reading ----------------------------------------------------------------------------------

    async def queue(self) -> OwnerQueue:
        async with self._lock:
            groups, days = await asyncio.to_thread(self._read)
        return OwnerQueue(groups=[g.to_json() for g in groups], days=days)

    def _records(self) -> tuple[list[QueueRecord], dict[int, int]]:
        """The queue's records and its per-day turn totals."""
        if not self.queue_path.exists():
            return [], {}
        store = QueueStore(self.queue_path, create=False)
        try:
            return store.records(), store.turns_per_day()
        finally:
            store.close()

    def _read(self) -> tuple[list[MeaningGroup], list[dict[str, Any]]]:
        records, turns = self._records()
        done = handled_since(self.audit.lines(), question_key)
        open_records = [r for r in records if r.time_s > done.get(question_key(r.question), -1.0)]
        return self._group(open_records), days_of(records, now_s=self.clock(), turns=turns)

    def _group(self, records: list[QueueRecord]) -> list[MeaningGroup]:
        exact = sorted(summarize(records), key=lambda g: (-g.count, -g.last_s))
        if not exact:
            return []
        if self._embedder is None:
            self._embedder = self._embedder_factory()
        vectors = self._embedder.embed([g.question for g in exact])
        groups = [[exact[i] for i in members] for members in group_by_meaning(vectors, threshold=self.similarity)]
        best: dict[str, dict[str, QueueCandidate]] = {}  # question key -> passage id -> its best offer
        for r in records:
            offers = best.setdefault(question_key(r.question) or r.question, {})
            for c in r.candidates:
                if c.id not in offers or c.score > offers[c.id].score:
                    offers[c.id] = c
        out = []
        for members in groups:
            merged: dict[str, QueueCandidate] = {}
            for g in members:
                for c in best.get(question_key(g.question) or g.question, {}).values():
                    if c.id not in merged or c.score > merged[c.id].score:
                        merged[c.id] = c
            ranked = sorted(merged.values(), key=lambda c: -c.score)
            out.append(MeaningGroup(group_id([g.question for g in members]), members, ranked))
        return sorted(out, key=lambda g: (-g.count, -max(e.last_s for e in g.exact)))

    # -- editing ----------------------------------------------------------------------------------

    async def act(self, message: OwnerEdit, *, address: str) -> OwnerDone:
        """Apply one edit; raises ``AssistantError`` (``stale-group``, ``unknown-entry``,
        ``kb-duplicate``, ``kb-learned``, ``kb-audit``) with nothing written."""
        async with self._lock:
            done = await asyncio.to_thread(self._act, message, address)
            if not done.entry:
                done.applied = ""
            elif self.reloader is None:
                done.applied = "pending"
            else:
                done.applied = await self._reload()
        return done

    def _act(self, message: OwnerEdit, address: str) -> OwnerDone:
        groups, _ = self._read()
        group = next((g for g in groups if g.id == message.group), None)
        if group is None:
            raise AssistantError("stale-group", "that group is no longer in the queue (handled elsewhere, or it changed)")
        phrasings = group.phrasings
        if isinstance(message, OwnerAnswerMessage):
            question = message.question or phrasings[0]
            self._refuse_known(question)
            entry = self.learned.add_entry(question, message.answer, phrasings)
            line = AuditLine("answer", self.clock(), address, phrasings, entry.id, message.answer)
            action = "answer"
        elif isinstance(message, OwnerAddMessage):
            question, answer = self._entry(message.entry)
            entry = self.learned.extend(message.entry, question, answer, phrasings)
            line = AuditLine("add", self.clock(), address, phrasings, entry.id)
            action = "add"
        else:
            assert isinstance(message, OwnerDismissMessage)
            line = AuditLine("dismiss", self.clock(), address, phrasings)
            action = "dismiss"
        self.audit.append(line)
        log.info("owner's page: %s %s (%d phrasings) from %s", action, line.entry or group.id, len(phrasings), address)
        return OwnerDone(action=action, group=group.id, entry=line.entry)

    def _refuse_known(self, question: str) -> None:
        """A new entry whose question the index already answers is a duplicate: add to that one."""
        catalog = self.catalog()
        if catalog is None:
            return
        key = question_key(question)
        for p in catalog.all_passages():
            if p.kind == "faq" and question_key(p.text) == key:
                raise AssistantError(
                    "kb-duplicate", f"'{question}' is already a phrasing of entry {p.id}: add the phrasings to it instead"
                )

    def _entry(self, entry_id: str) -> tuple[str, str]:
        """The question and answer of FAQ entry ``entry_id``: the project's file first, then the index."""
        for e in self.learned.read():
            if e.id == entry_id:
                return e.question, e.answer
        catalog = self.catalog()
        if catalog is not None:
            for p in catalog.all_passages():  # an entry's first passage shows its question
                if p.id == entry_id and p.kind == "faq" and p.answer:
                    return p.text, p.answer
        raise AssistantError("unknown-entry", f"no FAQ entry '{entry_id}' in the knowledge base")

    async def _reload(self) -> str:
        assert self.reloader is not None
        try:
            outcome = await self.reloader.reload_kb()
        except AssistantError as err:  # kb-reload-off: a daemon started without an index to rebuild
            log.warning("the owner's edit is saved; it applies at the next build (%s)", err.message)
            return "pending"
        if not outcome.ok:
            log.error("the owner's edit is saved but the reload failed: %s", outcome.message)
            return f"reload failed: {outcome.message}"
        return "reloaded"
