"""Faithfulness benchmark: does the assistant answer from the knowledge base, and only from it?

Runs every question in ``bench/faithfulness.jsonl`` through the real turn (``assistant.turn.Turn``:
query rewriting, retrieval, routing, grounded prompt, the LLM streaming) over the sample knowledge
base ``kb/``, once per embedded model, and scores the answers:

- fact accuracy: answerable questions whose answer contains every required fact (each fact is a list
  of acceptable spellings: "18:30" / "六点半"),
- decline rate: unanswerable questions (the answer is not in the KB) that were declined (the fallback
  line, or the model saying the passages do not cover it) instead of answered,
- language match: answers in the question's language (URLs and e-mail addresses ignored),
- mean spoken length: characters (zh) / words (en) and estimated seconds of speech.

Systems: one per model (``qwen2.5-0.5b``, ``qwen2.5-1.5b``: the deployed routing, so FAQ hits are
answered verbatim and the rest by the model; a per-route breakdown shows each route's share; the
``[answer]`` values the config leaves ``"auto"`` are each model's own, assistant.tuning.tune), plus
``faq``: no LLM at all, the stored answer of the best FAQ match when it clears the relevance
threshold, else the fallback line (what retrieval alone achieves).

Every miss is classed (``miss`` per answer, ``misses`` per system) by what the answer was built on:
``retrieval`` (the fallback line, a wrong FAQ entry answered verbatim, or passages given to the model
that lack a fact) or ``generation`` (every fact was in the passages the model saw, and its answer lacks
one; or an unanswerable question reached the model and it answered). A ``generation`` miss can still be
a scoring one (right answer, spelled in a way the fact list does not accept): read those answers.
Each answer also records what retrieval returned with scores and ``expected_sources`` (the entries
that hold the facts), for whoever works on retrieval.

Two question sets: ``dev`` (``bench/faithfulness.jsonl``, 78 questions; the prompts in
``assistant/prompts.py`` were tuned on its questions that reach the model) and ``holdout``
(``bench/faithfulness_holdout.jsonl``, 30 questions written before that tuning and not looked at
while tuning). Report both. Answers are sampled at the configured temperature (0.2), so a model's
figure moves by a question or two between runs; ``--rounds 3`` asks each question three times and
reports each round beside the pooled figures; ``--temperature 0`` repeats them.

    flock /tmp/bench.lock .venv/bin/python bench/faithfulness.py --set dev       # faq + both models
    flock /tmp/bench.lock .venv/bin/python bench/faithfulness.py --set holdout
    .venv/bin/python bench/faithfulness.py --model qwen2.5-0.5b --split 1/4      # a quarter, while iterating
    .venv/bin/python bench/faithfulness.py --model qwen2.5-1.5b --ids en-badge-fee zh-overtime-leave

Writes ``bench/results/faithfulness.json`` (dev) or ``bench/results/faithfulness-holdout.json``
(metrics per system and every answer, for inspection); ``--merge`` adds systems to an existing file;
``--combine`` pools both sets' answers per system into ``bench/results/faithfulness-combined.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import platform
import re
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant import prompts  # noqa: E402
from assistant.config import TUNED_KEYS, Settings  # noqa: E402
from assistant.language import detect_language  # noqa: E402
from assistant.registry import load_settings as load  # noqa: E402
from assistant.stages import Message, Passage  # noqa: E402

QUESTIONS = ROOT / "bench" / "faithfulness.jsonl"
OUT = ROOT / "bench" / "results" / "faithfulness.json"
SETS = {
    "dev": (QUESTIONS, OUT),
    "holdout": (
        ROOT / "bench" / "faithfulness_holdout.jsonl",
        ROOT / "bench" / "results" / "faithfulness-holdout.json",
    ),
}
MODELS = ["qwen2.5-0.5b", "qwen2.5-1.5b"]

ZH_CHARS_PER_S = 4.5
"""Typical Mandarin TTS speaking rate (characters per second)."""
EN_WORDS_PER_S = 2.6
"""Typical English TTS speaking rate (words per second)."""

DECLINE_MARKERS = [
    # what the prompts tell the model to say, what the fallback line says, and common paraphrases
    "没有这个问题的答案", "没有相关", "没有提到", "没有提供", "没有关于", "无法回答", "回答不了", "不知道",
    "不清楚", "请咨询前台", "咨询前台工作人员", "资料里没有", "资料中没有",
    "don't cover", "do not cover", "doesn't cover", "does not cover", "don't know", "do not know",
    "not sure", "no information", "not mentioned", "doesn't say", "does not say", "can't find",
    "cannot find", "can't answer", "cannot answer", "ask the front desk", "not covered",
    "don't have information", "do not have information",
]  # fmt: skip
_URLISH = re.compile(r"(https?://\S+|\b[\w.-]+@[\w.-]+\.\w+|\b[\w-]+(\.[\w-]+)+\.(com|cn|net|org)\b)", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Scoring (pure functions)
# --------------------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """NFKC (full-width digits and colons become ASCII), lower case, no thousands separators."""
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # not \b: "2,000元" has no word boundary


def has_fact(answer: str, alternatives: list[str]) -> bool:
    """Any spelling present. Latin/number spellings must stand alone ("5" does not match "15"), and a
    spelling that starts or ends with a digit must not continue a number ("5天" is not in "15天")."""
    text = normalise(answer)
    for alt in alternatives:
        alt_n = normalise(alt)
        if re.fullmatch(r"[\x00-\x7f]+", alt_n):
            if re.search(rf"(?<![a-z0-9]){re.escape(alt_n)}(?![a-z0-9])", text):
                return True
        else:
            before = r"(?<![0-9.])" if alt_n[:1].isdigit() else ""
            after = r"(?![0-9])" if alt_n[-1:].isdigit() else ""
            if re.search(before + re.escape(alt_n) + after, text):
                return True
    return False


def declined(answer: str) -> bool:
    text = normalise(answer)
    return any(marker in text for marker in DECLINE_MARKERS)


def answer_language(answer: str, default: str) -> str:
    return detect_language(_URLISH.sub(" ", answer), default=default)


def spoken_units(answer: str, language: str) -> int:
    """Characters for Chinese (Han characters plus Latin words), words for English."""
    if language == "zh":
        return len(re.findall(r"[\u3400-\u9fff]", answer)) + len(re.findall(r"[A-Za-z0-9]+", answer))
    return len(re.findall(r"[A-Za-z0-9'’-]+", answer))


def spoken_seconds(answer: str, language: str) -> float:
    units = spoken_units(answer, language)
    return units / ZH_CHARS_PER_S if language == "zh" else units / EN_WORDS_PER_S


def score(item: dict[str, Any], answer: str) -> dict[str, Any]:
    language = detect_language(item["question"])
    answerable = item.get("answerable", True)
    out: dict[str, Any] = {
        "language": language,
        "answer_language": answer_language(answer, language),
        "spoken_units": spoken_units(answer, language),
        "spoken_s": round(spoken_seconds(answer, language), 2),
        "declined": declined(answer),
    }
    out["language_ok"] = out["answer_language"] == language
    if answerable:
        missing = [facts[0] for facts in item["facts"] if not has_fact(answer, facts)]
        out["missing_facts"] = missing
        out["facts_ok"] = not missing
    return out


def passage_content(passage: Passage) -> str:
    """What the model (or the faq route) gets to read from one passage."""
    return " ".join(t for t in (passage.title, passage.section, passage.text, passage.answer or "") if t)


def fact_present(content: str, alternatives: list[str]) -> bool:
    """A fact is in a passage when one of its spellings is, or, for a numeric fact, its number is
    (an English question may be answered from a Chinese passage: "4 hours" from "4小时")."""
    if has_fact(content, alternatives):
        return True
    numbers = re.findall(r"\d+(?:[.:]\d+)?", normalise(alternatives[0]))
    text = normalise(content)
    return bool(numbers) and all(re.search(rf"(?<![\d.:]){re.escape(n)}(?![\d]|[.:]\d)", text) for n in numbers)


def _overlap(question: str, content: str) -> int:
    """Shared Han bigrams plus shared English words of four letters or more: how much a record is
    about what the question asks (to choose among the records that merely contain the number)."""
    q, c = normalise(question), normalise(content)
    han_q = re.findall(r"[\u3400-\u9fff]", q)
    shared = sum(1 for a, b in itertools.pairwise(han_q) if a + b in c)
    return shared + len(set(re.findall(r"[a-z]{4,}", q)) & set(re.findall(r"[a-z]{4,}", c)))


def expected_sources(item: dict[str, Any], records: list[Any]) -> list[str]:
    """The knowledge-base entries that hold the answer: for each fact, of the records (FAQ entries and
    document chunks) that contain it (a spelling in the question's language first, else its number in
    any), the ones closest to the question. "50" is in the badge entry and the per-diem entry; the
    question about a new badge shares words only with the first."""
    if not item.get("answerable", True):
        return []
    language = detect_language(item["question"])
    out: list[str] = []
    for facts in item["facts"]:
        holding = [r for r in records if r.language == language and has_fact(passage_content(r), facts)]
        holding = holding or [r for r in records if fact_present(passage_content(r), facts)]
        if not holding:
            continue
        overlap = {r.id: _overlap(item["question"], passage_content(r)) for r in holding}
        best = max(overlap.values())
        out.extend(r.id for r in holding if overlap[r.id] == best and r.id not in out)
    return out


def classify_miss(item: dict[str, Any], row: dict[str, Any], shown: list[Passage]) -> str | None:
    """Why an answer failed, judged from what the answer was built on (``shown``: the passages the
    route used), or ``None`` when it did not fail.

    - ``retrieval``: the right passages never reached the answer: the fallback line, a wrong FAQ
      entry answered verbatim, or passages given to the model that do not hold every fact; for an
      unanswerable question, an FAQ entry answered verbatim (nothing could decline it).
    - ``generation``: every fact was in front of the model and the answer lacks one (declined, too
      terse, wrong), or an unanswerable question reached the model and it answered anyway.
    A ``generation`` miss may still be a ``scoring`` one (the answer right, spelled in a way the
    fact list does not accept): that needs a reader, so the report lists the answer next to it.
    """
    if not item.get("answerable", True):
        if row["declined"]:
            return None
        return "generation" if row["route"] == "generated" else "retrieval"
    if row["facts_ok"]:
        return None
    if row["route"] != "generated":
        return "retrieval"
    content = " ".join(passage_content(p) for p in shown)
    return "generation" if all(fact_present(content, facts) for facts in item["facts"]) else "retrieval"


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]

    def share(items: list[dict[str, Any]], key: str) -> float | None:
        return round(sum(1 for r in items if r[key]) / len(items), 4) if items else None

    summary: dict[str, Any] = {
        "questions": len(rows),
        "fact_accuracy": share(answerable, "facts_ok"),
        "decline_rate": share(unanswerable, "declined"),
        "false_decline_rate": share(answerable, "declined"),
        "language_match": share(rows, "language_ok"),
        "mean_spoken_s": round(sum(r["spoken_s"] for r in rows) / len(rows), 2) if rows else None,
        "mean_spoken_chars_zh": _mean([r["spoken_units"] for r in rows if r["language"] == "zh"]),
        "mean_spoken_words_en": _mean([r["spoken_units"] for r in rows if r["language"] == "en"]),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
    }
    for language in ("zh", "en"):
        subset = [r for r in rows if r["language"] == language]
        summary[f"fact_accuracy_{language}"] = share([r for r in subset if r["answerable"]], "facts_ok")
        summary[f"decline_rate_{language}"] = share([r for r in subset if not r["answerable"]], "declined")
    routes: dict[str, dict[str, Any]] = {}
    for route in sorted({str(r.get("route")) for r in rows}):
        subset = [r for r in rows if str(r.get("route")) == route]
        routes[route] = {
            "questions": len(subset),
            "fact_accuracy": share([r for r in subset if r["answerable"]], "facts_ok"),
            "decline_rate": share([r for r in subset if not r["answerable"]], "declined"),
        }
    summary["routes"] = routes
    summary["misses"] = {
        cls: sorted(r["id"] for r in rows if r.get("miss") == cls) for cls in ("retrieval", "generation")
    }
    # Latency of the LLM route only (FAQ and fallback answers are instant); on a shared, loaded CPU
    # these say more about the machine than about the model.
    generated = [r.get("timings_ms") or {} for r in rows if r.get("route") == "generated"]
    summary["median_generated_first_token_ms"] = _median([t["first_token"] for t in generated if t.get("first_token")])
    summary["median_generated_total_ms"] = _median([t["total"] for t in generated if t.get("total")])
    return summary


def _git_commit() -> str:
    """The commit measured (the knowledge base and its calibration change between runs)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip()
    except OSError:
        return ""


def _uncommitted() -> list[str]:
    """Files that differ from the commit measured (others work in the same tree): the figures belong
    to the commit plus these."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return [line[3:] for line in out.stdout.splitlines() if line.strip()]
    except OSError:
        return []


def _mean(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[len(s) // 2], 1)


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def read_questions(path: Path) -> list[dict[str, Any]]:
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for item in items:
        item.setdefault("answerable", True)
        if item["answerable"] and not item.get("facts"):
            raise SystemExit(f"{path}: {item['id']} is answerable but lists no facts")
    return items


def history_of(item: dict[str, Any]) -> list[Message]:
    return [Message(role, content) for role, content in item.get("history", [])]


def _brief(passages: list[Passage]) -> list[dict[str, Any]]:
    return [{"id": p.id, "score": round(p.score, 3), "kind": p.kind} for p in passages]


async def _row(
    item: dict[str, Any],
    retriever: Any,
    settings: Settings,
    *,
    route: str | None,
    answer: str,
    shown: list[Passage],
    records: list[Any],
) -> dict[str, Any]:
    """One scored answer, with what retrieval returned (for sorting misses into retrieval and
    generation ones, and for the knowledge-base owner to see the scores)."""
    from assistant.kb.query import sub_questions

    query = prompts.rewrite_query(item["question"], history_of(item))
    retrieved = await retriever.search(query, k=settings.kb.top_k)
    parts = {q: _brief(await retriever.search(q, k=3)) for q in sub_questions(query)}
    row: dict[str, Any] = {
        "id": item["id"],
        "question": item["question"],
        "answerable": item["answerable"],
        "route": route,
        "answer": answer,
        "sources": [p.id for p in shown],
        "shown": _brief(shown),
        "query": query,
        "retrieved": _brief(retrieved),
        "parts": parts,
        "expected_sources": expected_sources(item, records),
        **score(item, answer),
    }
    row["miss"] = classify_miss(item, row, shown)
    return row


def _print(label: str, n: int, total: int, row: dict[str, Any]) -> None:
    mark = "ok" if row["miss"] is None else f"-- {row['miss']}"
    print(f"[{label} {n}/{total}] {mark} {row['route']}: {row['question']} -> {row['answer'][:90]!r}", file=sys.stderr)


async def run_turns(
    settings: Settings, retriever: Any, llm: Any, items: list[dict[str, Any]], label: str
) -> list[dict[str, Any]]:
    from assistant.stages import Engines
    from assistant.turn import Turn

    engines = Engines(retriever=retriever, llm=llm)
    records = retriever.kb.records
    rows = []
    for n, item in enumerate(items, start=1):
        turn = Turn(n, engines=engines, settings=settings, history=history_of(item))
        result = await turn.run(item["question"])
        answer = result.reply if result.error is None else f"[error {result.error.code}] {result.error.message}"
        row = await _row(
            item, retriever, settings, route=result.route, answer=answer, shown=result.sources, records=records
        )
        row["timings_ms"] = result.timings_ms
        if result.withheld:
            row["withheld"] = result.withheld  # numbers the grounding check kept from being said
        rows.append(row)
        _print(label, n, len(items), row)
    return rows


async def run_faq_only(settings: Settings, retriever: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """No LLM: the best FAQ answer when it clears the relevance threshold, else the fallback line."""
    rows = []
    for n, item in enumerate(items, start=1):
        language = detect_language(item["question"])
        query = prompts.rewrite_query(item["question"], history_of(item))
        passages: list[Passage] = await retriever.search(query, k=settings.kb.top_k)
        faq = [p for p in passages if p.kind == "faq" and p.answer]
        best = max(faq, key=lambda p: p.score) if faq else None
        if best is not None and best.score >= settings.answer.relevance_threshold:
            route, answer, shown = "faq", best.answer or "", [best]
        else:
            route, answer, shown = "fallback", prompts.fallback_line(language), []
        row = await _row(
            item, retriever, settings, route=route, answer=answer, shown=shown, records=retriever.kb.records
        )
        row["timings_ms"] = {}
        rows.append(row)
        _print("faq", n, len(items), row)
    return rows


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from assistant.registry import build_index, language_model, open_retriever
    from assistant.tuning import tune

    settings = (
        load(args.config)
        if args.config
        else load(ROOT / "assistant.toml")
        if (ROOT / "assistant.toml").exists()
        else Settings(root=ROOT)
    )
    settings.kb.index_dir = str(args.index)
    if args.temperature is not None:
        settings.llm.temperature = args.temperature
    if args.relevance_threshold is not None:
        # Explore how the LLM behaves when it sees weaker passages (more questions reach it).
        settings.answer.relevance_threshold = args.relevance_threshold
    if args.verify_faq_below is not None:
        # The LLM checks FAQ matches under this score before they are read out (turn.verify_faq).
        settings.answer.verify_faq_below = args.verify_faq_below
    # What the command line sets is no longer "auto"; the rest is set per model (models.tune).
    overridden = {k for k in TUNED_KEYS if getattr(args, k) is not None}
    settings = dataclasses.replace(settings, auto=settings.auto - overridden)
    if args.faq_threshold is not None:
        # Explore answering fewer FAQ matches verbatim (the rest go to the LLM with the entry).
        settings.answer.faq_threshold = args.faq_threshold
    items = read_questions(args.questions)
    if args.split is not None:
        # --split K/N: the K-th of N interleaved parts (a subset that still mixes zh, en and the
        # unanswerable questions, which the file groups together)
        k, n = args.split
        items = items[k - 1 :: n]
    if args.ids:
        items = [i for i in items if i["id"] in set(args.ids)]
    if args.limit:
        items = items[: args.limit]
    started = time.monotonic()
    report = build_index(settings, [str(ROOT / "kb")], index_dir=args.index, progress=False)
    print(f"index: {report}", file=sys.stderr)
    retriever = open_retriever(settings, index_dir=str(args.index))

    systems: dict[str, Any] = {}
    answers: dict[str, list[dict[str, Any]]] = {}
    suffix = f"@relevance={args.relevance_threshold:g}" if args.relevance_threshold is not None else ""
    suffix += f"@faq={args.faq_threshold:g}" if args.faq_threshold is not None else ""
    suffix += f"@verify={args.verify_faq_below:g}" if args.verify_faq_below is not None else ""
    for system in args.systems:
        t0 = time.monotonic()
        s = settings
        rounds: list[list[dict[str, Any]]] = []
        if system == "faq":
            rounds.append(await run_faq_only(settings, retriever, items))
        else:
            # The model's own [answer] values where the config leaves them "auto".
            s = tune(dataclasses.replace(
                settings, llm=dataclasses.replace(settings.llm, engine="llamacpp", model=system, model_path="")
            ))  # fmt: skip
            llm = language_model(s)
            try:
                for n in range(args.rounds):
                    rows = await run_turns(s, retriever, llm, items, system)
                    for row in rows:
                        row["round"] = n + 1
                    rounds.append(rows)
            finally:
                close = getattr(llm, "close", None)
                if close:
                    close()
        key = system + suffix
        rows = [row for r in rounds for row in r]
        systems[key] = {
            **summarise(rows),
            "git_commit": _git_commit(),
            "relevance_threshold": s.answer.relevance_threshold,
            "faq_threshold": s.answer.faq_threshold,
            "verify_faq_below": s.answer.verify_faq_below,
            "seconds": round(time.monotonic() - t0, 1),
        }
        if len(rounds) > 1:  # not the faq system: it is deterministic and runs once
            systems[key]["rounds"] = per_round(rows)
        answers[key] = rows
        print(f"{key}: {json.dumps(systems[key], ensure_ascii=False)}", file=sys.stderr)
    return {
        "benchmark": "faithfulness",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["bench/faithfulness.py", *sys.argv[1:]]),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "uncommitted": _uncommitted(),
        "questions_file": str(args.questions.relative_to(ROOT))
        if args.questions.is_relative_to(ROOT)
        else str(args.questions),
        "settings": {
            "faq_threshold": settings.answer.faq_threshold,
            "relevance_threshold": settings.answer.relevance_threshold,
            "max_passages": settings.answer.max_passages,
            "max_tokens": settings.answer.max_tokens,
            "temperature": settings.llm.temperature,
            "prompt_chars_zh": len(prompts.PROMPTS["zh"].system),
            "prompt_chars_en": len(prompts.PROMPTS["en"].system),
            "embedder": settings.kb.embedder,
        },
        "targets_1_5b": {"fact_accuracy": 0.90, "decline_rate": 0.90, "language_match": 0.98},
        "systems": systems,
        "answers": answers,
        "seconds": round(time.monotonic() - started, 1),
    }


def per_round(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each round's headline figures (rows tagged ``round`` by ``--rounds``): sampling moves a figure
    by a question or two, so they are reported beside the pooled ones."""
    rounds = sorted({row["round"] for row in rows if "round" in row})
    return [
        {m: summarise([row for row in rows if row.get("round") == n])[m] for m in ("fact_accuracy", "decline_rate", "language_match")}
        for n in rounds
    ]


def rescore(path: Path, questions: Path) -> int:
    """Score the stored answers again (after a change to the scoring rules or the question file)."""
    result = json.loads(path.read_text(encoding="utf-8"))
    items = {i["id"]: i for i in read_questions(questions)}
    for key, rows in result["answers"].items():
        for row in rows:
            if row["id"] in items:
                row.pop("missing_facts", None)
                row.pop("facts_ok", None)
                row.update(score(items[row["id"]], row["answer"]))
                ok = row["facts_ok"] if row["answerable"] else row["declined"]
                # The passages' text is not stored, so a miss keeps the class the run gave it.
                row["miss"] = None if ok else row.get("miss") or "unclassified"
        kept = {
            k: v for k, v in result["systems"][key].items() if k in ("relevance_threshold", "faq_threshold", "verify_faq_below", "seconds", "git_commit")
        }
        result["systems"][key] = {**summarise(rows), **kept}
        if len({row.get("round") for row in rows}) > 1:
            result["systems"][key]["rounds"] = per_round(rows)
    path.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(
        json.dumps(
            {k: {m: v for m, v in s.items() if m != "routes"} for k, s in result["systems"].items()},
            ensure_ascii=False,
            indent=1,
        )
    )
    return 0


def combine(paths: list[Path], out: Path) -> int:
    """The figures of every system measured in all of ``paths`` (the dev and held-out results),
    over their answers pooled: what a target over both question sets is judged on."""
    results = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    keys = [k for k in results[0]["answers"] if all(k in r["answers"] for r in results)]
    systems = {}
    for key in keys:
        rows = [row for r in results for row in r["answers"][key]]
        systems[key] = {
            m: v for m, v in summarise(rows).items() if m in ("questions", "fact_accuracy", "decline_rate", "language_match",
                                                               "false_decline_rate", "answerable", "unanswerable")
        }  # fmt: skip
        systems[key]["settings"] = {
            m: results[0]["systems"][key].get(m) for m in ("relevance_threshold", "verify_faq_below", "faq_threshold")
        }
    combined = {
        "benchmark": "faithfulness-combined",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "from": [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in paths],
        "systems": systems,
    }
    out.write_text(json.dumps(combined, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(systems, ensure_ascii=False, indent=1))
    return 0


def _split(value: str) -> tuple[int, int]:
    k, _, n = value.partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise argparse.ArgumentTypeError("expected K/N with 1 <= K <= N, e.g. 1/3")
    return int(k), int(n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", help="faq and/or model pack names (default: faq and every model)")
    parser.add_argument(
        "--model", action="append", choices=MODELS, help="measure this model (repeatable; adds to --systems)"
    )
    parser.add_argument(
        "--set", choices=sorted(SETS), default="dev",
        help="dev: the questions the prompts were tuned on; holdout: questions never looked at while tuning",
    )  # fmt: skip
    parser.add_argument("--questions", type=Path, help="a question file (overrides --set)")
    parser.add_argument("--split", type=_split, metavar="K/N", help="only every N-th question, starting at the K-th")
    parser.add_argument("--temperature", type=float, help="override [llm] temperature (0: repeatable answers)")
    parser.add_argument(
        "--index", type=Path, default=ROOT / "cache" / "bench-index", help="index folder (built from kb/)"
    )
    parser.add_argument("--config", help="assistant.toml to take thresholds from (default: the repository's)")
    parser.add_argument("--relevance-threshold", type=float, help="override [answer] relevance_threshold")
    parser.add_argument("--faq-threshold", type=float, help="override [answer] faq_threshold")
    parser.add_argument(
        "--verify-faq-below", type=float, help="override [answer] verify_faq_below (the LLM checks FAQ matches under it)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="ask every question N times per model; figures pooled, and each round's in 'rounds'",
    )  # fmt: skip
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions")
    parser.add_argument("--ids", nargs="*", help="only these question ids")
    parser.add_argument(
        "--out", type=Path, help="default: bench/results/faithfulness.json (dev), faithfulness-holdout.json"
    )
    parser.add_argument("--merge", action="store_true", help="add to the systems already in --out")
    parser.add_argument(
        "--rescore", action="store_true", help="recompute every metric from the answers in --out; run nothing"
    )
    parser.add_argument(
        "--combine", action="store_true",
        help="pool the dev and held-out answers of each system measured in both into "
        "bench/results/faithfulness-combined.json; run nothing",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.systems = [*(args.systems or ([] if args.model else ["faq", *MODELS])), *(args.model or [])]
    args.questions = args.questions or SETS[args.set][0]
    args.out = args.out or SETS[args.set][1]
    if args.rescore:
        return rescore(args.out, args.questions)
    if args.combine:
        return combine([SETS["dev"][1], SETS["holdout"][1]], ROOT / "bench" / "results" / "faithfulness-combined.json")
    result = asyncio.run(main_async(args))
    if args.merge and args.out.exists():
        # Keep the systems an earlier run measured (each model takes long on a small CPU).
        old = json.loads(args.out.read_text(encoding="utf-8"))
        result["systems"] = {**old.get("systems", {}), **result["systems"]}
        result["answers"] = {**old.get("answers", {}), **result["answers"]}
        result["command"] = "; ".join(c for c in (old.get("command"), result["command"]) if c)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(args.out)
    print(
        json.dumps(
            {name: {k: v for k, v in s.items() if k != "routes"} for name, s in result["systems"].items()},
            ensure_ascii=False,
            indent=1,
        )
    )
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
