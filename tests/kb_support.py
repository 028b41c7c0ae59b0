"""Helpers for the knowledge-base tests: a deterministic hashing embedder and fixture file makers."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from assistant.config import Settings


class HashEmbedder:
    """Bag of words (Latin) and character bigrams (Chinese) hashed into ``dims`` buckets, L2-normalised.

    Texts sharing words get close vectors, as a real encoder's paraphrases would; no model needed.
    ``calls`` records every text embedded (to check what an incremental build re-embeds).
    """

    def __init__(self, dims: int = 64, name: str = "hash-test") -> None:
        self._dims = dims
        self._name = name
        self.calls: list[str] = []

    @property
    def identity(self) -> str:
        return f"{self._name}-{self._dims}"

    @property
    def dimensions(self) -> int:
        return self._dims

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.extend(texts)
        out = np.zeros((len(texts), self._dims), dtype=np.float32)
        for i, text in enumerate(texts):
            low = text.lower()
            feats = re.findall(r"[a-z0-9]+", low)
            cjk = re.findall(r"[\u4e00-\u9fff]", low)
            feats += ["".join(p) for p in itertools.pairwise(cjk)] + cjk
            for f in feats:
                h = int(hashlib.md5(f.encode()).hexdigest(), 16)
                out[i, h % self._dims] += 1.0 if (h >> 64) & 1 else -1.0
            if not feats:
                out[i, 0] = 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms


def settings_in(tmp: Path, **kb: object) -> Settings:
    """Settings rooted at ``tmp``; synthetic questions off unless asked for (they need an LLM)."""
    s = Settings(root=tmp)
    s.kb.index_dir = str(tmp / "index")
    s.kb.synthesize = False
    for key, value in kb.items():
        setattr(s.kb, key, value)
    return s


def minimal_pdf(text_lines: Sequence[str]) -> bytes:
    """A valid one-page PDF showing ``text_lines`` in Helvetica (Latin text), with a correct xref table."""
    content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) '" for line in text_lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


class TableEmbedder:
    """Known texts get fixed vectors; anything else a vector orthogonal to all of them."""

    def __init__(self, table: dict[str, Sequence[float]], dims: int = 8) -> None:
        self.table = {k: np.asarray(v, dtype=np.float32) for k, v in table.items()}
        self.dims = dims

    identity = "table-test"

    @property
    def dimensions(self) -> int:
        return self.dims

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for i, t in enumerate(texts):
            v = self.table.get(t.split(": ", 1)[-1], np.eye(self.dims, dtype=np.float32)[-1])
            out[i] = v / np.linalg.norm(v)
        return out
