"""The unanswered queue on disk (assistant.kb.queue) and its writer thread (assistant.kb.queue_writer):
records round-trip as text, identical questions are counted once per turn, retention deletes old
rows at start, and a file that cannot be written never reaches the caller."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

import assistant.kb.queue as queue_module
from assistant.kb.queue import DAY_S, QueueStore, question_key, summarize
from assistant.kb.queue_writer import QueueWriter
from assistant.stages import QueueCandidate, QueueRecord, QueueRecorder

NOW_S = 1_800_000_000.0


def record(question: str = "Can I bring my dog?", *, time_s: float = NOW_S, reason: str = "declined", turn_id: str = "") -> QueueRecord:
    return QueueRecord(
        reason=reason,  # type: ignore[arg-type]
        question=question,
        language="en",
        route="generated",
        reply="Sorry, my documents don't cover that. Please ask the front desk staff.",
        candidates=(QueueCandidate("office-rules", "Office rules", "document", 0.42), QueueCandidate("pets", "Pets?", "faq", 0.31)),
        time_s=time_s,
        turn_id=turn_id,
    )


def test_records_round_trip_newest_first_as_text_only(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "sub" / "queue.sqlite")
    assert store.add([record(time_s=NOW_S - 10), record("有停车位吗？", time_s=NOW_S)]) == 2
    got = store.records()
    assert [r.question for r in got] == ["有停车位吗？", "Can I bring my dog?"]
    assert got[1] == record(time_s=NOW_S - 10)
    assert store.records(limit=1)[0].question == "有停车位吗？"
    # WAL, and no column that could hold audio
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = {row[1] for row in store._db.execute("PRAGMA table_info(queue)")}
    assert columns == {"id", "time_s", "reason", "question", "language", "route", "reply", "candidates", "turn_id"}
    store.close()


def test_prune_deletes_only_what_is_older(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "queue.sqlite")
    store.add([record(time_s=NOW_S - 40 * DAY_S), record(time_s=NOW_S - 20 * DAY_S), record(time_s=NOW_S)])
    assert store.prune(NOW_S - 30 * DAY_S) == 1
    assert sorted(r.time_s for r in store.records()) == [NOW_S - 20 * DAY_S, NOW_S]


def test_identical_questions_are_one_group_counted_once_per_turn() -> None:
    records = [
        record("Can I bring my dog?", time_s=NOW_S - 50, turn_id="a/1"),
        record("can i bring my dog", time_s=NOW_S - 40, turn_id="b/3", reason="fallback"),
        # the same turn again, marked not helpful: one more reason, not one more visitor
        record("can i bring my dog", time_s=NOW_S - 39, turn_id="b/3", reason="not-helpful"),
        record("Where is parking?", time_s=NOW_S - 45, turn_id="c/1"),
    ]
    groups = summarize(records)
    assert [(g.question, g.count) for g in groups] == [("can i bring my dog", 2), ("Where is parking?", 1)]
    dog = groups[0]
    assert dog.reasons == ["declined", "fallback", "not-helpful"]
    assert (dog.first_s, dog.last_s) == (NOW_S - 50, NOW_S - 39)
    assert dog.to_json()["candidates"][0] == {"id": "office-rules", "title": "Office rules", "kind": "document", "score": 0.42}
    assert question_key("Can I bring my DOG？") == question_key("can i bring my dog") == "canibringmydog"


def test_writer_records_in_the_background_and_prunes_at_start(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite"
    old = QueueStore(path)
    old.add([record(time_s=NOW_S - 100 * DAY_S), record(time_s=NOW_S - 1 * DAY_S)])
    old.close()
    writer = QueueWriter(path, retention_days=30, clock=lambda: NOW_S)
    assert isinstance(writer, QueueRecorder)
    writer.record(record("Is there a gym?"))
    assert writer.flush()
    writer.close()
    store = QueueStore(path, create=False)
    assert [r.question for r in store.records()] == ["Is there a gym?", "Can I bring my dog?"]
    assert store.records()[1].time_s == NOW_S - DAY_S  # the 100-day-old one went at start
    assert writer.written == 1 and writer.dropped == 0


def test_writer_prunes_again_a_day_later(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite"
    now = [NOW_S]
    writer = QueueWriter(path, retention_days=2, clock=lambda: now[0])
    writer.record(record(time_s=NOW_S))
    assert writer.flush()
    now[0] = NOW_S + 3 * DAY_S  # the record is now past retention, and the daily pass is due
    writer.record(record("Is there a gym?", time_s=now[0]))
    assert writer.flush()
    writer.close()
    store = QueueStore(path, create=False)
    assert [r.question for r in store.records()] == ["Is there a gym?"]


@pytest.mark.parametrize("damage", ["directory", "garbage", "locked"])
def test_a_broken_or_locked_file_is_logged_once_and_never_raises(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each record waits out sqlite's busy timeout on the lock; a short one keeps the test short
    monkeypatch.setattr(queue_module, "BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "queue.sqlite"
    holder = None
    if damage == "directory":
        path.mkdir()  # sqlite cannot open a folder
    elif damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:
        QueueStore(path).close()
        holder = sqlite3.connect(str(path), timeout=0)
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    writer = QueueWriter(path, retention_days=30)
    started = time.perf_counter()
    for n in range(5):
        writer.record(record(f"question {n}"))
    assert time.perf_counter() - started < 0.05  # the caller never waits on the disk
    assert writer.flush(timeout_s=20)
    assert writer.failing and writer.written == 0 and writer.dropped == 5
    warnings = [r for r in caplog.records if r.name == "assistant.kb.queue_writer" and r.levelname == "WARNING"]
    assert len(warnings) == 1 and "turns go on" in warnings[0].getMessage()
    if holder is not None:
        holder.rollback()  # the lock is gone: the next record is written again
        writer.record(record("after the lock"))
        assert writer.flush(timeout_s=10)
        assert writer.written == 1 and not writer.failing
        holder.close()
    writer.close()


def test_a_full_memory_queue_drops_instead_of_blocking(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite"
    QueueStore(path).close()
    holder = sqlite3.connect(str(path), timeout=0)
    holder.execute("BEGIN EXCLUSIVE")  # the writer's thread is stuck waiting on the lock
    writer = QueueWriter(path, retention_days=30, max_pending=3)
    for n in range(20):
        writer.record(record(f"question {n}"))
    assert writer.dropped >= 20 - 3 - 1  # at most 3 waiting, 1 in the thread's hands
    holder.rollback()
    holder.close()
    writer.close()


def test_the_registry_opens_a_writer_or_with_recording_off_only_prunes(tmp_path: Path) -> None:
    from fakes import settings_for_tests

    from assistant import registry

    settings = settings_for_tests()
    settings.root = tmp_path
    settings.queue.retention_days = 10
    path = registry.queue_path(settings)
    assert path == tmp_path / "queue.sqlite"
    now = time.time()
    store = QueueStore(path)
    store.add([record(time_s=now - 20 * DAY_S), record("recent", time_s=now - DAY_S)])
    store.close()
    settings.queue.record = False
    assert registry.queue_recorder(settings) is None
    store = QueueStore(path, create=False)
    assert [r.question for r in store.records()] == ["recent"]  # old rows go even with recording off
    store.close()
    settings.queue.record = True
    writer = registry.queue_recorder(settings)
    assert isinstance(writer, QueueWriter) and writer.path == path
    writer.close()


def test_turn_totals_add_up_by_day_are_pruned_and_an_older_file_has_none(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "queue.sqlite")
    store.count_turns([NOW_S, NOW_S + 1, NOW_S - DAY_S])
    store.count_turns([NOW_S + 2])
    today = int(NOW_S // DAY_S)
    assert store.turns_per_day() == {today: 3, today - 1: 1}
    store.prune(NOW_S - 1.5 * DAY_S)  # a day partly inside the retention keeps its total
    assert store.turns_per_day() == {today: 3, today - 1: 1}
    store.prune(NOW_S)
    assert store.turns_per_day() == {today: 3}
    store._db.execute("DROP TABLE turns")  # a file made before the totals were kept
    store.close()
    old = QueueStore(tmp_path / "queue.sqlite", create=False)
    assert old.turns_per_day() == {}
    old.close()


def test_the_writer_counts_turns_off_the_turns_path(tmp_path: Path) -> None:
    writer = QueueWriter(tmp_path / "queue.sqlite", retention_days=30, clock=lambda: NOW_S)
    try:
        for n in range(3):
            writer.count_turn(NOW_S + n)
        writer.record(record())
        assert writer.flush()
        assert writer.written == 1 and writer.dropped == 0
    finally:
        writer.close()
    store = QueueStore(tmp_path / "queue.sqlite", create=False)
    assert store.turns_per_day() == {int(NOW_S // DAY_S): 3}
    store.close()
