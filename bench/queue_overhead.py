"""What the unanswered queue adds to a turn (issue 24; target: <= 1 ms, median).

    nice -n 10 .venv/bin/python bench/queue_overhead.py [--turns 200] [--gap-ms 50]

Two daemons in one process on the tests' fake engines (tests/fakes.py; no speech, so the turn is the
daemon's own work): one with ``[queue] record = true`` and the real ``QueueWriter`` (SQLite file in
a tmp folder, written on its own thread), one with recording off and no recorder. Typed questions go
to each in turn, alternating which goes first, so both see the same machine; a turn is timed from
``Session.ask`` to its task's end (the record is built and handed over inside that task). Two kinds
of question:

- ``fallback``: nothing matches, so every turn is queued (a record with its candidates) and counted;
- ``faq``: an FAQ entry answers, so the turn is only counted (the unanswered rate's denominator).

Two pacings, in the same run: ``back_to_back`` (the next turn starts as soon as one ends, so the
writer's thread is still writing the last record while the next turn runs: the worst case) and
``spaced`` (``--gap-ms`` of idle time before each turn, as on a kiosk where turns are seconds apart).
The figure is the difference of the medians (on - off) per pacing and kind. Writes
bench/results/queue_overhead.json with the machine's load average at start and end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fakes import fake_engines, settings_for_tests  # noqa: E402

from assistant.daemon import Daemon  # noqa: E402
from assistant.kb.queue_writer import QueueWriter  # noqa: E402

QUESTIONS = {
    "fallback": "What will the weather be on Mars tomorrow?",
    "faq": "How do I download the DiDi app?",
}


async def turn_ms(daemon: Daemon, question: str) -> tuple[float, str | None]:
    session = daemon.open_session(speak=False)
    try:
        t0 = time.perf_counter()
        await session.ask(question)
        assert session.task is not None
        await session.task
        elapsed = (time.perf_counter() - t0) * 1000
        return elapsed, session.results[-1].route
    finally:
        daemon.end_session(session)


async def run(turns: int, gap_ms: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        queue_path = Path(tmp_name) / "queue.sqlite"
        on_settings = settings_for_tests()
        on_settings.queue.record = True
        writer = QueueWriter(queue_path, retention_days=on_settings.queue.retention_days)
        daemons = {
            "on": Daemon(on_settings, fake_engines(speak=False), recorder=writer),
            "off": Daemon(settings_for_tests(), fake_engines(speak=False), recorder=None),
        }
        pacings = {"back_to_back": 0.0, "spaced": gap_ms}
        times = {p: {kind: {"on": [], "off": []} for kind in QUESTIONS} for p in pacings}
        routes: dict[str, set[str | None]] = {kind: set() for kind in QUESTIONS}
        try:
            for question in QUESTIONS.values():  # warm both (first-call imports, jieba)
                for daemon in daemons.values():
                    await turn_ms(daemon, question)
            for pacing, gap in pacings.items():
                for n in range(turns):
                    for kind, question in QUESTIONS.items():
                        order = ("on", "off") if n % 2 == 0 else ("off", "on")
                        for mode in order:
                            if gap:
                                await asyncio.sleep(gap / 1000)
                            ms, route = await turn_ms(daemons[mode], question)
                            times[pacing][kind][mode].append(ms)
                            routes[kind].add(route)
            flushed = await asyncio.to_thread(writer.flush, 30.0)
            written, dropped = writer.written, writer.dropped
        finally:
            for daemon in daemons.values():
                await daemon.close()
            await asyncio.to_thread(writer.close)
    out: dict[str, Any] = {"turns_per_kind_and_mode": turns, "records_written": written, "records_dropped": dropped}
    out["writer_caught_up"] = flushed
    out["gap_ms"] = gap_ms
    out["routes"] = {kind: sorted(r or "" for r in routes[kind]) for kind in QUESTIONS}
    for pacing, kinds in times.items():
        out[pacing] = {}
        for kind, modes in kinds.items():
            on, off = modes["on"], modes["off"]
            out[pacing][kind] = {
                "turn_ms_median_on": round(statistics.median(on), 3),
                "turn_ms_median_off": round(statistics.median(off), 3),
                "added_ms_median": round(statistics.median(on) - statistics.median(off), 3),
                "turn_ms_p90_on": round(statistics.quantiles(on, n=10)[-1], 3),
                "turn_ms_p90_off": round(statistics.quantiles(off, n=10)[-1], 3),
            }
    out["target_ms"] = 1.0
    out["met"] = {pacing: all(out[pacing][kind]["added_ms_median"] <= 1.0 for kind in QUESTIONS) for pacing in pacings}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=200, help="timed turns per kind of question and mode")
    parser.add_argument("--gap-ms", type=float, default=50.0, help="idle time before each spaced turn")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "queue_overhead.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = asyncio.run(run(args.turns, args.gap_ms))
    report = {
        "bench": "queue_overhead",
        "engines": "fake engines (tests/fakes.py), typed questions, no speech; the real QueueWriter on SQLite",
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
            "loadavg_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
            "nice": os.nice(0),
        },
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: results[k] for k in ("back_to_back", "spaced", "met")}))
    return 0 if all(results["met"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
