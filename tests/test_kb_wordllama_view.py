"""The WordLlama second view of ``bench/retrieval.py``'s ablation: built from the wheel's own files,
offline, without running the ``wordllama`` package (whose loader would download its tokenizer)."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_retrieval", Path(__file__).resolve().parent.parent / "bench" / "retrieval.py"
)
assert _spec is not None and _spec.loader is not None
retrieval = importlib.util.module_from_spec(_spec)
sys.modules["bench_retrieval"] = retrieval
_spec.loader.exec_module(retrieval)
needs_wordllama = pytest.mark.skipif(importlib.util.find_spec("wordllama") is None, reason="wordllama not installed")


@needs_wordllama
def test_loads_offline_from_packaged_files(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.delitem(sys.modules, "wordllama", raising=False)
    view = retrieval.WordLlamaView.load()
    assert view is not None
    assert "wordllama" not in sys.modules  # its __init__ (logging setup, download-capable loader) never ran
    v = view.embed(["How do I reset my card PIN?", "I forgot the PIN of my card", "the weather on Mars", ""])
    assert v.shape == (4, 256) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v[:3], axis=1), 1.0, rtol=1e-5)
    assert not v[3].any()  # no tokens: a zero vector, not NaN
    assert v[0] @ v[1] > v[0] @ v[2]  # a paraphrase is nearer than an unrelated question


def test_absent_package_gives_no_view(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert retrieval.WordLlamaView.load() is None
