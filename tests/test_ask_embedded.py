"""`assistant ask --json` end to end with the real embedded models: USE + faiss + BM25 over the sample
knowledge base, Qwen2.5-0.5B through llama.cpp, Piper and Whisper base for a voice turn. These are the
examples issue 2 and DESIGN.md promise a user; they assert structure and routing, not wording."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from assistant.cli import main

pytestmark = [pytest.mark.embedded, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ROOT / "models" / "qwen2.5-0.5b" / "model.gguf").exists():
        pytest.skip("run `assistant models fetch` first (make test does)")
    tmp = tmp_path_factory.mktemp("ask")
    shutil.copytree(ROOT / "kb", tmp / "kb")
    shutil.copytree(ROOT / "voices", tmp / "voices")
    cfg = tmp / "assistant.toml"
    cfg.write_text(
        # synthetic questions off: the LLM writing them for the whole sample KB takes minutes (they are
        # tested on a small KB in test_kb_selfcal.py)
        f'[general]\nmodels_dir = "{ROOT / "models"}"\ncache_dir = "cache"\n[asr]\nprompt_from_kb = true\n'
        "[kb]\nsynthesize = false\n",
        encoding="utf-8",
    )
    assert main(["kb", "build", "--config", str(cfg)]) == 0
    return cfg


def ask(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    capsys.readouterr()
    code = main(["ask", *args, "--json", "--config", str(config)])
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "--json prints one object alone on standard output"
    result = json.loads(out)
    assert code == 0, result
    assert set(result) >= {"question", "answer", "route", "language", "sources", "timings_ms"}
    return result  # type: ignore[no-any-return]


def test_the_travel_policy_is_an_faq_answer(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = ask(config, capsys, "请问商旅的出差制度")
    assert r["route"] == "faq" and r["language"] == "zh"
    assert [s["id"] for s in r["sources"]] == ["zh-travel-policy"]
    assert r["sources"][0]["score"] >= 0.8 and r["answer"]


@pytest.mark.parametrize(("question", "language"), [("火星上今天天气怎么样", "zh"), ("what's the weather on Mars", "en")])
def test_off_topic_questions_fall_back(config: Path, capsys: pytest.CaptureFixture[str], question: str, language: str) -> None:
    r = ask(config, capsys, question)
    assert r["route"] == "fallback" and r["language"] == language and r["sources"] == []


def test_a_question_needing_two_entries_is_generated_from_both(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = ask(config, capsys, "出差时住宿标准和每天的出差补贴分别是多少？")
    assert r["route"] == "generated"
    assert {"zh-travel-hotel", "zh-travel-perdiem"} <= {s["id"] for s in r["sources"]}
    assert r["answer"] and r["timings_ms"]["first_token"] is not None


def test_a_voice_turn_from_a_recording(config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    question = tmp_path / "question.wav"
    capsys.readouterr()
    assert main(["say", "Where can visitors park their car?", "--voice", "joe", "--out", str(question),
                 "--config", str(config)]) == 0
    answer = tmp_path / "answer.wav"
    r = ask(config, capsys, "--wav", str(question), "--out", str(answer))
    assert "park" in r["transcript"].lower()
    assert r["route"] == "faq" and r["sources"][0]["id"] == "en-parking-visitor"
    assert r["trace_ms"]["transcript"] is not None and r["trace_ms"]["first_audio"] is not None
    assert answer.stat().st_size > 10_000
