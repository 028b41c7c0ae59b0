"""A large knowledge base, changed by one entry: how long until the change is built and calibrated.

    flock /tmp/bench.lock .venv/bin/python bench/kb_scale.py [--sizes 2000,10000] [--out bench/results/kb_scale.json]

For each size N: an FAQ table of N entries made of real sentences (Debian Reference and FAQ, English
and Chinese, as ``bench/retrieval.py``'s scale part: a question sentence and an answer sentence drawn
at random, seeded), built with the configured embedder and synthesis on. Writing questions for N
entries with the LLM would take hours here, so the first build finds them already written: each
entry's questions are filled in beforehand from its own question sentence by a cheap rule (its first
words, reordered; NOT what the LLM would write: only the time matters in this benchmark), which is
the state of a knowledge base whose questions were written by earlier builds. Then one entry's
answer changes and the index is built again with the real LLM, which writes that entry's questions:
the time of that build, per step, is the figure (issue 21's target: <= 10 s for 2,000 entries).

Writes bench/results/kb_scale.json: per size, the first build's time and the one-entry rebuild's
(total, writing, calibration), and the search latency after it.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant import registry  # noqa: E402
from assistant.kb.ingest import read_file  # noqa: E402
from assistant.kb.synthesis import QuestionCache, Synthetic, fingerprint, record_language  # noqa: E402

SOURCES = [Path("/usr/share/debian-reference"), Path("/usr/share/doc/debian/FAQ")]


def sentences() -> list[str]:
    from assistant.kb.chunking import split_sentences

    seen: dict[str, None] = {}
    for folder in SOURCES:
        for path in sorted(folder.glob("*.txt.gz")):
            text = gzip.open(path, "rt", encoding="utf-8", errors="replace").read()
            for para in re.split(r"\n\s*\n", text):
                for s in split_sentences(" ".join(para.split())):
                    if 15 <= len(s) <= 200:
                        seen[s] = None
    return list(seen)


def write_table(path: Path, n: int, pool: list[str], seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "question", "answer"])
        for i in range(n):
            q, a = rng.sample(pool, 2)
            w.writerow([f"e{i}", q, a])


def prefill(table: Path, index_dir: Path) -> int:
    """Questions for every entry by a cheap rule (see the module docstring): the state an index is in
    when earlier builds wrote them."""
    cache = QuestionCache(index_dir)
    records = read_file(table, table.name, chunk_chars=400, overlap_chars=80).records
    for r in records:
        fp = fingerprint(r)
        words = r.text.split()
        own = record_language(r)
        for language in ("en", "zh"):
            if cache.get_part(fp, language) is None:
                text = " ".join(reversed(words[:6])) if language == own else r.text[:20]
                cache.put_part(fp, language, [Synthetic(text, language)])
    return len(records)


def run(sizes: list[int]) -> dict[str, Any]:
    pool = sentences()
    settings = registry.load_settings(ROOT / "assistant.toml")
    llm = registry.language_model(settings)
    out: dict[str, Any] = {"sentences": len(pool)}
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            kb = tmp / "kb"
            kb.mkdir()
            table = kb / "faq.csv"
            write_table(table, n, pool)
            settings.kb.index_dir = str(tmp / "index")
            entries = prefill(table, tmp / "index")
            t0 = time.perf_counter()
            first = registry.build_index(settings, [kb], progress=False, synthesize=True, llm=llm)
            first_s = time.perf_counter() - t0
            rows = list(csv.reader(table.open(encoding="utf-8")))
            rows[n // 2 + 1][2] = "This answer changed: " + rows[n // 2 + 1][2]
            with table.open("w", encoding="utf-8", newline="") as f:
                csv.writer(f).writerows(rows)
            t0 = time.perf_counter()
            again = registry.build_index(settings, [kb], progress=False, synthesize=True, llm=llm)
            again_s = time.perf_counter() - t0
            retriever = registry.open_retriever(settings)
            queries = [r[1] for r in random.Random(3).sample(rows[1:], 50)]
            latencies = []
            for q in queries:
                s0 = time.perf_counter()
                retriever.search_sync(q, k=5)
                latencies.append((time.perf_counter() - s0) * 1000)
            out[str(n)] = {
                "entries": entries,
                "first_build_s": round(first_s, 1),
                "first_build": first.to_json() | {"warnings": first.warnings[:3]},
                "one_entry_rebuild_s": round(again_s, 1),
                "one_entry_rebuild": {k: v for k, v in again.to_json().items() if k not in ("skipped", "removed_files")},
                "search_ms_median": round(statistics.median(latencies), 1),
                "search_ms_p90": round(sorted(latencies)[int(0.9 * len(latencies)) - 1], 1),
            }
            print(f"{n}: {json.dumps(out[str(n)], ensure_ascii=False)[:600]}", file=sys.stderr)
    llm.close()  # type: ignore[attr-defined]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,10000")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "kb_scale.json"))
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    load = os.getloadavg()[0]
    results = run([int(s) for s in args.sizes.split(",")])
    report = {
        "command": "bench/kb_scale.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "load_average_1min": [load, os.getloadavg()[0]]},
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
