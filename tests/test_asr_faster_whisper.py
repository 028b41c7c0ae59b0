"""FasterWhisperTranscriber through its real adapter: a tiny random-weight CTranslate2 Whisper built
in the test (structure, not text), the transcribe command, and the real whisper-base (embedded)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from tiny_whisper import tiny_ct2  # noqa: F401  (the fixture)

from assistant.engines.faster_whisper import FasterWhisperTranscriber
from assistant.stages import ModelMissingError, TranscribeError, Transcriber, Transcript, Utterance

pytestmark = pytest.mark.slow  # building the tiny model imports transformers (~5-20 s here)


def _noise(seconds: float = 1.5) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(int(16_000 * seconds)) * 2000).astype(np.int16)


@pytest.mark.parametrize("window", ["fit", "full"])
async def test_tiny_model_through_both_decoding_paths(tiny_ct2: Path, window: str) -> None:  # noqa: F811
    t = FasterWhisperTranscriber(tiny_ct2, encoder_window=window, max_new_tokens=6, prompt_terms=["商旅", "报销"])
    assert isinstance(t, Transcriber)
    detected = await t.transcribe(Utterance(_noise()))
    assert isinstance(detected, Transcript) and isinstance(detected.text, str)
    assert detected.language in ("zh", "en")  # detection is restricted to [asr] languages
    fixed = await t.transcribe(Utterance(_noise(), language="zh", previous_text="我想报销"))
    assert fixed.language == "zh" and fixed.final
    assert await t.transcribe(Utterance(np.zeros(0, dtype=np.int16))) == Transcript("", "")


async def test_a_degenerate_draft_is_left_empty_instead_of_redone_on_the_full_window(
    tiny_ct2: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import assistant.engines.faster_whisper as fw

    t = FasterWhisperTranscriber(tiny_ct2)
    full: list[str] = []
    monkeypatch.setattr(t, "_fit", lambda audio, language, previous: fw._Decoded("no no no no", "en", True))
    monkeypatch.setattr(
        t, "_full", lambda audio, language, previous: full.append("full") or fw._Decoded("no", "en", False)
    )
    assert await t.transcribe(Utterance(_noise(), draft=True)) == Transcript("", "en")
    assert full == []  # the partial did not hold the model for a 30 s window
    assert (await t.transcribe(Utterance(_noise()))).text == "no"
    assert full == ["full"] and t.redos == 1


async def test_each_repair_can_be_switched_off_for_the_benchmark(
    tiny_ct2: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import assistant.engines.faster_whisper as fw

    # Repairs(redo=False): a degenerate decode is kept as decoded, the full window is not run
    t = FasterWhisperTranscriber(tiny_ct2, repairs=fw.Repairs(redo=False))
    monkeypatch.setattr(t, "_fit", lambda audio, language, previous: fw._Decoded("no no no no", "en", True))
    monkeypatch.setattr(t, "_full", lambda audio, language, previous: pytest.fail("redone on the full window"))
    assert (await t.transcribe(Utterance(_noise()))).text == "no no no no" and t.redos == 0
    assert await t.transcribe(Utterance(_noise(), draft=True)) == Transcript("", "en")  # a draft stays empty

    # the fit path's decode: the token cap, and faster-whisper's decoder options passed through
    seen: list[tuple[int, float, list[float]]] = []
    model = FasterWhisperTranscriber(tiny_ct2)._model
    real = model.generate_with_fallback

    def spy(encoder_output, prompt, tokenizer, options):  # type: ignore[no-untyped-def]
        seen.append((options.max_new_tokens, options.repetition_penalty, options.temperatures))
        return real(encoder_output, prompt, tokenizer, options)

    monkeypatch.setattr(model, "generate_with_fallback", spy)
    today = FasterWhisperTranscriber(tiny_ct2, language="en", prompt_terms=["HB-Guest"])
    uncapped = FasterWhisperTranscriber(
        tiny_ct2,
        language="en",
        repairs=fw.Repairs(token_cap=False, redo=False),
        decoding=fw.Decoding(temperatures=(0.0, 0.5), repetition_penalty=1.1, hotwords=True),
        prompt_terms=["HB-Guest"],
    )
    for engine in (today, uncapped):
        engine.transcribe_sync(_noise(1.0).astype(np.float32) / 32768.0)
    assert seen[0] == (fw.token_cap(1.0, "en"), 1.0, [0.0])
    assert seen[-1][0] > 400 and seen[-1][1:] == (1.1, [0.0, 0.5])  # Whisper's own limit, less the prompt


async def test_one_model_serves_concurrent_sessions(tiny_ct2: Path) -> None:  # noqa: F811
    a = FasterWhisperTranscriber(tiny_ct2, max_new_tokens=4)
    b = FasterWhisperTranscriber(tiny_ct2, max_new_tokens=4, language="en")
    assert a._model is b._model and a._lock is b._lock  # loaded once, one lock
    results = await asyncio.gather(*(x.transcribe(Utterance(_noise(1.0))) for x in (a, b, a, b)))
    assert [r.language for r in results][1::2] == ["en", "en"]


def test_from_settings_and_missing_or_broken_models(tiny_ct2: Path, tmp_path: Path) -> None:  # noqa: F811
    from assistant.config import load

    cfg = tmp_path / "assistant.toml"
    cfg.write_text(f'[asr]\nmodel_path = "{tiny_ct2}"\nprompt_from_kb = false\nlanguage = "en"\nthreads = 1\n')
    t = FasterWhisperTranscriber.from_settings(load(cfg))
    assert t.language == "en" and t.threads == 1 and t.compute_type == "int8" and t.beam_size == 1
    with pytest.raises(ModelMissingError) as missing:
        FasterWhisperTranscriber(tmp_path / "whisper-nothing")
    assert "assistant models fetch" in missing.value.message
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"not a model")
    with pytest.raises(TranscribeError) as err:
        FasterWhisperTranscriber(broken)
    assert err.value.code == "asr-model"


def test_transcribe_command_json(tiny_ct2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    import soundfile as sf

    from assistant.cli import main

    cfg = tmp_path / "assistant.toml"
    cfg.write_text(f'[asr]\nmodel_path = "{tiny_ct2}"\nprompt_from_kb = false\n')
    audio = tmp_path / "q.ogg"
    sf.write(audio, _noise(2.0).astype(np.float32) / 32768, 16_000, format="OGG")
    assert main(["transcribe", str(audio), "--json", "--language", "en", "--config", str(cfg)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"text", "language", "duration_s", "rtf"}
    assert out["language"] == "en" and out["duration_s"] == pytest.approx(2.0, abs=0.05) and out["rtf"] > 0
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    assert main(["transcribe", str(bad), "--config", str(cfg)]) == 1
    assert "[audio-unreadable]" in capsys.readouterr().err


# -- the real embedded model ---------------------------------------------------------------------


@pytest.mark.embedded
async def test_whisper_base_hears_librivox(models_dir: Path) -> None:
    from audio_data import recording

    from assistant.config import Settings

    settings = Settings(root=models_dir.parent)
    settings.asr.prompt_from_kb = False
    t = FasterWhisperTranscriber.from_settings(settings)
    pcm = recording("librivox/sense_and_sensibility_01_austen_64kb-0930.wav")
    fit = await t.transcribe(Utterance(pcm))
    assert fit.language == "en" and "amiable" in fit.text.lower()
    t.encoder_window = "full"
    full = await t.transcribe(Utterance(pcm, language="en"))
    assert "amiable" in full.text.lower()
    t.encoder_window = "fit"


def test_knowledge_base_vocabulary_becomes_the_prompt(
    tiny_ct2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    import assistant.kb
    from assistant.registry import load_settings as load
    from assistant.registry import transcriber

    asked: list[int] = []

    def terms(settings: object, limit: int = 50) -> list[str]:
        asked.append(limit)
        return ["商旅", "报销", "HB-Guest"]

    monkeypatch.setattr(assistant.kb, "domain_terms", terms)
    cfg = tmp_path / "assistant.toml"
    cfg.write_text(f'[asr]\nmodel_path = "{tiny_ct2}"\n')
    t = transcriber(load(cfg))  # the composition root hands the engine the knowledge base's terms
    assert isinstance(t, FasterWhisperTranscriber)
    assert t.prompt_terms == ("商旅", "报销", "HB-Guest") and asked == [50]
    # [asr] prompt_languages (default ["zh"]): English speech is not prompted, Chinese is
    assert t.terms_for("zh") == t.prompt_terms and t.terms_for("en") == ()
    cfg.write_text(f'[asr]\nmodel_path = "{tiny_ct2}"\nprompt_languages = ["zh", "en"]\n')
    assert transcriber(load(cfg)).terms_for("en") == t.prompt_terms  # type: ignore[attr-defined]
    cfg.write_text(f'[asr]\nmodel_path = "{tiny_ct2}"\n')

    def no_index(settings: object, limit: int = 50) -> list[str]:
        raise RuntimeError("no index built yet")

    monkeypatch.setattr(assistant.kb, "domain_terms", no_index)
    assert FasterWhisperTranscriber.from_settings(load(cfg)).prompt_terms == ()
