from __future__ import annotations

from pathlib import Path

import pytest

from assistant.cli import main
from assistant.config import ConfigError, Settings
from assistant.registry import load_settings as load


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "assistant.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load(environ={})
    assert s.server.host == "127.0.0.1"
    assert s.llm.engine == "llamacpp"
    assert s.root == tmp_path


def test_shipped_assistant_toml_loads_and_matches_defaults(repo_root: Path) -> None:
    import dataclasses

    from assistant.config import TUNED_KEYS
    from assistant.tuning import tune

    s = load(repo_root / "assistant.toml", environ={})
    d = tune(dataclasses.replace(Settings(), auto=frozenset(TUNED_KEYS)))  # "auto" as the file has it
    assert s.answer.faq_threshold == d.answer.faq_threshold
    assert s.answer.relevance_threshold == d.answer.relevance_threshold and s.auto == {"relevance_threshold", "verify_faq_below"}
    assert s.server.port == d.server.port


@pytest.mark.parametrize(
    ("text", "relevance", "verify"),
    [
        ("", 0.15, 0.0),  # the embedded default, qwen2.5-0.5b
        ('[llm]\nmodel = "qwen2.5-1.5b"\n', 0.15, 0.98),
        ('[answer]\nrelevance_threshold = "auto"\nverify_faq_below = "auto"\n[llm]\nmodel = "qwen2.5-1.5b"\n', 0.15, 0.98),
        ('[answer]\nrelevance_threshold = 0.3\n[llm]\nmodel = "qwen2.5-1.5b"\n', 0.3, 0.98),  # a value wins
        ('[llm]\nengine = "openai"\nmodel = "qwen2.5-1.5b"\n', 0.45, 0.0),  # a server's model: not measured
        ('[llm]\nmodel = "qwen2.5-1.5b"\nmodel_path = "elsewhere.gguf"\n', 0.45, 0.0),
    ],
)
def test_auto_answer_thresholds_are_the_model_packs_measured_ones(
    tmp_path: Path, text: str, relevance: float, verify: float
) -> None:
    s = load(write(tmp_path, text), environ={})
    assert (s.answer.relevance_threshold, s.answer.verify_faq_below) == (relevance, verify)


def test_auto_thresholds_follow_a_swapped_model_and_the_environment(tmp_path: Path) -> None:
    import dataclasses

    from assistant.tuning import tune

    p = write(tmp_path, "[answer]\nverify_faq_below = 0.5\n")
    s = load(p, environ={})
    assert s.auto == {"relevance_threshold"}
    bigger = tune(dataclasses.replace(s, llm=dataclasses.replace(s.llm, model="qwen2.5-1.5b")))
    assert (bigger.answer.relevance_threshold, bigger.answer.verify_faq_below) == (0.15, 0.5)
    s = load(p, environ={"ASSISTANT__LLM__MODEL": "qwen2.5-1.5b", "ASSISTANT__ANSWER__VERIFY_FAQ_BELOW": "auto"})
    assert (s.answer.relevance_threshold, s.answer.verify_faq_below) == (0.15, 0.98)
    with pytest.raises(ConfigError) as bad:
        load(p, environ={"ASSISTANT__ANSWER__RELEVANCE_THRESHOLD": "low"})
    assert 'ASSISTANT__ANSWER__RELEVANCE_THRESHOLD' in str(bad.value) and 'a number or "auto"' in str(bad.value)


def test_values_and_relative_paths(tmp_path: Path) -> None:
    p = write(tmp_path, '[kb]\nindex_dir = "data/index"\ntop_k = 7\n[answer]\nfaq_threshold = 1\n')
    s = load(p, environ={})
    assert s.kb.top_k == 7
    assert s.answer.faq_threshold == 1.0 and isinstance(s.answer.faq_threshold, float)
    assert s.path(s.kb.index_dir) == tmp_path / "data" / "index"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[kb]\ntop_kk = 3\n", ["unknown key 'top_kk'", "[kb]", "top_k"]),
        ("[kbb]\n", ["unknown section [kbb]"]),
        ('[kb]\ntop_k = "five"\n', ["[kb] top_k", "expected an integer", "str 'five'"]),
        ("[llm]\nengine = \"gpt\"\n", ["[llm] engine", "'llamacpp'", "'gpt'"]),
        ("[tts]\nenabled = 1\n", ["[tts] enabled", "true or false"]),
        ("[kb]\npaths = [1]\n", ["[kb] paths[0]", "a string"]),
        ("[answer]\nfaq_threshold = 0.3\nrelevance_threshold = 0.5\n", ["relevance_threshold must not be above", "(0.5 > 0.3)"]),
        ('[llm]\nmodel = "qwen2.5-1.5b"\n[answer]\nfaq_threshold = 0.1\n', ['(0.15 > 0.1; relevance_threshold is "auto"']),
        ('[answer]\nverify_faq_below = "high"\n', ["[answer] verify_faq_below", 'a number or "auto"', "str 'high'"]),
        ("[server]\nport = 70000\n", ["port"]),
        # issue 23, item 8: values the types allow but that cannot work were all accepted
        ("[llm]\nthreads = 0\n", ["[llm] threads must be within 1..256, found 0"]),
        ("[llm]\nthreads = -4\n", ["[llm] threads", "found -4"]),
        ("[server]\nmax_clients = 0\n", ["[server] max_clients", "found 0"]),
        ("[server]\nmax_clients = -3\n", ["[server] max_clients", "found -3"]),
        ("[server]\nmax_message_bytes = 0\n", ["[server] max_message_bytes", "found 0"]),
        ("[llm]\ncontext_tokens = 16\n", ["[llm] context_tokens must be at least 512, found 16"]),
        ("[llm]\ntemperature = -3\n", ["[llm] temperature must be within 0..2, found -3.0"]),
        ("[answer]\nhistory_turns = -1\n", ["[answer] history_turns", "found -1"]),
        ("[audio]\nsample_rate_hz = 0\n", ["[audio] sample_rate_hz must be within 8000..48000, found 0"]),
        ("[asr]\nthreads = 0\n", ["[asr] threads"]),
        ("[tts]\nthreads = 0\n", ["[tts] threads"]),
        ("[vad]\nmax_utterance_s = 0\n", ["[vad] max_utterance_s"]),
        ("[answer]\nmax_tokens = 4000\n", ["context_tokens must leave room", "4096 - 4000"]),
        ("this is = not toml [", ["not valid TOML"]),
    ],
)
def test_bad_files_say_which_key_what_was_expected_and_found(tmp_path: Path, text: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text), environ={})
    message = str(info.value)
    assert "\n" not in message.strip() or "TOML" in message
    for f in fragments:
        assert f in message


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.toml", environ={})


def test_environment_overrides(tmp_path: Path) -> None:
    p = write(tmp_path, "[server]\nport = 9000\n")
    s = load(p, environ={"ASSISTANT__SERVER__PORT": "9100", "ASSISTANT__LLM__MODEL": "qwen2.5-1.5b"})
    assert s.server.port == 9100
    assert s.llm.model == "qwen2.5-1.5b"
    with pytest.raises(ConfigError, match=r"\[server\] port") as bad:
        load(p, environ={"ASSISTANT__SERVER__PORT": "many"})
    # The message names where the bad value came from: the variable, not the file.
    assert "environment variable ASSISTANT__SERVER__PORT" in str(bad.value)
    assert str(p) not in str(bad.value)


def test_cli_reports_a_bad_file_in_one_paragraph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, "[kb]\ntop_k = -1\n")
    assert main(["kb", "stats", "--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("assistant: configuration error:")
    assert "Traceback" not in err
    assert "top_k must be at least 1" in err


def test_every_setting_is_documented_in_assistant_toml(repo_root: Path) -> None:
    import dataclasses
    import tomllib

    shipped = tomllib.loads((repo_root / "assistant.toml").read_text(encoding="utf-8"))
    for section in dataclasses.fields(Settings):
        if section.name in ("root", "auto", "moved"):
            continue
        keys = {f.name for f in dataclasses.fields(section.type if isinstance(section.type, type) else getattr(Settings(), section.name))}
        assert set(shipped.get(section.name, {})) == keys, f"[{section.name}] in assistant.toml differs from assistant/config/sections.py"


def test_doctor_says_which_answer_thresholds_apply_and_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    p = write(tmp_path, '[answer]\nverify_faq_below = 0.5\n[llm]\nmodel = "qwen2.5-1.5b"\n')
    main(["doctor", "--json", "--config", str(p)])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["answer"]["detail"] == (
        "relevance_threshold 0.15 (measured for qwen2.5-1.5b), verify_faq_below 0.5 (set explicitly)"
    )


@pytest.mark.parametrize("ahead_section", [True, False])
def test_keys_that_moved_to_ahead_still_apply_from_the_file_and_the_environment(tmp_path: Path, ahead_section: bool) -> None:
    text = "[ahead]\nprefill = \"speech\"\nwarm_prompts = true\n" if ahead_section else ""
    p = write(tmp_path, text + "[llm]\nprefill_guess = 0.3\n[tts]\nfaq_cache = false\n")
    s = load(p, environ={"ASSISTANT__LLM__WARM_PASSAGES": "false", "ASSISTANT__VAD__EARLY_FAQ": "false"})
    assert s.ahead.prefill_guess == 0.3 and s.ahead.faq_audio is False  # the file's old keys
    assert s.ahead.warm_prompts is False and s.ahead.early_faq is False  # the environment's win over the file
    assert set(s.moved) == {
        "[llm] prefill_guess is now [ahead] prefill_guess",
        "[tts] faq_cache is now [ahead] faq_audio",
        "[llm] warm_passages is now [ahead] warm_prompts",
        "[vad] early_faq is now [ahead] early_faq",
    }


def test_an_old_and_a_new_name_disagreeing_in_one_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[llm\] prefill = 'off' and \[ahead\] prefill = 'speech' name one setting"):
        load(write(tmp_path, '[llm]\nprefill = "off"\n[ahead]\nprefill = "speech"\n'), environ={})


def test_queue_section_values_ranges_and_path(tmp_path: Path) -> None:
    s = load(write(tmp_path, '[queue]\nrecord = false\npath = "var/q.sqlite"\nretention_days = 7\n'), environ={})
    assert (s.queue.record, s.queue.retention_days, s.queue.interrupted_within_s) == (False, 7, 5.0)
    assert s.path(s.queue.path) == tmp_path / "var" / "q.sqlite"
    for text, fragment in (
        ("[queue]\nretention_days = 0\n", "[queue] retention_days must be within 1..36500, found 0"),
        ("[queue]\ninterrupted_within_s = -1\n", "[queue] interrupted_within_s must be within 0..600"),
        ('[queue]\nrecord = "no"\n', "[queue] record"),
        ("[queue]\naudio = true\n", "audio"),
    ):
        with pytest.raises(ConfigError) as info:
            load(write(tmp_path, text), environ={})
        assert fragment in str(info.value)


def test_the_owners_token_must_not_be_the_kiosks(tmp_path: Path) -> None:
    cfg = tmp_path / "assistant.toml"
    cfg.write_text('[server]\ntoken = "same"\n[admin]\ntoken = "same"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[admin\] token must differ from \[server\] token"):
        load(cfg)
    cfg.write_text('[server]\ntoken = "kiosk"\n[admin]\ntoken = "owner"\ngroup_similarity = 0.8\n', encoding="utf-8")
    settings = load(cfg)
    assert settings.admin.token == "owner" and settings.admin.group_similarity == 0.8
    assert settings.admin.learned_path == "kb/learned.csv"
    cfg.write_text("[admin]\ngroup_similarity = 1.5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[admin\] group_similarity must be within 0..1"):
        load(cfg)
