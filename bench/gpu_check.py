"""GPU check: load tiny random GLM, Whisper and XTTS models on CUDA, run each, report timings.

This proves the GPU profile's code paths (transformers GLM through the assistant's own engine,
openai-whisper, Coqui XTTS-v2) work on a machine's CUDA stack before real weights are downloaded:
it needs no model files and no network. Random weights produce noise; only structure and timings
are checked.

    .venv/bin/python bench/gpu_check.py                 # on the GPU machine
    .venv/bin/python bench/gpu_check.py --device cpu    # the same code paths on the CPU (smoke test)
    .venv/bin/python bench/gpu_check.py --full-size     # plus GLM-4-9B / Whisper large-v3 / XTTS-v2 layouts

The tiny checks go through the assistant's own engines (``transformers_lm``, ``openai_whisper``,
``coqui``), so they exercise the device and dtype handling a GPU deployment uses. ``--full-size``
builds the real models' layouts with random weights directly on the GPU (bf16 / fp16) and times
prefill, decoding, the Whisper encoder and XTTS's streamed chunks: what the real weights will cost
on that card, measured before anyone downloads 20 GB.

On a CUDA image that has torch but not this project's packages (no network there), carry wheels
for Python 3.12 and put them first on the path: coqui-tts 0.28.0 with coqpit-config, coqui-tts-trainer,
anyascii, inflect, typeguard, more-itertools, ko-speech-tools, librosa, audioread, soxr, pooch,
decorator, monotonic-alignment-search, num2words, docopt, pysbd, pypinyin; openai-whisper 20250625;
transformers 5.23.0; soundfile (``pip download --no-deps --only-binary=:all: --python-version 3.12
--platform manylinux_2_28_x86_64 ...``; docopt and openai-whisper are sdists: ``pip wheel --no-deps``),
then ``pip install --no-deps --target /tmp/site *.whl`` and ``PYTHONPATH=/tmp/site:$PWD``. Without
torchcodec/FFmpeg there, XTTS's clip loader falls back to soundfile (reported as ``clip_loader``).

Exits 2 with a clear message when CUDA is not available (and --device is cuda). Writes
``bench/results/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "gpu_check.json"

CORPUS = [
    "The front desk opens at eight thirty and closes at six thirty.",
    "Visitors sign in at reception with a photo ID and get a badge.",
    "前台早上八点半开门，晚上六点半下班。访客请在前台登记。",
] * 4
GLM_TEMPLATE = (
    "[gMASK]<sop>{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(device: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return out, round((time.perf_counter() - t) * 1000.0, 1)


def _peak_mib(device: str) -> float | None:
    import torch

    if not device.startswith("cuda"):
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# --------------------------------------------------------------------------------------------
# GLM through the assistant's transformers engine
# --------------------------------------------------------------------------------------------


def build_tiny_glm(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GlmConfig, GlmForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|user|>", pad_token="<|endoftext|>")
    tok.chat_template = GLM_TEMPLATE
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = GlmConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
        eos_token_id=tok.convert_tokens_to_ids("<|user|>"), pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    GlmForCausalLM(config).save_pretrained(folder)
    return folder


def check_glm(device: str, work: Path) -> dict[str, Any]:
    from assistant.engines.transformers_lm import TransformersModel
    from assistant.stages import Message

    folder = build_tiny_glm(work / "tiny-glm")
    _reset_peak(device)
    model, load_ms = _timed(device, lambda: TransformersModel(folder, device=device, dtype="auto", temperature=0.0))
    model._generate_options = {"min_new_tokens": 64}  # random weights: keep it from stopping early
    messages = [Message("system", "Answer briefly."), Message("user", "When does the front desk open?")]

    async def run() -> dict[str, Any]:
        t = time.perf_counter()
        first_ms = None
        deltas = 0
        before = model.generated_tokens
        async for _ in model.stream(messages, max_tokens=64):
            deltas += 1
            if first_ms is None:
                first_ms = (time.perf_counter() - t) * 1000.0
        total_s = time.perf_counter() - t
        tokens = model.generated_tokens - before
        # Barge-in: stop after the first delta; generate must end long before its 256 tokens.
        before = model.generated_tokens
        stream = model.stream(messages, max_tokens=256)
        model._generate_options = {"min_new_tokens": 256}
        await anext(stream)
        await stream.aclose()
        await model.idle()
        stopped_after = model.generated_tokens - before
        return {
            "first_delta_ms": round(first_ms or 0.0, 1),
            "tokens": tokens,
            "tokens_per_s": round(tokens / total_s, 1),
            "deltas": deltas,
            "stop_after_tokens": stopped_after,
            "stop_ok": stopped_after < 256,
        }

    result = asyncio.run(run())
    model.close()
    return {
        "model": "GlmForCausalLM (tiny random, via assistant.engines.transformers_lm)",
        "device": str(next(model.model.parameters()).device),
        "dtype": str(model.dtype),
        "load_ms": load_ms,
        "peak_mib": _peak_mib(device),
        **result,
    }


# --------------------------------------------------------------------------------------------
# openai-whisper through the assistant's engine
# --------------------------------------------------------------------------------------------

LARGE_V3 = {
    "n_mels": 128, "n_audio_ctx": 1500, "n_audio_state": 1280, "n_audio_head": 20, "n_audio_layer": 32,
    "n_vocab": 51866, "n_text_ctx": 448, "n_text_state": 1280, "n_text_head": 20, "n_text_layer": 32,
}  # fmt: skip


def _noise(seconds: float) -> Any:
    import numpy as np

    rng = np.random.default_rng(0)
    return (0.05 * rng.standard_normal(int(16_000 * seconds))).astype(np.float32)


def check_whisper(device: str, work: Path) -> dict[str, Any]:
    from dataclasses import asdict

    import numpy as np
    import torch
    from whisper.model import ModelDimensions, Whisper

    from assistant.engines.openai_whisper import OpenAIWhisperTranscriber
    from assistant.stages import Utterance

    torch.manual_seed(0)
    tiny = {**LARGE_V3, "n_audio_state": 64, "n_audio_head": 2, "n_audio_layer": 2, "n_text_state": 64,
            "n_text_head": 2, "n_text_layer": 2}  # fmt: skip  # the large-v3 layout, tiny widths
    dims = ModelDimensions(**tiny)
    path = work / "tiny-whisper.pt"
    torch.save({"dims": asdict(dims), "model_state_dict": Whisper(dims).state_dict()}, path)
    _reset_peak(device)
    engine, load_ms = _timed(device, lambda: OpenAIWhisperTranscriber(path, device=device, sample_len=16))
    pcm = (_noise(5.0) * 32767).astype(np.int16)
    # Language detection (no language given) runs the encoder once more, as a kiosk's turn does.
    transcript, ms = _timed(device, lambda: asyncio.run(engine.transcribe(Utterance(pcm))))
    return {
        "model": "openai-whisper (tiny random, large-v3 layout) via assistant.engines.openai_whisper",
        "device": str(next(engine._model.parameters()).device),
        "load_ms": load_ms,
        "transcribe_5s_ms": ms,
        "rtf": round(ms / 5000.0, 4),
        "language": transcript.language,
        "peak_mib": _peak_mib(device),
    }


# --------------------------------------------------------------------------------------------
# Coqui XTTS-v2 through the assistant's engine
# --------------------------------------------------------------------------------------------


def _reference_clip(path: Path, seconds: float = 4.0, rate: int = 22_050) -> Path:
    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    voiced = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((150, 300, 450)))
    audio = 0.3 * voiced * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    sf.write(str(path), (audio / np.abs(audio).max() * 0.3).astype(np.float32), rate, subtype="PCM_16")
    return path


def _audio_loader_note() -> str:
    """XTTS reads reference clips with ``torchaudio.load``, which needs torchcodec and FFmpeg's libraries.
    A CUDA image without them gets a soundfile reader for this check (clip loading is not GPU code)."""
    import TTS.tts.models.xtts as xtts_module

    try:
        import torchaudio

        torchaudio.load(str(_reference_clip(Path(tempfile.mkdtemp()) / "probe.wav", seconds=0.5)))
        return "torchaudio.load"
    except Exception as err:
        import soundfile as sf
        import torch
        import torchaudio.functional as F

        def load_audio(path: str, sampling_rate: int) -> Any:
            data, rate = sf.read(path, dtype="float32", always_2d=True)
            audio = torch.from_numpy(data.mean(axis=1, keepdims=True).T.copy())
            if rate != sampling_rate:
                audio = F.resample(audio, rate, sampling_rate)
            return audio.clip_(-1, 1)

        xtts_module.load_audio = load_audio
        return f"soundfile (torchaudio.load failed here: {type(err).__name__}: {str(err)[:120]})"


def build_tiny_xtts(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts, XttsArgs

    folder.mkdir(parents=True)
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(
        ["hello world this is a test of the voice", "nin2 hao3 huan1 ying2", "the front desk"] * 4,
        trainers.BpeTrainer(
            vocab_size=120, special_tokens=["[STOP]", "[UNK]", "[SPACE]", "[START]", "[en]", "[zh-cn]"]
        ),
    )
    tokenizer.save(str(folder / "vocab.json"))
    args = XttsArgs(
        gpt_layers=1, gpt_n_model_channels=32, gpt_n_heads=2, gpt_num_audio_tokens=34, gpt_start_audio_token=32,
        gpt_stop_audio_token=33, gpt_max_audio_tokens=24, gpt_max_text_tokens=100, gpt_max_prompt_tokens=20,
        decoder_input_dim=32, gpt_use_perceiver_resampler=True, tokenizer_file=str(folder / "vocab.json"),
    )  # fmt: skip
    config = XttsConfig(model_args=args)
    torch.manual_seed(0)
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(vocab_file=str(folder / "vocab.json"))
    model.init_models()
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    return folder


def check_xtts(device: str, work: Path) -> dict[str, Any]:
    from assistant.config import Settings
    from assistant.engines.coqui import CoquiSynthesizer
    from assistant.tts.voices import load_voice

    loader = _audio_loader_note()
    model_dir = build_tiny_xtts(work / "tiny-xtts")
    voice_dir = work / "voices" / "clone"
    voice_dir.mkdir(parents=True)
    _reference_clip(voice_dir / "ref.wav")
    (voice_dir / "voice.toml").write_text(
        'engine = "xtts"\nlanguages = ["zh", "en"]\nreference_clips = ["ref.wav"]\n'
        f'[options]\nmodel_dir = "{model_dir}"\nstream_chunk_size = 4\nmin_new_tokens = 16\nmax_new_tokens = 16\n',
        encoding="utf-8",
    )
    voice = load_voice(voice_dir)
    settings = Settings(root=work)
    settings.tts.device = device
    engine = CoquiSynthesizer.from_settings(settings)
    _reset_peak(device)
    loaded, load_ms = _timed(device, lambda: engine.load(voice))
    _, cond_ms = _timed(device, lambda: engine.conditioning(loaded, voice))

    async def speak(text: str) -> tuple[float, float, int, float]:
        t = time.perf_counter()
        first = 0.0
        chunks = 0
        audio_ms = 0.0
        async for chunk in engine.synthesize(text, voice=voice):
            if not chunks:
                first = (time.perf_counter() - t) * 1000.0
            chunks += 1
            audio_ms += chunk.duration_ms
        return round(first, 1), round((time.perf_counter() - t) * 1000.0, 1), chunks, round(audio_ms, 1)

    first_en, total_en, chunks_en, audio_en = asyncio.run(speak("hello world"))
    first_zh, total_zh, chunks_zh, _ = asyncio.run(speak("您好"))
    return {
        "model": "Coqui XTTS-v2 (tiny random) via assistant.engines.coqui (cloning, latent cache, streaming)",
        "device": str(next(loaded.model.parameters()).device),
        "clip_loader": loader,
        "load_ms": load_ms,
        "conditioning_ms": cond_ms,
        "latents_cached_on_disk": bool(list((work / "cache" / "xtts-latents").glob("*.pt"))),
        "en_first_chunk_ms": first_en,
        "en_total_ms": total_en,
        "en_chunks": chunks_en,
        "en_audio_ms": audio_en,
        "zh_first_chunk_ms": first_zh,
        "zh_total_ms": total_zh,
        "zh_chunks": chunks_zh,
        "peak_mib": _peak_mib(device),
    }


# --------------------------------------------------------------------------------------------
# Full-size layouts with random weights (--full-size): what the real models cost on this GPU
# --------------------------------------------------------------------------------------------


def full_glm4_9b(device: str, work: Path) -> dict[str, Any]:
    """GLM-4-9B-chat's layout (40 layers, 4096 wide, 151,552 tokens) in bf16: prefill and decode speed."""
    import torch
    from transformers import Glm4Config, Glm4ForCausalLM

    config = Glm4Config(
        vocab_size=151_552, hidden_size=4096, intermediate_size=13_696, num_hidden_layers=40, num_attention_heads=32,
        num_key_value_heads=2, head_dim=128, partial_rotary_factor=0.5, attention_bias=True,
        max_position_embeddings=8192, eos_token_id=None, pad_token_id=0,
    )  # fmt: skip
    _reset_peak(device)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model, build_ms = _timed(device, lambda: Glm4ForCausalLM(config).eval())
    finally:
        torch.set_default_dtype(previous)
    params = sum(p.numel() for p in model.parameters())
    prompt = torch.randint(100, 150_000, (1, 800), device=device)
    with torch.inference_mode():
        model(prompt[:, :16])  # warm-up: kernels, allocator
        _, prefill_ms = _timed(device, lambda: model(prompt, use_cache=True))
        new = 64
        _, gen_ms = _timed(
            device,
            lambda: model.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0),
        )
    decode_ms = max(gen_ms - prefill_ms, 1.0)
    return {
        "model": "GLM-4-9B layout, random bf16 weights (transformers Glm4ForCausalLM)",
        "params_b": round(params / 1e9, 2),
        "build_ms": build_ms,
        "prefill_800_tokens_ms": prefill_ms,
        "decode_tokens_per_s": round(new / (decode_ms / 1000.0), 1),
        "generate_64_after_800_ms": gen_ms,
        "peak_mib": _peak_mib(device),
    }


def full_whisper_large_v3(device: str, work: Path) -> dict[str, Any]:
    """Whisper large-v3's layout (1.55 B parameters) with random weights: one 5 s utterance, fp16."""
    import torch
    import whisper
    from whisper.model import ModelDimensions, Whisper

    _reset_peak(device)
    torch.manual_seed(0)
    with torch.device(device):
        model, build_ms = _timed(device, lambda: Whisper(ModelDimensions(**LARGE_V3)).eval())
    audio = _noise(5.0)
    options = {"language": "en", "temperature": 0.0, "fp16": True, "condition_on_previous_text": False}
    whisper.transcribe(model, audio, sample_len=4, verbose=None, **options)  # warm-up
    _, ms = _timed(device, lambda: whisper.transcribe(model, audio, sample_len=24, verbose=None, **options))
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), n_mels=128).to(device).half()
    with torch.inference_mode():
        _, encode_ms = _timed(device, lambda: model.encoder(mel[None]))
    return {
        "model": "Whisper large-v3 layout, random weights (openai-whisper), fp16 decoding",
        "params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 2),
        "build_ms": build_ms,
        "encoder_30s_window_ms": encode_ms,
        "transcribe_5s_24_tokens_ms": ms,
        "peak_mib": _peak_mib(device),
    }


def full_xtts(device: str, work: Path) -> dict[str, Any]:
    """XTTS-v2's default layout (30-layer 1024-wide GPT, HiFi-GAN decoder) with random weights: time to
    the first streamed chunk (20 GPT tokens) and per chunk after it."""
    import torch
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts, XttsArgs

    _audio_loader_note()
    tiny = build_tiny_xtts(work / "vocab-only")  # only its vocab.json is used
    args = XttsArgs(tokenizer_file=str(tiny / "vocab.json"), gpt_use_perceiver_resampler=True)
    config = XttsConfig(model_args=args)
    torch.manual_seed(0)
    _reset_peak(device)
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(vocab_file=str(tiny / "vocab.json"))
    model.init_models()
    _, move_ms = _timed(device, lambda: model.to(device).eval())
    clip = _reference_clip(work / "ref.wav", seconds=6.0)
    (latent, speaker), cond_ms = _timed(device, lambda: model.get_conditioning_latents(audio_path=[str(clip)]))
    times: list[float] = []

    def stream() -> None:
        t = time.perf_counter()
        for _ in model.inference_stream(
            "hello world, this is the front desk", "en", latent, speaker, stream_chunk_size=20
        ):
            _sync(device)
            times.append((time.perf_counter() - t) * 1000.0)
            if len(times) >= 4:
                break

    stream()  # warm-up
    times.clear()
    stream()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return {
        "model": "XTTS-v2 default layout, random weights (coqui-tts Xtts)",
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "to_device_ms": move_ms,
        "conditioning_ms": cond_ms,
        "stream_first_chunk_ms": round(times[0], 1) if times else None,
        "stream_next_chunk_ms": round(sum(gaps) / len(gaps), 1) if gaps else None,
        "peak_mib": _peak_mib(device),
    }


# --------------------------------------------------------------------------------------------


CHECKS: dict[str, Callable[[str, Path], dict[str, Any]]] = {
    "glm": check_glm,
    "whisper": check_whisper,
    "xtts": check_xtts,
}
FULL: dict[str, Callable[[str, Path], dict[str, Any]]] = {
    "glm4-9b": full_glm4_9b, "whisper-large-v3": full_whisper_large_v3, "xtts-v2": full_xtts,
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a smoke test")
    parser.add_argument("--only", nargs="*", choices=[*CHECKS, *FULL], help="run only these checks")
    parser.add_argument(
        "--full-size",
        action="store_true",
        help="also time GLM-4-9B, Whisper large-v3 and XTTS-v2 layouts with random weights (needs ~25 GB GPU memory)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        print(
            f"gpu_check: no CUDA device is available to torch {torch.__version__} ({build}). Run this on a machine "
            "with an NVIDIA GPU, its driver and a CUDA build of torch; `--device cpu` runs the same checks on the CPU.",
            file=sys.stderr,
        )
        return 2
    report: dict[str, Any] = {
        "benchmark": "gpu_check",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": args.device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else None,
        "python": platform.python_version(),
        "checks": {},
    }
    checks = {**CHECKS, **(FULL if args.full_size else {})}
    failed = False
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for name, check in checks.items():
            if args.only and name not in args.only:
                continue
            work = Path(tmp) / name
            work.mkdir()
            try:
                result = check(args.device, work)
                result["ok"] = True
            except Exception as err:  # report every check, not just the first failure
                failed = True
                result = {"ok": False, "error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()[-1500:]}
            report["checks"][name] = result
            print(f"{name}: {json.dumps(result, ensure_ascii=False)}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(report, ensure_ascii=False, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
