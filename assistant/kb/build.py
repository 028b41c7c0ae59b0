"""Building an index generation: incremental (only changed files are embedded) and atomic.

A build writes a whole new generation beside the live one (``assistant.kb.store`` has the layout)
and only then points CURRENT at it, so a crash, Ctrl-C or kill at any moment leaves the previous
index answering. Files whose sha256 (and chunking settings) did not change keep their records and
vectors from the live generation; in a file that changed, every record whose keys and answer are
unchanged keeps its vectors too, so one edited entry in a large table embeds one entry, not the table.

The steps: read the live generation (``assistant.kb.reuse.Previous``), collect every record with
what can be reused of it (``_collect``: one ``Row`` per record), embed what is new, write the files of
the new generation, publish it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import AssistantError, RetrieveError
from assistant.kb import calibration, entries, views
from assistant.kb.chunking import CHUNK_FORMAT
from assistant.kb.ingest import discover, read_file
from assistant.kb.records import Record, SkipFile
from assistant.kb.reuse import Previous, Row, content
from assistant.kb.store import (
    FORMAT,
    current_generation,
    file_sha256,
    read_manifest,
)
from assistant.kb.synthesis import QuestionCache, Synthetic, fingerprint, roles
from assistant.kb.terms import distinctive_terms
from assistant.stages import Embedder

HNSW_MIN_KEYS = 50_000
"""Exact (flat) search below this many keys; HNSW above, where a flat scan would cost > ~10 ms."""
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80


@dataclass
class Skip:
    file: str
    reason: str


@dataclass
class BuildReport:
    """What a build did; ``to_json`` is what ``assistant kb build --json`` prints."""

    index_dir: str
    files: int = 0
    entries: int = 0
    chunks: int = 0
    keys: int = 0
    embedded_files: int = 0
    reused_files: int = 0
    reused_records: int = 0
    """Records of changed files whose vectors were kept (same keys and answer as before)."""
    removed_files: list[str] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    embedder: str = ""
    index_type: str = "flat"
    seconds: float = 0.0
    questions_written: int = 0
    """Records whose synthetic questions were written by this build (the others' were reused)."""
    synthesis_s: float = 0.0
    calibration_s: float = 0.0
    calibrated: str = "prior"
    """``self``: fitted on the index's own synthetic questions; ``prior``: the prior."""

    def to_json(self) -> dict[str, Any]:
        return {
            "index_dir": self.index_dir,
            "files": self.files,
            "entries": self.entries,
            "chunks": self.chunks,
            "keys": self.keys,
            "embedded_files": self.embedded_files,
            "reused_files": self.reused_files,
            "reused_records": self.reused_records,
            "removed_files": self.removed_files,
            "skipped": [{"file": s.file, "reason": s.reason} for s in self.skipped],
            "warnings": self.warnings,
            "embedder": self.embedder,
            "index_type": self.index_type,
            "calibrated": self.calibrated,
            "questions_written": self.questions_written,
            "synthesis_s": round(self.synthesis_s, 3),
            "calibration_s": round(self.calibration_s, 3),
            "seconds": round(self.seconds, 3),
        }


def build(
    paths: Sequence[Path],
    index_dir: Path,
    *,
    embedder: Embedder,
    embedder_name: str,
    root: Path,
    chunk_chars: int,
    overlap_chars: int,
    progress: bool = True,
    before_publish: Callable[[Path], None] | None = None,
    view: views.ViewLoader | None = None,
    synthesis: Synthesis | None = None,
    prior: calibration.Calibration | None = None,
    synthetic_keys: bool = False,
) -> BuildReport:
    """Build (or update) the index in ``index_dir`` from ``paths``; see the module docstring.

    ``before_publish`` is called with the finished temporary folder just before it goes live (tests
    use it to kill a build at the worst moment). ``view`` is the classifier's English view
    (``views``), loaded only when the classifier trains on English phrasings; when loading raises
    ``AssistantError`` (its model is not fetched) the build goes on without the view and says so
    in ``warnings``. ``synthesis`` writes the synthetic questions the index calibrates itself with
    (``assistant.kb.selfcal``); without it, or when it fails, the index keeps ``prior`` (default:
    ``calibration.prior_for`` the embedder), and ``warnings`` says so. ``synthetic_keys``: some of
    the questions are also indexed as extra phrasings of their record (``synthesis.roles``).
    """
    started = time.perf_counter()
    report = BuildReport(index_dir=str(index_dir), embedder=embedder.identity)
    with _build_lock(index_dir):
        for stale in index_dir.glob(".build-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed build; we hold the lock
        previous = Previous.read(current_generation(index_dir), embedder, report.warnings)
        chunking = {"chunk_chars": chunk_chars, "overlap_chars": overlap_chars, "format": CHUNK_FORMAT}
        rows, files = _collect(paths, root, previous, chunking, report, progress=progress)
        report.removed_files = sorted(set(previous.files) - set(files))
        records = [row.record for row in rows]
        questions = _synthetic(records, index_dir, synthesis, report) if synthesis is not None and records else {}
        _extra_keys(rows, questions, synthetic_keys)
        records = [row.record for row in rows]
        matrix = _key_matrix(embedder, rows, progress)
        report.files = len(files)
        report.entries = sum(1 for r in records if r.kind == "faq")
        report.chunks = sum(1 for r in records if r.kind == "document")
        report.keys = len(matrix)
        if not records:
            listed = "; ".join(f"{s.file}: {s.reason}" for s in report.skipped[:3])
            raise RetrieveError(
                "kb-empty",
                "nothing to index: no readable FAQ table or document in "
                + ", ".join(str(p) for p in paths)
                + (f" ({len(report.skipped)} skipped: {listed})" if report.skipped else ""),
            )
        tmp = index_dir / f".build-{os.getpid()}-{time.time_ns()}"
        tmp.mkdir()
        try:
            manifest, encoder = _write_generation(tmp, rows, matrix, embedder, view, previous, report, progress=progress)
            manifest.update(
                embedder={"name": embedder_name, "identity": embedder.identity, "dimensions": embedder.dimensions},
                files=files,
                skipped=[{"file": s.file, "reason": s.reason} for s in report.skipped],
                calibration=(prior or calibration.prior_for(embedder.identity)).to_json(),
                calibration_fit="prior",
            )
            _write_manifest(tmp, manifest)
            if questions:
                started_fit = time.perf_counter()
                fit, checks = _calibrate(
                    tmp, embedder, encoder, questions, prior or calibration.prior_for(embedder.identity), synthetic_keys
                )
                manifest.update(
                    calibration=fit.to_json(), calibration_fit="self", self_check=checks, synthetic_keys=synthetic_keys
                )
                report.calibration_s = time.perf_counter() - started_fit
                report.calibrated = "self"
            report.seconds = time.perf_counter() - started
            manifest["build_s"] = round(report.seconds, 3)
            _write_manifest(tmp, manifest)
            _fsync_tree(tmp)
            if before_publish is not None:
                before_publish(tmp)
            gen = _publish(tmp, index_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        # Old generations are no longer pointed at; a daemon that loaded one keeps it in memory.
        for other in index_dir.glob("gen-*"):
            if other.name != gen.name:
                shutil.rmtree(other, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def refuse_new_skips(index_dir: Path) -> Callable[[Path], None]:
    """A ``before_publish`` check for the daemon's live reload: when the new generation skipped a
    file that the live one did not (a corrupt table, a file caught half-written), it does not go
    live, so the entries of that file keep answering until it is fixed (``kb-skipped``). A file the
    live generation skipped too (a README the ingester does not read) stops nothing."""
    live = current_generation(index_dir)
    before = {str(s.get("file")) for s in (read_manifest(live).get("skipped") or [])} if live is not None else set()

    def check(folder: Path) -> None:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        fresh = [s for s in manifest.get("skipped") or [] if str(s.get("file")) not in before]
        if fresh:
            listed = "; ".join(f"{s.get('file')}: {s.get('reason')}" for s in fresh[:3])
            raise RetrieveError(
                "kb-skipped",
                f"{len(fresh)} file(s) could not be read ({listed}); the index was not replaced. Fix or remove "
                "them and save again",
            )

    return check


@dataclass(frozen=True)
class Synthesis:
    """How a build gets its synthetic questions: ``write(records, cache)`` returns each record's
    (by ``synthesis.fingerprint``), writing the missing ones into ``cache`` (blocking; raises
    ``AssistantError`` when the LLM fails). ``name``: the LLM's, for the manifest."""

    write: Callable[[Sequence[Record], QuestionCache], Mapping[str, list[Synthetic]]]
    name: str = ""


def _synthetic(
    records: Sequence[Record], index_dir: Path, synthesis: Synthesis, report: BuildReport
) -> dict[int, list[Synthetic]]:
    """Each record's synthetic questions, by record index; what was written before is reused. When
    writing fails, the build goes on with the questions written so far (kept for the next build)."""
    cache = QuestionCache(index_dir)
    missing = sum(cache.get(fingerprint(r)) is None for r in records)
    started = time.perf_counter()
    try:
        written = synthesis.write(records, cache)
    except AssistantError as err:
        report.warnings.append(
            f"synthetic questions stopped ({err.message}); the index calibrates itself on those written so "
            "far, and the next build writes the rest"
        )
        written = {fp: qs for r in records if (qs := cache.get(fp := fingerprint(r))) is not None}
    report.synthesis_s = time.perf_counter() - started
    report.questions_written = missing
    out = {i: list(written[fp]) for i, r in enumerate(records) if (fp := fingerprint(r)) in written and written[fp]}
    cache.compact(fingerprint(r) for r in records)
    return out


def _calibrate(
    tmp: Path,
    embedder: Embedder,
    view: Embedder | None,
    questions: Mapping[int, Sequence[Synthetic]],
    prior: calibration.Calibration,
    synthetic_keys: bool,
) -> tuple[calibration.Calibration, dict[str, Any]]:
    """Fit the new generation's own calibration on its synthetic questions (``selfcal``): those whose
    role is ``fit`` (``synthesis.roles``)."""
    from assistant.kb import selfcal
    from assistant.kb.search import KnowledgeBase

    kb = KnowledgeBase(tmp, embedder, view=view)
    fit_part = {
        r: [q for q, role in zip(qs, roles(r, qs, keys=synthetic_keys), strict=True) if role == "fit"]
        for r, qs in questions.items()
    }
    groups = selfcal.labelled(kb, fit_part, selfcal.offtopic_questions())
    fitted = selfcal.fit_own(prior, groups, source=f"fitted at build on this knowledge base's own questions ({time.strftime('%Y-%m-%d')})")
    counts = {name: len(g) for name, g in groups.items()}
    return fitted, {"queries": counts}


def _extra_keys(rows: Sequence[Row], questions: Mapping[int, Sequence[Synthetic]], wanted: bool) -> None:
    """Give each record its synthetic phrasings to index (``synthesis.roles``: none without
    ``wanted``); a record whose extra phrasings changed is embedded again."""
    for i, row in enumerate(rows):
        qs = questions.get(i, ())
        extra = [q.text for q, role in zip(qs, roles(i, qs, keys=wanted), strict=True) if role == "key"]
        if extra != row.record.extra_keys:
            row.record = dataclasses.replace(row.record, extra_keys=extra)
            row.keys = None
            row.view = None


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")


def _collect(
    paths: Sequence[Path],
    root: Path,
    previous: Previous,
    chunking: dict[str, Any],
    report: BuildReport,
    *,
    progress: bool,
) -> tuple[list[Row], dict[str, Any]]:
    """Every record of the sources in ``paths``, in order, reusing the previous rows of files that
    did not change; and the manifest's ``files``. Unreadable files go to ``report.skipped``."""
    files, missing = discover(paths)
    for p, why in missing:
        report.skipped.append(Skip(str(p), why))
    rows: list[Row] = []
    manifest_files: dict[str, Any] = {}
    for path in _progress(files, progress):
        source = _source_name(path, root)
        if source in manifest_files:
            continue
        try:
            sha = file_sha256(path)
        except OSError as err:
            report.skipped.append(Skip(source, f"cannot read: {err.strerror or err}"))
            continue
        old = previous.files.get(source)
        if old is not None and old.get("sha256") == sha and old.get("chunking") in (None, chunking) and source in previous.rows:
            rows.extend(previous.rows[source])
            manifest_files[source] = old
            report.reused_files += 1
            continue
        try:
            result = read_file(path, source, chunk_chars=chunking["chunk_chars"], overlap_chars=chunking["overlap_chars"])
        except SkipFile as err:
            report.skipped.append(Skip(source, str(err)))
            continue
        except Exception as err:  # a parser bug must not end the build; report it like a skip
            report.skipped.append(Skip(source, f"unexpected {type(err).__name__}: {err}"))
            continue
        report.warnings.extend(f"{source}: {w}" for w in result.warnings)
        kept = {content(row.record): row for row in previous.rows.get(source, ())}
        for record in result.records:
            old = kept.get(content(record))
            if old is None:
                rows.append(Row(record))
                continue
            # Same keys and answer: the same vectors. The old synthetic phrasings come along with
            # theirs; ``_extra_keys`` embeds the record again if this build's phrasings differ.
            rows.append(Row(dataclasses.replace(record, extra_keys=old.record.extra_keys), old.keys, old.answer, old.view))
            report.reused_records += 1
        manifest_files[source] = {
            "sha256": sha,
            "size": path.stat().st_size,
            "kind": result.kind,
            "records": len(result.records),
            # chunking settings only shape documents; an FAQ table is reused whatever they are
            "chunking": chunking if result.kind == "document" else None,
        }
        report.embedded_files += 1
    return rows, manifest_files


def _key_matrix(embedder: Embedder, rows: Sequence[Row], progress: bool) -> np.ndarray:
    """Every key's vector in key order: new records' keys embedded in one batched pass."""
    fresh = entries.embed_all(embedder, [k for row in rows if row.keys is None for k in row.record.all_keys], progress)
    cursor = 0
    for row in rows:
        if row.keys is None:
            row.keys = fresh[cursor : cursor + len(row.record.all_keys)]
            cursor += len(row.record.all_keys)
    parts = [row.keys for row in rows if row.keys is not None]
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dimensions), dtype=np.float32)


def _write_generation(
    tmp: Path,
    rows: Sequence[Row],
    matrix: np.ndarray,
    embedder: Embedder,
    view: views.ViewLoader | None,
    previous: Previous,
    report: BuildReport,
    *,
    progress: bool,
) -> tuple[dict[str, Any], Embedder | None]:
    """Write every file of a generation but its manifest into ``tmp``; returns the manifest's
    other fields, and the English view's encoder when the classifier reads it."""
    import faiss

    from assistant.kb.lexical import LexicalIndex

    records = [row.record for row in rows]
    index = _make_faiss(matrix, embedder.dimensions)
    report.index_type = "hnsw" if len(matrix) >= HNSW_MIN_KEYS else "flat"
    faiss.write_index(index, str(tmp / "vectors.faiss"))
    answers = None
    encoder: Embedder | None = None
    view_info: dict[str, Any] | None = None
    view_parts: tuple[np.ndarray, np.ndarray] | None = None
    if entries.classifier_trains(records):
        answers = entries.answer_vectors(embedder, rows, progress)
        np.save(tmp / "answers.npy", answers)
        if view is not None and entries.english_entries(records) >= views.MIN_ENGLISH_ENTRIES:
            try:
                encoder = view.load()
            except AssistantError as err:
                report.warnings.append(f"the classifier is trained without its English view: {err}")
            else:
                reusable = previous.view_identity == encoder.identity
                view_parts = entries.view_vectors(encoder, rows, reuse=reusable, progress=progress)
                np.savez(tmp / "view.npz", keys=view_parts[0], answers=view_parts[1])
                view_info = {
                    "name": view.name,
                    "identity": encoder.identity,
                    "dimensions": encoder.dimensions,
                    "weight": views.VIEW_WEIGHT,
                }
    trained = answers is not None and entries.train_classifier(
        records, matrix, answers, tmp / "classifier.npz", view_parts, start=previous.classifier_start(records)
    )
    LexicalIndex.build([k for r in records for k in r.all_keys]).save(tmp / "lexical")
    if answers is not None:
        LexicalIndex.build([str(r.answer or "") for r in records if r.kind == "faq"]).save(tmp / "answers_lexical")
    with (tmp / "records.jsonl").open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
    manifest = {
        "format": FORMAT,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "index_type": report.index_type,
        "classifier": trained,
        "view": view_info,
        "counts": {"files": report.files, "entries": report.entries, "chunks": report.chunks, "keys": report.keys},
        "domain_terms": distinctive_terms(records),
    }
    return manifest, encoder if view_info else None


def _publish(tmp: Path, index_dir: Path) -> Path:
    """Make the finished generation in ``tmp`` the live one: the one atomic step is replacing CURRENT."""
    gen = index_dir / f"gen-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{time.time_ns() % 10**6}"
    os.rename(tmp, gen)
    pointer_tmp = index_dir / f".CURRENT-{os.getpid()}"
    pointer_tmp.write_text(gen.name + "\n", encoding="utf-8")
    with pointer_tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(pointer_tmp, index_dir / "CURRENT")
    return gen


@contextlib.contextmanager
def _build_lock(index_dir: Path) -> Iterator[None]:
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / ".lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise RetrieveError("kb-busy", f"another `assistant kb build` is writing {index_dir}; wait for it") from err
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _source_name(path: Path, root: Path) -> str:
    resolved = path.resolve()
    try:
        return resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def _make_faiss(vectors: np.ndarray, dimensions: int) -> Any:
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)  # a search process may have lowered it to 1
    index: Any
    if len(vectors) >= HNSW_MIN_KEYS:
        index = faiss.IndexHNSWFlat(dimensions, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    else:
        index = faiss.IndexFlatIP(dimensions)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())


def _progress(items: Sequence[Path], enabled: bool) -> Any:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="reading", unit="file", file=sys.stderr, leave=False)
