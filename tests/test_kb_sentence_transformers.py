"""The sentence-transformers embedder on a tiny random BERT written in the test (no hub, no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kb_support import settings_in

from assistant.stages import AssistantError, Embedder, ModelMissingError

pytestmark = pytest.mark.slow

WORDS = "visitor parking fee guest wifi password canteen hours 访 客 停 车 收 费 请 问".split()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    st = pytest.importorskip("sentence_transformers")
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny-bert")
    bert = root / "bert"
    bert.mkdir()
    (bert / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n", encoding="utf-8")
    # transformers 5 ignores vocab_file in the constructor: load the folder instead (see ENGINES.md)
    BertTokenizerFast.from_pretrained(str(bert)).save_pretrained(str(bert))
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(str(bert))
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer
    word = Transformer(str(bert), max_seq_length=32)
    dimension_of = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    model = st.SentenceTransformer(modules=[word, Pooling(dimension_of(), "mean")])
    folder = root / "st"
    model.save(str(folder))
    return folder


def test_embeds_normalised_vectors_offline(tiny_model: Path, tmp_path: Path) -> None:
    from assistant.engines.sentence_transformers import SentenceTransformersEmbedder

    settings = settings_in(tmp_path, embedder="sentence-transformers", embedder_path=str(tiny_model))
    emb = SentenceTransformersEmbedder.from_settings(settings)
    assert isinstance(emb, Embedder)
    vectors = emb.embed(["visitor parking fee", "请问停车收费", "guest wifi password"])
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert emb.dimensions == 32 and emb.identity.startswith("sentence-transformers:st@")
    assert emb.identity == SentenceTransformersEmbedder(tiny_model).identity  # stable across loads
    assert emb.embed([]).shape == (0, 32)


def test_builds_and_searches_an_index(tiny_model: Path, tmp_path: Path) -> None:
    from assistant.registry import build_index, open_retriever

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "faq.csv").write_text("question,answer\nvisitor parking fee,2 hours free\nguest wifi password,ask the desk\n", encoding="utf-8")
    settings = settings_in(tmp_path, embedder="sentence-transformers", embedder_path=str(tiny_model))
    report = build_index(settings, [kb], progress=False)
    assert report.embedder.startswith("sentence-transformers:")
    top = open_retriever(settings).search_sync("visitor parking fee", k=1)[0]
    assert top.id == "faq-1" and 0.0 <= top.score <= 1.0


def test_missing_folder_and_missing_setting(tmp_path: Path) -> None:
    from assistant.engines.sentence_transformers import SentenceTransformersEmbedder

    with pytest.raises(ModelMissingError, match="embedder_path"):
        SentenceTransformersEmbedder(tmp_path / "nope")
    with pytest.raises(AssistantError, match="embedder_path"):
        SentenceTransformersEmbedder.from_settings(settings_in(tmp_path, embedder="sentence-transformers"))
