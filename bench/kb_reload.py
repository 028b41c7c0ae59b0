"""Live reload (issue 24): how long a one-entry change to a 2,000-entry knowledge base takes to be
answered by the running daemon, with the default models (target: <= 10 s on 2 cores).

    nice -n 10 flock /tmp/bench.lock .venv/bin/python bench/kb_reload.py [--entries 2000] [--changes 3]

The knowledge base is ``bench/kb_scale.py``'s: N FAQ entries made of real sentences (Debian Reference
and FAQ), their synthetic questions filled in beforehand by a cheap rule (the state earlier builds
leave; see kb_scale.py), built once. Then the daemon is composed as ``assistant run`` composes it
(``registry.engines`` with the configured embedder and LLM, no speech; ``registry.index_source``;
``[kb] synthesize`` as configured, default on: the changed entry's questions are written by the
daemon's LLM through its fair gate) and, ``--changes`` times, one entry's answer is changed:

- ``saved``: the file is saved and the watcher notices it (``[kb] watch_interval_s`` and
  ``watch_quiet_s`` as configured: their wait is part of the figure);
- ``asked``: ``Daemon.reload_kb()`` is called right after the save (the owner's page's path).

Each change counts as live when a typed question (the entry's question) is answered with the new
answer, verbatim; the time from the save to that answer is the figure, with the build report's
split. Writes bench/results/kb_reload.json.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
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
sys.path.insert(0, str(ROOT / "bench"))

import kb_scale  # noqa: E402

from assistant import registry  # noqa: E402
from assistant.commands.daemon import close_engines  # noqa: E402
from assistant.daemon import Daemon  # noqa: E402


def change(table: Path, row: int, text: str) -> tuple[str, str]:
    """Give entry ``row`` the answer ``text``, saved as an editor does (a whole file, renamed);
    returns (its question, its new answer)."""
    rows = list(csv.reader(table.open(encoding="utf-8")))
    rows[row][2] = text
    tmp = table.with_name(".faq.csv.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    os.replace(tmp, table)
    return rows[row][1], text


async def answered(daemon: Daemon, question: str) -> str:
    session = daemon.open_session(speak=False)
    try:
        await session.ask(question)
        assert session.task is not None
        await session.task
        return session.results[-1].reply
    finally:
        daemon.end_session(session)


async def until_live(daemon: Daemon, question: str, answer: str, started: float, timeout_s: float) -> float:
    while time.perf_counter() - started < timeout_s:
        if (await answered(daemon, question)).strip() == answer:
            return time.perf_counter() - started
        await asyncio.sleep(0.1)
    raise TimeoutError(f"not live within {timeout_s} s")


async def run(entries: int, changes: int) -> dict[str, Any]:
    pool = kb_scale.sentences()
    settings = registry.load_settings(ROOT / "assistant.toml")
    settings.queue.record = False
    settings.tts.enabled = False
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        kb = tmp / "kb"
        kb.mkdir()
        table = kb / "faq.csv"
        kb_scale.write_table(table, entries, pool)
        settings.kb.paths = [str(kb)]
        settings.kb.index_dir = str(tmp / "index")
        kb_scale.prefill(table, tmp / "index")
        t0 = time.perf_counter()
        registry.build_index(settings, progress=False)  # the questions are there: no LLM call
        first_build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        engines = await asyncio.to_thread(registry.engines, settings, asr=False, tts=False)
        load_s = time.perf_counter() - t0
        daemon = Daemon(settings, engines, index=registry.index_source(settings, engines.retriever))
        assert daemon.reloader is not None
        results: dict[str, list[dict[str, Any]]] = {"saved": [], "asked": []}
        try:
            for n in range(changes):
                for how in ("saved", "asked"):
                    row = 1 + (n * 2 + (how == "asked")) * (entries // (2 * changes + 1)) + 7
                    builds = daemon.reloader.builds
                    started = time.perf_counter()
                    question, answer = change(table, row, f"Changed answer {how} {n}: the desk on floor {n + 2}.")
                    outcome = await daemon.reload_kb() if how == "asked" else None
                    live_s = await until_live(daemon, question, answer, started, timeout_s=300)
                    report = outcome.report if outcome is not None else {}
                    results[how].append(
                        {
                            "live_s": round(live_s, 2),
                            "builds": daemon.reloader.builds - builds,
                            "build": {
                                k: report.get(k)
                                for k in (
                                    "seconds",
                                    "synthesis_s",
                                    "calibration_s",
                                    "questions_written",
                                    "embedded_files",
                                    "calibrated",
                                )
                            }
                            if report
                            else None,
                        }
                    )
                    print(f"{how} {n}: {json.dumps(results[how][-1])}", file=sys.stderr)
        finally:
            await daemon.close()
            await close_engines(engines)
    return {
        "entries": entries,
        "synthesize": settings.kb.synthesize,
        "watch_interval_s": settings.kb.watch_interval_s,
        "watch_quiet_s": settings.kb.watch_quiet_s,
        "embedder": settings.kb.embedder,
        "llm": settings.llm.model,
        "first_build_s": round(first_build_s, 1),
        "engines_load_s": round(load_s, 1),
        "changes": results,
        "live_s_median": {
            how: round(statistics.median(r["live_s"] for r in rs), 2) for how, rs in results.items() if rs
        },
        "live_s_max": {how: max(r["live_s"] for r in rs) for how, rs in results.items() if rs},
        "target_s": 10.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=3, help="changes of each kind (saved, asked)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "kb_reload.json"))
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    load = os.getloadavg()[0]
    results = asyncio.run(run(args.entries, args.changes))
    report = {
        "command": "bench/kb_reload.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "load_average_1min": [load, os.getloadavg()[0]]},
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(results["live_s_median"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
