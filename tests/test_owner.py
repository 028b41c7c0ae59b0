"""The owner's desk: the queue grouped by meaning, the three edits, the audit trail, the reload."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from kb_support import HashEmbedder

from assistant.errors import AssistantError
from assistant.kb.queue import QueueStore
from assistant.kb.tables import read_faq
from assistant.owner import OwnerDesk, Reloading, days_of
from assistant.owner_wire import OwnerAddMessage, OwnerAnswerMessage, OwnerDismissMessage
from assistant.stages import Passage, QueueCandidate, QueueRecord

DAY = 86_400.0
NOW = 20_000 * DAY + 3_600.0


def record(question: str, time_s: float, *, turn: str, language: str = "en", candidates: tuple[QueueCandidate, ...] = ()) -> QueueRecord:
    return QueueRecord(
        reason="fallback",
        question=question,
        language=language,
        route="fallback",
        reply="Sorry, my documents don't cover that.",
        candidates=candidates,
        time_s=time_s,
        turn_id=turn,
    )


class Catalog:
    def __init__(self) -> None:
        self.passages = [
            Passage("faq-pets", "Are pets allowed?", "faq.csv", 1.0, "faq", "No pets; service dogs are welcome."),
            Passage("faq-pets", "can i bring an animal", "faq.csv", 1.0, "faq", "No pets; service dogs are welcome."),
            Passage("doc-1#0", "Office rules ...", "rules.md", 1.0, "document"),
        ]

    def all_passages(self) -> list[Passage]:
        return list(self.passages)


@dataclass
class Outcome:
    ok: bool
    generation: str
    message: str = ""


class Daemonish:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.reloads = 0

    async def reload_kb(self) -> Outcome:
        self.reloads += 1
        return Outcome(self.ok, "g2", "" if self.ok else "kb-write: no space left on device")


PET = QueueCandidate("faq-pets", "Are pets allowed?", "faq", 0.41)


def desk_with(tmp_path: Path, records: list[QueueRecord], **kw: object) -> OwnerDesk:
    store = QueueStore(tmp_path / "queue.sqlite")
    store.add(records)
    store.close()
    return OwnerDesk(
        queue_path=tmp_path / "queue.sqlite",
        learned_path=tmp_path / "kb" / "learned.csv",
        audit_path=tmp_path / "audit.jsonl",
        embedder=lambda: HashEmbedder(dims=256),
        catalog=Catalog,
        similarity=0.6,
        clock=lambda: NOW,
        **kw,  # type: ignore[arg-type]
    )


RECORDS = [
    record("can i bring my dog to the office", NOW - 3 * DAY, turn="a", candidates=(PET,)),
    record("Can I bring my dog to the office?", NOW - 2 * DAY, turn="b"),
    record("bring my dog to the office", NOW - 100, turn="c"),
    record("where is the canteen", NOW - 50, turn="d", candidates=(QueueCandidate("doc-1#0", "Office rules", "document", 0.2),)),
    record("宠物可以带进办公室吗", NOW - 10, turn="e", language="zh"),
]


async def test_the_queue_comes_grouped_by_meaning_with_what_the_owner_needs(tmp_path: Path) -> None:
    desk = desk_with(tmp_path, RECORDS)
    queue = await desk.queue()
    first = queue.groups[0]
    assert [p["question"] for p in first["phrasings"]] == ["Can I bring my dog to the office?", "bring my dog to the office"]
    assert [p["count"] for p in first["phrasings"]] == [2, 1]
    assert first["count"] == 3 and first["languages"] == ["en"]
    assert first["first_s"] == NOW - 3 * DAY and first["last_s"] == NOW - 100
    assert first["reply"] == "Sorry, my documents don't cover that."
    assert first["candidates"] == [{"id": "faq-pets", "title": "Are pets allowed?", "kind": "faq", "score": 0.41}]
    assert sorted(g["count"] for g in queue.groups) == [1, 1, 3]
    assert len(queue.days) == 14 and queue.days[-1]["unanswered"] == 3 and queue.days[-4]["unanswered"] == 1
    assert sum(d["unanswered"] for d in queue.days) == 5


async def test_writing_an_answer_makes_an_entry_audits_it_hides_the_group_and_reloads(tmp_path: Path) -> None:
    daemon = Daemonish()
    desk = desk_with(tmp_path, RECORDS, reloader=daemon)
    assert isinstance(daemon, Reloading) and desk.reloadable
    group = (await desk.queue()).groups[0]
    done = await desk.act(OwnerAnswerMessage(group["id"], "No pets, sorry; service dogs are welcome.", ""), address="10.0.0.7")
    assert (done.action, done.entry, done.applied) == ("answer", "learned-1", "reloaded")
    assert daemon.reloads == 1
    records = read_faq(tmp_path / "kb" / "learned.csv", "learned.csv").records
    assert records[0].keys == ["Can I bring my dog to the office?", "bring my dog to the office"]
    audit = (tmp_path / "audit.jsonl").read_text(encoding="utf-8")
    assert '"address": "10.0.0.7"' in audit and '"action": "answer"' in audit
    after = await desk.queue()
    assert group["id"] not in [g["id"] for g in after.groups] and len(after.groups) == 2
    assert sum(d["unanswered"] for d in after.days) == 5  # the rate counts what was asked, handled or not


async def test_a_question_asked_again_after_an_edit_comes_back(tmp_path: Path) -> None:
    desk = desk_with(tmp_path, RECORDS)
    group = next(g for g in (await desk.queue()).groups if g["count"] == 1 and g["languages"] == ["en"])
    await desk.act(OwnerDismissMessage(group["id"]), address="127.0.0.1")
    assert group["id"] not in [g["id"] for g in (await desk.queue()).groups]
    store = QueueStore(tmp_path / "queue.sqlite")
    store.add([record("where is the canteen", NOW + 5, turn="z")])
    store.close()
    assert group["id"] in [g["id"] for g in (await desk.queue()).groups]


async def test_adding_phrasings_writes_a_twin_of_the_owners_entry(tmp_path: Path) -> None:
    desk = desk_with(tmp_path, RECORDS, reloader=Daemonish(ok=False))
    group = (await desk.queue()).groups[0]
    done = await desk.act(OwnerAddMessage(group["id"], "faq-pets"), address="::1")
    assert done.entry == "faq-pets+learned" and done.applied.startswith("reload failed: kb-write")
    (row,) = read_faq(tmp_path / "kb" / "learned.csv", "learned.csv").records
    assert row.text == "Are pets allowed?" and row.answer == "No pets; service dogs are welcome."
    assert row.alternates == ["Can I bring my dog to the office?", "bring my dog to the office"]


async def test_refusals_write_nothing(tmp_path: Path) -> None:
    desk = desk_with(tmp_path, RECORDS)
    group = (await desk.queue()).groups[0]
    for message, code in (
        (OwnerDismissMessage("g-000000000000"), "stale-group"),
        (OwnerAddMessage(group["id"], "doc-1#0"), "unknown-entry"),
        (OwnerAddMessage(group["id"], "no-such"), "unknown-entry"),
        (OwnerAnswerMessage(group["id"], "No.", "can I bring an animal?"), "kb-duplicate"),
    ):
        with pytest.raises(AssistantError) as err:
            await desk.act(message, address="127.0.0.1")
        assert err.value.code == code
    assert not (tmp_path / "kb" / "learned.csv").exists() and not (tmp_path / "audit.jsonl").exists()
    done = await desk.act(OwnerAnswerMessage(group["id"], "No.", ""), address="127.0.0.1")
    assert done.applied == "pending"  # no daemon that reloads: applies at the next build


async def test_two_tabs_acting_on_one_group_at_once_one_wins(tmp_path: Path) -> None:
    desk = desk_with(tmp_path, RECORDS)
    group = (await desk.queue()).groups[0]
    results = await asyncio.gather(
        desk.act(OwnerAnswerMessage(group["id"], "No pets.", ""), address="a"),
        desk.act(OwnerDismissMessage(group["id"]), address="b"),
        return_exceptions=True,
    )
    assert sum(isinstance(r, AssistantError) and r.code == "stale-group" for r in results) == 1
    assert len((tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()) == 1


async def test_no_queue_file_is_an_empty_queue(tmp_path: Path) -> None:
    desk = OwnerDesk(
        queue_path=tmp_path / "none.sqlite",
        learned_path=tmp_path / "learned.csv",
        audit_path=tmp_path / "audit.jsonl",
        embedder=lambda: pytest.fail("nothing to embed"),
    )
    queue = await desk.queue()
    assert queue.groups == [] and len(queue.days) == 14


def test_days_count_turns_once_and_only_the_last_fourteen_with_the_rate() -> None:
    records = [
        record("a", NOW, turn="t1"),
        record("a", NOW + 1, turn="t1"),  # one turn recorded for two reasons
        record("b", NOW - DAY, turn="t3"),
        record("b", NOW - 20 * DAY, turn="t2"),
    ]
    today = int(NOW // DAY)
    days = days_of(records, now_s=NOW, turns={today: 8, today - 20: 5})
    assert days[-1] == {"day": "2024-10-04", "unanswered": 1, "turns": 8, "rate": 0.125}
    assert days[-2] == {"day": "2024-10-03", "unanswered": 1, "turns": 0, "rate": None}  # no total that day
    assert len(days) == 14 and sum(d["unanswered"] for d in days) == 2


async def test_the_queue_carries_the_turn_totals(tmp_path: Path) -> None:
    desk = desk_with(tmp_path, RECORDS)
    store = QueueStore(tmp_path / "queue.sqlite")
    store.count_turns([NOW - 5.0] * 12)
    store.close()
    today = (await desk.queue()).days[-1]
    assert (today["unanswered"], today["turns"], today["rate"]) == (3, 12, 0.25)
