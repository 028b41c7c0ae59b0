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

    synthesize = False if args.no_synthesis else None
    report = build_index(
        settings, args.paths or None, index_dir=args.index, strict=False, progress=True, synthesize=synthesize
    )
    if args.json:
        _print_json(report.to_json())
    else:
        err = sys.stderr
        print(
            f"indexed {report.files} file(s): {report.entries} FAQ entries, {report.chunks} document chunks, "
            f"{report.keys} vectors ({report.index_type}) in {report.seconds:.1f} s -> {report.index_dir}",
            file=err,
        )
        kept = f" ({report.reused_records} of their records unchanged, kept)" if report.reused_records else ""
        print(
            f"  read {report.embedded_files} changed file(s){kept}, reused {report.reused_files} unchanged", file=err
        )
        if report.calibrated == "self":
            print(
                f"  calibrated on its own synthetic questions ({report.questions_written} record(s) written now, "
                f"{report.synthesis_s:.1f} s; fit {report.calibration_s:.1f} s)",
                file=err,
            )
        else:
            print("  calibration: the prior (no synthetic questions)", file=err)
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
    from assistant.kb import index_path
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
        "calibration": manifest["calibration"],
        "calibration_fit": manifest.get("calibration_fit", "prior"),
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
    print(f"calibration ({out['calibration_fit']}): {out['calibration']['source']}")
    print("domain terms: " + ", ".join(out["domain_terms"]))
    return 0


def evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.kb.evaluate import evaluate as run_eval
    from assistant.kb.evaluate import load_cases
    from assistant.registry import open_retriever

    retriever = open_retriever(settings, index_dir=args.index)
    if not args.file:
        return _self_check(args, settings, retriever)
    cases = load_cases(Path(args.file))
    result = run_eval(cases, lambda q, k: retriever.search_sync(q, k=k))
    if args.json:
        _print_json(result.to_json())
        return 0
    print(f"n={result.n}  recall@1={result.recall_at_1:.3f}  recall@5={result.recall_at_5:.3f}  MRR={result.mrr:.3f}")
    for miss in result.misses:
        got = ", ".join(f"{g['id']} ({g['score']:.2f})" for g in miss["got"])
        print(f"  miss: {miss['query']!r} expected {miss['expected']} (rank {miss['rank']}); got {got}")
    return 0


def _self_check(args: argparse.Namespace, settings: Settings, retriever: Any) -> int:
    from assistant.kb.evaluate import self_check
    from assistant.kb.synthesis import QuestionCache, fingerprint, roles
    from assistant.routing import decide_route
    from assistant.stages import RetrieveError

    kb = retriever.kb
    cache = QuestionCache(kb.generation.parent)
    keys = bool(kb.manifest.get("synthetic_keys"))
    questions = {}
    for i, r in enumerate(kb.records):
        qs = cache.get(fingerprint(r)) or []
        questions[i] = [q.text for q, role in zip(qs, roles(i, qs, keys=keys), strict=True) if role == "check"]
    questions = {i: qs for i, qs in questions.items() if qs}
    if not questions:
        raise RetrieveError(
            "kb-no-questions",
            "this index has no synthetic questions to check itself with: build it with [kb] synthesize = true "
            "(the default), or give `kb eval` a file of your own questions",
        )

    def route(passages: list[Any]) -> tuple[str, list[Any]]:
        decision = decide_route(passages, settings)
        return decision.route, decision.passages

    check = self_check(kb, questions, route)
    if args.json:
        _print_json(check.to_json() | {"calibration_fit": kb.manifest.get("calibration_fit", "prior")})
        return 0
    a, u = check.answerable, check.uncovered
    fit = kb.manifest.get("calibration_fit", "prior")
    print(f"{check.questions} held-out questions the knowledge base wrote about itself (calibration: {fit}),")
    print(f"at faq_threshold {settings.answer.faq_threshold:g} and relevance_threshold {settings.answer.relevance_threshold:g}:")
    print(f"  asked as they are:      {a['right']:.0%} answered from their own entry, {a['declined']:.0%} declined, "
          f"{a['wrong_faq']:.0%} read out another entry, {a['wrong']:.0%} answered from other passages")
    print(f"  with their entry gone:  {u['declined']:.0%} declined, {u['wrong_faq']:.0%} read out another entry, "
          f"{u['answered']:.0%} answered from other passages")
    if check.duplicates:
        print("  the same question with different answers (which one is read out is chance; merge or reword them):")
        for d in check.duplicates[:15]:
            print(f"    {d['entry']} / {d['other']}: {d['question']!r}")
    if check.confusable:
        print("  confusable entries (a question of the first lands on the second):")
        for c in check.confusable[:15]:
            print(f"    {c['entry']} -> {c['lands_on']} ({c['share']:.0%}): {c['question']!r} / {c['other']!r}")
    print("(synthetic questions are easier than visitors' own: read these as an upper bound; docs/configuration.md)", file=sys.stderr)
    return 0


def queue(args: argparse.Namespace, settings: Settings) -> int:
    """``assistant kb queue``: the unanswered queue, identical questions counted, newest first."""
    import csv
    import sqlite3

    from assistant.kb.queue import QueueStore, summarize
    from assistant.registry import queue_path

    path = queue_path(settings)
    records = []
    if path.exists():
        try:
            store = QueueStore(path, create=False)
            try:
                records = store.records()
            finally:
                store.close()
        except sqlite3.Error as err:
            print(f"assistant: cannot read the unanswered queue {path}: {err}", file=sys.stderr)
            return 1
    groups = summarize(records)
    if args.csv:
        with open(args.csv, "w", encoding="utf-8", newline="") as f:
            out = csv.writer(f)
            out.writerow(["question", "count", "first_seen", "last_seen", "languages", "reasons", "routes", "reply", "candidates"])
            for g in groups:
                out.writerow(
                    [
                        g.question, g.count, _iso(g.first_s), _iso(g.last_s), " ".join(g.languages),
                        " ".join(g.reasons), " ".join(g.routes), g.reply,
                        "; ".join(f"{c.id} ({c.score:.2f})" for c in g.candidates),
                    ]
                )
        print(f"wrote {len(groups)} question(s) to {args.csv}", file=sys.stderr)
    shown = groups[: args.limit] if args.limit > 0 else groups
    if args.json:
        _print_json({"path": str(path), "records": len(records), "questions": [g.to_json() for g in shown]})
        return 0
    if not records:
        where = "" if path.exists() else " (no file yet)"
        print(f"the unanswered queue is empty: {path}{where}")
        return 0
    print(f"{len(groups)} question(s) in {len(records)} record(s), newest first ({path}):")
    for g in shown:
        seen = _local(g.last_s) if g.count == 1 else f"{_local(g.first_s)} .. {_local(g.last_s)}"
        print(f"{g.count:>4}x  {g.question}")
        print(f"       {', '.join(g.reasons)} · {'/'.join(g.languages)} · {'/'.join(r or '-' for r in g.routes)} · {seen}")
        if g.reply:
            print(f"       said: {g.reply[:160]}")
        if g.candidates:
            print("       best: " + ", ".join(f"{c.id} {c.score:.2f}" for c in g.candidates[:3]))
    if len(shown) < len(groups):
        print(f"... and {len(groups) - len(shown)} more (--limit 0 shows all, --csv FILE exports all)")
    return 0


def _iso(time_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time_s))


def _local(time_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(time_s))
