"""The knowledge base: ingest FAQ tables and documents, index them, search them.

The API the rest of the assistant calls (the composition root, ``assistant.registry``, supplies
the embedders; nothing here picks an engine):

- ``build_index(settings, paths, ..., embedder=, view=) -> BuildReport``
- ``open_retriever(settings, index_dir, embedder=, view_for=) -> IndexRetriever`` (a ``Retriever``)
- ``domain_terms(settings, limit=50) -> list[str]`` (vocabulary for the Whisper prompt)
- ``faq_answers(settings) -> list[str]`` (every stored answer, for the instant-reply audio)

Heavy libraries (faiss, bm25s, jieba) load inside these functions, never at import.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.config import Settings
from assistant.errors import AssistantError, RetrieveError
from assistant.stages import Embedder

if TYPE_CHECKING:
    from assistant.kb.build import BuildReport, Synthesis
    from assistant.kb.calibration import Calibration
    from assistant.kb.search import IndexRetriever
    from assistant.kb.views import ViewLoader

__all__ = ["build_index", "domain_terms", "faq_answers", "index_path", "open_retriever"]

# These libraries narrate their own start-up (CPU feature probing, dictionary loading) at INFO and
# DEBUG; the assistant's --verbose is about the assistant, so they only speak up for warnings.
for _name in ("faiss", "faiss.loader", "jieba", "bm25s"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def index_path(settings: Settings, index_dir: str | Path | None = None) -> Path:
    return settings.path(str(index_dir)) if index_dir else settings.path(settings.kb.index_dir)


def build_index(
    settings: Settings,
    paths: Sequence[str | Path] | None = None,
    index_dir: str | Path | None = None,
    strict: bool = False,
    progress: bool = True,
    *,
    embedder: Embedder,
    view: ViewLoader | None = None,
    synthesis: Synthesis | None = None,
    prior: Calibration | None = None,
    synthetic_keys: bool = False,
    before_publish: Callable[[Path], None] | None = None,
) -> BuildReport:
    """Ingest ``paths`` (default ``[kb] paths``) into the index folder, incrementally and atomically.

    With ``strict``, any skipped file raises ``RetrieveError("kb-skipped", ...)`` after the build
    (the index is still written: the good files answer). ``view`` is the classifier's English view
    (``assistant.kb.views``); when its model is not fetched the build goes on without it and
    ``warnings`` says how to fetch it. ``synthesis``: how synthetic questions are written, for the
    index to calibrate itself (``assistant.kb.selfcal``); without it the index keeps ``prior``.
    ``before_publish(folder)``: a last check of the finished generation; raising stops it from going
    live (``build.refuse_new_skips``: the daemon's live reload).
    """
    from assistant.kb import build

    target = index_path(settings, index_dir)
    chosen = [settings.path(str(p)) for p in (paths or settings.kb.paths)]
    try:
        report = build.build(
            chosen,
            target,
            embedder=embedder,
            embedder_name=settings.kb.embedder,
            root=settings.root,
            chunk_chars=settings.kb.chunk_chars,
            overlap_chars=settings.kb.chunk_overlap_chars,
            progress=progress,
            view=view,
            synthesis=synthesis,
            prior=prior,
            synthetic_keys=synthetic_keys,
            before_publish=before_publish,
        )
    except OSError as err:  # a full disk, a read-only folder: the build published nothing
        reason = f"{err.strerror or err}{f' ({err.filename})' if err.filename else ''}"
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(target if target.exists() else target.parent).free
            if free < 64 * 2**20:  # some writers (numpy) say only "N requested and M written"
                reason += f"; the disk holding it has {free // 1024} KiB free"
        raise RetrieveError(
            "kb-write",
            f"the index could not be written to {target}: {reason}. The previous index is unchanged and "
            "still answers; free the space (or fix the folder's permissions) and build again",
        ) from err
    if strict and report.skipped:
        listed = "; ".join(f"{s.file}: {s.reason}" for s in report.skipped)
        raise RetrieveError("kb-skipped", f"{len(report.skipped)} file(s) skipped (--strict): {listed}")
    return report


def open_retriever(
    settings: Settings,
    index_dir: str | Path | None = None,
    *,
    embedder: Embedder | Callable[[], Embedder],
    view_for: Callable[[str], Embedder],
) -> IndexRetriever:
    """Load the live index generation. ``embedder``: the encoder, or a function that loads it (called
    only after the index was found and checked: a model load costs seconds). ``view_for(name)``
    loads the English view a generation was built with.

    Raises ``RetrieveError``: ``kb-missing`` when there is no index, ``kb-embedder-mismatch`` when it
    was built with another embedder, ``kb-view-missing`` when it was built with an English view
    whose model is not there now."""
    from assistant.kb.search import IndexRetriever, KnowledgeBase
    from assistant.kb.store import check_embedder, current_generation, read_manifest

    target = index_path(settings, index_dir)
    generation = current_generation(target)
    if generation is None:
        raise RetrieveError(
            "kb-missing", f"no knowledge-base index at {target}; build it with `assistant kb build` (--index {target})"
        )
    manifest = read_manifest(generation)
    if callable(embedder) and not isinstance(embedder, Embedder):
        check_embedder(manifest, target, name=settings.kb.embedder)  # before paying for a model load
        embedder = embedder()
    check_embedder(
        manifest, target, name=manifest["embedder"]["name"], identity=embedder.identity, dimensions=embedder.dimensions
    )
    view = None
    built_view = manifest.get("view")
    if built_view:
        # The index decides which view its classifier reads ([kb] english_view applies at the next build).
        name = str(built_view.get("name") or settings.kb.english_view)
        try:
            view = view_for(name)
        except AssistantError as err:
            raise RetrieveError(
                "kb-view-missing",
                f"the index at {target} was built with the English view '{name}', which cannot be loaded now ({err}); "
                f"fetch it, or rebuild the index with [kb] english_view = \"\"",
            ) from err
    try:
        return IndexRetriever(KnowledgeBase(generation, embedder, view=view))
    except AssistantError:
        raise
    except Exception as err:  # a damaged file (numpy, zip, bm25s, faiss): one clear error naming it
        from assistant.kb.store import damaged, find_damage

        raise (find_damage(generation) or damaged(generation, "(a file)", f"{type(err).__name__}: {err}")) from err


def domain_terms(settings: Settings, limit: int = 50, index_dir: str | Path | None = None) -> list[str]:
    """The knowledge base's own vocabulary (names, places, products), most distinctive first.

    Cheap: read from the manifest, no model loads. Empty when there is no index yet.
    """
    from assistant.kb.terms import stored_terms

    return stored_terms(index_path(settings, index_dir), limit)


def faq_answers(settings: Settings, index_dir: str | Path | None = None) -> list[str]:
    """Every distinct FAQ answer in the live generation (empty when there is no index)."""
    from assistant.kb.store import current_generation, read_records

    generation = current_generation(index_path(settings, index_dir))
    if generation is None:
        return []
    seen: dict[str, None] = {}
    for record in read_records(generation):
        if record.kind == "faq" and record.answer and record.answer.strip():
            seen.setdefault(record.answer.strip(), None)
    return list(seen)
