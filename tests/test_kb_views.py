"""The classifier's English view (assistant.kb.views) and the numpy BERT encoder that serves it
(assistant.engines.bert_numpy): which text the view reads, how an index keeps and reuses its
vectors, what happens when its model is missing, and that the numpy forward pass equals
transformers' own on a tiny random BERT built here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from kb_support import HashEmbedder, settings_in

from assistant.engines.bert_numpy import NumpyBertEmbedder, read_safetensors
from assistant.kb import views
from assistant.kb.build import build
from assistant.kb.classifier import EntryClassifier
from assistant.kb.search import KnowledgeBase
from assistant.kb.store import current_generation
from assistant.registry import build_index, open_retriever
from assistant.stages import ModelMissingError, RetrieveError

ROWS = [
    {"id": "sick", "question": "sick leave", "answer": "five days fully paid", "alternates": ["call in sick", "I am ill"]},
    {"id": "annual", "question": "annual leave", "answer": "ten vacation days", "alternates": ["holiday request", "time off"]},
    {"id": "pin", "question": "change pin", "answer": "at any cash machine", "alternates": ["new pin code", "forgot pin"]},
    {"id": "wifi", "question": "访客无线网络", "answer": "连接HB-Guest", "alternates": ["访客Wi-Fi密码", "客人怎么上网"]},
]


def write_kb(folder: Path, rows: list[dict[str, object]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "faq.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return folder


def build_with(tmp: Path, kb: Path, main: HashEmbedder, view: HashEmbedder | None, name: str = "fake-view") -> Path:
    loader = views.ViewLoader(name, lambda: view) if view is not None else None
    build([kb], tmp / "index", embedder=main, embedder_name="use-multilingual", root=tmp,
          chunk_chars=400, overlap_chars=80, progress=False, view=loader)  # fmt: skip
    gen = current_generation(tmp / "index")
    assert gen is not None
    return gen


def test_is_english_reads_latin_text_only() -> None:
    assert views.is_english("How do I reset my PIN?")
    assert not views.is_english("访客Wi-Fi密码")  # mixed: Chinese
    assert not views.is_english("2026-12-01")  # no letters
    assert not views.is_english("")


def test_view_vectors_are_zero_for_chinese() -> None:
    view = HashEmbedder(dims=16, name="view")
    v = views.view_vectors(view, ["sick leave", "病假怎么请", "time off"])
    assert v.shape == (3, 16) and not v[1].any() and v[0].any() and v[2].any()
    assert view.calls == ["sick leave", "time off"]
    x = views.classifier_input(np.ones((3, 4), dtype=np.float32), v)
    assert x.shape == (3, 20) and np.allclose(x[:, 4:], views.VIEW_WEIGHT * v)


def test_an_index_with_a_view_keeps_its_vectors_and_searches(tmp_path: Path) -> None:
    main, view = HashEmbedder(), HashEmbedder(dims=16, name="view")
    gen = build_with(tmp_path, write_kb(tmp_path / "kb", ROWS), main, view)
    manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["view"] == {"name": "fake-view", "identity": "view-16", "dimensions": 16, "weight": views.VIEW_WEIGHT}
    with np.load(gen / "view.npz") as z:
        keys, answers = z["keys"], z["answers"]
    assert keys.shape == (12, 16) and answers.shape == (4, 16)
    assert not keys[9:].any() and not answers[3].any()  # the Chinese entry's texts: zeros
    assert "访客无线网络" not in view.calls and "five days fully paid" in view.calls
    model = EntryClassifier.load(gen / "classifier.npz")
    assert model.weights.shape == (64 + 16, 4)
    kb = KnowledgeBase(gen, main, view=view)
    assert kb.search_sync("I am ill today", k=1)[0].id == "sick"
    assert kb.search_sync("客人怎么上网", k=1)[0].id == "wifi"
    with pytest.raises(RetrieveError) as info:
        KnowledgeBase(gen, main)  # its classifier reads the view: opening it without is refused
    assert info.value.code == "kb-view-mismatch"


def test_a_rebuild_reuses_view_vectors(tmp_path: Path) -> None:
    kb = write_kb(tmp_path / "kb", ROWS)
    (kb / "more.jsonl").write_text(json.dumps({"id": "gym", "question": "gym", "answer": "4th floor", "alternates": ["fitness room"]}))
    main, view = HashEmbedder(), HashEmbedder(dims=16, name="view")
    build_with(tmp_path, kb, main, view)
    view.calls.clear()
    build_with(tmp_path, kb, main, view)
    assert view.calls == []
    (kb / "more.jsonl").write_text(json.dumps({"id": "gym", "question": "gym", "answer": "5th floor", "alternates": ["fitness room"]}))
    build_with(tmp_path, kb, main, view)
    assert sorted(view.calls) == ["5th floor", "fitness room", "gym"]
    other = HashEmbedder(dims=16, name="other-view")  # another view: nothing of the old one is reused
    build_with(tmp_path, kb, main, other)
    assert "sick leave" in other.calls


def test_no_view_without_english_entries(tmp_path: Path) -> None:
    zh = [r for r in ROWS if r["id"] == "wifi"] + [
        {"id": "gym", "question": "健身房在哪", "answer": "四楼", "alternates": ["健身房几点开", "有健身房吗"]},
        {"id": "park", "question": "访客停车", "answer": "免费两小时", "alternates": ["停车收费", "车停哪里"]},
    ]

    def never() -> HashEmbedder:
        raise AssertionError("a Chinese knowledge base loaded the English view")

    build([write_kb(tmp_path / "kb", zh)], tmp_path / "index", embedder=HashEmbedder(), embedder_name="use-multilingual",
          root=tmp_path, chunk_chars=400, overlap_chars=80, progress=False, view=views.ViewLoader("v", never))  # fmt: skip
    gen = current_generation(tmp_path / "index")
    assert gen is not None and json.loads((gen / "manifest.json").read_text())["view"] is None


def test_a_missing_view_model_is_reported_and_the_build_goes_on(tmp_path: Path) -> None:
    s = settings_in(tmp_path)  # models/ is empty here
    assert s.kb.english_view == "all-minilm-l6-v2"
    main = HashEmbedder()
    report = build_index(s, [write_kb(tmp_path / "kb", ROWS)], progress=False, embedder=main)
    assert any("English view" in w and "assistant models fetch all-minilm-l6-v2" in w for w in report.warnings)
    retriever = open_retriever(s, embedder=main)
    assert retriever.manifest["view"] is None and retriever.search_sync("I am ill", k=1)[0].id == "sick"


def test_an_index_built_with_a_view_names_its_model_when_it_is_gone(tmp_path: Path) -> None:
    s = settings_in(tmp_path)
    main = HashEmbedder()
    build_with(tmp_path, write_kb(tmp_path / "kb", ROWS), main, HashEmbedder(dims=16, name="view"), name="all-minilm-l6-v2")
    with pytest.raises(RetrieveError) as info:
        open_retriever(s, embedder=main)
    assert info.value.code == "kb-view-missing" and "assistant models fetch all-minilm-l6-v2" in info.value.message


def test_safetensors_reader(tmp_path: Path) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([7, 8], dtype=np.int64)
    header = {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, "b": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]}}
    raw = json.dumps(header).encode()
    (tmp_path / "t.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + a.tobytes() + b.tobytes())
    out = read_safetensors(tmp_path / "t.safetensors")
    assert np.array_equal(out["a"], a) and np.array_equal(out["b"], b)


def test_missing_model_pack_names_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(ModelMissingError, match="assistant models fetch all-minilm-l6-v2"):
        NumpyBertEmbedder.from_settings(settings_in(tmp_path), "all-minilm-l6-v2")


needs_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None,
    reason="transformers/torch (the heavy extra) not installed",
)


@pytest.mark.slow
@needs_transformers
def test_numpy_forward_equals_transformers_on_a_tiny_bert(tmp_path: Path) -> None:
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "sick", "leave", "how", "do", "i", "take", "reset", "my", "pin", "?", "##s"]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(tmp_path / "tokenizer.json"))
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    torch.manual_seed(0)
    model = BertModel(config).eval()
    model.save_pretrained(tmp_path, safe_serialization=True)
    texts = ["How do I take sick leave?", "reset my pin", "pins", "", "sick " * 300]
    numpy_out = NumpyBertEmbedder(tmp_path, name="tiny").embed(texts)
    tok.enable_truncation(256)  # as sentence-transformers truncates (the [SEP] stays)
    with torch.no_grad():
        for text, got in zip(texts, numpy_out, strict=True):
            ids = torch.tensor([tok.encode(text).ids])
            hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
            want = hidden.mean(dim=0)
            want = (want / want.norm()).numpy()
            np.testing.assert_allclose(got, want, atol=2e-5)
    assert numpy_out.dtype == np.float32 and numpy_out.shape == (5, 32)


@pytest.mark.embedded
def test_real_english_view_matches_sentence_transformers() -> None:
    """The packaged all-MiniLM-L6-v2, when fetched into models/: unit vectors, paraphrases close. (Its
    vectors equalled sentence-transformers' to 2e-7 when this engine was written.)"""
    from assistant.config import Settings

    settings = Settings(root=Path(__file__).resolve().parent.parent)
    try:
        view = NumpyBertEmbedder.from_settings(settings, "all-minilm-l6-v2")
    except ModelMissingError:
        pytest.skip("all-minilm-l6-v2 is not fetched (assistant models fetch all-minilm-l6-v2)")
    texts = ["How do I reset my card PIN?", "I forgot the PIN of my card", "what's the weather on Mars"]
    v = view.embed(texts)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert v[0] @ v[1] > 0.6 > v[0] @ v[2]
