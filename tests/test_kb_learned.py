"""The owner's page's FAQ file (kb/learned.csv) and its audit trail: what is written, what is
refused, and that the knowledge base reads the file back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.errors import RetrieveError
from assistant.kb.audit import AuditLine, AuditLog, handled_since
from assistant.kb.learned import LearnedFile
from assistant.kb.queue import question_key
from assistant.kb.tables import read_faq


def test_a_new_entry_keeps_the_visitors_phrasings_and_ingest_reads_it(tmp_path: Path) -> None:
    learned = LearnedFile(tmp_path / "kb" / "learned.csv")
    assert learned.read() == []
    entry = learned.add_entry(
        "Can I bring my dog?", "No pets, service dogs excepted.", ["Can I bring my dog?", "are dogs allowed", "狗能带吗, 可以吗"]
    )
    assert entry.id == "learned-1"
    assert entry.alternates == ["are dogs allowed", "狗能带吗, 可以吗"]  # the question itself is not an alternate
    second = learned.add_entry("Where do I park?", "Level -2.", [])
    assert second.id == "learned-2"
    records = read_faq(learned.path, "learned.csv").records
    assert [r.id for r in records] == ["learned-1", "learned-2"]
    assert records[0].answer == "No pets, service dogs excepted."
    assert records[0].keys == ["Can I bring my dog?", "are dogs allowed", "狗能带吗, 可以吗"]


def test_a_duplicate_question_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    learned = LearnedFile(tmp_path / "learned.csv")
    learned.add_entry("Can I bring my dog?", "No.", ["are dogs allowed"])
    before = learned.path.read_bytes()
    for question in ("can i bring my DOG", "Are dogs allowed?"):
        with pytest.raises(RetrieveError) as err:
            learned.add_entry(question, "Yes.", [])
        assert err.value.code == "kb-duplicate"
    assert learned.path.read_bytes() == before


def test_phrasings_go_to_a_twin_of_the_owners_entry_or_to_our_own_row(tmp_path: Path) -> None:
    owners = tmp_path / "faq.csv"
    owners.write_text("id,question,answer\nfaq-1,Where is reception?,Ground floor.\n", encoding="utf-8")
    owners_bytes = owners.read_bytes()
    learned = LearnedFile(tmp_path / "learned.csv")
    twin = learned.extend("faq-1", "Where is reception?", "Ground floor.", ["front desk where", "reception?"])
    assert twin.id == "faq-1+learned" and twin.alternates == ["front desk where", "reception?"]
    again = learned.extend("faq-1", "Where is reception?", "Ground floor.", ["Front desk where", "lobby"])
    assert again.alternates == ["front desk where", "reception?", "lobby"]
    own = learned.add_entry("Wifi?", "Acme-Guest.", [])
    learned.extend(own.id, own.question, own.answer, ["guest wifi name"])
    rows = {e.id: e for e in learned.read()}
    assert set(rows) == {"faq-1+learned", "learned-1"}
    assert rows["learned-1"].alternates == ["guest wifi name"]
    assert owners.read_bytes() == owners_bytes  # the owner's file is never touched


def test_a_corrupt_file_is_refused_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "learned.csv"
    path.write_text("name,notes\nsomething,the owner typed here\n", encoding="utf-8")
    learned = LearnedFile(path)
    with pytest.raises(RetrieveError) as err:
        learned.add_entry("Q?", "A.", [])
    assert err.value.code == "kb-learned" and "columns" in err.value.message
    assert path.read_text(encoding="utf-8") == "name,notes\nsomething,the owner typed here\n"
    path.write_text('id,question,answer,alternates\nlearned-1,Q?,A.,"[not json"\n', encoding="utf-8")
    with pytest.raises(RetrieveError):
        learned.extend("learned-1", "Q?", "A.", ["x"])


def test_a_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    learned = LearnedFile(tmp_path / "learned.csv")
    learned.add_entry("Q?", "A.", [])
    before = learned.path.read_bytes()

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("assistant.kb.learned.os.replace", full_disk)
    with pytest.raises(RetrieveError) as err:
        learned.add_entry("Other?", "B.", [])
    assert err.value.code == "kb-learned" and "No space" in err.value.message
    assert learned.path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["learned.csv"]  # no temporary file left behind


def test_the_audit_trail_appends_and_reads_back(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    assert log.lines() == []
    log.append(AuditLine("answer", 100.0, "127.0.0.1", ["Can I bring my dog?"], "learned-1", "No."))
    log.append(AuditLine("dismiss", 200.0, "::1", ["hello?", "Can I bring my DOG"]))
    with log.path.open("a", encoding="utf-8") as f:
        f.write('{"action": "add", "time_s": 3')  # a line cut by a crash
    lines = log.lines()
    assert [(x.action, x.address, x.entry) for x in lines] == [("answer", "127.0.0.1", "learned-1"), ("dismiss", "::1", "")]
    first = json.loads(log.path.read_text(encoding="utf-8").splitlines()[0])
    assert first["questions"] == ["Can I bring my dog?"] and first["answer"] == "No." and first["time_s"] == 100.0
    assert handled_since(lines, question_key) == {"canibringmydog": 200.0, "hello": 200.0}


def test_an_unwritable_audit_trail_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "audit.jsonl").mkdir()
    with pytest.raises(RetrieveError) as err:
        AuditLog(tmp_path / "audit.jsonl").append(AuditLine("dismiss", 1.0, "", []))
    assert err.value.code == "kb-audit"
