"""sentence-transformers for any local model folder (bge-m3, all-MiniLM-L6-v2, ...).

The path a GPU deployment takes: ``[kb] embedder = "sentence-transformers"`` and ``embedder_path``
pointing at a model folder on disk. The hub is never contacted (``HF_HUB_OFFLINE=1``): a folder
that is not there is a ``model-missing`` error naming the setting to fix.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant.config import Settings
from assistant.stages import AssistantError, ModelMissingError


def _folder_fingerprint(folder: Path) -> str:
    """A short hash of the folder's config files and weight sizes: a retrained model in the same
    folder gets a new identity, and hashing gigabytes of weights at every start is avoided."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        h.update(rel.encode())
        if path.suffix in {".json", ".txt", ".model"} and path.stat().st_size < 5_000_000:
            h.update(path.read_bytes())
        else:
            h.update(str(path.stat().st_size).encode())
    return h.hexdigest()[:12]


class SentenceTransformersEmbedder:
    """``Embedder`` over ``sentence_transformers.SentenceTransformer`` loaded from a local folder."""

    def __init__(self, model_path: str | Path, *, device: str = "cpu", batch_size: int = 64) -> None:
        folder = Path(model_path)
        if not folder.is_dir():
            raise ModelMissingError(
                folder.name or "sentence-transformers",
                folder,
                fetch_hint="place a sentence-transformers model folder there and set [kb] embedder_path",
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise AssistantError(
                "kb-embedder", "the sentence-transformers embedder needs the `heavy` extra: pip install -e '.[heavy]'"
            ) from err
        try:
            self._model: Any = SentenceTransformer(str(folder), device=device, local_files_only=True)
        except Exception as err:
            raise AssistantError("kb-embedder", f"cannot load the sentence-transformers model in {folder}: {err}") from err
        # renamed in sentence-transformers 6 (the old name still works there, with a warning)
        dimension_of = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dims = dimension_of()
        if not dims:
            dims = int(self._model.encode(["x"], convert_to_numpy=True).shape[1])
        self._dimensions = int(dims)
        self._identity = f"sentence-transformers:{folder.name}@{_folder_fingerprint(folder)}"
        self._batch_size = batch_size
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SentenceTransformersEmbedder:
        if not settings.kb.embedder_path:
            raise AssistantError(
                "config-kb", '[kb] embedder = "sentence-transformers" needs [kb] embedder_path (a local model folder)'
            )
        return cls(settings.path(settings.kb.embedder_path))

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 of shape (len(texts), dimensions)."""
        if not texts:
            return np.zeros((0, self._dimensions), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)
