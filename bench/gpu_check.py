"""GPU check: load tiny random GLM, Whisper and XTTS models on CUDA, run each, report timings.

This proves the GPU profile's code paths (transformers GLM through the assistant's own engine,
openai-whisper, Coqui XTTS-v2) work on a machine's CUDA stack before real weights are downloaded:
it needs no model files and no network. Random weights produce noise; only structure and timings
are checked.

    .venv/bin/python bench/gpu_check.py                 # on the GPU machine
    .venv/bin/python bench/gpu_check.py --device cpu    # the same code paths on the CPU (smoke test)

Exits 2 with a clear message when CUDA is not available (and --device is cuda). Writes
``bench/results/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
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
        trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
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
# openai-whisper
# --------------------------------------------------------------------------------------------


def check_whisper(device: str, work: Path) -> dict[str, Any]:
    from dataclasses import asdict

    import numpy as np
    import torch
    import whisper
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(
        n_mels=128, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2, n_vocab=51866,
        n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=2,
    )  # fmt: skip  # the large-v3 layout (128 mel bins, 51866 tokens), tiny widths
    path = work / "tiny-whisper.pt"
    torch.save({"dims": asdict(dims), "model_state_dict": Whisper(dims).state_dict()}, path)
    _reset_peak(device)
    model, load_ms = _timed(device, lambda: whisper.load_model(str(path), device=device))
    rng = np.random.default_rng(0)
    audio = (0.05 * rng.standard_normal(16_000 * 5)).astype(np.float32)
    fp16 = device.startswith("cuda")
    result, ms = _timed(
        device,
        lambda: model.transcribe(
            audio, language="en", temperature=0.0, fp16=fp16, sample_len=16, condition_on_previous_text=False
        ),
    )
    return {
        "model": "openai-whisper Whisper (tiny random, large-v3 layout)",
        "device": str(next(model.parameters()).device),
        "load_ms": load_ms,
        "transcribe_5s_ms": ms,
        "rtf": round(ms / 5000.0, 4),
        "segments": len(result.get("segments", [])),
        "peak_mib": _peak_mib(device),
    }


# --------------------------------------------------------------------------------------------
# Coqui XTTS-v2
# --------------------------------------------------------------------------------------------


def check_xtts(device: str, work: Path) -> dict[str, Any]:
    import numpy as np
    import soundfile as sf
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts, XttsArgs

    folder = work / "tiny-xtts"
    folder.mkdir()
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(
        ["hello world this is a test of the voice", "nin2 hao3 huan1 ying2", "the front desk"] * 4,
        trainers.BpeTrainer(vocab_size=120, special_tokens=["[STOP]", "[UNK]", "[SPACE]", "[START]", "[en]", "[zh-cn]"]),
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
    _reset_peak(device)
    _, load_ms = _timed(device, lambda: model.to(device).eval())
    rate = 22_050
    t = np.arange(rate * 4) / rate
    clip = 0.3 * np.sin(2 * np.pi * 140 * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    sf.write(str(work / "reference.wav"), clip.astype(np.float32), rate)
    (latent, speaker), cond_ms = _timed(device, lambda: model.get_conditioning_latents(audio_path=[str(work / "reference.wav")]))
    out, infer_ms = _timed(device, lambda: model.inference("hello world", "en", latent, speaker, temperature=0.7))
    wav = np.asarray(out["wav"])

    def first_chunk() -> int:
        stream = model.inference_stream("hello world", "en", latent, speaker, stream_chunk_size=8)
        return len(next(iter(stream)))

    _, first_ms = _timed(device, first_chunk)
    return {
        "model": "Coqui XTTS-v2 (tiny random)",
        "device": str(next(model.parameters()).device),
        "load_ms": load_ms,
        "conditioning_ms": cond_ms,
        "inference_ms": infer_ms,
        "samples": int(wav.size),
        "stream_first_chunk_ms": first_ms,
        "peak_mib": _peak_mib(device),
    }


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a smoke test")
    parser.add_argument("--only", nargs="*", choices=["glm", "whisper", "xtts"], help="run only these checks")
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
    checks = {"glm": check_glm, "whisper": check_whisper, "xtts": check_xtts}
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
                result = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            report["checks"][name] = result
            print(f"{name}: {json.dumps(result, ensure_ascii=False)}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(report, ensure_ascii=False, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
