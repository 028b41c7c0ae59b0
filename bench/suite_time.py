"""How long the fast test suite takes, beside a baseline commit in the same run.

    flock /tmp/bench.lock .venv/bin/python bench/suite_time.py --baseline COMMIT [--rounds 3]

Checks the baseline commit out into a temporary git worktree (with this tree's ``models/``) and runs the fast suite
(``make test-fast``'s selection: not embedded, not slow, not browser) there and in this tree, in
alternating rounds, with this tree's virtual environment; the worktree goes first on ``PYTHONPATH`` so
its own ``assistant`` package is the one tested. One warm-up run per tree comes first and is not
counted (the fresh worktree has no bytecode yet), and the tree that goes first alternates by round.
Reports per tree the wall time of each round, the median, pytest's own count of passed and
deselected tests, and the ratio of the medians; a round that did not pass is reported and no ratio is
given. Writes bench/results/suite_time.json. It measures the developers' test suite, not the
product, so ``make bench`` leaves it out.

Wall time includes collection (importing the test modules), which is part of what a developer waits
for. Run it on a quiet machine: the figures are seconds of a shared 2-core host.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SELECTION = "not embedded and not slow and not browser"


def run_suite(tree: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH", "")) if p))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", SELECTION, "-p", "no:cacheprovider"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    wall_s = time.perf_counter() - started
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    counts = {name: int(n) for n, name in re.findall(r"(\d+) (passed|failed|deselected|skipped|error)", summary)}
    failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return {"wall_s": round(wall_s, 2), "returncode": done.returncode, "summary": summary, **counts, "failed": failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="counted runs per tree, alternating (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "suite_time.json")
    args = parser.parse_args()

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.split("\n")
    dirty = [line for line in dirty if line.strip()]
    with tempfile.TemporaryDirectory(prefix="suite-baseline-") as tmp:
        baseline_tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(baseline_tree), args.baseline], cwd=ROOT, check=True)
        # the model packs are ignored by git: the baseline sees the same ones as this tree
        if (ROOT / "models").exists():
            (baseline_tree / "models").symlink_to(ROOT / "models")
        try:
            trees = {"baseline": baseline_tree, "head": ROOT}
            warm_up = {name: run_suite(tree) for name, tree in trees.items()}
            print(f"warm-up: {json.dumps({k: v['wall_s'] for k, v in warm_up.items()})}", flush=True)
            runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "head": []}
            for n in range(args.rounds):
                order = list(trees) if n % 2 == 0 else list(reversed(trees))
                for name in order:
                    result = run_suite(trees[name])
                    runs[name].append(result)
                    print(f"round {n + 1} {name}: {result['wall_s']} s  {result['summary']}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline_tree)], cwd=ROOT, check=False)
            subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)
    medians = {name: statistics.median(r["wall_s"] for r in rs) for name, rs in runs.items()}
    all_passed = all(r["returncode"] == 0 and r.get("passed") for rs in runs.values() for r in rs)
    report = {
        "command": "bench/suite_time.py " + " ".join(sys.argv[1:]),
        "selection": SELECTION,
        "baseline": args.baseline,
        "head": head,
        "head_uncommitted": dirty,
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()},
        "warm_up": warm_up,
        "runs": runs,
        "all_passed": all_passed,
        "median_wall_s": medians,
        "ratio_head_to_baseline": round(medians["head"] / medians["baseline"], 3) if all_passed else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({"median_wall_s": medians, "ratio": report["ratio_head_to_baseline"], "all_passed": all_passed}))


if __name__ == "__main__":
    main()
