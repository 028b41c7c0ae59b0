"""How long the configured LLM takes to write a knowledge base's synthetic questions, per entry.

    flock /tmp/bench.lock .venv/bin/python bench/kb_synthesis.py [--entries 40] [--out bench/results/kb_synthesis.json]

The entries are the first ``--entries`` of the Debian FAQ in English and as many in Chinese (Debian
packages ``debian-faq``, ``debian-faq-zh-cn``; ``bench/kb_sets.py`` assembles them): public text
with long answers, the shape an owner's FAQ has. Each entry gets the questions a build writes
(``assistant.kb.synthesis``: two in its own language, one in the other), into an empty cache, so
every one is written. Reported per language and overall: seconds per entry, entries per minute,
the projected time per 100 entries, and how many questions survived parsing (issue 21's target:
<= 2 s per FAQ entry on 2 cores with the default LLM). The machine's load before and after is kept:
a figure taken while other work shares the cores is not the machine's.
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
sys.path.insert(0, str(ROOT / "bench"))

import kb_sets  # noqa: E402

from assistant import registry  # noqa: E402
from assistant.kb.ingest import read_file  # noqa: E402
from assistant.kb.synthesis import QuestionCache, QuestionWriter  # noqa: E402


def entries(language: str, n: int, folder: Path) -> list[Any]:
    kb = kb_sets.assemble(f"debian-faq-{language}", folder / language)
    records = [
        r
        for path in sorted(kb.rglob("*"))
        if path.is_file()
        for r in read_file(path, path.name, chunk_chars=400, overlap_chars=80).records
    ]
    return records[:n]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = registry.load_settings(ROOT / "assistant.toml")
    llm = registry.language_model(settings)
    writer = QuestionWriter(llm, name=settings.llm.model)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        await writer.write(entries("en", 1, Path(tmp) / "warm"), QuestionCache(Path(tmp) / "warm-cache"), progress=False)
        for language in ("en", "zh"):
            records = entries(language, args.entries, Path(tmp) / "kb")
            cache = QuestionCache(Path(tmp) / f"cache-{language}")
            per_entry: list[float] = []
            questions = 0
            started = time.perf_counter()
            for record in records:  # one at a time, to time each (a build does both languages per pass)
                t0 = time.perf_counter()
                written = await writer.write([record], cache, progress=False)
                per_entry.append(time.perf_counter() - t0)
                questions += sum(len(q) for q in written.values())
            total = time.perf_counter() - started
            out[language] = {
                "entries": len(records),
                "seconds": round(total, 1),
                "s_per_entry": round(total / len(records), 2),
                "s_per_entry_median": round(statistics.median(per_entry), 2),
                "s_per_100_entries": round(100 * total / len(records), 0),
                "questions_kept": questions,
                "questions_asked": 3 * len(records),
            }
            print(f"{language}: {json.dumps(out[language])}", file=sys.stderr)
    n = sum(v["entries"] for v in out.values())
    seconds = sum(v["seconds"] for v in out.values())
    out["all"] = {"entries": n, "s_per_entry": round(seconds / n, 2), "s_per_100_entries": round(100 * seconds / n)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=40, help="entries per language")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "kb_synthesis.json"))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    results = asyncio.run(run(args))
    settings = registry.load_settings(ROOT / "assistant.toml")
    report = {
        "command": "bench/kb_synthesis.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "llm": settings.llm.model,
        "machine": {"cores": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "target_s_per_entry": 2.0,
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
