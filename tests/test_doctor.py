"""``assistant doctor``: every check a turn depends on fails here, before the daemon serves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from kb_support import HashEmbedder, settings_in

from assistant.cli import main
from assistant.kb.store import current_generation
from assistant.registry import build_index

ROOT = Path(__file__).resolve().parent.parent


def doctor_json(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict[str, str]]]:
    code = main(["doctor", "--json", "--config", str(config)])
    report = json.loads(capsys.readouterr().out)
    return code, {c["name"]: c for c in report["checks"]}


def test_doctor_fails_for_a_missing_voice_a_damaged_index_and_a_missing_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 23, item 8: a missing voice passed (doctor looked for its voice.toml only under the
    # voices folder's name, never whether its engine can speak), a damaged index was "ok" when its
    # folder existed, and a transformers model folder was not checked at all
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "faq.csv").write_text("question,answer\nguest wifi,HB-Guest\nparking,two hours free\n", encoding="utf-8")
    build_index(settings_in(tmp_path), [kb], progress=False, embedder=HashEmbedder())
    shutil.copytree(ROOT / "voices" / "zh-espeak", tmp_path / "voices" / "zh-espeak")
    config = tmp_path / "assistant.toml"
    config.write_text(
        '[tts]\nvoice = "nobody"\nvoice_zh = "zh-espeak"\n[audio]\ninput = "off"\noutput = "off"\n'
        '[llm]\nengine = "transformers"\nmodel = "glm-4-9b-chat"\n',
        encoding="utf-8",
    )
    code, checks = doctor_json(config, capsys)
    assert code == 1
    assert checks["model:llm"]["level"] == "problem" and "glm-4-9b-chat" in checks["model:llm"]["detail"]
    assert checks["voice:nobody"]["level"] == "problem" and "[tts] voice" in checks["voice:nobody"]["detail"]
    assert checks["voice:zh-espeak"]["level"] in ("ok", "problem")  # espeak-ng may not be installed here
    assert checks["index"]["level"] == "ok" and "2 FAQ entries" in checks["index"]["detail"]
    # no end-of-turn model: the daemon still serves (turns end on silence alone), so only a warning
    turn = checks["model:turn"]
    assert turn["level"] == "warning" and "models fetch smart-turn-v3.2" in turn["detail"], turn
    generation = current_generation(tmp_path / "index")
    assert generation is not None
    records = generation / "records.jsonl"
    records.write_bytes(records.read_bytes()[:30])
    code, checks = doctor_json(config, capsys)
    assert checks["index"]["level"] == "problem" and "records.jsonl" in checks["index"]["detail"]
