"""The model store: where a pack's folder is, and whether its files are there and verified.

A file under ``models/`` is either absent or was verified when it was written (``fetch``). Results
of hashing are cached in ``models/<name>/.verified.json`` keyed by each file's size and mtime, so
``models list`` and ``model_dir`` do not rehash a gigabyte on every start. Nothing here downloads:
``model_dir`` only looks, and raises ModelMissingError naming the command that fetches what is missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from assistant.config import Settings
from assistant.errors import ModelMissingError
from assistant.models.catalogue import PACKS, FileState, ModelFile, ModelPack, pack

log = logging.getLogger(__name__)

BLOCK_BYTES = 4 * 1024 * 1024
"""Files are hashed and copied in blocks of this size."""
VERIFIED_FILE = ".verified.json"


def model_path(settings: Settings, name: str) -> Path:
    """Where a model's folder is (present or not)."""
    return settings.models_dir / name


def model_dir(settings: Settings, name: str) -> Path:
    """The folder of a present, verified model. Never downloads.

    For a pack, every file must be present and match its pinned sha256 (cached by size and mtime,
    so only the first look after a change hashes). A name that is not a pack (a transformers model
    folder placed by hand, e.g. ``glm-4-9b-chat``) only has to exist as a non-empty folder.
    Raises ModelMissingError naming the command (or the action) that provides the model.
    """
    path = model_path(settings, name)
    if name not in PACKS:
        if path.is_dir() and any(path.iterdir()):
            return path
        raise ModelMissingError(
            name, path, fetch_hint="place the model folder there by hand (it is not a pack `assistant models fetch` knows)"
        )
    p = PACKS[name]
    hint = f"run `assistant models fetch {name}`"
    for f, state in file_states(path, p, hash_unknown=True):
        if state == "missing" and not f.optional:
            raise ModelMissingError(name, path / f.name, fetch_hint=hint)
        if state == "failed":
            raise ModelMissingError(
                name, path / f.name, fetch_hint=f"the file there failed sha256 verification; {hint} to replace it"
            )
    return path


@dataclass(frozen=True)
class FileStatus:
    name: str
    state: FileState
    size_bytes: int | None
    expected_size_bytes: int | None


@dataclass(frozen=True)
class PackStatus:
    name: str
    role: str
    state: FileState
    """The worst of its files' states (missing > failed > unpinned > present)."""
    path: Path
    size_bytes: int
    """Bytes present on disk."""
    expected_size_bytes: int | None
    online_only: bool
    description: str
    files: tuple[FileStatus, ...]


_SEVERITY: dict[FileState, int] = {"present": 0, "unpinned": 1, "failed": 2, "missing": 3}


def status(settings: Settings, name: str, *, hash_unknown: bool = True) -> PackStatus:
    """The state of one pack. ``hash_unknown`` False: a file not in the cache counts as present
    if its size matches (fast, for a quick look); True hashes it once and caches the result."""
    p = pack(name)
    path = model_path(settings, name)
    files: list[FileStatus] = []
    for f, state in file_states(path, p, hash_unknown=hash_unknown):
        size = (path / f.name).stat().st_size if state != "missing" else None
        files.append(FileStatus(f.name, state, size, f.size_bytes))
    optional = {f.name for f in p.files if f.optional}
    counted: list[FileState] = [fs.state for fs in files if not (fs.state == "missing" and fs.name in optional)]
    worst: FileState = max(counted, key=_SEVERITY.__getitem__) if counted else "missing"
    expected = None if any(f.size_bytes is None for f in p.files) else sum(f.size_bytes or 0 for f in p.files)
    return PackStatus(
        name=name,
        role=p.role,
        state=worst,
        path=path,
        size_bytes=sum(fs.size_bytes or 0 for fs in files),
        expected_size_bytes=expected,
        online_only=p.online_only,
        description=p.description,
        files=tuple(files),
    )


def file_states(folder: Path, p: ModelPack, *, hash_unknown: bool) -> Iterator[tuple[ModelFile, FileState]]:
    cache = _read_cache(folder)
    changed = False
    for f in p.files:
        target = folder / f.name
        try:
            st = target.stat()
        except FileNotFoundError:
            yield f, "missing"
            continue
        if f.size_bytes is not None and st.st_size != f.size_bytes:
            # A wrong size is a failed verification without reading a byte.
            yield f, "failed"
            continue
        entry = cache.get(f.name)
        if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
            digest = str(entry["sha256"])
        elif hash_unknown:
            digest = sha256_file(target)
            cache[f.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
            changed = True
        else:
            yield f, ("present" if f.sha256 else "unpinned")
            continue
        if f.sha256 is None:
            yield f, "unpinned"
        else:
            yield f, ("present" if digest == f.sha256 else "failed")
    if changed:
        _write_cache(folder, cache)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(BLOCK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def _read_cache(folder: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads((folder / VERIFIED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(folder: Path, cache: dict[str, dict[str, object]]) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".verified-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(cache, fh, indent=1, sort_keys=True)
        os.replace(tmp, folder / VERIFIED_FILE)
    except OSError as err:  # a read-only models/ still works, it just rehashes next time
        log.debug("cannot write the verification cache in %s: %s", folder, err)


def record_digest(folder: Path, name: str, digest: str) -> None:
    st = (folder / name).stat()
    cache = _read_cache(folder)
    cache[name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    _write_cache(folder, cache)
