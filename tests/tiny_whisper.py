"""Tiny random-weight Whisper models built offline, for the engine adapter tests.

- ``build_ct2_whisper(dir)``: a 1-layer HF ``WhisperForConditionalGeneration`` with a byte-level
  tokenizer that has every Whisper special token (languages, tasks, 1501 timestamps), converted to
  CTranslate2 with ``TransformersConverter``: a complete faster-whisper model folder.
- ``build_openai_whisper(path)``: ``whisper.model.Whisper(ModelDimensions(...))`` saved as the
  checkpoint format ``whisper.load_model`` reads (openai-whisper ships its own tokenizer files).

Random weights decode to noise: tests pass a small token cap and assert structure, not text.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

LANGUAGES = ["en", "zh", "de", "es", "ru", "ko", "fr", "ja"]


def _whisper_language_codes() -> list[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return list(_LANGUAGE_CODES)


def build_ct2_whisper(out_dir: Path) -> Path:
    import ctranslate2
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, WhisperConfig, WhisperForConditionalGeneration

    hf_dir = out_dir.parent / (out_dir.name + "-hf")
    hf_dir.mkdir(parents=True, exist_ok=True)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    specials = ["<|endoftext|>", "<|startoftranscript|>"]
    specials += [f"<|{code}|>" for code in _whisper_language_codes()]
    specials += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    specials += [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    # CTranslate2 treats a Whisper vocabulary of >= 51865 entries as multilingual: pad the regular
    # part with unreachable filler tokens so language detection is exercised.
    filler = 51865 - len(specials) - len(vocab)
    for i in range(filler):
        vocab[f"~{i}"] = len(vocab)
    for token in specials:
        vocab[token] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.save_pretrained(hf_dir)

    eot = vocab["<|endoftext|>"]
    sot = vocab["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(vocab),
        num_mel_bins=80,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        suppress_tokens=[],
        begin_suppress_tokens=[vocab["Ġ"], eot],
    )
    model = WhisperForConditionalGeneration(config)
    model.generation_config.lang_to_id = {f"<|{c}|>": vocab[f"<|{c}|>"] for c in _whisper_language_codes()}
    model.generation_config.is_multilingual = True
    model.generation_config.no_timestamps_token_id = vocab["<|notimestamps|>"]
    model.generation_config.suppress_tokens = []
    model.generation_config.begin_suppress_tokens = [vocab["Ġ"], eot]
    model.save_pretrained(hf_dir)
    converter = ctranslate2.converters.TransformersConverter(str(hf_dir), copy_files=["tokenizer.json"])
    converter.convert(str(out_dir), quantization="int8", force=True)
    return out_dir


def build_openai_whisper(path: Path) -> Path:
    import torch
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=32,
        n_audio_head=2,
        n_audio_layer=1,
        n_vocab=51865,
        n_text_ctx=448,
        n_text_state=32,
        n_text_head=2,
        n_text_layer=1,
    )
    model = Whisper(dims)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path


# -- fixtures: import them into a test module (from tiny_whisper import tiny_ct2) --

@pytest.fixture(scope="session")
def tiny_ct2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    return build_ct2_whisper(tmp_path_factory.mktemp("whisper") / "tiny-ct2")


@pytest.fixture(scope="session")
def tiny_openai_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("whisper")
    return build_openai_whisper(tmp_path_factory.mktemp("whisper") / "tiny.pt")


if __name__ == "__main__":  # build both into a folder, for poking at them by hand
    import sys

    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tiny-whisper")
    print(build_ct2_whisper(root / "ct2"), build_openai_whisper(root / "tiny.pt"))
    print(json.dumps(sorted(p.name for p in (root / "ct2").iterdir())))
