"""Knowledge bases nobody tuned for: leave-one-knowledge-base-out quality of the whole answer path.

    flock /tmp/bench.lock .venv/bin/python bench/kb_transfer.py [--sets banking77,debian-faq-en,...]
        [--split dev|test|all] [--systems prior,self] [--no-llm] [--out bench/results/kb_transfer.json]

The knowledge bases and their questions are ``bench/kb_sets.py`` (public data, assembled at run
time; questions written by hand or taken from the data set, never by the model that calibrates).
For each set and system the KB is built as a user would build it (``assistant kb build``, the
configured embedder and LLM), then every question of the split is asked as a typed question through
the daemon's own ``Turn`` (retrieval, routing, the FAQ check, generation, the reply gate), and the
turn is judged:

- answerable: ``right`` when the ``faq`` route read the expected entry, or the ``generated`` route
  had it among its sources and the reply holds one of the question's facts; else ``declined`` (the
  fallback line, or the model's decline line), ``wrong_faq`` (another entry read out verbatim: the
  costliest error), or ``wrong`` (generated without the fact);
- uncovered (in-domain and off-topic): ``declined``, or ``wrong_faq`` / ``answered``.

Systems (``SYSTEMS``): ``before``: the KB built without synthesis, scored with the calibration the
code ships (fitted on other data, some of it from these sets: a baseline, not a result); ``prior``:
built without synthesis, scored with a prior fitted across the *other* sets' synthetic questions;
``self``: built with synthetic questions, calibrated on itself, starting from that same prior;
``keys``: ``self``, with some synthetic questions indexed as extra phrasings too. A prior
fitted on several KBs is only ever reported on a KB it was not fitted on (``leave_one_out_priors``).

Also per set: recall@1 of the expected entry among the retrieved passages, and of a plain dense
baseline (the nearest key by the same embedder's cosine, no BM25, no classifier, no calibration), and
the build time. ``--no-llm`` stops after routing (no generation): how often the route could be right.

Writes bench/results/kb_transfer.json: per set, language pair and route, the command, the machine,
the load average, and every turn (question, route, sources, reply, verdict).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import kb_sets  # noqa: E402

from assistant import registry  # noqa: E402
from assistant.config import Settings  # noqa: E402
from assistant.stages import Engines, Passage  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "kb_transfer.json"
WORK = ROOT / "cache" / "kb_transfer"
"""Assembled sets and their indexes, kept between runs (a build is incremental)."""

SET_LANGUAGE = {"banking77": "en", "debian-faq-en": "en", "debian-faq-zh": "zh", "debian-reference": "both", "sample": "both"}

SYSTEMS = ("before", "prior", "self", "keys")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def matches(passage: Passage, expected: list[str]) -> bool:
    """Whether a retrieved passage is one of the expected places: an FAQ id, or ``source#phrase``."""
    for e in expected:
        if "#" in e:
            source, phrase = e.split("#", 1)
            if passage.source.endswith(source) and _squash(phrase) in _squash(passage.text):
                return True
        elif passage.id == e:
            return True
    return False


def has_fact(reply: str, facts: list[str]) -> bool:
    """One of the fact's spellings, standing alone (``bench/faithfulness.py``'s rule: "5" is not in "15")."""
    from faithfulness import has_fact as stands_alone

    return stands_alone(reply, facts)


def is_decline(reply: str) -> bool:
    """The fallback line, the model's decline line, or a paraphrase of either (``bench/faithfulness.py``)."""
    from faithfulness import declined

    return declined(reply)


def extractive(question: str, passage: Passage) -> str:
    """The extractive route under test: the passage's own sentence sharing the most words with the
    question (its first when none does), read verbatim: faithful by construction, no generation."""
    from assistant.kb.chunking import split_sentences
    from assistant.kb.lexical import tokenize

    text = passage.answer if passage.kind == "faq" and passage.answer else passage.text
    sentences = split_sentences(text) or [text]
    asked = set(tokenize(question))
    best = max(range(len(sentences)), key=lambda i: (len(asked & set(tokenize(sentences[i]))), -i))
    return sentences[best]


def pair(question: dict[str, Any]) -> str:
    kb_language = SET_LANGUAGE[question["kb"]]
    if kb_language == "both" or kb_language == question["language"]:
        return f"{question['language']}-same"
    return f"{question['language']}->{kb_language}"


def judge(question: dict[str, Any], route: str, sources: list[Passage], reply: str) -> str:
    declined = route == "fallback" or is_decline(reply)
    if question["kind"] != "answerable":
        if route == "faq":
            return "wrong_faq"
        return "declined" if declined else "answered"
    expected = question["expected"]
    if route == "faq":
        return "right" if sources and matches(sources[0], expected) else "wrong_faq"
    if declined:
        return "declined"
    if any(matches(p, expected) for p in sources) and has_fact(reply, question["fact"]):
        return "right"
    return "wrong"


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def settings_for(name: str, system: str) -> Settings:
    settings = registry.load_settings(ROOT / "assistant.toml")
    folder = WORK / system / name
    settings.kb.index_dir = str(folder / "index")
    settings.general.cache_dir = str(WORK / "cache")
    return settings


BEFORE = ROOT / "bench" / "kb_transfer" / "calibration-before.json"
"""The calibration every index had before issue 21 (fitted once on data written here, 2026-12-01):
system ``before`` keeps it whatever ships now."""


def build(name: str, system: str, *, llm: Any = None, prior: Any = None) -> tuple[Settings, dict[str, Any]]:
    if system == "before":
        from assistant.kb.calibration import Calibration

        prior = Calibration.from_json(json.loads(BEFORE.read_text(encoding="utf-8")))
    settings = settings_for(name, system)
    dest = WORK / "kb" / name
    if dest.exists():  # assembled again each run: the set's sources may have changed
        shutil.rmtree(dest)
    kb = kb_sets.assemble(name, dest)
    if system == "keys":  # the same questions as ``self``'s, not written twice
        mine, theirs = Path(settings.kb.index_dir) / "questions.jsonl", WORK / "self" / name / "index" / "questions.jsonl"
        if theirs.exists() and not mine.exists():
            mine.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(theirs, mine)
    started = time.perf_counter()
    report = registry.build_index(
        settings, [kb], progress=False, synthesize=system in ("self", "keys"), llm=llm, prior=prior,
        synthetic_keys=system == "keys",
    )  # fmt: skip
    seconds = time.perf_counter() - started
    return settings, {
        "entries": report.entries,
        "chunks": report.chunks,
        "keys": report.keys,
        "build_s": round(seconds, 2),
        "questions_written": report.questions_written,
        "synthesis_s": round(report.synthesis_s, 2),
        "calibration_s": round(report.calibration_s, 2),
        "calibrated": report.calibrated,
        "embedded_files": report.embedded_files,
        "warnings": report.warnings[:5],
    }


def family(name: str) -> str:
    """Sets made from one source (the Debian FAQ in English and its Chinese translation) are held out
    together: a prior fitted on one translation would have seen the other's content."""
    return "debian-faq" if name.startswith("debian-faq") else name


def leave_one_out_priors(llm: Any, names: list[str]) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """For each set of ``names``, a prior fitted on the *other* sets' synthetic questions (every set is
    built with synthesis first, so its questions are written and kept). Returns the priors, per set how
    many labelled queries it gave, and the prior fitted on all of them (what ships, ``--write-prior``)."""
    from assistant.kb import selfcal
    from assistant.kb.synthesis import QuestionCache, fingerprint, roles

    groups: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    offtopic = selfcal.offtopic_questions()
    for name in names:
        settings, _ = build(name, "self", llm=llm)
        kb = registry.open_retriever(settings).kb
        cache = QuestionCache(Path(settings.kb.index_dir))
        questions = {}
        for i, r in enumerate(kb.records):
            qs = cache.get(fingerprint(r)) or []
            questions[i] = [q for q, role in zip(qs, roles(i, qs, keys=False), strict=True) if role == "fit"]
        groups[name] = selfcal.labelled(kb, questions, offtopic)
        counts[name] = {g: len(v) for g, v in groups[name].items()}
    priors = {
        name: selfcal.fit_prior(
            [g for other, g in groups.items() if family(other) != family(name)], source=f"prior without {family(name)}"
        )
        for name in names
    }
    everything = selfcal.fit_prior(
        list(groups.values()),
        source=f"fitted {time.strftime('%Y-%m-%d')} by bench/kb_transfer.py --write-prior on the synthetic questions "
        f"of {', '.join(names)}",
    )
    return priors, counts, everything


def dense_baseline(retriever: Any, question: str, k: int = 1) -> list[int]:
    """The records of the ``k`` nearest keys by plain cosine (no BM25, classifier or calibration)."""
    kb = retriever.kb
    q = kb.embedder.embed([question])[0]
    order = np.argsort(-(kb._vectors @ q))
    out: list[int] = []
    for key in order:
        record = int(kb._key_record[key])
        if record not in out:
            out.append(record)
        if len(out) == k:
            break
    return out


# --------------------------------------------------------------------------------------------
# Asking
# --------------------------------------------------------------------------------------------


async def ask_all(
    settings: Settings, retriever: Any, llm: Any, questions: list[dict[str, Any]], *, use_llm: bool
) -> list[dict[str, Any]]:
    from assistant.routing import plan_answer, verify_faq
    from assistant.stages import Transcript
    from assistant.turn import Turn

    engines = Engines.of(retriever=retriever, llm=llm)
    out = []
    for q in questions:
        passages = retriever.search_sync(q["question"], k=5)
        row: dict[str, Any] = {
            "question": q["question"],
            "language": q["language"],
            "kind": q["kind"],
            "pair": pair(q),
            "top": [{"id": p.id, "score": p.score} for p in passages[:3]],
        }
        if q["kind"] == "answerable":
            row["recall_at_1"] = bool(passages) and matches(passages[0], q["expected"])
            baseline = dense_baseline(retriever, q["question"])
            row["dense_recall_at_1"] = bool(baseline) and matches(
                Passage(
                    id=retriever.kb.records[baseline[0]].id,
                    text=retriever.kb.records[baseline[0]].text,
                    source=retriever.kb.records[baseline[0]].source,
                    score=0.0,
                ),
                q["expected"],
            )
        t0 = time.perf_counter()
        if use_llm:
            result = await Turn(1, engines=engines, settings=settings).run(q["question"])
            route, sources, reply = result.route or "fallback", result.sources, result.reply
            if result.error is not None:
                reply = f"[error {result.error.code}]"
        else:
            plan = await plan_answer(Transcript(q["question"], q["language"]), [], engines=engines, settings=settings)
            plan = await verify_faq(plan, engines=engines, settings=settings)
            route, sources = plan.decision.route, plan.decision.passages
            # without generation, a generated turn with the right source counts as right (an upper bound)
            reply = (sources[0].answer or "") if route == "faq" else (" ".join(q.get("fact", [])[:1]) if route == "generated" else "")
        row.update(
            route=route,
            sources=[p.id for p in sources],
            reply=reply,
            verdict=judge(q, route, sources, reply),
            seconds=round(time.perf_counter() - t0, 2),
        )
        if route == "generated" and sources:
            row["extractive"] = extractive(q["question"], sources[0])
            row["verdict_extractive"] = judge(q, route, sources[:1], row["extractive"])
        out.append(row)
    return out


def summarise(turns: list[dict[str, Any]]) -> dict[str, Any]:
    def rate(rows: list[dict[str, Any]], verdict: str) -> float | None:
        return round(sum(r["verdict"] == verdict for r in rows) / len(rows), 3) if rows else None

    out: dict[str, Any] = {}
    answerable = [t for t in turns if t["kind"] == "answerable"]
    uncovered = [t for t in turns if t["kind"] != "answerable"]
    for p in sorted({t["pair"] for t in answerable}):
        rows = [t for t in answerable if t["pair"] == p]
        out[p] = {
            "n": len(rows),
            "right": rate(rows, "right"),
            "declined": rate(rows, "declined"),
            "wrong": rate(rows, "wrong"),
            "wrong_faq": rate(rows, "wrong_faq"),
            "recall_at_1": round(sum(r["recall_at_1"] for r in rows) / len(rows), 3),
            "dense_recall_at_1": round(sum(r["dense_recall_at_1"] for r in rows) / len(rows), 3),
            "routes": dict(Counter(r["route"] for r in rows)),
        }
    for kind in ("in-domain", "off-topic"):
        rows = [t for t in uncovered if t["kind"] == kind]
        if rows:
            out[kind] = {"n": len(rows), "declined": rate(rows, "declined"), "wrong_faq": rate(rows, "wrong_faq"),
                         "answered": rate(rows, "answered"), "routes": dict(Counter(r["route"] for r in rows))}
    out["wrong_faq_all"] = round(sum(t["verdict"] == "wrong_faq" for t in turns) / len(turns), 3) if turns else None
    generated = [t for t in turns if "verdict_extractive" in t]
    if generated:
        # the generated route's turns again, had the extractive route answered them instead of the LLM
        out["generated_llm_vs_extractive"] = {
            kind: {
                "n": len(rows),
                "llm": dict(Counter(r["verdict"] for r in rows)),
                "extractive": dict(Counter(r["verdict_extractive"] for r in rows)),
            }
            for kind in ("answerable", "uncovered")
            if (rows := [t for t in generated if (t["kind"] == "answerable") == (kind == "answerable")])
        }
    return out


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = registry.load_settings(ROOT / "assistant.toml")
    llm = registry.language_model(settings)
    priors: dict[str, Any] = {}
    if {"prior", "self", "keys"} & set(args.systems):
        priors, counts, everything = await asyncio.to_thread(leave_one_out_priors, llm, args.sets)
        print(f"leave-one-out priors fitted; labelled queries per set: {json.dumps(counts)}", file=sys.stderr)
        if args.write_prior:
            from assistant.kb import calibration

            target = calibration.PRIORS / "use-multilingual-v3.json"
            target.write_text(json.dumps(everything.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
            print(f"wrote {target}", file=sys.stderr)
    results: dict[str, Any] = {}
    for system in args.systems:
        for name in args.sets:
            questions = [q for q in kb_sets.questions(name) if args.split == "all" or q["split"] == args.split]
            if args.limit:
                questions = questions[: args.limit]
            settings, built = await asyncio.to_thread(build, name, system, llm=llm, prior=priors.get(name))
            retriever = registry.open_retriever(settings)
            t0 = time.perf_counter()
            turns = await ask_all(settings, retriever, llm, questions, use_llm=not args.no_llm)
            block = {"build": built, "ask_s": round(time.perf_counter() - t0, 1), "summary": summarise(turns), "turns": turns}
            results.setdefault(system, {})[name] = block
            print(f"{system} {name}: {json.dumps(block['summary'], ensure_ascii=False)}", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(kb_sets.KB_SETS), help="comma-separated set names")
    parser.add_argument("--split", choices=["dev", "test", "all"], default="dev")
    parser.add_argument("--systems", default="before,prior,self", help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--no-llm", action="store_true", help="routing only: no generation")
    parser.add_argument(
        "--write-prior", action="store_true", help="also write the prior fitted on every set's synthetic questions (what ships)"
    )
    parser.add_argument("--limit", type=int, default=0, help="at most this many questions per set (a quick look)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    args.sets = [s for s in args.sets.split(",") if s]
    args.systems = [s for s in args.systems.split(",") if s]
    for s in args.sets:
        if s not in kb_sets.KB_SETS:
            parser.error(f"unknown set {s!r}; known: {', '.join(kb_sets.KB_SETS)}")
    results = asyncio.run(run(args))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    report = {
        "command": "bench/kb_transfer.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": commit,
        "machine": machine(),
        "split": args.split,
        "results": {system: {name: {k: v for k, v in block.items()} for name, block in sets.items()} for system, sets in results.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps({s: {n: b["summary"] for n, b in sets.items()} for s, sets in results.items()}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
