"""The same question, the same answer: how many different replies repeated questions get.

    flock /tmp/bench.lock .venv/bin/python bench/repeat.py [--rounds 5] [--temperatures 0,0.2]

Asks the generated-route questions of ``bench/faithfulness.jsonl`` (the sample knowledge base) through
the daemon's own ``Turn`` with the embedded LLM, round after round, the questions interleaved (so the
LLM's prompt cache holds other prompts in between, as in a daemon serving visitors), once per
temperature in the same run. Reports per temperature how many questions got more than one distinct
reply, and how many got a reply that was right in one round and wrong in another (by the question's
facts). Writes bench/results/repeat.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from faithfulness import has_fact  # noqa: E402

from assistant import registry  # noqa: E402
from assistant.routing import plan_answer  # noqa: E402
from assistant.stages import Engines, Transcript  # noqa: E402
from assistant.turn import Turn  # noqa: E402


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = registry.load_settings(ROOT / "assistant.toml")
    settings = dataclasses.replace(settings, kb=dataclasses.replace(settings.kb, index_dir=args.index, synthesize=False))
    registry.build_index(settings, [ROOT / "kb"], progress=False)
    retriever = registry.open_retriever(settings)
    llm = registry.language_model(settings)
    engines = Engines.of(retriever=retriever, llm=llm)
    rows = [json.loads(line) for line in (ROOT / "bench" / "faithfulness.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = []
    for row in rows:
        if not row.get("facts"):
            continue
        plan = await plan_answer(Transcript(row["question"], ""), [], engines=engines, settings=settings)
        if plan.decision.route == "generated":
            questions.append(row)
    questions = questions[: args.questions]
    out: dict[str, Any] = {}
    for temperature in args.temperatures:
        tuned = dataclasses.replace(settings, llm=dataclasses.replace(settings.llm, temperature=temperature))
        llm.temperature = temperature  # type: ignore[attr-defined]
        replies: dict[str, list[str]] = {q["question"]: [] for q in questions}
        for _ in range(args.rounds):
            for q in questions:
                result = await Turn(1, engines=engines, settings=tuned).run(q["question"])
                replies[q["question"]].append(result.reply)
        varied = {q: r for q, r in replies.items() if len(set(r)) > 1}
        facts = {q["question"]: q["facts"] for q in questions}
        flipped = {
            q: r for q, r in replies.items()
            if len({all(has_fact(reply, alts) for alts in facts[q]) for reply in r}) > 1
        }  # fmt: skip
        out[str(temperature)] = {
            "questions": len(questions),
            "rounds": args.rounds,
            "with_more_than_one_reply": len(varied),
            "right_in_one_round_wrong_in_another": len(flipped),
            "replies": {q: sorted(set(r)) for q, r in varied.items()},
        }
        print(f"temperature {temperature}: {len(varied)} of {len(questions)} questions got different replies, "
              f"{len(flipped)} right in one round and wrong in another", file=sys.stderr)
    llm.close()  # type: ignore[attr-defined]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--temperatures", default="0,0.2")
    parser.add_argument("--index", default=str(ROOT / "cache" / "repeat-index"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "repeat.json"))
    args = parser.parse_args()
    args.temperatures = [float(t) for t in args.temperatures.split(",")]
    started = time.time()
    results = asyncio.run(run(args))
    report = {
        "command": "bench/repeat.py " + " ".join(sys.argv[1:]),
        "machine": {"cores": os.cpu_count(), "load_average_1min": os.getloadavg()[0]},
        "seconds": round(time.time() - started, 1),
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
