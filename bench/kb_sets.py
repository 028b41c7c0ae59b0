"""Knowledge bases and visitor questions for the leave-one-knowledge-base-out benchmark (issue 21).

Each set is assembled at run time, deterministically and without network, from public data installed
on the machine; nothing of the Debian documents is committed. The questions live in
``bench/kb_transfer/*.jsonl`` and were written (or, for BANKING77, sampled) for this benchmark; none
of them was used to tune anything reported on them.

Sets (``KB_SETS``):

- ``banking77``: /work/shared/data/banking77 (CC BY 4.0, Casanueva et al. 2020). One FAQ entry per
  intent, ``id`` = the intent name, ``question`` = the intent's most central training query (the
  query of 5 to 20 words with the highest mean TF-IDF cosine similarity to the other training queries
  of its intent; ties broken by the shorter, then alphabetically first text), no alternates, ``answer``
  = a hand-written answer from ``bench/kb_transfer/banking77_answers.json`` holding one checkable
  fact. The 10 intents of ``BANKING77_HELD_OUT`` are left out of the KB: their test queries are the
  in-domain questions it cannot answer (those rows also carry ``intent``).
- ``debian-faq-en`` / ``debian-faq-zh``: the Debian FAQ (packages ``debian-faq`` and
  ``debian-faq-zh-cn``), one FAQ entry per numbered section that has text of its own (147 of the 148
  sections: 8.1.6 only holds 8.1.6.1), ``id`` = ``faq-<page>-<section number>``, ``question`` = the
  heading without its number (25 headings are topics, not questions: "dpkg", "Authors"), ``answer`` =
  the section's own text, without its subsections. The zh-cn translation has the same 16 pages and the
  same 148 sections, numbers and anchors, so every id exists in both languages with the same content.
  The table of contents (``index``) is skipped.
- ``debian-reference``: a document KB, excerpts of four chapters of the Debian Reference (packages
  ``debian-reference-en`` and ``debian-reference-zh-cn``) in both languages, copied as HTML
  (``REFERENCE_EXCERPTS``: whole top-level sections; about 400 chunks of 400 characters in all).
- ``sample``: a copy of the project's own sample knowledge base, ``kb/``.

Question files: one JSON object per line, ``question``, ``language`` (en|zh), ``kb`` (the set the
question is asked against), ``kind`` (answerable|in-domain|off-topic), ``expected`` and ``fact``
(answerable only), ``split`` (dev|test, 40/60 per set, kind and language). ``expected`` holds FAQ ids,
or for documents ``"<source>#<phrase>"``: the document's source name in the KB (its path relative to
the KB folder) and an exact phrase of the chunk that holds the answer (compare whitespace-free: HTML
extraction may put spaces around inline markup). Any expected entry is a right one: in the bilingual
sets (``debian-reference``, ``sample``) the place in the question's language comes first, then its
translation. ``fact``: alternatives, one of which a correct answer contains. The English questions of
``debian-faq-en`` are asked again against ``debian-faq-zh`` (cross-lingual; same ids and split, facts
with their Chinese spellings added where needed).

    .venv/bin/python bench/kb_sets.py                   # assemble every set in a temp folder, validate
    .venv/bin/python bench/kb_sets.py --write-banking77 # regenerate the sampled BANKING77 questions
    .venv/bin/python bench/kb_sets.py --assemble debian-faq-zh --dest /tmp/kb
"""

from __future__ import annotations

import argparse
import csv
import difflib
import html
import json
import math
import random
import re
import shutil
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS_DIR = ROOT / "bench" / "kb_transfer"
OFFTOPIC_FILE = ROOT / "assistant" / "kb" / "offtopic.txt"

BANKING77_DIR = ROOT.parent / "shared" / "data" / "banking77"
if not BANKING77_DIR.exists():
    BANKING77_DIR = Path("/work/shared/data/banking77")
BANKING77_ANSWERS = QUESTIONS_DIR / "banking77_answers.json"
DEBIAN_FAQ_DIRS = {"en": Path("/usr/share/doc/debian/FAQ"), "zh": Path("/usr/share/doc/debian/FAQ/zh-cn")}
DEBIAN_FAQ_SUFFIX = {"en": ".en.html", "zh": ".zh-cn.html"}
DEBIAN_REFERENCE_DIR = Path("/usr/share/debian-reference")

BANKING77_HELD_OUT = [
    # Not in the KB: one intent from each corner of the data set, chosen so that no covered entry's
    # answer answers them (the covered answers were written with these in mind).
    "age_limit",  # eligibility
    "apple_pay_or_google_pay",  # mobile wallets
    "automatic_top_up",  # top-ups
    "cancel_transfer",  # transfers
    "card_swallowed",  # ATMs
    "country_support",  # where the service works
    "disposable_card_limits",  # cards
    "edit_personal_details",  # account details
    "lost_or_stolen_phone",  # security
    "terminate_account",  # closing the account
]
BANKING77_ANSWERED_ELSEWHERE = {
    # Test queries of held-out intents that a covered entry does answer (found by reading the
    # sample): any query containing one of these words is not used as an in-domain question.
    "american express": "supported_cards_and_currencies says American Express cards can't top up",
}
BANKING77_SEED = 21
BANKING77_ANSWERABLE = 300
BANKING77_IN_DOMAIN_PER_INTENT = 6

REFERENCE_EXCERPTS: list[tuple[str, str, list[str]]] = [
    # (chapter file, name of the copy, anchors of the top-level sections copied)
    ("ch02", "package-management", ["_basic_package_management_operations", "_recovery_from_a_broken_system"]),
    (
        "ch03",
        "system-initialization",
        [
            "_an_overview_of_the_boot_strap_process",
            "_systemd_init",
            "_the_kernel_message",
            "_the_system_message",
            "_system_management_operations",
        ],
    ),
    (
        "ch04",
        "authentication",
        [
            "_normal_unix_authentication",
            "_managing_account_and_password_information",
            "_good_password",
            "_creating_encrypted_password",
            "_other_access_controls",
        ],
    ),
    ("ch09", "system-tips", ["_monitoring_controlling_and_starting_program_activities", "_system_maintenance_tips"]),
]
REFERENCE_LANGUAGES = {"en": "en", "zh": "zh-cn"}

KB_SETS: dict[str, str] = {
    "banking77": "BANKING77 intents as FAQ entries (67 covered, 10 held out), hand-written answers, English",
    "debian-faq-en": "the Debian FAQ in English, one FAQ entry per section",
    "debian-faq-zh": "the Debian FAQ in Simplified Chinese, the same entries and ids",
    "debian-reference": "excerpts of four Debian Reference chapters as HTML documents, English and Chinese",
    "sample": "a copy of the project's sample knowledge base kb/",
}

# --------------------------------------------------------------------------------------------
# HTML: a small tree, text extraction (stdlib only, so the sets are the same with or without bs4)
# --------------------------------------------------------------------------------------------

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
_BLOCK = {
    "address",
    "blockquote",
    "caption",
    "dd",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "li",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tbody",
    "thead",
    "tfoot",
    "tr",
    "ul",
    "br",
}
_CJK = "\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_NEWLINE = re.compile(rf"(?<=[{_CJK}])[ \t]*\n\s*(?=[{_CJK}])")


class Node:
    __slots__ = ("attrs", "children", "parent", "tag")

    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None = None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[Node | str] = []
        self.parent = parent

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find(self, predicate: Callable[[Node], bool]) -> Node | None:
        return next((n for n in self.iter() if predicate(n)), None)


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in _VOID:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node is not self.root and node.tag != tag:
            node = node.parent
        if node is not None and node is not self.root and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse_html(text: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


def node_text(node: Node, *, skip: Callable[[Node], bool] = lambda n: False) -> str:
    """Readable text of ``node``: one line per block (paragraph, list item, table row), ``pre`` kept
    line by line, whitespace collapsed, and a line break inside Chinese text dropped (the source HTML
    wraps Chinese sentences)."""
    lines: list[str] = []
    current: list[str] = []

    def end_line() -> None:
        joined = _CJK_NEWLINE.sub("", "".join(current))
        joined = re.sub(r"\s+", " ", joined).strip()
        if joined:
            lines.append(joined)
        current.clear()

    def walk(n: Node) -> None:
        for child in n.children:
            if isinstance(child, str):
                current.append(child)
                continue
            if skip(child) or child.tag in {"script", "style", "head", "title"}:
                continue
            if child.tag == "pre":
                end_line()
                raw = "".join(child_text_raw(child)).strip("\n")
                lines.extend(line.rstrip() for line in raw.splitlines() if line.strip())
                continue
            if child.tag in _BLOCK:
                end_line()
                if child.tag == "li":
                    current.append("- ")
                if child.tag == "tr":
                    cells = [
                        node_text(c, skip=skip).replace("\n", " ")
                        for c in child.children
                        if isinstance(c, Node) and c.tag in {"td", "th"}
                    ]
                    current.append(" | ".join(c for c in cells if c))
                else:
                    walk(child)
                end_line()
            else:
                walk(child)

    walk(node)
    end_line()
    # A list item whose text is a nested paragraph leaves "- " on a line of its own: join it.
    out: list[str] = []
    for line in lines:
        if out and out[-1] == "-":
            out[-1] = f"- {line}"
        else:
            out.append(line)
    return "\n".join(line for line in out if line != "-")


def child_text_raw(node: Node) -> list[str]:
    parts: list[str] = []
    for child in node.children:
        parts.extend([child] if isinstance(child, str) else child_text_raw(child))
    return parts


def serialize(node: Node | str) -> str:
    if isinstance(node, str):
        return html.escape(node, quote=False)
    attrs = "".join(f' {k}="{html.escape(v)}"' for k, v in node.attrs.items())
    if node.tag in _VOID:
        return f"<{node.tag}{attrs}/>"
    inner = "".join(serialize(c) for c in node.children)
    return f"<{node.tag}{attrs}>{inner}</{node.tag}>"


def squash(text: str) -> str:
    """Text compared without whitespace or case: how phrases and facts are looked up."""
    return re.sub(r"\s+", "", text).lower()


# --------------------------------------------------------------------------------------------
# Debian FAQ
# --------------------------------------------------------------------------------------------

_FOOTNOTE_MARK = re.compile(r"[ \t]*\[\d+\]")
_NUMBERED = re.compile(r"^\s*(\d+(?:\.\d+)*)\.\s*(.*)$", re.S)


def debian_faq_pages(language: str) -> list[Path]:
    folder = DEBIAN_FAQ_DIRS[language]
    suffix = DEBIAN_FAQ_SUFFIX[language]
    pages = sorted(p for p in folder.glob(f"*{suffix}") if not p.name.startswith("index."))
    if not pages:
        raise FileNotFoundError(
            f"no Debian FAQ pages in {folder}: install the Debian package "
            f"{'debian-faq' if language == 'en' else 'debian-faq-zh-cn'}"
        )
    return pages


def debian_faq_entries(language: str) -> list[dict[str, str]]:
    """``[{id, question, answer, anchor}]`` in document order, for ``en`` or ``zh``."""
    suffix = DEBIAN_FAQ_SUFFIX[language]
    entries: list[dict[str, str]] = []
    for path in debian_faq_pages(language):
        page = path.name[: -len(suffix)]
        root = parse_html(path.read_text(encoding="utf-8"))
        for section in root.iter():
            if section.tag != "div" or "section" not in section.classes():
                continue
            titlepage = next((c for c in section.children if isinstance(c, Node) and "titlepage" in c.classes()), None)
            heading = titlepage.find(lambda n: n.tag in {"h2", "h3", "h4", "h5"}) if titlepage else None
            if heading is None:
                continue
            anchor = heading.find(lambda n: n.tag == "a" and "id" in n.attrs)
            title = node_text(heading).replace("\n", " ")
            match = _NUMBERED.match(title)
            if not match:
                continue
            number, question = match.group(1), match.group(2).strip()
            answer = node_text(
                section,
                skip=lambda n: n.tag == "div" and bool(n.classes() & {"titlepage", "section", "toc"}),
            )
            # Footnote marks ("[2]"): the footnotes themselves sit outside the sections.
            answer = "\n".join(line for line in _FOOTNOTE_MARK.sub("", answer).splitlines() if line.strip())
            if not answer:
                continue
            entries.append(
                {
                    "id": f"faq-{page}-{number}",
                    "question": question,
                    "answer": answer,
                    "anchor": anchor.attrs["id"] if anchor else "",
                }
            )
    return entries


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def assemble_debian_faq(language: str, dest: Path) -> Path:
    rows = [{"id": e["id"], "question": e["question"], "answer": e["answer"]} for e in debian_faq_entries(language)]
    _write_jsonl(dest / f"debian-faq.{'en' if language == 'en' else 'zh-cn'}.jsonl", rows)
    return dest


# --------------------------------------------------------------------------------------------
# Debian Reference excerpts
# --------------------------------------------------------------------------------------------


def reference_file_name(name: str, chapter: str, language: str) -> str:
    return f"{chapter}-{name}.{REFERENCE_LANGUAGES[language]}.html"


def reference_excerpt(chapter: str, anchors: list[str], language: str) -> str:
    """An HTML page holding the chapter's title and the top-level sections named by ``anchors``."""
    source = DEBIAN_REFERENCE_DIR / f"{chapter}.{REFERENCE_LANGUAGES[language]}.html"
    if not source.exists():
        raise FileNotFoundError(
            f"{source} is missing: install the Debian package "
            f"{'debian-reference-en' if language == 'en' else 'debian-reference-zh-cn'}"
        )
    root = parse_html(source.read_text(encoding="utf-8"))
    chapter_div = root.find(lambda n: n.tag == "div" and "chapter" in n.classes())
    assert chapter_div is not None, source
    title_node = root.find(lambda n: n.tag == "title")
    title = "".join(child_text_raw(title_node)).strip() if title_node else chapter
    h1 = chapter_div.find(lambda n: n.tag == "h1")
    h1_text = re.sub(r"\s+", " ", "".join(child_text_raw(h1))).strip() if h1 else title
    sections: dict[str, Node] = {}
    for child in chapter_div.children:
        if isinstance(child, Node) and child.tag == "div" and "section" in child.classes():
            anchor = child.find(lambda n: n.tag == "a" and "id" in n.attrs)
            if anchor is not None:
                sections[anchor.attrs["id"]] = child
    missing = [a for a in anchors if a not in sections]
    if missing:
        raise KeyError(f"{source}: no top-level sections {missing}")
    body = "\n".join(serialize(sections[a]) for a in anchors)
    return (
        '<!DOCTYPE html>\n<html xmlns="http://www.w3.org/1999/xhtml">\n<head>\n'
        '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8"/>\n'
        f"<title>{html.escape(title)}</title>\n"
        f'<meta name="source" content="{html.escape(source.name)} (Debian Reference, excerpt)"/>\n'
        f'</head>\n<body>\n<div class="chapter">\n<h1>{html.escape(h1_text)}</h1>\n{body}\n</div>\n</body>\n</html>\n'
    )


def assemble_debian_reference(dest: Path) -> Path:
    for chapter, name, anchors in REFERENCE_EXCERPTS:
        for language in REFERENCE_LANGUAGES:
            text = reference_excerpt(chapter, anchors, language)
            (dest / reference_file_name(name, chapter, language)).write_text(text, encoding="utf-8")
    return dest


# --------------------------------------------------------------------------------------------
# BANKING77
# --------------------------------------------------------------------------------------------


def _banking77_rows(split: str) -> list[tuple[str, str]]:
    with (BANKING77_DIR / f"{split}.csv").open(encoding="utf-8", newline="") as f:
        return [(row["text"].strip(), row["category"].strip()) for row in csv.DictReader(f)]


def banking77_intents() -> list[str]:
    return list(json.loads((BANKING77_DIR / "categories.json").read_text(encoding="utf-8")))


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def banking77_representatives() -> dict[str, str]:
    """Each intent's most central training query of 5 to 20 words: the highest mean TF-IDF cosine
    (sublinear tf, IDF over the whole training set) to the intent's other training queries; ties:
    the shorter, then the alphabetically first."""
    rows = _banking77_rows("train")
    docs = [Counter(_tokens(text)) for text, _ in rows]
    df: Counter[str] = Counter()
    for d in docs:
        df.update(d.keys())
    vocab = {w: i for i, w in enumerate(sorted(df))}
    idf = np.array([math.log((1 + len(docs)) / (1 + df[w])) + 1.0 for w in sorted(df)])
    by_intent: dict[str, list[int]] = defaultdict(list)
    for i, (_, intent) in enumerate(rows):
        by_intent[intent].append(i)
    chosen: dict[str, str] = {}
    for intent, idx in by_intent.items():
        matrix = np.zeros((len(idx), len(vocab)))
        for r, i in enumerate(idx):
            for w, c in docs[i].items():
                matrix[r, vocab[w]] = (1.0 + math.log(c)) * idf[vocab[w]]
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = matrix / np.where(norms == 0, 1.0, norms)
        sims = matrix @ matrix.T
        mean = (sims.sum(axis=1) - 1.0) / max(1, len(idx) - 1)
        texts = [rows[i][0] for i in idx]
        # A fragment ("The card PIN?") can be central without reading like a question: candidates
        # are the queries of 5 to 20 words (all of them if an intent had none).
        candidates = [r for r in range(len(idx)) if 5 <= len(texts[r].split()) <= 20] or list(range(len(idx)))
        best = min(candidates, key=lambda r: (-round(float(mean[r]), 9), len(texts[r]), texts[r]))
        chosen[intent] = texts[best]
    return chosen


def banking77_answers() -> dict[str, dict[str, Any]]:
    return json.loads(BANKING77_ANSWERS.read_text(encoding="utf-8"))


def assemble_banking77(dest: Path) -> Path:
    answers = banking77_answers()
    representatives = banking77_representatives()
    with (dest / "banking77.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "question", "answer"])
        for intent in banking77_intents():
            if intent in BANKING77_HELD_OUT:
                continue
            writer.writerow([intent, representatives[intent], answers[intent]["answer"]])
    return dest


def _split_labels(n: int) -> list[str]:
    """``n`` labels, 40% dev spread evenly: dev at positions 1 and 3 of every five."""
    return ["dev" if i % 5 in (1, 3) else "test" for i in range(n)]


def banking77_sampled_questions() -> list[dict[str, Any]]:
    """The answerable and in-domain BANKING77 questions, sampled (seeded) from test.csv."""
    answers = banking77_answers()
    representatives = set(banking77_representatives().values())
    test = [(t, c) for t, c in _banking77_rows("test") if t not in representatives]
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in test:
        if text not in by_intent[intent]:
            by_intent[intent].append(text)
    rng = random.Random(BANKING77_SEED)
    covered = [i for i in banking77_intents() if i not in BANKING77_HELD_OUT]
    pools = {i: rng.sample(by_intent[i], len(by_intent[i])) for i in banking77_intents()}
    for intent in BANKING77_HELD_OUT:
        pools[intent] = [t for t in pools[intent] if not any(w in t.lower() for w in BANKING77_ANSWERED_ELSEWHERE)]
    # Round-robin over the covered intents (in a seeded order) until 300 are drawn: every intent
    # gets 4 or 5 questions.
    order = rng.sample(covered, len(covered))
    answerable: list[dict[str, Any]] = []
    taken: dict[str, int] = Counter()
    while len(answerable) < BANKING77_ANSWERABLE:
        for intent in order:
            if len(answerable) == BANKING77_ANSWERABLE:
                break
            text = pools[intent][taken[intent]]
            taken[intent] += 1
            answerable.append(
                {
                    "question": text,
                    "language": "en",
                    "kb": "banking77",
                    "kind": "answerable",
                    "expected": [intent],
                    "fact": answers[intent]["fact"],
                }
            )
    answerable.sort(key=lambda q: (q["expected"][0], q["question"]))
    in_domain = [
        {"question": text, "language": "en", "kb": "banking77", "kind": "in-domain", "intent": intent}
        for intent in BANKING77_HELD_OUT
        for text in pools[intent][:BANKING77_IN_DOMAIN_PER_INTENT]
    ]
    out: list[dict[str, Any]] = []
    for group in (answerable, in_domain):
        for q, split in zip(group, _split_labels(len(group)), strict=True):
            out.append({**q, "split": split})
    return out


# --------------------------------------------------------------------------------------------
# Sets
# --------------------------------------------------------------------------------------------


def assemble(name: str, dest: Path) -> Path:
    """Write the knowledge-base folder of set ``name`` into ``dest`` (created; must be empty or new)
    and return it. Deterministic; reads only installed packages and files of this repository."""
    if name not in KB_SETS:
        raise KeyError(f"unknown set {name!r}; sets: {', '.join(KB_SETS)}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty")
    if name == "banking77":
        return assemble_banking77(dest)
    if name == "debian-faq-en":
        return assemble_debian_faq("en", dest)
    if name == "debian-faq-zh":
        return assemble_debian_faq("zh", dest)
    if name == "debian-reference":
        return assemble_debian_reference(dest)
    shutil.copytree(ROOT / "kb", dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*", "~$*"))
    return dest


def question_files() -> list[Path]:
    return sorted(p for p in QUESTIONS_DIR.glob("*.jsonl"))


def _load(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            row["_where"] = f"{path.name}:{n}"
            rows.append(row)
    return rows


def questions(name: str) -> list[dict[str, Any]]:
    """Every question asked against set ``name`` (any question file), in file order."""
    if name not in KB_SETS:
        raise KeyError(f"unknown set {name!r}; sets: {', '.join(KB_SETS)}")
    out = []
    for path in question_files():
        for row in _load(path):
            if row["kb"] == name:
                row.pop("_where")
                out.append(row)
    return out


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _kb_texts(name: str, folder: Path) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """(FAQ entries by id: {question, answer}, document texts by source name) of an assembled set."""
    faq: dict[str, dict[str, str]] = {}
    docs: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        source = path.relative_to(folder).as_posix()
        if path.suffix == ".jsonl":
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if line.strip():
                    row = json.loads(line)
                    faq[str(row.get("id") or f"{path.stem}-{n}")] = {
                        "question": row["question"],
                        "answer": row["answer"],
                    }
        elif path.suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as f:
                for n, row in enumerate(csv.DictReader(f), start=1):
                    faq[row.get("id") or f"{path.stem}-{n}"] = {"question": row["question"], "answer": row["answer"]}
        elif path.suffix in {".html", ".htm"}:
            root = parse_html(path.read_text(encoding="utf-8"))
            body = root.find(lambda n: n.tag == "body") or root
            docs[source] = node_text(body)
        elif path.suffix in {".md", ".txt"}:
            docs[source] = path.read_text(encoding="utf-8")
    return faq, docs


def _ingested_chunks(folder: Path, sources: list[str]) -> dict[str, list[str]] | None:
    """The chunks the assistant itself makes of each document (400/80 characters), when it can run
    (the project's venv); else ``None`` and phrases and facts are checked on the text alone."""
    sys.path.insert(0, str(ROOT))
    out = {}
    try:
        from assistant.kb.ingest import read_file

        for source in sources:
            result = read_file(folder / source, source, chunk_chars=400, overlap_chars=80)
            out[source] = [r.text for r in result.records]
    except Exception as err:  # bs4/jieba missing outside the venv, or the package mid-refactor: optional
        print(f"  (chunk check skipped: the assistant's ingest cannot run here: {type(err).__name__}: {err})")
        return None
    return out


def _existing_questions() -> list[str]:
    """Questions already used elsewhere in bench/ (tuned on): the new ones must not copy them."""
    found: list[str] = []
    for name in ("faithfulness.jsonl", "faithfulness_holdout.jsonl"):
        path = ROOT / "bench" / name
        if path.exists():
            found += [
                json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
            ]
    retrieval = ROOT / "bench" / "retrieval.py"
    if retrieval.exists():
        found += re.findall(r'^\s*\("([^"]+)", "[a-z-]+"\),$', retrieval.read_text(encoding="utf-8"), re.M)
    for path in (ROOT / "kb").glob("faq_*"):
        text = path.read_text(encoding="utf-8")
        found += re.findall(r'"question": "([^"]+)"', text)
        found += [line.split(",")[1] for line in text.splitlines()[1:] if line.count(",") >= 2]
    return found


def _overlap_top(
    question: str, faq: dict[str, dict[str, str]], docs: dict[str, str], k: int = 3
) -> list[tuple[float, str, str]]:
    """The ``k`` entries (or document windows) sharing most words / characters with ``question``."""

    def units(text: str) -> set[str]:
        text = text.lower()
        words = {w for w in re.findall(r"[a-z0-9][a-z0-9.+-]*", text) if len(w) > 2 and w not in _STOP}
        cjk = re.sub(rf"[^{_CJK}]", "", text)
        return words | {cjk[i : i + 2] for i in range(len(cjk) - 1)}

    q = units(question)
    if not q:
        return []
    candidates: list[tuple[str, str, set[str]]] = []
    for entry_id, entry in faq.items():
        text = entry["question"] + " " + entry["answer"]
        candidates.append((entry_id, entry["question"][:70], units(text)))
    for source, text in docs.items():
        lines = text.splitlines()
        for i in range(0, len(lines), 4):
            window = " ".join(lines[i : i + 8])
            candidates.append((f"{source}@{i}", window[:70], units(window)))
    # Rare shared words say more than common ones: weight each by its inverse document frequency.
    df = Counter(u for _, _, us in candidates for u in us & q)
    weight = {u: math.log((1 + len(candidates)) / (1 + df[u])) for u in q}
    total = sum(weight.values()) or 1.0
    scored = [(sum(weight[u] for u in q & us) / total, ref, text) for ref, text, us in candidates]
    scored.sort(key=lambda s: -s[0])
    return scored[:k]


_STOP = set(
    "the and for are can how what does with that this not you your from have has was were which when where who why "
    "into about there their they will would should could any all use used using get got its it's don't i'm my me "
    "our out too very just also than then them these those some much many more most other only own same such "
    "one two debian linux system".split()
)


def validate(verbose: bool = True) -> int:
    """Assemble every set, check every question file; returns the number of problems."""
    problems: list[str] = []
    offtopic = [line.strip() for line in OFFTOPIC_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    existing = _existing_questions()
    all_rows = [row for path in question_files() for row in _load(path)]
    counts: Counter[tuple[str, str, str, str]] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in KB_SETS:
            folder = assemble(name, Path(tmp) / name)
            faq, docs = _kb_texts(name, folder)
            print(
                f"{name}: {len(faq)} FAQ entries, {len(docs)} documents"
                + (f" ({sum(len(t) for t in docs.values())} characters)" if docs else "")
            )
            rows = [r for r in all_rows if r["kb"] == name]
            doc_sources = sorted(docs)
            chunks = _ingested_chunks(folder, doc_sources) if doc_sources else {}
            if chunks:
                print(
                    f"  {sum(len(c) for c in chunks.values())} chunks of 400 characters: "
                    + ", ".join(f"{s} {len(c)}" for s, c in chunks.items())
                )
            seen: set[str] = set()
            for row in rows:
                where = row["_where"]
                kind = row.get("kind")
                counts[(name, str(kind), str(row.get("language")), str(row.get("split")))] += 1
                key = squash(row["question"])
                if key in seen:
                    problems.append(f"{where}: duplicate question against {name}: {row['question']}")
                seen.add(key)
                if row.get("language") not in {"en", "zh"} or row.get("split") not in {"dev", "test"}:
                    problems.append(f"{where}: bad language or split")
                has_cjk = bool(re.search(rf"[{_CJK}]", row["question"]))
                if has_cjk != (row.get("language") == "zh"):
                    problems.append(f"{where}: language '{row.get('language')}' does not match the text")
                if kind == "answerable":
                    problems += _check_answerable(row, faq, docs, chunks)
                elif kind in {"in-domain", "off-topic"}:
                    if row.get("expected") or row.get("fact"):
                        problems.append(f"{where}: {kind} question with expected/fact")
                    if kind == "in-domain" and name != "banking77" and verbose:
                        top = _overlap_top(row["question"], faq, docs)
                        print(f"  in-domain [{row['language']}] {row['question']}")
                        for score, ref, text in top:
                            print(f"      {score:.2f} {ref}: {text}")
                else:
                    problems.append(f"{where}: unknown kind {kind!r}")
                if kind == "off-topic" or name != "banking77":
                    for line in offtopic:
                        if difflib.SequenceMatcher(None, squash(row["question"]), squash(line)).ratio() > 0.8:
                            problems.append(f"{where}: near-duplicate of offtopic.txt line: {line}")
                    for old in existing:
                        if difflib.SequenceMatcher(None, squash(row["question"]), squash(old)).ratio() > 0.8:
                            problems.append(f"{where}: near-duplicate of an existing bench question: {old}")
    # The shipped off-topic set itself: no duplicates, both languages.
    if len(set(map(squash, offtopic))) != len(offtopic):
        problems.append("offtopic.txt has duplicate lines")
    zh_lines = sum(bool(re.search(rf"[{_CJK}]", line)) for line in offtopic)
    print(f"\nofftopic.txt: {len(offtopic)} lines ({zh_lines} zh, {len(offtopic) - zh_lines} en)")
    if BANKING77_ANSWERS.exists():
        sampled = banking77_sampled_questions()
        in_file = [
            {k: v for k, v in r.items() if k != "_where"}
            for r in all_rows
            if r["kb"] == "banking77" and r["kind"] != "off-topic"
        ]
        if sampled != in_file:
            problems.append(
                "banking77.jsonl's sampled questions differ from banking77_sampled_questions(): "
                "run with --write-banking77"
            )
    print("\nquestions per set / kind / language / split:")
    for (name, kind, language, split), n in sorted(counts.items()):
        print(f"  {name:17} {kind:11} {language} {split:5} {n}")
    totals: Counter[tuple[str, str]] = Counter()
    for (name, kind, _, _), n in counts.items():
        totals[(name, kind)] += n
    print("\ntotals: " + ", ".join(f"{name}/{kind} {n}" for (name, kind), n in sorted(totals.items())))
    print(f"\n{len(problems)} problem(s)")
    for p in problems:
        print("  " + p)
    return len(problems)


def _check_answerable(
    row: dict[str, Any], faq: dict[str, dict[str, str]], docs: dict[str, str], chunks: dict[str, list[str]] | None
) -> list[str]:
    where = row["_where"]
    expected = row.get("expected") or []
    facts = row.get("fact") or []
    if not expected or not facts:
        return [f"{where}: answerable question without expected/fact"]
    problems: list[str] = []
    fact_keys = [squash(f) for f in facts]
    for ref in expected:
        if "#" in ref and ref.split("#", 1)[0] in docs:
            source, phrase = ref.split("#", 1)
            text = squash(docs[source])
            pos = text.find(squash(phrase))
            # Chinese has no spaces: count two characters as a word.
            cjk = len(re.findall(rf"[{_CJK}]", phrase))
            words = len(re.sub(rf"[{_CJK}]", " ", phrase).split()) + (cjk + 1) // 2
            if pos < 0:
                problems.append(f"{where}: phrase not in {source}: {phrase}")
                continue
            if text.count(squash(phrase)) > 1:
                problems.append(f"{where}: phrase occurs more than once in {source}: {phrase}")
            if not 3 <= words <= 12:
                problems.append(f"{where}: phrase should be 3-10 words: {phrase}")
            if chunks is not None and source in chunks:
                holding = [c for c in chunks[source] if squash(phrase) in squash(c)]
                if not holding:
                    problems.append(f"{where}: phrase spans two chunks of {source}: {phrase}")
                elif not any(f in squash(c) for c in holding for f in fact_keys):
                    problems.append(f"{where}: no fact {facts} in the chunk holding '{phrase}'")
            else:
                window = text[max(0, pos - 300) : pos + len(squash(phrase)) + 300]
                if not any(f in window for f in fact_keys):
                    problems.append(f"{where}: no fact {facts} near '{phrase}' in {source}")
        elif ref in faq:
            if not any(f in squash(faq[ref]["answer"]) for f in fact_keys):
                problems.append(f"{where}: no fact {facts} in the answer of {ref}")
        else:
            problems.append(f"{where}: expected {ref!r} is neither an FAQ id nor a document#phrase of the set")
    return problems


def write_banking77() -> None:
    path = QUESTIONS_DIR / "banking77.jsonl"
    kept = [r for r in (_load(path) if path.exists() else []) if r["kind"] == "off-topic"]
    for r in kept:
        r.pop("_where")
    rows = banking77_sampled_questions()
    _write_jsonl(path, rows + kept)
    print(f"wrote {path}: {len(rows)} sampled questions, {len(kept)} off-topic kept")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assemble", choices=list(KB_SETS), help="assemble one set into --dest and stop")
    parser.add_argument("--dest", type=Path, help="folder for --assemble")
    parser.add_argument("--write-banking77", action="store_true", help="rewrite banking77.jsonl's sampled questions")
    parser.add_argument("--quiet", action="store_true", help="do not list the in-domain questions' nearest entries")
    args = parser.parse_args()
    if args.assemble:
        if not args.dest:
            parser.error("--assemble needs --dest")
        print(assemble(args.assemble, args.dest))
        return 0
    if args.write_banking77:
        write_banking77()
        return 0
    return 1 if validate(verbose=not args.quiet) else 0


if __name__ == "__main__":
    sys.exit(main())
