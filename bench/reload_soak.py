"""Live reload under load (issue 24): zero failed or mixed turns across 50 reloads while 5 clients
keep asking (the target).

    nice -n 10 .venv/bin/python bench/reload_soak.py [--reloads 50] [--clients 5] [--entries 2000]

The daemon is real (``assistant.daemon.Daemon`` with ``registry.index_source``: the build, the
swap between turns and the kb-updated announcement are the product's); its engines are the tests'
fakes (tests/fakes.py: LLM, transcriber, synthesizer) on a real index built in a tmp folder with the
tests' hashing embedder (tests/kb_support.py), so the figure is about reloading, not about models.

The clients ask the entries the first index answers on the faq route (before any reload; with the
hashing embedder a few collide). Every entry's answer carries the knowledge base's version (``v<r>``), and every reload rewrites every
answer with the next version, so a turn shows which index answered it. Each client, in its own
session (speaking: the synthesizer runs), asks entry after entry as fast as turns finish. A turn is:

- **failed**: it raised, ended with an error, did not take the faq route, or its reply is not the
  entry's answer at some version;
- **mixed**: its candidates (what retrieval returned) carry more than one version, or its reply a
  different version from them;
- **stale** (reported, not a failure): its version is older than the one live when it started.

Writes bench/results/reload_soak.json with the machine's load average at start and end.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fakes import FakeLanguageModel, FakeSynthesizer, FakeTranscriber  # noqa: E402
from kb_support import HashEmbedder, settings_in  # noqa: E402

from assistant import kb, registry  # noqa: E402
from assistant.daemon import Daemon  # noqa: E402
from assistant.stages import Engines  # noqa: E402

VERSION = re.compile(r"\bv(\d+)\b")


def word(n: int) -> str:
    """A made-up word of its own per ``n`` (the hashing embedder tells entries apart by words)."""
    return "".join("abcdefghijklmnop"[int(c, 16)] for c in hashlib.md5(str(n).encode()).hexdigest()[:8])


def question(i: int) -> str:
    return f"Where is the {word(4 * i)} {word(4 * i + 1)} {word(4 * i + 2)} {word(4 * i + 3)}?"


def answer(i: int, version: int) -> str:
    return f"The {word(4 * i)} is in room {100 + i}, v{version}."


def write_kb(table: Path, entries: int, version: int) -> None:
    """All entries at ``version``, saved whole and renamed, as an editor saves."""
    tmp = table.with_name(".faq.csv.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "question", "answer"])
        writer.writerows((f"room-{i}", question(i), answer(i, version)) for i in range(entries))
    os.replace(tmp, table)


def versions(texts: list[str]) -> set[int]:
    return {int(m) for t in texts for m in VERSION.findall(t)}


@dataclass
class Tally:
    turns: int = 0
    failed: list[str] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)
    stale: int = 0
    turn_ms: list[float] = field(default_factory=list)


async def faq_answered(daemon: Daemon, entries: int) -> list[int]:
    """The entries the first index answers on the faq route, before any reload: the hashing
    embedder's buckets collide now and then, and such an entry is a fact about the fake embedder,
    not about reloading."""
    session = daemon.open_session(speak=False)
    out = []
    try:
        for entry in range(entries):
            await session.ask(question(entry))
            assert session.task is not None
            await session.task
            if session.results[-1].route == "faq":
                out.append(entry)
    finally:
        daemon.end_session(session)
    return out


async def client(daemon: Daemon, n: int, asked: list[int], stop: asyncio.Event, live: list[int], tally: Tally) -> None:
    session = daemon.open_session(speak=True)
    i = n
    try:
        while not stop.is_set():
            entry = asked[i % len(asked)]
            i += 7
            live_at_start = live[0]
            t0 = time.perf_counter()
            try:
                await session.ask(question(entry))
                assert session.task is not None
                await session.task
            except Exception as err:  # a failed turn is what this bench counts
                tally.failed.append(f"client {n}: {type(err).__name__}: {err}")
                continue
            tally.turn_ms.append((time.perf_counter() - t0) * 1000)
            tally.turns += 1
            result = session.results[-1]
            reply = result.reply.strip()
            got = versions([reply])
            if result.error is not None or result.route != "faq" or len(got) != 1 or reply != answer(entry, min(got)):
                tally.failed.append(
                    f"client {n}: {question(entry)!r} -> route {result.route}, error {result.error}, {reply!r}"
                )
                continue
            seen = versions([p.answer or "" for p in result.candidates])
            if len(seen) != 1 or seen != got:
                tally.mixed.append(f"client {n}: reply v{got} candidates v{sorted(seen)}")
            if min(got) < live_at_start:
                tally.stale += 1
    finally:
        daemon.end_session(session)


async def run(reloads: int, clients: int, entries: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "kb"
        folder.mkdir()
        table = folder / "faq.csv"
        settings = settings_in(tmp, paths=[str(folder)], english_view="", watch=False)
        settings.queue.record = False
        settings.answer.verify_faq_below = 0.0
        settings.ahead.prefill = "off"
        write_kb(table, entries, 0)
        embedder = HashEmbedder(dims=1024)
        kb.build_index(settings, embedder=embedder, progress=False)
        retriever = kb.open_retriever(settings, embedder=embedder, view_for=lambda name: embedder)
        engines = Engines.of(
            retriever=retriever,
            llm=FakeLanguageModel(),
            transcriber=FakeTranscriber(),
            synthesizer=FakeSynthesizer(ms_per_char=1.0),
        )
        daemon = Daemon(settings, engines, index=registry.index_source(settings, retriever))
        asked = await faq_answered(daemon, entries)
        tally = Tally()
        live = [0]  # the version the daemon serves now (set once its reload has returned)
        reload_s: list[float] = []
        reload_errors: list[str] = []
        stop = asyncio.Event()
        t_start = time.perf_counter()
        try:
            async with asyncio.TaskGroup() as group:
                for n in range(clients):
                    group.create_task(client(daemon, n, asked, stop, live, tally))
                for r in range(1, reloads + 1):
                    await asyncio.to_thread(write_kb, table, entries, r)
                    t0 = time.perf_counter()
                    outcome = await daemon.reload_kb()
                    reload_s.append(time.perf_counter() - t0)
                    if not outcome.ok:
                        reload_errors.append(f"reload {r}: {outcome.code}: {outcome.message}")
                    else:
                        live[0] = r
                    await asyncio.sleep(0)  # the clients' turns go on between reloads
                stop.set()
        finally:
            await daemon.close()
        wall_s = time.perf_counter() - t_start
    return {
        "reloads": reloads,
        "reload_errors": reload_errors,
        "clients": clients,
        "entries": entries,
        "entries_asked": len(asked),
        "turns": tally.turns,
        "failed_turns": len(tally.failed),
        "mixed_turns": len(tally.mixed),
        "stale_turns": tally.stale,
        "examples": {"failed": tally.failed[:5], "mixed": tally.mixed[:5]},
        "reload_s_median": round(statistics.median(reload_s), 3) if reload_s else None,
        "reload_s_max": round(max(reload_s), 3) if reload_s else None,
        "turn_ms_median": round(statistics.median(tally.turn_ms), 1) if tally.turn_ms else None,
        "wall_s": round(wall_s, 1),
        "target": "zero failed or mixed turns across 50 reloads while 5 clients keep asking",
        "met": not tally.failed and not tally.mixed and not reload_errors and tally.turns > 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reloads", type=int, default=50)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "reload_soak.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = asyncio.run(run(args.reloads, args.clients, args.entries))
    report = {
        "bench": "reload_soak",
        "engines": "real daemon and index build; fake LLM, transcriber and synthesizer; hashing embedder (tests/)",
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
            "loadavg_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
            "nice": os.nice(0),
        },
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: results[k] for k in ("turns", "failed_turns", "mixed_turns", "stale_turns", "met")}))
    return 0 if results["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
