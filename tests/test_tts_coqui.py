"""The real Coqui adapter with tiny random-weight models built here through coqui-tts's public API:
XTTS-v2 (cloning from a reference clip, the conditioning-latent cache, streaming, zh-cn and en) and
VITS (any other Coqui model folder). Structure is asserted, not sound: the weights are random."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from assistant.config import Settings
from assistant.stages import ModelMissingError, SynthesizeError, Voice

pytestmark = pytest.mark.slow

torch: Any = None


@pytest.fixture(scope="module", autouse=True)
def heavy_imports() -> None:
    """Imported when a test here runs, not at collection: torch and coqui-tts take seconds to import,
    and a run that deselects these slow tests should not pay for them."""
    global torch
    pytest.importorskip("TTS", reason="coqui-tts is in the heavy extra")
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchaudio", reason="coqui-tts XTTS needs torchaudio (installed --no-deps by the Makefile)")


def reference_clip(path: Path, seconds: float = 4.0, rate: int = 22_050) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    voiced = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((150, 300, 450)))
    audio = 0.3 * voiced * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    sf.write(str(path), (audio / np.abs(audio).max() * 0.3).astype(np.float32), rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def tiny_xtts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~25 M-parameter XTTS-v2 with random weights, saved as a model folder like the real one."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts, XttsArgs

    folder = tmp_path_factory.mktemp("xtts")
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=120, special_tokens=["[STOP]", "[UNK]", "[SPACE]", "[START]", "[en]", "[zh-cn]"]
    )
    corpus = ["hello world this is a test of the voice", "nin2 hao3 huan1 ying2 guang1 lin2", "the front desk"] * 4
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.save(str(folder / "vocab.json"))
    args = XttsArgs(
        gpt_layers=1, gpt_n_model_channels=32, gpt_n_heads=2, gpt_num_audio_tokens=34, gpt_start_audio_token=32,
        gpt_stop_audio_token=33, gpt_max_audio_tokens=24, gpt_max_text_tokens=100, gpt_max_prompt_tokens=20,
        decoder_input_dim=32, gpt_use_perceiver_resampler=True, tokenizer_file=str(folder / "vocab.json"),
    )
    config = XttsConfig(model_args=args)
    torch.manual_seed(0)
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(vocab_file=str(folder / "vocab.json"))
    model.init_models()
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    return folder


@pytest.fixture(scope="module")
def tiny_vits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~1.3 M-parameter character VITS with random weights (no phonemizer needed)."""
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits, VitsArgs

    folder = tmp_path_factory.mktemp("vits")
    args = VitsArgs(
        hidden_channels=16, hidden_channels_ffn_text_encoder=32, num_heads_text_encoder=2, num_layers_text_encoder=1,
        num_layers_flow=1, num_layers_posterior_encoder=1, resblock_type_decoder="2",
        resblock_kernel_sizes_decoder=[3], resblock_dilation_sizes_decoder=[[1, 3]], upsample_rates_decoder=[8, 8, 4],
        upsample_initial_channel_decoder=16, upsample_kernel_sizes_decoder=[16, 16, 8], kernel_size_posterior_encoder=3,
        out_channels=513, init_discriminator=False,
    )
    characters = CharactersConfig(
        characters="abcdefghijklmnopqrstuvwxyz", punctuations="!,.? ", pad="<PAD>", eos="<EOS>", bos="<BOS>",
        blank="<BLNK>", characters_class="TTS.tts.models.vits.VitsCharacters",
    )
    config = VitsConfig(model_args=args, use_phonemes=False, text_cleaner="basic_cleaners", characters=characters)
    config.audio.sample_rate = 16_000
    torch.manual_seed(0)
    model = Vits.init_from_config(config)
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    return folder


def cloned_voice(root: Path, model: Path) -> Voice:
    from assistant.tts.voices import load_voice

    folder = root / "voices" / "clone"
    folder.mkdir(parents=True, exist_ok=True)
    reference_clip(folder / "ref.wav")
    (folder / "voice.toml").write_text(
        'engine = "xtts"\nlanguages = ["zh", "en"]\nreference_clips = ["ref.wav"]\n'
        f'[options]\nmodel_dir = "{model}"\nstream_chunk_size = 4\nmin_new_tokens = 8\nmax_new_tokens = 8\n',
        encoding="utf-8",
    )
    return load_voice(folder)


async def test_xtts_clones_streams_and_caches_latents(tmp_path: Path, tiny_xtts: Path) -> None:
    from assistant.engines.coqui import CoquiSynthesizer

    settings = Settings(root=tmp_path)
    voice = cloned_voice(tmp_path, tiny_xtts)
    engine = CoquiSynthesizer.from_settings(settings)

    # inference_stream hands audio out every stream_chunk_size tokens: several pieces per sentence.
    loaded = engine.load(voice)
    pieces = list(engine._xtts_stream(loaded, "hello world", voice))
    assert len(pieces) >= 2 and all(p.dtype == np.int16 for p in pieces)
    assert engine.latent_computations == 1

    chunks = [c async for c in engine.synthesize("hello world", voice=voice)]
    assert engine.latent_computations == 1
    assert chunks and all(c.sample_rate_hz == 24_000 for c in chunks)
    assert all(len(c.pcm) % 2 == 0 and c.envelope for c in chunks)
    assert all(0.0 <= v <= 1.0 for c in chunks for v in c.envelope)
    assert sum(c.duration_ms for c in chunks) > 100
    assert list((tmp_path / "cache" / "xtts-latents").glob("*.pt"))

    # Second use: the conditioning comes from memory, Chinese goes through the zh-cn front end.
    zh = [c async for c in engine.synthesize("您好", voice=voice)]
    assert zh and engine.latent_computations == 1

    # A restarted daemon: from the disk cache, not recomputed.
    again = CoquiSynthesizer.from_settings(settings)
    again._models = engine._models  # the same weights; only the latent caches start empty
    latent, embedding = again.conditioning(loaded, voice)
    assert again.latent_computations == 0
    assert latent.shape[-1] == 32 and embedding.shape[1] == 512

    # A different clip is a different speaker: recomputed.
    reference_clip(voice.reference_clips[0], seconds=5.0)
    again.conditioning(loaded, voice)
    assert again.latent_computations == 1




def test_xtts_without_clips_or_weights(tmp_path: Path) -> None:
    from assistant.engines.coqui import CoquiSynthesizer, _Loaded

    engine = CoquiSynthesizer.from_settings(Settings(root=tmp_path))
    no_clips = Voice("x", "xtts", ("en",))
    with pytest.raises(SynthesizeError) as err:
        engine.conditioning(_Loaded("xtts", None, 24_000, "id"), no_clips)
    assert err.value.code == "tts-voice-invalid"
    with pytest.raises(ModelMissingError) as missing:
        engine.load(no_clips)
    assert "assistant models fetch xtts-v2" in missing.value.message
    with pytest.raises(ModelMissingError):
        engine.load(Voice("x", "xtts", ("en",), options={"model_dir": str(tmp_path / "nowhere")}))


async def test_any_coqui_model_folder(tmp_path: Path, tiny_vits: Path) -> None:
    from assistant.engines.coqui import CoquiSynthesizer

    engine = CoquiSynthesizer.from_settings(Settings(root=tmp_path))
    voice = Voice("vits", "coqui", ("en",), options={"model_dir": str(tiny_vits)})
    chunks = [c async for c in engine.synthesize("hello there.", voice=voice)]
    assert chunks and {c.sample_rate_hz for c in chunks} == {16_000}
    assert sum(len(c.envelope) for c in chunks) == sum(-(-len(c.pcm) // 2 // 320) for c in chunks)
    assert engine.load(voice) is engine.load(voice)  # loaded once, shared
