"""Whisper with and without the knowledge base's vocabulary as prompt, per language of speech.

    .venv/bin/python bench/asr_prompt.py [--rounds 2] [--out bench/results/asr_prompt.json]

Data: the latency benchmark's spoken questions (bench/latency.py makes them with the embedded voices
into cache/bench-questions/: 18 English, 8 Chinese), each whole and its first 60 % (what a partial
transcription sees). Model: the embedded ``whisper-base`` on the fit path, as the daemon runs it.
For every clip the two modes run back to back, alternating which goes first, so that machine load
hits them alike:

  prompted     the knowledge base's terms as Whisper's prompt (``[asr] prompt_from_kb``) for speech
               in every language
  unprompted   no prompt

Reported per language of speech: mean time per transcription, and how many whole questions came
out exactly right (case, spaces and punctuation aside). This is what ``[asr] prompt_languages``
(default ``["zh"]``) decides on.
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from latency import make_questions  # noqa: E402

from assistant.engines.faster_whisper import FasterWhisperTranscriber  # noqa: E402
from assistant.registry import load_settings as load  # noqa: E402


def _norm(text: str) -> str:
    return re.sub(r"[\s?.？。!！,，、\-]", "", text.lower())


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="settings file (default ./assistant.toml)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the clips")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "asr_prompt.json"))
    args = parser.parse_args()
    settings = load(args.config)
    questions = await make_questions(settings, settings.path(settings.general.cache_dir) / "bench-questions")
    transcriber = FasterWhisperTranscriber.from_settings(settings)
    terms = transcriber.prompt_terms
    if not terms:
        print("no knowledge-base terms (build the index first: make index)", file=sys.stderr)
        return 1
    transcriber.prompt_languages = None  # each mode below decides for every language
    transcriber.transcribe_sync(questions[0]["pcm"].astype("float32") / 32768.0)  # warm-up
    times: dict[tuple[str, str], list[float]] = {}
    right: dict[tuple[str, str], int] = {}
    whole: dict[str, int] = {}
    examples: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]
    for round_ in range(args.rounds):
        for i, q in enumerate(questions):
            language = q["language"]
            audio = q["pcm"][: q["eos_sample"] + 3200].astype("float32") / 32768.0
            modes = ["prompted", "unprompted"] if (i + round_) % 2 == 0 else ["unprompted", "prompted"]
            if round_ == 0:
                whole[language] = whole.get(language, 0) + 1
            for share in (1.0, 0.6):
                clip = audio[: int(len(audio) * share)]
                texts = {}
                for mode in modes:
                    transcriber.set_prompt_terms(terms if mode == "prompted" else ())
                    t0 = time.perf_counter()
                    text = transcriber.transcribe_sync(clip).text
                    times.setdefault((language, mode), []).append((time.perf_counter() - t0) * 1000)
                    texts[mode] = text
                    if share == 1.0 and round_ == 0:
                        right[(language, mode)] = right.get((language, mode), 0) + (_norm(text) == _norm(q["text"]))
                if share == 1.0 and round_ == 0:
                    examples.append({"question": q["text"], **texts})
    report: dict[str, Any] = {
        "benchmark": "asr_prompt",
        "command": "bench/asr_prompt.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "model": settings.asr.model,
        "load_average": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "terms": len(terms),
        "rounds": args.rounds,
        "languages": {},
        "examples": examples,
    }
    for language in sorted(whole):
        row: dict[str, Any] = {"questions": whole[language]}
        for mode in ("prompted", "unprompted"):
            ms = times[(language, mode)]
            row[mode] = {
                "mean_ms": round(statistics.fmean(ms), 1),
                "median_ms": round(statistics.median(ms), 1),
                "transcriptions": len(ms),
                "exactly_right": right.get((language, mode), 0),
            }
        row["prompted_over_unprompted_time"] = round(row["prompted"]["mean_ms"] / row["unprompted"]["mean_ms"], 2)
        report["languages"][language] = row
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(  # noqa: ASYNC240
        json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    print(json.dumps(report["languages"], ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
