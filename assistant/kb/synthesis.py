"""Synthetic visitor questions: what a knowledge base writes about itself to calibrate its scores.

At build time the configured LLM reads each FAQ entry (its question and answer) and each document
chunk, and writes questions a visitor could ask that it answers, in the record's own language and in
the other one (an English question over a Chinese-only knowledge base is asked too). They are labelled
pairs for free: each question against its own record is a match; with its record held out, the best
remaining candidate is what an uncovered question on the KB's topic looks like
(``assistant.kb.selfcal``). They are never used to judge the assistant (the benchmark's questions are
written by people, ``bench/kb_transfer.py``).

Writing is the slow part of a build (the LLM writes ~60 tokens per record), so it is incremental:
questions are kept in ``<index_dir>/questions.jsonl``, one line per record fingerprint (the record's
text, answer, kind and language, and the writer's ``VERSION``), appended as they are written. A
build after a change writes only for new or changed records; a build that fails midway (the LLM
stopped, the disk filled, Ctrl-C) keeps what was written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from assistant.errors import AssistantError
from assistant.kb.records import Record
from assistant.language import detect_language
from assistant.stages import LanguageModel, Message, closing

log = logging.getLogger(__name__)

VERSION = 2
"""Bump when the prompts or the parsing change: every record's questions are written again."""
QUESTIONS_FILE = "questions.jsonl"
SAME_LANGUAGE = 2
"""Questions per record in its own language."""
OTHER_LANGUAGE = 1
"""... and in the other language (zh <-> en). Three in all: the LLM's writing is most of a build's
time (~12 tokens a question), and a few hundred records give the fit enough questions."""
MAX_TOKENS = 70
MAX_SOURCE_CHARS = 300
"""The part of an answer or a chunk shown to the LLM: enough for what it is about."""

_PROMPTS = {
    "en": (
        "You write the questions that visitors ask at a help desk. Given one entry of the help desk's "
        "knowledge, write {n} different questions a visitor could ask that the entry answers. Write them "
        "as people speak: short, in your own words, not copied from the entry. One question per line, "
        "no numbers, nothing else.",
        "Entry:\nQ: How do I reset my password?\nA: Open Settings > Account and choose Reset password; "
        "a link is emailed to you.\nWrite 3 questions in English.",
        "I forgot my password, what can I do?\nWhere do I change my password?\nHow do I get a password reset email?",
        "Write {n} questions in English.",
    ),
    "zh": (
        "你为服务台写访客会问的问题。给你服务台知识库里的一条内容，写出{n}个访客可能会问、并且这条内容能回答的不同问题。"
        "要像人说话一样：简短，用自己的话，不要照抄原文。每行一个问题，不要编号，不要写别的。",
        "内容：\n问：怎么重置密码？\n答：打开“设置 > 账户”，选择“重置密码”，重置链接会发到你的邮箱。\n用中文写3个问题。",
        "我忘了密码怎么办？\n在哪里改密码？\n重置密码的邮件怎么收？",
        "用中文写{n}个问题。",
    ),
}
_NUMBERING = re.compile(r"^\s*(?:[-*•·]|\(?\d+[.)、:：]|[一二三四五六七八九十]+[、.．])\s*")
_QUOTES = "\"'“”‘’「」『』"


@dataclass(frozen=True)
class Synthetic:
    """A question written for a record, in ``language``."""

    text: str
    language: str


Role = Literal["key", "fit", "check"]


def roles(record: int, questions: Sequence[Synthetic], *, keys: bool) -> list[Role]:
    """What each of a record's questions is for. With ``keys``, the first in each language becomes an
    extra phrasing of the record, indexed beside its own (``Record.extra_keys``). Of the rest, one in
    five (the same ones at every build, by record and position) is kept to ``check`` the calibration
    (``kb eval``) and the others ``fit`` it: no question is both searched for and judged."""
    out: list[Role] = []
    seen: set[str] = set()
    for position, q in enumerate(questions):
        if keys and q.language not in seen:
            out.append("key")
        else:
            out.append("check" if (record * 7 + position) % 5 == 4 else "fit")
        seen.add(q.language)
    return out


def record_language(record: Record) -> str:
    return "zh" if (record.language or detect_language(record.text)) == "zh" else "en"


def fingerprint(record: Record) -> str:
    """What a record's questions depend on: its content and the writer's version."""
    data = json.dumps([VERSION, record.kind, record.text, record.answer or "", record.language], ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:24]


def messages_for(record: Record, language: str, n: int) -> list[Message]:
    """The chat asking for ``n`` questions in ``language`` about ``record``."""
    system, example_user, example_reply, ask = _PROMPTS[language]
    if record.kind == "faq":
        answer = (record.answer or "")[:MAX_SOURCE_CHARS]
        entry = f"Q: {record.text}\nA: {answer}" if language == "en" else f"问：{record.text}\n答：{answer}"
    else:
        where = " / ".join(x for x in (record.title, record.section) if x)
        body = record.text[:MAX_SOURCE_CHARS]
        entry = f"({where})\n{body}" if where else body
    head = "Entry:\n" if language == "en" else "内容：\n"
    return [
        Message("system", system.format(n=n)),
        Message("user", example_user),
        Message("assistant", example_reply),
        Message("user", head + entry + "\n" + ask.format(n=n)),
    ]


def parse(reply: str, language: str, record: Record, n: int) -> list[str]:
    """The questions in an LLM reply: numbering, bullets and quotes stripped, too short or too long
    lines, copies of the record's own phrasings, lines in the wrong language and repeats dropped."""
    own = {_key(k) for k in [record.text, *record.keys]}
    out: list[str] = []
    seen: set[str] = set()
    for line in reply.splitlines():
        text = _NUMBERING.sub("", line).strip().strip(_QUOTES).strip()
        if not text:
            continue
        key = _key(text)
        size = len(key) if language == "zh" else len(text.split())
        if size < (4 if language == "zh" else 3) or size > (40 if language == "zh" else 30):
            continue
        if key in own or key in seen or detect_language(text) != language:
            continue
        seen.add(key)
        out.append(text)
        if len(out) == n:
            break
    return out


def _key(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


class QuestionCache:
    """``questions.jsonl`` beside the index: fingerprint -> questions, appended line by line. A line
    holds one record's questions in one language (``fp`` is ``<fingerprint>:<language>``), so a build
    stopped between a record's two languages keeps the first."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / QUESTIONS_FILE
        self._known: dict[str, list[Synthetic]] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                row = json.loads(line)
                self._known[str(row["fp"])] = [Synthetic(str(q["text"]), str(q["language"])) for q in row["questions"]]
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash: its record is written again

    def get(self, fp: str) -> list[Synthetic] | None:
        """A record's questions, both languages (the English ones first), or None while one is missing."""
        parts = [self._known.get(f"{fp}:{language}") for language in ("en", "zh")]
        return None if any(p is None for p in parts) else [q for p in parts for q in p or []]

    def get_part(self, fp: str, language: str) -> list[Synthetic] | None:
        return self._known.get(f"{fp}:{language}")

    def put_part(self, fp: str, language: str, questions: list[Synthetic]) -> None:
        self.put(f"{fp}:{language}", questions)

    def put(self, fp: str, questions: list[Synthetic]) -> None:
        self._known[fp] = questions
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row = {"fp": fp, "questions": [{"text": q.text, "language": q.language} for q in questions]}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def compact(self, keep: Iterable[str]) -> None:
        """Rewrite the file with only the ``keep`` records' questions (after a successful build)."""
        wanted = [part for fp in dict.fromkeys(keep) for part in (f"{fp}:en", f"{fp}:zh") if part in self._known]
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for fp in wanted:
                row = {"fp": fp, "questions": [{"text": q.text, "language": q.language} for q in self._known[fp]]}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, self.path)


Progress = Callable[[int, int], None]
"""``progress(done, total)`` after each record."""


class QuestionWriter:
    """Writes (or reuses) every record's synthetic questions with ``llm``; greedy decoding, so the
    same knowledge base gets the same questions."""

    def __init__(self, llm: LanguageModel, *, name: str = "") -> None:
        """``name``: the LLM's name, kept with the questions for ``kb stats``."""
        self.llm = llm
        self.name = name

    async def write(
        self, records: Sequence[Record], cache: QuestionCache, *, progress: bool = True
    ) -> dict[str, list[Synthetic]]:
        """Questions per record fingerprint, for every record. Raises ``AssistantError`` when the LLM
        fails; the questions written before are kept in ``cache``."""
        out: dict[str, list[Synthetic]] = {}
        todo = []
        for r in records:
            fp = fingerprint(r)
            known = cache.get(fp)
            if known is None:
                todo.append((fp, r))
            else:
                out[fp] = known
        todo = list(dict(todo).items())  # the same content twice (a duplicated FAQ row) is written once
        bar: Any = None
        if progress and todo:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="writing questions", unit="record", file=sys.stderr, leave=False)
        # One pass per language asked for, so consecutive prompts share their instructions and worked
        # example (llama.cpp reuses the processed beginning); a record is kept once both are written.
        try:
            for language in ("en", "zh"):
                for fp, r in todo:
                    if cache.get_part(fp, language) is not None:
                        continue
                    n = SAME_LANGUAGE if record_language(r) == language else OTHER_LANGUAGE
                    reply = await self._ask(messages_for(r, language, n))
                    cache.put_part(fp, language, [Synthetic(text, language) for text in parse(reply, language, r, n)])
                    if language == "zh" and bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        for fp, _ in todo:
            out[fp] = cache.get(fp) or []
        if todo:
            log.info("wrote synthetic questions for %d record(s), reused %d", len(todo), len(records) - len(todo))
        return out

    async def _ask(self, messages: list[Message]) -> str:
        try:
            async with closing(self.llm.stream(messages, max_tokens=MAX_TOKENS, temperature=0.0)) as deltas:
                return "".join([d async for d in deltas])
        except AssistantError:
            raise
        except Exception as err:  # an engine that failed without wrapping: one clear error
            raise AssistantError("kb-synthesis", f"writing synthetic questions failed: {err}") from err
