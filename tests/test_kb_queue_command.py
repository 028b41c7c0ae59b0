"""``assistant kb queue``: the listing (newest first, identical questions counted), ``--json``,
``--csv FILE`` and ``--help``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from assistant.cli import main
from assistant.kb.queue import QueueStore
from assistant.stages import QueueCandidate, QueueRecord

NOW_S = 1_800_000_000.0


def record(question: str, time_s: float, turn_id: str, reason: str = "fallback", language: str = "en") -> QueueRecord:
    return QueueRecord(
        reason=reason,  # type: ignore[arg-type]
        question=question,
        language=language,
        route="fallback" if reason == "fallback" else "generated",
        reply="Sorry, I don't know the answer to that. Please ask the front desk staff.",
        candidates=(QueueCandidate("office-rules", "Office rules", "document", 0.3125),),
        time_s=time_s,
        turn_id=turn_id,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "assistant.toml"
    cfg.write_text('[queue]\npath = "data/queue.sqlite"\n', encoding="utf-8")
    store = QueueStore(tmp_path / "data" / "queue.sqlite")
    store.add(
        [
            record("Can I bring my dog?", NOW_S - 300, "a/1"),
            record("Where can I park?", NOW_S - 200, "b/1", reason="weak"),
            record("can I bring my dog", NOW_S - 100, "c/2", reason="declined"),
            record("can I bring my dog", NOW_S - 90, "c/2", reason="not-helpful"),
            record("有健身房吗？", NOW_S - 50, "d/1", language="zh"),
        ]
    )
    store.close()
    return cfg


def test_lists_newest_first_with_counts(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "queue", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 question(s) in 5 record(s), newest first")
    lines = [line for line in out.splitlines() if "x  " in line]
    assert [line.split("x  ", 1) for line in lines] == [["   1", "有健身房吗？"], ["   2", "can I bring my dog"], ["   1", "Where can I park?"]]
    assert "fallback, declined, not-helpful" in out
    assert "best: office-rules 0.31" in out


def test_limit_and_json(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "queue", "--config", str(config), "--json", "--limit", "2"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["records"] == 5 and body["path"].endswith("data/queue.sqlite")
    assert [(q["question"], q["count"]) for q in body["questions"]] == [("有健身房吗？", 1), ("can I bring my dog", 2)]
    dog = body["questions"][1]
    assert dog["reasons"] == ["fallback", "declined", "not-helpful"] and dog["languages"] == ["en"]
    assert dog["first_s"] == NOW_S - 300 and dog["last_s"] == NOW_S - 90
    assert dog["candidates"] == [{"id": "office-rules", "title": "Office rules", "kind": "document", "score": 0.3125}]


def test_csv_exports_every_question(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "queue.csv"
    assert main(["kb", "queue", "--config", str(config), "--csv", str(out_file), "--limit", "1"]) == 0
    assert "wrote 3 question(s)" in capsys.readouterr().err
    with out_file.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["question"] for r in rows] == ["有健身房吗？", "can I bring my dog", "Where can I park?"]
    assert rows[1]["count"] == "2" and rows[1]["reasons"] == "fallback declined not-helpful"
    assert rows[1]["first_seen"] == "2027-01-15T07:55:00Z" and rows[1]["last_seen"] == "2027-01-15T07:58:30Z"
    assert rows[1]["candidates"] == "office-rules (0.31)"
    assert rows[1]["reply"].startswith("Sorry, I don't know")


def test_no_queue_yet_is_an_empty_listing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "assistant.toml"
    cfg.write_text('[queue]\npath = "nowhere/queue.sqlite"\n', encoding="utf-8")
    assert main(["kb", "queue", "--config", str(cfg)]) == 0
    assert "the unanswered queue is empty" in capsys.readouterr().out
    assert not (tmp_path / "nowhere").exists()  # reading never creates the file
    assert main(["kb", "queue", "--config", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["questions"] == []


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "assistant.toml"
    cfg.write_text("[queue]\n", encoding="utf-8")
    (tmp_path / "queue.sqlite").write_bytes(b"not sqlite" * 200)
    assert main(["kb", "queue", "--config", str(cfg)]) == 1
    assert "cannot read the unanswered queue" in capsys.readouterr().err


def test_help_names_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["kb", "queue", "--help"])
    out = capsys.readouterr().out
    assert "unanswered queue" in out and "--csv FILE" in out and "--json" in out and "--limit N" in out
