"""A sentence-transformers BERT encoder (mean pooling, unit length) run in numpy, no torch.

Serves the knowledge base's English view (``[kb] english_view``, see ``assistant.kb.views``):
all-MiniLM-L6-v2 from the ``all-minilm-l6-v2`` model pack (``assistant models fetch
all-minilm-l6-v2``; the official ``model.safetensors``, sha256-checked). Six layers of 384 wide:
a short question takes ~2 ms on one core, so the embedded profile gets a strong English encoder
without torch (~700 MB) in its dependencies. Its output matches sentence-transformers' own to
float32 rounding (``tests/test_kb_views.py``).

The folder needs ``config.json`` (a BERT config), ``model.safetensors`` and ``tokenizer.json``
(read with ``tokenizers``, which faster-whisper already brings).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant.config import Settings
from assistant.stages import AssistantError

MAX_TOKENS = 256
"""all-MiniLM-L6-v2's ``max_seq_length``: longer texts are truncated, as sentence-transformers does."""
BATCH = 32
_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file (8-byte header length, JSON header, raw little-endian
    data), as numpy arrays over one read of the file."""
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    data = memoryview(raw)[8 + size :]
    out: dict[str, np.ndarray] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(spec["dtype"])
        if dtype is None:
            raise AssistantError("kb-embedder", f"{path}: tensor {name} has dtype {spec['dtype']}, which this reader does not load")
        start, end = spec["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(spec["shape"])
    return out


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return np.asarray((x - mean) / np.sqrt(var + eps) * weight + bias, dtype=np.float32)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to within 1.5e-7 (Abramowitz and Stegun 7.1.26): ~40x faster than scipy's on these
    small float32 arrays, where scipy's took a tenth of a query's time."""
    a = np.abs(x)
    t = np.float32(1.0) / (np.float32(1.0) + np.float32(0.3275911) * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.asarray(np.copysign(np.float32(1.0) - poly * np.exp(-a * a), x), dtype=np.float32)


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact (erf) GELU."""
    return np.asarray(0.5 * x * (1.0 + _erf(x * np.float32(1.0 / np.sqrt(2.0)))), dtype=np.float32)


class NumpyBertEmbedder:
    """``Embedder`` over a BERT sentence-transformers folder; thread-safe (one call at a time)."""

    def __init__(self, folder: Path, *, name: str = "") -> None:
        from tokenizers import Tokenizer

        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            tensors = read_safetensors(folder / "model.safetensors")
            self._tokenizer: Any = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except (OSError, ValueError) as err:
            raise AssistantError("kb-embedder", f"cannot load the BERT encoder in {folder}: {err}") from err
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._name = name or folder.name
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config.get("layer_norm_eps", 1e-12))
        self._dims = int(config["hidden_size"])
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""

        def t(key: str) -> np.ndarray:
            return np.ascontiguousarray(tensors[prefix + key], dtype=np.float32)

        self._word = t("embeddings.word_embeddings.weight")
        self._position = t("embeddings.position_embeddings.weight")
        # Single-segment input: token type 0 everywhere, folded into the position table once.
        self._position = self._position + t("embeddings.token_type_embeddings.weight")[0]
        self._emb_norm = (t("embeddings.LayerNorm.weight"), t("embeddings.LayerNorm.bias"))
        self._layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            # q, k and v as one (d, 3d) matmul: one BLAS call instead of three.
            qkv_w = np.concatenate([t(p + f"attention.self.{n}.weight") for n in ("query", "key", "value")]).T
            qkv_b = np.concatenate([t(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
            self._layers.append(
                (
                    np.ascontiguousarray(qkv_w),
                    qkv_b,
                    np.ascontiguousarray(t(p + "attention.output.dense.weight").T),
                    t(p + "attention.output.dense.bias"),
                    (t(p + "attention.output.LayerNorm.weight"), t(p + "attention.output.LayerNorm.bias")),
                    np.ascontiguousarray(t(p + "intermediate.dense.weight").T),
                    t(p + "intermediate.dense.bias"),
                    np.ascontiguousarray(t(p + "output.dense.weight").T),
                    t(p + "output.dense.bias"),
                    (t(p + "output.LayerNorm.weight"), t(p + "output.LayerNorm.bias")),
                )
            )
        self._lock = threading.Lock()
        self._limit: Any = None
        try:
            from threadpoolctl import ThreadpoolController

            self._limit = ThreadpoolController().limit
        except ImportError:  # pragma: no cover - a dependency; without it BLAS picks its own threads
            pass

    @classmethod
    def from_settings(cls, settings: Settings, name: str) -> NumpyBertEmbedder:
        """The model pack ``name`` (e.g. ``all-minilm-l6-v2``), present and verified in ``models/``."""
        from assistant.models import model_dir

        return cls(model_dir(settings, name), name=name)

    @property
    def identity(self) -> str:
        return f"{self._name} (numpy bert, {self._dims}d mean-pooled)"

    @property
    def dimensions(self) -> int:
        return self._dims

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 of shape (len(texts), dimensions); an empty text gives the vector of
        ``[CLS] [SEP]``, as sentence-transformers does."""
        out = np.zeros((len(texts), self._dims), dtype=np.float32)
        if not texts:
            return out
        # One BLAS thread for a query or two: thread hand-off dominates such small matmuls (a
        # question took ~47 ms at p50 with the default threads on 2 busy cores, ~14 ms with one).
        threads = 1 if len(texts) <= 4 else 2
        with self._lock, self._limit(limits=threads, user_api="blas") if self._limit else contextlib.nullcontext():
            encodings = self._tokenizer.encode_batch(list(texts))
            ids = [e.ids for e in encodings]
            # Batches of similar length pad little.
            order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
            for start in range(0, len(order), BATCH):
                chosen = order[start : start + BATCH]
                out[chosen] = self._encode([ids[i] for i in chosen])
        return out

    def _encode(self, batch: list[list[int]]) -> np.ndarray:
        n, length = len(batch), max(len(b) for b in batch)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, b in enumerate(batch):
            ids[i, : len(b)] = b
            mask[i, : len(b)] = 1.0
        x = _layer_norm(self._word[ids] + self._position[:length], *self._emb_norm, self._eps)
        heads, d = self._heads, self._dims
        hd = d // heads
        # Padded keys get -inf-like logits; padded queries are dropped by the pooling mask.
        key_bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(hd))
        for qkv_w, qkv_b, o_w, o_b, norm1, i_w, i_b, f_w, f_b, norm2 in self._layers:
            qkv = (x @ qkv_w + qkv_b).reshape(n, length, 3, heads, hd).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            logits = (q @ k.transpose(0, 1, 3, 2)) * scale + key_bias
            logits -= logits.max(axis=-1, keepdims=True)
            weights = np.exp(logits)
            weights /= weights.sum(axis=-1, keepdims=True)
            context = (weights @ v).transpose(0, 2, 1, 3).reshape(n, length, d)
            x = _layer_norm(context @ o_w + o_b + x, *norm1, self._eps)
            x = _layer_norm(_gelu(x @ i_w + i_b) @ f_w + f_b + x, *norm2, self._eps)
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)
