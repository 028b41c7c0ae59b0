"""The index folder on disk: its layout, and reading the live generation.

Layout of ``index_dir``::

    CURRENT                 the name of the live generation (replaced atomically with os.replace)
    gen-<time>-<pid>/       one complete, immutable index
        manifest.json       format, embedder identity and dimensions, per-file sha256, counts,
                            skipped files, calibration, domain terms
        records.jsonl       one record per line (FAQ entry or document chunk), in key order
        vectors.faiss       one vector per key (flat inner product, or HNSW above HNSW_MIN_KEYS)
        lexical/            bm25s index over the same keys + document frequencies
        classifier.npz      the FAQ entry classifier, when one is trained (see ``classifier``)
        answers.npy         the FAQ answers' vectors, one row per record (zeros for chunks), kept
                            with the classifier it trains so a rebuild re-embeds only new answers
        answers_lexical/    bm25s index over the FAQ answers (one document per FAQ entry, in
                            record order), beside answers.npy
        view.npz            the English view's vectors (``views``) of the FAQ entries' phrasings
                            (``keys``, in key order) and answers (``answers``, one row per entry),
                            when the classifier reads that view; zeros for non-English text
    .build-<pid>-<n>/       a build in progress (removed by the next build if it was killed)
    .lock                   held (flock) while a build runs

A build (``assistant.kb.build``) writes a whole new generation beside the live one and only then
points CURRENT at it, so a crash, Ctrl-C or kill at any moment leaves the previous index answering.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import RetrieveError
from assistant.kb.records import Record

FORMAT = 2
"""2: the manifest's ``calibration`` is the index's own (fitted at build), read by search."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def current_generation(index_dir: Path) -> Path | None:
    pointer = index_dir / "CURRENT"
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    gen = index_dir / name
    return gen if (gen / "manifest.json").is_file() else None


def damaged(generation: Path, file: str, reason: object) -> RetrieveError:
    """The error for a generation file that cannot be read (truncated, overwritten, a full disk at
    the wrong moment): which file, why, and what to do. ``kb-corrupt``."""
    index_dir = generation.parent
    return RetrieveError(
        "kb-corrupt",
        f"the index at {index_dir} is damaged: {generation.name}/{file} cannot be read ({reason}). Rebuild it "
        f"with `assistant kb build --index {index_dir}`: the build reads the sources again and replaces the "
        f"damaged generation only once the new one is complete",
    )


def read_manifest(generation: Path) -> dict[str, Any]:
    try:
        data = json.loads((generation / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # JSONDecodeError, UnicodeDecodeError
        raise damaged(generation, "manifest.json", err) from err
    if not isinstance(data, dict):
        raise damaged(generation, "manifest.json", "not a JSON object")
    if data.get("format") != FORMAT:
        raise RetrieveError(
            "kb-format",
            f"the index at {generation.parent} has format {data.get('format')}, this version reads {FORMAT}; "
            f"rebuild it with `assistant kb build --index {generation.parent}`",
        )
    missing = [key for key in ("embedder", "calibration", "counts") if not isinstance(data.get(key), dict)]
    if missing:
        raise damaged(generation, "manifest.json", f"no {', '.join(missing)}")
    return data


def read_records(generation: Path) -> list[Record]:
    """Every record, checked against the manifest's counts (a file cut at a line end still parses)."""
    records = []
    try:
        with (generation / "records.jsonl").open(encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        records.append(Record.from_json(json.loads(line)))
                    except (ValueError, TypeError) as err:
                        raise damaged(generation, "records.jsonl", f"line {n}: {err}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise damaged(generation, "records.jsonl", err) from err
    counts = _counts(generation)
    if counts is None:
        return records
    expected = counts.get("entries", 0) + counts.get("chunks", 0)
    keys = sum(len(r.all_keys) for r in records)
    if len(records) != expected or keys != counts.get("keys", keys):
        raise damaged(
            generation, "records.jsonl", f"{len(records)} records with {keys} keys, the manifest says {expected} with {counts.get('keys')}"
        )
    return records


def _counts(generation: Path) -> dict[str, int] | None:
    """The manifest's record counts, or None when it has none to check against (a damaged manifest
    is ``read_manifest``'s to report)."""
    try:
        counts = json.loads((generation / "manifest.json").read_text(encoding="utf-8")).get("counts")
    except (OSError, ValueError, AttributeError):
        return None
    return counts if isinstance(counts, dict) else None


def read_vectors(generation: Path) -> Any:
    import faiss

    try:
        return faiss.read_index(str(generation / "vectors.faiss"))
    except RuntimeError as err:  # faiss's own message is a C++ stack line; its last part says what
        raise damaged(generation, "vectors.faiss", str(err).strip().splitlines()[-1][-200:]) from err


def find_damage(generation: Path) -> RetrieveError | None:
    """Read every file of a generation; the error for the first that cannot be read, or None. Used
    to name the file when loading failed somewhere that did not say (numpy, bm25s, zip files)."""
    import zipfile

    try:
        read_records(generation)
        read_vectors(generation)
    except RetrieveError as err:
        return err
    files = [p for p in sorted(generation.rglob("*")) if p.is_file() and p.suffix in (".npy", ".npz", ".json")]
    for path in files:
        name = path.relative_to(generation).as_posix()
        try:
            if path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            elif path.suffix == ".npy":
                np.load(path)
            else:
                with np.load(path) as z:
                    for key in z.files:
                        z[key]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            return damaged(generation, name, err)
    return None


def flat_view(index: Any) -> np.ndarray:
    """The stored vectors of a flat or HNSW-flat faiss index as a (n, d) numpy view (no copy): it
    points into ``index``'s memory, so the caller keeps ``index`` alive as long as it uses the view."""
    import faiss

    storage: Any = faiss.downcast_index(index.storage) if hasattr(index, "storage") else index
    n, d = storage.ntotal, storage.d
    if n == 0:
        return np.zeros((0, d), dtype=np.float32)
    return faiss.rev_swig_ptr(storage.get_xb(), n * d).reshape(n, d)


def check_embedder(manifest: dict[str, Any], where: Path, *, name: str, identity: str | None = None, dimensions: int | None = None) -> None:
    """Refuse an index built with a different embedder (its vectors live in another space).

    Checked twice by ``open_retriever``: by configured name before loading the model (cheap), then by
    the loaded model's identity and dimensions.
    """
    built = manifest.get("embedder", {})
    same = (
        built.get("name") == name
        and (identity is None or built.get("identity") == identity)
        and (dimensions is None or built.get("dimensions") == dimensions)
    )
    if not same:
        raise RetrieveError(
            "kb-embedder-mismatch",
            f"the index at {where} was built with the embedder '{built.get('identity', built.get('name'))}', "
            f"but [kb] embedder is now '{identity or name}'; vectors from two embedders cannot be "
            f"compared. Rebuild it with `assistant kb build --index {where}` (or switch the embedder back).",
        )
