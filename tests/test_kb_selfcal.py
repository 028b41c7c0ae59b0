"""A knowledge base calibrating itself (assistant.kb.synthesis, assistant.kb.selfcal): synthetic
questions written by a fake LLM, kept and reused incrementally, a fit on them, the prior when there
are none, and what happens when the LLM fails mid-build."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from kb_support import HashEmbedder, TableEmbedder, settings_in

from assistant.errors import GenerateError
from assistant.kb import calibration, selfcal
from assistant.kb.records import Record
from assistant.kb.store import current_generation, read_manifest
from assistant.kb.synthesis import QuestionCache, QuestionWriter, Synthetic, fingerprint, parse
from assistant.registry import build_index, open_retriever
from assistant.stages import Message

ENTRIES = [
    ("wifi", "What is the guest wifi password?", "The guest network is HB-Guest; the password is on the card at reception."),
    ("park", "How much does visitor parking cost?", "Visitor parking costs 10 yuan an hour, free for the first 30 minutes."),
    ("lunch", "When does the canteen open for lunch?", "The canteen serves lunch from 11:30 to 13:30 on weekdays."),
    ("badge", "Where do visitors get a badge?", "Visitors get a badge at the front desk on the ground floor."),
    ("print", "How do I print a document?", "Send it to the office printer from any laptop, then tap your badge on the printer."),
    ("room", "How do I book a meeting room?", "Book meeting rooms in the calendar app; a booking may last up to four hours."),
]
PARAPHRASES = {
    "wifi": ["guest wifi password please", "how do guests get online", "what wifi do visitors use", "访客无线网密码", "客人怎么上网"],
    "park": ["parking fee for visitors", "how much to park a car", "is visitor parking free", "访客停车多少钱", "停车怎么收费"],
    "lunch": ["canteen lunch hours", "what time is lunch served", "when can I eat lunch", "食堂几点开饭", "午饭时间"],
    "badge": ["visitor badge where", "how do guests get a pass", "where is the badge desk", "访客证在哪里领", "怎么领访客证"],
    "print": ["print a file from my laptop", "how to use the office printer", "printing documents", "怎么打印文件", "打印机怎么用"],
    "room": ["book a meeting room", "reserve a conference room", "how long can I book a room", "怎么订会议室", "会议室预约"],
}


@dataclass
class ParaphrasingLLM:
    """Answers the question-writing prompt with the entry's paraphrases (numbered, as small models
    do), in the language asked; counts its calls; ``fail_after`` raises like a crashing engine."""

    calls: int = 0
    fail_after: int | None = None
    temperatures: list[float | None] = field(default_factory=list)

    async def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float | None = None
    ) -> AsyncIterator[str]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise GenerateError("llm-failed", "the fake model fell over")
        self.calls += 1
        self.temperatures.append(temperature)
        asked = messages[-1].content
        chinese = "中文" in asked
        for entry_id, question, _ in ENTRIES:
            if question in asked:
                lines = [p for p in PARAPHRASES[entry_id] if (any("\u4e00" <= c <= "\u9fff" for c in p)) == chinese]
                yield "\n".join(f"{i}. {line}" for i, line in enumerate(lines, start=1))
                return
        yield "1. something unrelated entirely"


def write_kb(folder: Path, entries: list[tuple[str, str, str]] = ENTRIES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": i, "question": q, "answer": a} for i, q, a in entries]
    (folder / "faq.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return folder


def test_parse_strips_numbering_and_drops_copies_repeats_and_the_wrong_language() -> None:
    record = Record(id="wifi", kind="faq", text="What is the guest wifi password?", source="f", keys=["What is the guest wifi password?"])
    reply = "1. How do guests get online?\n2) What is the guest wifi password?\n- How do guests get online?\n3. 访客怎么上网\n4. ok\n\"Which wifi is for visitors?\""
    assert parse(reply, "en", record, 5) == ["How do guests get online?", "Which wifi is for visitors?"]
    assert parse("1. 访客怎么上网？\n2. 客人用哪个网络", "zh", record, 1) == ["访客怎么上网？"]


async def test_questions_are_written_once_and_only_for_new_or_changed_records(tmp_path: Path) -> None:
    llm = ParaphrasingLLM()
    records = [Record(id=i, kind="faq", text=q, answer=a, source="f", keys=[q], language="en") for i, q, a in ENTRIES]
    cache = QuestionCache(tmp_path)
    first = await QuestionWriter(llm).write(records, cache, progress=False)
    assert llm.calls == 2 * len(records) and set(llm.temperatures) == {0.0}  # greedy: the same KB, the same questions
    wifi = first[fingerprint(records[0])]
    assert Synthetic("how do guests get online", "en") in wifi and any(q.language == "zh" for q in wifi)
    again = await QuestionWriter(llm).write(records, QuestionCache(tmp_path), progress=False)  # read back from disk
    assert llm.calls == 2 * len(records) and again == first
    records[1] = Record(id="park", kind="faq", text=records[1].text, answer="Now 12 yuan an hour.", source="f", keys=records[1].keys)
    await QuestionWriter(llm).write(records, QuestionCache(tmp_path), progress=False)
    assert llm.calls == 2 * len(records) + 2  # only the changed entry


def test_a_torn_line_in_the_question_file_is_skipped(tmp_path: Path) -> None:
    cache = QuestionCache(tmp_path)
    cache.put_part("abc", "en", [Synthetic("how do guests get online", "en")])
    cache.put_part("abc", "zh", [Synthetic("客人怎么上网", "zh")])
    with (tmp_path / "questions.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"fp": "def:en", "questions": [{"te')  # a crash mid-write
    again = QuestionCache(tmp_path)
    assert again.get("abc") == [Synthetic("how do guests get online", "en"), Synthetic("客人怎么上网", "zh")]
    assert again.get_part("def", "en") is None and again.get("def") is None


def test_a_build_with_synthetic_questions_calibrates_itself(tmp_path: Path) -> None:
    s = settings_in(tmp_path)
    llm = ParaphrasingLLM()
    report = build_index(s, [write_kb(tmp_path / "kb")], progress=False, embedder=HashEmbedder(), synthesize=True, llm=llm)
    assert report.calibrated == "self" and report.questions_written == len(ENTRIES)
    generation = current_generation(tmp_path / "index")
    assert generation is not None
    manifest = read_manifest(generation)
    assert manifest["calibration_fit"] == "self" and manifest["self_check"]["queries"]["match"] > 0
    own = calibration.Calibration.from_json(manifest["calibration"])
    assert own != calibration.prior_for(HashEmbedder().identity)
    retriever = open_retriever(s, embedder=HashEmbedder())
    assert retriever.kb.calibration == own  # search scores with the index's own calibration
    # a rebuild of the same files writes nothing and fits the same calibration
    calls = llm.calls
    again = build_index(s, [tmp_path / "kb"], progress=False, embedder=HashEmbedder(), synthesize=True, llm=llm)
    assert llm.calls == calls and again.questions_written == 0
    generation = current_generation(tmp_path / "index")
    assert generation is not None and calibration.Calibration.from_json(read_manifest(generation)["calibration"]) == own


def test_without_synthesis_the_index_keeps_the_prior(tmp_path: Path) -> None:
    s = settings_in(tmp_path)
    report = build_index(s, [write_kb(tmp_path / "kb")], progress=False, embedder=HashEmbedder(), synthesize=False)
    assert report.calibrated == "prior" and not report.warnings
    retriever = open_retriever(s, embedder=HashEmbedder())
    assert retriever.kb.calibration == calibration.prior_for(HashEmbedder().identity)
    assert retriever.kb.manifest["calibration_fit"] == "prior"


def test_an_llm_failing_mid_build_loses_nothing(tmp_path: Path) -> None:
    s = settings_in(tmp_path)
    kb = write_kb(tmp_path / "kb")
    # one pass per language: every English question, then every Chinese one; fails in the second pass
    llm = ParaphrasingLLM(fail_after=len(ENTRIES) + 2)
    report = build_index(s, [kb], progress=False, embedder=HashEmbedder(), synthesize=True, llm=llm)
    assert any("synthetic questions stopped" in w and "fake model fell over" in w for w in report.warnings)
    assert report.calibrated == "self"  # on the two entries written in both languages before the failure
    assert len((tmp_path / "index" / "questions.jsonl").read_text(encoding="utf-8").splitlines()) == len(ENTRIES) + 2
    assert open_retriever(s, embedder=HashEmbedder()).search_sync("guest wifi password", k=1)[0].id == "wifi"
    llm.fail_after = None  # the next build writes only the rest: the missing Chinese ones
    calls = llm.calls
    again = build_index(s, [kb], progress=False, embedder=HashEmbedder(), synthesize=True, llm=llm)
    assert again.questions_written == len(ENTRIES) - 2 and llm.calls == calls + len(ENTRIES) - 2
    assert not [w for w in again.warnings if "synthetic" in w]


def test_held_out_questions_of_one_record_exclude_its_twin(tmp_path: Path) -> None:
    entries = [*ENTRIES, ("wifi-again", "What is the guest wifi password?", "The guest network is HB-Guest; the password is on the card at reception.")]
    s = settings_in(tmp_path)
    build_index(s, [write_kb(tmp_path / "kb", entries)], progress=False, embedder=HashEmbedder(), synthesize=False)
    kb = open_retriever(s, embedder=HashEmbedder()).kb
    twins = kb.twins(selfcal.TWIN_COSINE)
    first = next(i for i, r in enumerate(kb.records) if r.id == "wifi")
    second = next(i for i, r in enumerate(kb.records) if r.id == "wifi-again")
    assert twins[first] == {second} and twins[second] == {first}
    groups = selfcal.labelled(kb, {first: [Synthetic("guest wifi password please", "en")]})
    held = groups["held_out"]
    assert len(held) == 1 and not held.ys[0].any()  # neither the record nor its twin is a candidate
    rec, _, _ = kb.labelled_features("guest wifi password please", exclude={first, second})
    assert first not in rec and second not in rec


def test_translated_entries_are_twins_and_a_nearest_stranger_is_not(tmp_path: Path) -> None:
    # A bilingual table: the Chinese entries translate two English ones, at a cosine (0.7) well under
    # the repeated-entry rule's 0.85. A third Chinese entry's nearest English entry is "parking", but
    # parking's nearest Chinese entry is its own translation: not a twin. An English entry whose
    # nearest Chinese one is far (0.4) has none.
    e = np.eye(16)

    def at(base: int, other: int, cos: float) -> np.ndarray:
        return cos * e[base] + np.sqrt(1 - cos**2) * e[other]

    texts = {
        "What is the guest wifi password?": e[0],
        "访客无线网络密码是什么？": at(0, 5, 0.7),
        "How much is visitor parking?": e[1],
        "访客停车多少钱？": at(1, 6, 0.7),
        "员工停车证怎么办？": at(1, 7, 0.65),
        "Where is the gym?": e[2],
        "健身房几点开门？": at(2, 8, 0.4),
    }
    rows = [
        ("wifi", "What is the guest wifi password?", "HB-Guest"),
        ("wifi-zh", "访客无线网络密码是什么？", "HB-Guest"),
        ("park", "How much is visitor parking?", "2 hours free"),
        ("park-zh", "访客停车多少钱？", "两小时免费"),
        ("pass-zh", "员工停车证怎么办？", "找行政部"),
        ("gym", "Where is the gym?", "Floor 2"),
        ("gym-hours-zh", "健身房几点开门？", "早上七点"),
    ]
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    (kb_dir / "faq.jsonl").write_text(
        "\n".join(json.dumps({"id": i, "question": q, "answer": a}, ensure_ascii=False) for i, q, a in rows), encoding="utf-8"
    )
    s = settings_in(tmp_path)
    emb = TableEmbedder(texts, dims=16)  # a multilingual encoder in miniature: a translation lands near its original
    build_index(s, [kb_dir], progress=False, embedder=emb, synthesize=False)
    kb = open_retriever(s, embedder=emb).kb
    ids = [r.id for r in kb.records]
    twins = {ids[i]: {ids[j] for j in js} for i, js in kb.twins(selfcal.TWIN_COSINE).items()}
    assert twins == {"wifi": {"wifi-zh"}, "wifi-zh": {"wifi"}, "park": {"park-zh"}, "park-zh": {"park"}}


def test_the_fit_stays_near_the_prior_on_little_evidence_and_moves_on_much() -> None:
    rng = np.random.default_rng(0)
    prior = calibration.prior_for("use-multilingual-v3")

    def group(n: int, positive: bool) -> selfcal.Group:
        g = selfcal.Group()
        for _ in range(n):
            x = rng.random((3, len(calibration.FEATURES))).astype(np.float32)
            y = np.array([1.0, 0.0, 0.0]) if positive else np.zeros(3)
            g.add(x, y, 0.0)
        return g

    little = selfcal.fit_own(prior, {"match": group(2, True), "off_topic": group(2, False)}, source="t")
    much = selfcal.fit_own(prior, {"match": group(400, True), "off_topic": group(400, False)}, source="t")
    assert abs(little.offset - prior.offset) < abs(much.offset - prior.offset)
    assert little.weights == prior.weights == much.weights  # the ranking stays the prior's


@pytest.mark.embedded
def test_a_one_entry_knowledge_base_declines_what_it_does_not_hold(tmp_path: Path, models_dir: Path) -> None:
    """A one-entry KB used to answer "Where can I charge my electric car?" from its only entry (a lead
    over no runner-up looked like certainty); calibrated on its own questions and the off-topic set,
    the entry's own paraphrase is relevant and the unrelated question is not."""
    s = settings_in(tmp_path)
    s.general.models_dir = str(models_dir)
    write_kb(tmp_path / "kb", [ENTRIES[0]])
    build_index(s, [tmp_path / "kb"], progress=False, synthesize=True, llm=ParaphrasingLLM())
    retriever = open_retriever(s)
    assert retriever.search_sync("Where can I charge my electric car?", k=1)[0].score < s.answer.relevance_threshold
    assert retriever.search_sync("what wifi do visitors use", k=1)[0].score >= s.answer.relevance_threshold


def test_the_shipped_off_topic_set_is_bilingual() -> None:
    lines = selfcal.offtopic_questions()
    assert len(lines) > 200
    chinese = sum(any("\u4e00" <= c <= "\u9fff" for c in line) for line in lines)
    assert 0.3 < chinese / len(lines) < 0.7


def test_kb_eval_without_a_file_reports_the_held_out_questions_and_confusable_entries(tmp_path: Path) -> None:
    from assistant.kb.evaluate import self_check
    from assistant.kb.synthesis import QuestionCache, fingerprint, roles
    from assistant.routing import decide_route

    entries = [*ENTRIES, ("wifi-2", "What is the guest wifi password?", "Ask reception for today's guest password.")]
    s = settings_in(tmp_path)
    build_index(s, [write_kb(tmp_path / "kb", entries)], progress=False, embedder=HashEmbedder(), synthesize=True, llm=ParaphrasingLLM())
    kb = open_retriever(s, embedder=HashEmbedder()).kb
    cache = QuestionCache(tmp_path / "index")
    questions = {}
    for i, r in enumerate(kb.records):
        qs = cache.get(fingerprint(r)) or []
        questions[i] = [q.text for q, role in zip(qs, roles(i, qs, keys=False), strict=True) if role == "check"]
    questions = {i: qs for i, qs in questions.items() if qs}
    assert questions and sum(map(len, questions.values())) < sum(len(cache.get(fingerprint(r)) or []) for r in kb.records)

    def route(passages: list) -> tuple[str, list]:  # type: ignore[type-arg]
        d = decide_route(passages, s)
        return d.route, d.passages

    check = self_check(kb, questions, route)
    assert check.questions == sum(map(len, questions.values()))
    assert abs(sum(check.answerable.values()) - 1) < 0.01 and abs(sum(check.uncovered.values()) - 1) < 0.01
    # the two wifi entries ask the same question with different answers: which one is read is chance
    assert [(d["entry"], d["other"]) for d in check.duplicates] == [("wifi", "wifi-2")]


def test_synthetic_phrasings_are_indexed_but_never_shown(tmp_path: Path) -> None:
    s = settings_in(tmp_path)
    report = build_index(
        s, [write_kb(tmp_path / "kb")], progress=False, embedder=HashEmbedder(), synthesize=True, llm=ParaphrasingLLM(),
        synthetic_keys=True,
    )  # fmt: skip
    retriever = open_retriever(s, embedder=HashEmbedder())
    wifi = next(r for r in retriever.kb.records if r.id == "wifi")
    # the first question in each language is an extra phrasing; the rest fit or check the calibration
    assert wifi.extra_keys == ["guest wifi password please", "访客无线网密码"]
    assert report.keys == sum(len(r.keys) + len(r.extra_keys) for r in retriever.kb.records)
    (top,) = retriever.search_sync("访客无线网密码", k=1)  # a synthetic phrasing finds its entry...
    assert top.id == "wifi" and top.text == "What is the guest wifi password?"  # ...and shows its own question
    assert all(p.text != "guest wifi password please" for p in retriever.all_passages())
    assert retriever.kb.manifest["synthetic_keys"] is True


@pytest.mark.embedded
@pytest.mark.slow
def test_the_embedded_llm_writes_usable_questions(tmp_path: Path, models_dir: Path) -> None:
    """The default model (Qwen2.5 0.5B through llama.cpp) writes questions the parser keeps, in both
    languages, for an FAQ entry and a document chunk, and the build calibrates on them."""
    from assistant.registry import language_model

    if not (models_dir / "qwen2.5-0.5b" / "model.gguf").exists():
        pytest.skip("run `assistant models fetch` first (make test does)")
    s = settings_in(tmp_path)
    s.general.models_dir = str(models_dir)
    kb = write_kb(tmp_path / "kb", ENTRIES[:3])
    (kb / "guide.md").write_text("# Visitors\n\nVisitors sign in at the front desk and get a badge.\n", encoding="utf-8")
    llm = language_model(s)
    try:
        report = build_index(s, [kb], progress=False, synthesize=True, llm=llm)
    finally:
        llm.close()  # type: ignore[attr-defined]
    assert report.calibrated == "self" and report.questions_written == 4
    cache = QuestionCache(tmp_path / "index")
    written = [cache.get(line) for line in {json.loads(x)["fp"].split(":")[0] for x in (tmp_path / "index" / "questions.jsonl").read_text(encoding="utf-8").splitlines()}]
    assert all(qs for qs in written)
    languages = {q.language for qs in written for q in qs or []}
    assert languages == {"en", "zh"}
