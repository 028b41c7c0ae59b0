"""``assistant kb build|search|stats|eval``: the knowledge base from the command line.

Every ``--json`` output is one JSON object alone on standard output; progress and logs go to
standard error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from assistant.config import Settings


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=1))


def build(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.registry import build_index

    report = build_index(settings, args.paths or None, index_dir=args.index, strict=False, progress=True)
    if args.json:
        _print_json(report.to_json())
    else:
        err = sys.stderr
        print(
            f"indexed {report.files} file(s): {report.entries} FAQ entries, {report.chunks} document chunks, "
            f"{report.keys} vectors ({report.index_type}) in {report.seconds:.1f} s -> {report.index_dir}",
            file=err,
        )
        print(f"  embedded {report.embedded_files} changed file(s), reused {report.reused_files} unchanged", file=err)
        for name in report.removed_files:
            print(f"  removed (no longer present): {name}", file=err)
        for warning in report.warnings:
            print(f"  warning: {warning}", file=err)
        if report.skipped:
            print(f"  skipped {len(report.skipped)} file(s):", file=err)
            for s in report.skipped:
                print(f"    {s.file}: {s.reason}", file=err)
    if args.strict and report.skipped:
        print(f"assistant: {len(report.skipped)} file(s) skipped and --strict is set", file=sys.stderr)
        return 1
    return 0


def search(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.registry import open_retriever

    retriever = open_retriever(settings, index_dir=args.index)
    started = time.perf_counter()
    passages = retriever.search_sync(args.query, k=args.top_k)
    elapsed_ms = (time.perf_counter() - started) * 1000
    faq_t, rel_t = settings.answer.faq_threshold, settings.answer.relevance_threshold
    if args.json:
        _print_json(
            {
                "query": args.query,
                "search_ms": round(elapsed_ms, 2),
                "faq_threshold": faq_t,
                "relevance_threshold": rel_t,
                "passages": [
                    {
                        "id": p.id,
                        "kind": p.kind,
                        "score": p.score,
                        "text": p.text,
                        "answer": p.answer,
                        "source": p.source,
                        "title": p.title,
                        "section": p.section,
                        "page": p.page,
                        "language": p.language,
                    }
                    for p in passages
                ],
            }
        )
        return 0
    for i, p in enumerate(passages, start=1):
        mark = "FAQ " if p.kind == "faq" and p.score >= faq_t else ("    " if p.score >= rel_t else "(ir)")
        where = p.source + (f" p.{p.page}" if p.page else "") + (f" § {p.section}" if p.section else "")
        print(f"{i}. {p.score:.3f} {mark} [{p.id}] {where}")
        print(f"   {p.text if p.kind == 'faq' else p.text[:200]}")
        if p.answer:
            print(f"   -> {p.answer}")
    print(
        f"({elapsed_ms:.1f} ms; FAQ answer at >= {faq_t}, relevant at >= {rel_t}; (ir) = below relevance)",
        file=sys.stderr,
    )
    return 0


def stats(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.kb import calibration, index_path
    from assistant.kb.store import current_generation, read_manifest
    from assistant.stages import RetrieveError

    target = index_path(settings, args.index)
    generation = current_generation(target)
    if generation is None:
        raise RetrieveError("kb-missing", f"no knowledge-base index at {target}; build it with `assistant kb build`")
    manifest = read_manifest(generation)
    size = sum(p.stat().st_size for p in generation.rglob("*") if p.is_file())
    out = {
        "index_dir": str(target),
        "generation": generation.name,
        "built_at": manifest["built_at"],
        "embedder": manifest["embedder"],
        "index_type": manifest["index_type"],
        "counts": manifest["counts"],
        "size_bytes": size,
        "files": {name: {k: v for k, v in info.items() if k != "chunking"} for name, info in manifest["files"].items()},
        "skipped": manifest["skipped"],
        "calibration": calibration.for_embedder(manifest["embedder"]["identity"]).to_json(),
        "domain_terms": manifest.get("domain_terms", [])[:20],
    }
    if args.json:
        _print_json(out)
        return 0
    c = manifest["counts"]
    print(f"index {target} ({generation.name}, built {manifest['built_at']}, {size / 1e6:.1f} MB)")
    print(f"embedder: {manifest['embedder']['identity']} ({manifest['embedder']['dimensions']}-d), {manifest['index_type']}")
    print(f"{c['files']} files, {c['entries']} FAQ entries, {c['chunks']} chunks, {c['keys']} vectors")
    for name, info in manifest["files"].items():
        print(f"  {name}: {info['kind']}, {info['records']} records, sha256 {info['sha256'][:12]}")
    for s in manifest["skipped"]:
        print(f"  skipped {s['file']}: {s['reason']}")
    print(f"calibration: {out['calibration']['source']}")
    print("domain terms: " + ", ".join(out["domain_terms"]))
    return 0


def evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.kb.evaluate import evaluate as run_eval
    from assistant.kb.evaluate import load_cases
    from assistant.registry import open_retriever

    cases = load_cases(Path(args.file))
    retriever = open_retriever(settings, index_dir=args.index)
    result = run_eval(cases, lambda q, k: retriever.search_sync(q, k=k))
    if args.json:
        _print_json(result.to_json())
        return 0
    print(f"n={result.n}  recall@1={result.recall_at_1:.3f}  recall@5={result.recall_at_5:.3f}  MRR={result.mrr:.3f}")
    for miss in result.misses:
        got = ", ".join(f"{g['id']} ({g['score']:.2f})" for g in miss["got"])
        print(f"  miss: {miss['query']!r} expected {miss['expected']} (rank {miss['rank']}); got {got}")
    return 0
