"""OpenAIWhisperTranscriber through openai-whisper itself, with a tiny random-weight checkpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from tiny_whisper import tiny_openai_whisper  # noqa: F401  (the fixture)

from assistant.config import load
from assistant.stages import ModelMissingError, Transcriber, Transcript, Utterance

pytestmark = pytest.mark.slow  # torch + whisper import, a few seconds here


def _noise(seconds: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(1).standard_normal(int(16_000 * seconds)) * 2000).astype(np.int16)


async def test_tiny_checkpoint_transcribes(tiny_openai_whisper: Path) -> None:  # noqa: F811
    from assistant.engines.openai_whisper import OpenAIWhisperTranscriber

    t = OpenAIWhisperTranscriber(tiny_openai_whisper, device="cpu", sample_len=4, prompt_terms=["报销"])
    assert isinstance(t, Transcriber) and t.device == "cpu"
    detected = await t.transcribe(Utterance(_noise()))
    assert isinstance(detected, Transcript) and detected.language in ("zh", "en")
    fixed, other = await asyncio.gather(
        t.transcribe(Utterance(_noise(), language="en", previous_text="hello")),
        t.transcribe(Utterance(_noise(0.5), language="zh")),
    )
    assert (fixed.language, other.language) == ("en", "zh")
    assert len(fixed.text) < 200  # sample_len caps the random decoder


def test_checkpoint_lookup(tiny_openai_whisper: Path, tmp_path: Path) -> None:  # noqa: F811
    from assistant.engines.openai_whisper import OpenAIWhisperTranscriber, find_checkpoint

    models = tmp_path / "models"
    (models / "large-v3").mkdir(parents=True)
    cfg = tmp_path / "assistant.toml"
    cfg.write_text('[asr]\nengine = "openai-whisper"\nmodel = "large-v3"\nprompt_from_kb = false\n')
    with pytest.raises(ModelMissingError) as err:
        find_checkpoint(load(cfg))
    assert "large-v3.pt" in err.value.message
    (models / "large-v3" / "weights.pt").write_bytes(tiny_openai_whisper.read_bytes())
    assert find_checkpoint(load(cfg)).name == "weights.pt"
    cfg.write_text(f'[asr]\nengine = "openai-whisper"\nmodel_path = "{tiny_openai_whisper}"\nprompt_from_kb = false\ndevice = "cpu"\n')
    from assistant import registry

    t = registry.transcriber(load(cfg))
    assert isinstance(t, OpenAIWhisperTranscriber) and t.checkpoint == tiny_openai_whisper
