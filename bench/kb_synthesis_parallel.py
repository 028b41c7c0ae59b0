"""Does llama.cpp batch decoding (n_parallel slots, concurrent requests) speed up question writing on 2 cores?

    flock /tmp/bench.lock .venv/bin/python bench/kb_synthesis_parallel.py [--out bench/results/kb_synthesis_parallel.json]

Eight question-writing prompts (the first debian-faq-en records, ``assistant.kb.synthesis``'s own
prompt, greedy) go through one in-process llama.cpp server with the default GGUF and 2 threads, with
1, 2 and 4 slots and as many concurrent requests. If batching paid, the time per prompt would fall
with the slots.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import kb_sets  # noqa: E402

from assistant import registry  # noqa: E402
from assistant.engines.llamacpp import resolve_gguf  # noqa: E402
from assistant.kb.ingest import read_file  # noqa: E402
from assistant.kb.synthesis import MAX_TOKENS, messages_for  # noqa: E402


def server(gguf: Path, slots: int) -> Any:
    import xllamacpp as xl

    params = xl.CommonParams()
    params.model.path = str(gguf)
    params.n_ctx = 1024 * slots
    params.n_parallel = slots
    params.n_batch = 256
    params.n_ubatch = 256
    params.cpuparams.n_threads = 2
    params.cpuparams_batch.n_threads = 2
    params.verbosity = 1
    params.hostnames = ["127.0.0.1"]
    params.api_keys = [secrets.token_hex(8)]
    return xl.Server(params)


def ask(srv: Any, messages: list[dict[str, str]]) -> tuple[str, dict[str, Any]]:
    request = {"messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0.0, "stream": False}
    reply = srv.handle_chat_completions(request)
    return reply["choices"][0]["message"]["content"], reply.get("usage", {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "kb_synthesis_parallel.json")
    args = parser.parse_args()
    settings = registry.load_settings(ROOT / "assistant.toml")
    gguf = resolve_gguf(settings)
    kb = kb_sets.assemble("debian-faq-en", Path(tempfile.mkdtemp()) / "en")
    records = [
        r
        for p in sorted(kb.rglob("*"))
        if p.is_file()
        for r in read_file(p, p.name, chunk_chars=400, overlap_chars=80).records
    ][:8]
    prompts = [[{"role": m.role, "content": m.content} for m in messages_for(r, "en", 2)] for r in records]
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    for slots in (1, 2, 4):
        srv = server(gguf, slots)
        ask(srv, prompts[0])  # warm
        t0 = time.perf_counter()
        with ThreadPoolExecutor(slots) as pool:
            outs = list(pool.map(lambda m, s=srv: ask(s, m), prompts))
        seconds = time.perf_counter() - t0
        tokens = sum(u.get("completion_tokens", 0) for _, u in outs)
        results[str(slots)] = {
            "s": round(seconds, 2),
            "s_per_prompt": round(seconds / len(prompts), 2),
            "completion_tokens": tokens,
        }
        print(slots, results[str(slots)], flush=True)
        del srv
    report = {
        "command": "python bench/kb_synthesis_parallel.py",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "model": gguf.name,
        "prompts": len(prompts),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "results_by_n_parallel": results,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
