"""ASR benchmark: word error rate, real-time factor, and end-of-speech -> final-transcript latency.

    .venv/bin/python bench/asr.py [--rounds N] [--out bench/results/asr.json]

Data: Debian's ``pocketsphinx-testdata`` (/usr/share/pocketsphinx/test/data): the five LibriVox
sentences and the five "cards" commands with their reference transcripts, plus three raw command
recordings for latency. Model: the embedded ``whisper-base`` (``assistant models fetch whisper-base``).

WER: reference and hypothesis are normalised alike (lower case, punctuation and hyphens to spaces,
numbers to words, Mr./Mrs. spelled out) and the word edit distance is summed over a set.

Latency: each 3-6 s recording is played through the Listener at real-time pace (0.5 s of silence
before it, 1.5 s after), frame by frame as a microphone would deliver it. Latency = the wall-clock
time the final transcript is out minus the wall-clock time the last voiced sample was "captured"
(``ArraySource.started_at + end_of_speech_ms``). All paths run in the same process on the same
recordings, interleaved, so machine load affects them alike:
  partials              [asr] partials = true (the default): transcribe ahead at pauses, commit at
                        real pauses, early end of turn (see assistant/listening/)
  partials-dip-cuts     the same with [asr] dip_cut_after_s = 2.5 (also cut at dips between words)
  whole                 partials = false: the whole utterance is transcribed after [vad] silence_ms
  whole-full  as whole, with Whisper's fixed 30 s encoder window (faster-whisper's default path)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.audio.codecs import decode_file  # noqa: E402
from assistant.audio.sources import ArraySource  # noqa: E402
from assistant.config import Settings  # noqa: E402
from assistant.engines.faster_whisper import FasterWhisperTranscriber  # noqa: E402
from assistant.listening import Heard, Listener, Partial  # noqa: E402
from assistant.registry import load_settings as load  # noqa: E402
from assistant.stages import SAMPLE_RATE_HZ  # noqa: E402

DATA = Path("/usr/share/pocketsphinx/test/data")
LATENCY_RAW = ["goforward.raw", "numbers.raw", "something.raw"]

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + _number_words(rest))
    return " ".join(_ONES[int(d)] for d in str(n))


def normalise(text: str) -> list[str]:
    text = text.lower().replace("-", " ")
    text = re.sub(r"\b(\d+)(st|nd|rd|th)?\b", lambda m: " " + _number_words(int(m.group(1))) + " ", text)
    text = re.sub(r"[^\w\s']", " ", text).replace("'", "")
    words = text.split()
    spelled = {"mr": "mister", "mrs": "missus", "dr": "doctor"}
    return [spelled.get(w, w) for w in words]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def read_references(path: Path) -> dict[str, str]:
    refs = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\(([^)]+)\)\s*$", line)
        if m:
            refs[m.group(2)] = m.group(1).strip()
    return refs


def wer_set(transcriber: FasterWhisperTranscriber, files: list[tuple[Path, str]]) -> dict[str, object]:
    errors = words = 0
    audio_s = compute_s = 0.0
    items = []
    for path, ref in files:
        pcm = decode_file(path)
        t0 = time.perf_counter()
        hyp = transcriber.transcribe_sync(pcm.astype(np.float32) / 32768.0, language="en")
        dt = time.perf_counter() - t0
        r, h = normalise(ref), normalise(hyp.text)
        e = edit_distance(r, h)
        errors += e
        words += len(r)
        audio_s += len(pcm) / SAMPLE_RATE_HZ
        compute_s += dt
        items.append({"file": path.name, "reference": ref, "hypothesis": hyp.text, "errors": e, "words": len(r)})
    return {
        "wer": round(errors / max(1, words), 4),
        "errors": errors,
        "words": words,
        "rtf": round(compute_s / audio_s, 3),
        "audio_s": round(audio_s, 2),
        "items": items,
    }


async def one_pass(transcriber: FasterWhisperTranscriber, settings: Settings, pcm: np.ndarray) -> dict[str, object]:
    lead = np.zeros(SAMPLE_RATE_HZ // 2, dtype=np.int16)
    source = ArraySource(np.concatenate([lead, pcm]), realtime=True, trailing_silence_ms=1500)
    listener = Listener(transcriber, settings)
    heard: list[tuple[Heard, float]] = []
    partials = 0
    async for item in listener.listen(source):
        if isinstance(item, Heard):
            heard.append((item, asyncio.get_running_loop().time()))
        elif isinstance(item, Partial):
            partials += 1
    if not heard:
        return {"heard": 0}
    first, t_final = heard[0]
    assert source.started_at is not None
    eos_wall = source.started_at + first.utterance.end_of_speech_ms / 1000
    return {
        "heard": len(heard),
        "latency_ms": round((t_final - eos_wall) * 1000, 1),
        "endpoint_ms": round(first.decided_stream_ms - first.utterance.end_of_speech_ms, 1),
        "endpoint": first.endpoint,
        "pieces": first.pieces,
        "partials": partials,
        "text": " / ".join(h.transcript.text for h, _ in heard),
    }


async def latency(settings: Settings, rounds: int, with_full: bool, refs: dict[str, str]) -> dict[str, object]:
    fit = FasterWhisperTranscriber.from_settings(replace(settings, asr=replace(settings.asr, prompt_from_kb=False)))
    fit.encoder_window = "fit"
    full = FasterWhisperTranscriber(fit.model_dir, language=settings.asr.language, encoder_window="full")
    modes = {
        "partials": (fit, replace(settings, asr=replace(settings.asr, partials=True))),
        "partials-dip-cuts": (fit, replace(settings, asr=replace(settings.asr, partials=True, dip_cut_after_s=2.5))),
        "whole": (fit, replace(settings, asr=replace(settings.asr, partials=False))),
    }
    if with_full:
        modes["whole-full"] = (full, replace(settings, asr=replace(settings.asr, partials=False)))
    clips: list[tuple[str, np.ndarray]] = []
    for path in [*sorted((DATA / "librivox").glob("*.wav")), DATA / "cards" / "005.wav"]:
        clips.append((path.name, decode_file(path)))
    for name in LATENCY_RAW:
        clips.append((name, np.fromfile(DATA / name, dtype="<i2")))
    clips = [(n, p) for n, p in clips if 2.7 <= len(p) / SAMPLE_RATE_HZ <= 6.5]
    fit.transcribe_sync(clips[0][1].astype(np.float32) / 32768.0)  # warm-up
    results: dict[str, list[dict[str, object]]] = {m: [] for m in modes}
    for r in range(rounds):
        for i, (name, pcm) in enumerate(clips):
            order = list(modes)[(i + r) % len(modes) :] + list(modes)[: (i + r) % len(modes)]
            for mode in order:
                transcriber, s = modes[mode]
                res = await one_pass(transcriber, s, pcm)
                res["clip"] = name
                res["speech_s"] = round(len(pcm) / SAMPLE_RATE_HZ, 2)
                results[mode].append(res)
                print(f"  {mode:10s} {name:45s} {res.get('latency_ms')} ms  {res.get('endpoint')}  {res.get('text')}", file=sys.stderr)
    summary: dict[str, object] = {}
    for mode, runs in results.items():
        lat = [float(x["latency_ms"]) for x in runs if "latency_ms" in x]  # type: ignore[arg-type]
        ep = [float(x["endpoint_ms"]) for x in runs if "endpoint_ms" in x]  # type: ignore[arg-type]
        summary[mode] = {
            "median_latency_ms": round(statistics.median(lat), 1) if lat else None,
            "p90_latency_ms": round(sorted(lat)[int(0.9 * (len(lat) - 1))], 1) if lat else None,
            "mean_latency_ms": round(statistics.fmean(lat), 1) if lat else None,
            "median_endpoint_ms": round(statistics.median(ep), 1) if ep else None,
            "early_endpoints": sum(1 for x in runs if x.get("endpoint") == "early"),
            "librivox_wer": _runs_wer(runs, refs),
            "runs": runs,
        }
    p = summary["partials"]["median_latency_ms"]  # type: ignore[index]
    w = summary["whole"]["median_latency_ms"]  # type: ignore[index]
    summary["ratio_whole_to_partials"] = round(w / p, 2) if p and w else None
    n = summary["partials-dip-cuts"]["median_latency_ms"]  # type: ignore[index]
    summary["ratio_whole_to_partials_dip_cuts"] = round(w / n, 2) if n and w else None
    if "whole-full" in summary:
        wf = summary["whole-full"]["median_latency_ms"]  # type: ignore[index]
        summary["ratio_whole_full_to_partials"] = round(wf / p, 2) if p and wf else None
    return summary


def _runs_wer(runs: list[dict[str, object]], refs: dict[str, str]) -> float | None:
    """WER of what the live path produced on the LibriVox clips (the final transcripts)."""
    errors = words = 0
    for run in runs:
        ref = refs.get(str(run["clip"]).removesuffix(".wav"))
        if ref is None or "text" not in run:
            continue
        r = normalise(ref)
        errors += edit_distance(r, normalise(str(run["text"])))
        words += len(r)
    return round(errors / words, 4) if words else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="latency passes over the clips (default 2)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "asr.json"))
    parser.add_argument("--config", help="settings file (default: ./assistant.toml or built-in defaults)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--with-full", action="store_true", help="also time the whole-utterance path on the 30 s window")
    parser.add_argument("--no-full-wer", action="store_true", help="skip the WER pass on the 30 s window (slow when loaded)")
    args = parser.parse_args()
    settings = load(args.config)
    settings = replace(settings, asr=replace(settings.asr, prompt_from_kb=False, language=""))
    lib_refs = read_references(DATA / "librivox" / "transcription")
    card_refs = read_references(DATA / "cards" / "cards.transcription")
    librivox = [(DATA / "librivox" / f"{k}.wav", v) for k, v in sorted(lib_refs.items())]
    cards = [(DATA / "cards" / f"{k}.wav", v) for k, v in sorted(card_refs.items())]
    t0 = time.perf_counter()
    transcriber = FasterWhisperTranscriber.from_settings(settings)
    load_s = time.perf_counter() - t0
    transcriber.transcribe_sync(np.zeros(SAMPLE_RATE_HZ, dtype=np.float32))  # warm-up
    out: dict[str, object] = {
        "model": transcriber.model_dir.name,
        "compute_type": transcriber.compute_type,
        "threads": transcriber.threads,
        "beam_size": transcriber.beam_size,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "load_s": round(load_s, 2),
        "settings": {
            "silence_ms": settings.vad.silence_ms,
            "early_silence_ms": settings.vad.early_silence_ms,
            "pause_ms": settings.vad.pause_ms,
            "partial_interval_ms": settings.asr.partial_interval_ms,
        },
        "wer": {},
    }
    for window in ("fit",) if args.no_full_wer else ("fit", "full"):
        transcriber.encoder_window = window
        out["wer"][window] = {  # type: ignore[index]
            "librivox": wer_set(transcriber, librivox),
            "cards": wer_set(transcriber, cards),
        }
        lib = out["wer"][window]["librivox"]  # type: ignore[index]
        cds = out["wer"][window]["cards"]  # type: ignore[index]
        print(f"WER {window}: librivox {lib['wer']:.3f} (RTF {lib['rtf']}), cards {cds['wer']:.3f} (RTF {cds['rtf']})", file=sys.stderr)
    transcriber.encoder_window = "fit"
    if not args.skip_latency:
        out["latency"] = asyncio.run(latency(settings, args.rounds, args.with_full, lib_refs))
        lat = out["latency"]
        print(
            f"latency median: partials {lat['partials']['median_latency_ms']} ms, "  # type: ignore[index]
            f"whole {lat['whole']['median_latency_ms']} ms; ratio {lat['ratio_whole_to_partials']}",  # type: ignore[index]
            file=sys.stderr,
        )
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
