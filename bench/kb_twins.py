"""Translated FAQ entries found as twins: how many of a bilingual table's pairs ``KnowledgeBase.twins`` finds.

    .venv/bin/python bench/kb_twins.py [--out bench/results/kb_twins.json]

Self-calibration (``assistant.kb.selfcal``) labels a question's own record *and its twins* as right
answers, and holds them out together; a translation it does not recognise is labelled a wrong answer
that scores high, which teaches the fit that a clear best match is often wrong. Two bilingual tables
with known pairs (the same id in both languages): the Debian FAQ in English and Chinese (Debian
packages ``debian-faq``, ``debian-faq-zh-cn``; the ids are the FAQ's section numbers), and the
sample ``kb/`` (``en-x`` / ``zh-x``). Each is indexed as one knowledge base with the configured
embedder, no synthesis (as ``kb build --no-synthesis``), and its twins are read at several
``translation`` bars (0: the plain repeated-entry rule alone, ``TWIN_COSINE``): pairs found right,
wrong pairs, and pairs missed.
"""

from __future__ import annotations

import argparse
import json
import shutil
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
from assistant.kb import selfcal  # noqa: E402

BARS = [1.01, 0.5, 0.6, 0.7, 0.8]
"""``translation`` bars tried (above 1: no translation rule, the repeated-entry rule alone)."""


def pair_key(record_id: str) -> str:
    return record_id.removeprefix("en-").removeprefix("zh-")


def measure(settings: Any, folder: Path, work: Path) -> dict[str, Any]:
    index = work / "index"
    registry.build_index(settings, [folder], index_dir=index, progress=False, synthesize=False)
    kb = registry.open_retriever(settings, index_dir=str(index)).kb
    faq = [(i, r) for i, r in enumerate(kb.records) if r.kind == "faq"]
    language = {i: ("zh" if any("\u4e00" <= c <= "\u9fff" for c in r.text) else "en") for i, r in faq}
    by_key: dict[str, dict[str, int]] = {}  # the Debian FAQ's two files share ids; the sample's differ by prefix
    for i, r in faq:
        by_key.setdefault(pair_key(r.id), {})[language[i]] = i
    truth = {(v["en"], v["zh"]) for v in by_key.values() if "en" in v and "zh" in v}
    rows = {}
    for bar in BARS:
        twins = kb.twins(selfcal.TWIN_COSINE, translation=bar)
        found = {(a, b) for a, bs in twins.items() for b in bs if language.get(a) == "en" and language.get(b) == "zh"}
        rows["plain rule only" if bar > 1 else f"{bar:g}"] = {
            "pairs": len(truth),
            "found_right": len(found & truth),
            "found_wrong": len(found - truth),
            "missed": len(truth - found),
        }
    return {"faq_entries": len(faq), "bars": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "kb_twins.json"))
    args = parser.parse_args()
    settings = registry.load_settings(ROOT / "assistant.toml")
    out: dict[str, Any] = {"command": "bench/kb_twins.py " + " ".join(sys.argv[1:]), "twin_cosine": selfcal.TWIN_COSINE}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        both = tmp / "debian-faq"
        both.mkdir()
        for language in ("en", "zh"):
            kb_sets.assemble_debian_faq(language, both)
        out["debian-faq en+zh"] = measure(settings, both, tmp / "w1")
        sample = tmp / "sample"
        shutil.copytree(ROOT / "kb", sample, ignore=shutil.ignore_patterns("docs"))
        out["sample kb/ (FAQ tables)"] = measure(settings, sample, tmp / "w2")
    out["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    Path(args.out).write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
