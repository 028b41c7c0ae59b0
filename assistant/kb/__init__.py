"""The knowledge base: ingest FAQ tables and documents, index them, search them.

The public API the rest of the assistant calls:

- ``build_index(settings, paths, index_dir=None, strict=False, progress=True) -> BuildReport``
- ``open_retriever(settings, index_dir=None) -> IndexRetriever`` (a ``Retriever``: async ``search``)
- ``domain_terms(settings, limit=50) -> list[str]`` (vocabulary for the Whisper prompt)

Heavy libraries (faiss, bm25s, jieba, the embedder) load inside these functions, never at import.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.config import Settings
from assistant.stages import AssistantError, Embedder, RetrieveError

if TYPE_CHECKING:
    from assistant.kb.index import BuildReport
    from assistant.kb.search import IndexRetriever
    from assistant.kb.views import ViewLoader

__all__ = ["build_index", "domain_terms", "index_path", "open_retriever"]

# These libraries narrate their own start-up (CPU feature probing, dictionary loading) at INFO and
# DEBUG; the assistant's --verbose is about the assistant, so they only speak up for warnings.
for _name in ("faiss", "faiss.loader", "jieba", "bm25s"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def index_path(settings: Settings, index_dir: str | Path | None = None) -> Path:
    return settings.path(str(index_dir)) if index_dir else settings.path(settings.kb.index_dir)


def _embedder(settings: Settings) -> Embedder:
    from assistant import registry

    return registry.embedder(settings)


def _view(settings: Settings, name: str) -> Embedder:
    from assistant import registry

    return registry.view_embedder(settings, name)


def _view_loader(settings: Settings) -> ViewLoader | None:
    from assistant.kb.views import ViewLoader

    name = settings.kb.english_view
    return ViewLoader(name, lambda: _view(settings, name)) if name else None


def build_index(
    settings: Settings,
    paths: Sequence[str | Path] | None = None,
    index_dir: str | Path | None = None,
    strict: bool = False,
    progress: bool = True,
    *,
    embedder: Embedder | None = None,
) -> BuildReport:
    """Ingest ``paths`` (default ``[kb] paths``) into the index folder, incrementally and atomically.

    With ``strict``, any skipped file raises ``RetrieveError("kb-skipped", ...)`` after the build
    (the index is still written: the good files answer). ``embedder`` overrides the configured one.
    ``[kb] english_view`` names the classifier's English view (``assistant.kb.views``); when its
    model is not fetched the build goes on without it and ``warnings`` says how to fetch it.
    """
    from assistant.kb import index

    target = index_path(settings, index_dir)
    chosen = [settings.path(str(p)) for p in (paths or settings.kb.paths)]
    report = index.build(
        chosen,
        target,
        embedder=embedder or _embedder(settings),
        embedder_name=settings.kb.embedder,
        root=settings.root,
        chunk_chars=settings.kb.chunk_chars,
        overlap_chars=settings.kb.chunk_overlap_chars,
        progress=progress,
        view=_view_loader(settings),
    )
    if strict and report.skipped:
        listed = "; ".join(f"{s.file}: {s.reason}" for s in report.skipped)
        raise RetrieveError("kb-skipped", f"{len(report.skipped)} file(s) skipped (--strict): {listed}")
    return report


def open_retriever(
    settings: Settings, index_dir: str | Path | None = None, *, embedder: Embedder | None = None
) -> IndexRetriever:
    """Load the live index generation; raises ``RetrieveError`` ``kb-missing`` when there is none,
    ``kb-embedder-mismatch`` when it was built with another embedder, and ``kb-view-missing`` when
    it was built with an English view whose model is not there now."""
    from assistant.kb.index import check_embedder, current_generation, read_manifest
    from assistant.kb.search import IndexRetriever, KnowledgeBase

    target = index_path(settings, index_dir)
    generation = current_generation(target)
    if generation is None:
        raise RetrieveError(
            "kb-missing", f"no knowledge-base index at {target}; build it with `assistant kb build` (--index {target})"
        )
    manifest = read_manifest(generation)
    if embedder is None:
        check_embedder(manifest, target, name=settings.kb.embedder)  # before paying for a model load
    chosen = embedder or _embedder(settings)
    check_embedder(
        manifest, target, name=manifest["embedder"]["name"], identity=chosen.identity, dimensions=chosen.dimensions
    )
    view = None
    built_view = manifest.get("view")
    if built_view:
        # The index decides which view its classifier reads ([kb] english_view applies at the next build).
        name = str(built_view.get("name") or settings.kb.english_view)
        try:
            view = _view(settings, name)
        except AssistantError as err:
            raise RetrieveError(
                "kb-view-missing",
                f"the index at {target} was built with the English view '{name}', which cannot be loaded now ({err}); "
                f"fetch it, or rebuild the index with [kb] english_view = \"\"",
            ) from err
    return IndexRetriever(KnowledgeBase(generation, chosen, view=view))


def domain_terms(settings: Settings, limit: int = 50, index_dir: str | Path | None = None) -> list[str]:
    """The knowledge base's own vocabulary (names, places, products), most distinctive first.

    Cheap: read from the manifest, no model loads. Empty when there is no index yet.
    """
    from assistant.kb.index import current_generation

    generation = current_generation(index_path(settings, index_dir))
    if generation is None:
        return []
    manifest = json.loads((generation / "manifest.json").read_text(encoding="utf-8"))
    terms = manifest.get("domain_terms", [])
    return [str(t) for t in terms[:limit]]
