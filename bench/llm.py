"""LLM build benchmark: llama.cpp compiled for this CPU vs PyPI's portable wheel, in one run.

    flock /tmp/bench.lock .venv/bin/python bench/llm.py [--models qwen2.5-0.5b,qwen2.5-1.5b] [--rounds 3]

Why: a generated answer cannot start before the model has processed its grounded prompt, and on two
cores that is most of the wait (bench/latency.py's trace: retrieval -> first token). PyPI's xllamacpp
wheel is built for any x86-64 (AVX2 at most); ``scripts/build-llamacpp`` (run by ``make setup``)
compiles the same version with ``-march=native``. This measures what that buys.

Builds: ``native`` (what the venv has, normally the native build) and ``portable`` (PyPI's wheel, kept
by scripts/build-llamacpp in build/xllamacpp-portable/ and put first on PYTHONPATH). Each round starts
one worker process per build and model, the builds taking turns, so load on a shared machine hits
them alike. A worker loads the model through the daemon's own engine (``LlamaCppModel``, [llm]
threads) and streams one reply per prompt:

- prompts: the real grounded prompts of the sample knowledge base's questions (retrieval and
  ``prompts.build_messages`` as the turn does, on the generated route; bench/faithfulness.jsonl),
  each asked once with nothing cached but the system prompt (as after a question nobody prefilled);
- ``prompt_tok_s``: prompt tokens processed / time to the first token; ``first_token_ms``: wall time
  from the request to the first text delta; ``decode_tok_s``: text deltas after the first / the time
  they took (llama.cpp streams about one token per delta).

Writes bench/results/llm.json with medians per build and model, and ``ratio`` (native / portable).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PORTABLE = ROOT / "build" / "xllamacpp-portable"
OUT = ROOT / "bench" / "results" / "llm.json"


async def grounded_prompts(n: int) -> list[list[dict[str, str]]]:
    """The chats the turn would send for the first ``n`` dev questions that take the generated route."""
    from assistant import prompts, registry
    from assistant.registry import load_settings as load
    from assistant.routing import answer_language, decide_route
    from assistant.stages import Transcript

    settings = load(None)
    retriever = registry.open_retriever(settings)
    out: list[list[dict[str, str]]] = []
    for line in (ROOT / "bench" / "faithfulness.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        question = json.loads(line)["question"]
        passages = await retriever.search(question, k=settings.kb.top_k)
        decision = decide_route(passages, settings)
        if decision.route != "generated":
            continue
        language = answer_language(Transcript(question, ""))
        messages = prompts.build_messages(question, decision.passages, [], language=language)
        out.append([{"role": m.role, "content": m.content} for m in messages])
        if len(out) == n:
            break
    return out


def worker(model: str, prompts_file: Path, max_tokens: int) -> dict[str, Any]:
    """One build, one model: load, warm the system prompt, then each prompt once."""
    import xllamacpp

    from assistant.engines.llamacpp import LlamaCppModel
    from assistant.registry import load_settings as load
    from assistant.stages import Message

    settings = load(None, environ={**os.environ, "ASSISTANT__LLM__MODEL": model})
    chats = json.loads(prompts_file.read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    llm = LlamaCppModel.from_settings(settings)
    load_s = time.perf_counter() - t0
    info = xllamacpp.get_system_info()

    async def run() -> list[dict[str, float]]:
        rows = []
        for i, chat in enumerate([chats[0], *chats]):
            messages = [Message(m["role"], m["content"]) for m in chat]
            before = dict(llm.prompt_tokens)
            start = time.perf_counter()
            first = last = 0.0
            deltas = 0
            async for _delta in llm.stream(messages, max_tokens=max_tokens):
                last = time.perf_counter()
                if not deltas:
                    first = last
                deltas += 1
            if i == 0 or not deltas:
                continue  # the first chat only caches the system prompt (as the daemon's warm-up does)
            new = llm.prompt_tokens["new"] - before["new"]
            ttft = first - start
            rows.append({
                "first_token_ms": ttft * 1000.0,
                "prompt_tokens": new,
                "prompt_tok_s": new / ttft if ttft > 0 else 0.0,
                "decode_tok_s": (deltas - 1) / (last - first) if deltas > 1 and last > first else 0.0,
            })  # fmt: skip
        return rows

    rows = asyncio.run(run())
    llm.close()
    return {"load_s": load_s, "system_info": info, "replies": rows}


def run_worker(build: str, model: str, prompts_file: Path, max_tokens: int) -> dict[str, Any]:
    env = dict(os.environ)
    if build == "portable":
        env["PYTHONPATH"] = os.pathsep.join([str(PORTABLE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, __file__, "--worker", model, "--prompts-file", str(prompts_file), "--max-tokens", str(max_tokens)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{build} worker for {model} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median(rows: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="qwen2.5-0.5b,qwen2.5-1.5b", help="model packs (those missing are skipped)")
    parser.add_argument("--rounds", type=int, default=3, help="worker processes per build and model")
    parser.add_argument("--prompts", type=int, default=8, help="grounded prompts per worker")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--prompts-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.prompts_file, args.max_tokens)))
        return 0

    from assistant.models import model_dir
    from assistant.registry import load_settings as load

    settings = load(None)
    models = [m for m in args.models.split(",") if (model_dir(settings, m) / "model.gguf").is_file()]
    builds = ["native", "portable"] if (PORTABLE / "xllamacpp").is_dir() else ["native"]
    if builds == ["native"]:
        print("bench/llm.py: no portable wheel in build/xllamacpp-portable (run scripts/build-llamacpp): native only")
    chats = asyncio.run(grounded_prompts(args.prompts))
    prompts_file = ROOT / "cache" / "bench-llm-prompts.json"
    prompts_file.parent.mkdir(parents=True, exist_ok=True)
    prompts_file.write_text(json.dumps(chats, ensure_ascii=False), encoding="utf-8")
    load_start = os.getloadavg()[0]
    started = time.time()
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {m: {b: [] for b in builds} for m in models}
    for r in range(args.rounds):
        for model in models:
            for build in builds if r % 2 == 0 else builds[::-1]:
                result = run_worker(build, model, prompts_file, args.max_tokens)
                raw[model][build].append(result)
                rows = result["replies"]
                print(
                    f"round {r + 1} {model} {build}: first token {median(rows, 'first_token_ms')} ms, "
                    f"prompt {median(rows, 'prompt_tok_s')} tok/s, decode {median(rows, 'decode_tok_s')} tok/s",
                    flush=True,
                )
    report: dict[str, Any] = {
        "benchmark": "llm-build",
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "bench/llm.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}",
        "load_average_1min": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "threads": settings.llm.threads,
        "prompts": len(chats),
        "seconds": round(time.time() - started, 1),
        "models": {},
    }
    for model in models:
        entry: dict[str, Any] = {}
        for build in builds:
            rows = [row for result in raw[model][build] for row in result["replies"]]
            entry[build] = {
                "system_info": raw[model][build][0]["system_info"].strip(),
                "load_s": round(statistics.median(x["load_s"] for x in raw[model][build]), 2),
                "replies": len(rows),
                "prompt_tokens_median": median(rows, "prompt_tokens"),
                "first_token_ms": median(rows, "first_token_ms"),
                "prompt_tok_s": median(rows, "prompt_tok_s"),
                "decode_tok_s": median(rows, "decode_tok_s"),
            }
        if "portable" in entry:
            n, p = entry["native"], entry["portable"]
            entry["ratio"] = {
                "prompt_tok_s": round(n["prompt_tok_s"] / p["prompt_tok_s"], 2),
                "decode_tok_s": round(n["decode_tok_s"] / p["decode_tok_s"], 2),
                "first_token_speedup": round(p["first_token_ms"] / n["first_token_ms"], 2),
            }
        report["models"][model] = entry
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(report["models"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
