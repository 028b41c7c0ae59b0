"""Voice folders (voice.toml), reference clip checks, `voices add`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from assistant.config import Settings
from assistant.stages import SynthesizeError
from assistant.tts.voices import add_voice, check_clip, find_voice, list_voices, load_voice, voice_identity

ROOT = Path(__file__).resolve().parent.parent


def speechlike(duration_s: float, rate: int = 22_050, amplitude: float = 0.3, seed: int = 0) -> np.ndarray:
    """Voiced bursts with pauses: a harmonic tone whose loudness moves like syllables."""
    t = np.arange(int(duration_s * rate)) / rate
    rng = np.random.default_rng(seed)
    tone = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / (i + 1) for i, f in enumerate((140, 280, 420, 560)))
    syllables = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None)
    x = tone * syllables
    return (amplitude * x / np.abs(x).max()).astype(np.float32)


def write(path: Path, data: np.ndarray, rate: int = 22_050) -> Path:
    sf.write(str(path), data, rate, subtype="PCM_16")
    return path


def settings_at(root: Path) -> Settings:
    return Settings(root=root)


def test_shipped_voices_load() -> None:
    settings = Settings(root=ROOT)
    names = {v.name: v for v in list_voices(settings)}
    assert names["joe"].engine == "piper" and names["joe"].languages == ("en",)
    assert names["zh-default"].languages == ("zh",)
    assert names["zh-default"].options["fallback"] == "zh-espeak"
    # The defaults in assistant/config/sections.py name shipped voices.
    assert settings.tts.voice in names and settings.tts.voice_zh in names


def test_voice_toml_fields(tmp_path: Path) -> None:
    folder = tmp_path / "voices" / "anna"
    folder.mkdir(parents=True)
    write(folder / "ref.wav", speechlike(5))
    (folder / "voice.toml").write_text(
        'engine = "xtts"\nlanguages = ["zh", "en"]\nspeed = 1.1\nreference_clips = ["ref.wav"]\n'
        '[options]\nmodel_dir = "model"\ntemperature = 0.6\n',
        encoding="utf-8",
    )
    voice = load_voice(folder)
    assert voice.name == "anna" and voice.engine == "xtts" and voice.languages == ("zh", "en")
    assert voice.speed == 1.1
    assert voice.reference_clips == ((folder / "ref.wav").resolve(),)
    assert voice.options["model_dir"] == str((folder / "model").resolve())  # relative to the folder
    assert find_voice(settings_at(tmp_path), "anna") == voice


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('engine = "nope"', "engine must be one of"),
        ('engine = "piper"\nlanguages = []', "languages must be"),
        ('engine = "piper"\nspeed = 5', "speed must be"),
        ('engine = "piper"\nreference_clips = ["missing.wav"]', "does not exist"),
        ('engine = "piper"\ncolour = "blue"', "unknown key"),
        ('engine = "piper', "cannot be read"),
    ],
)
def test_bad_voice_toml(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "voice.toml").write_text(toml, encoding="utf-8")
    with pytest.raises(SynthesizeError) as err:
        load_voice(tmp_path)
    assert err.value.code == "tts-voice-invalid"
    assert message in err.value.message


def test_unknown_voice_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(SynthesizeError) as err:
        find_voice(Settings(root=ROOT), "nobody")
    assert err.value.code == "tts-voice-missing"
    assert "joe" in err.value.message


def test_good_clip(tmp_path: Path) -> None:
    report = check_clip(write(tmp_path / "good.wav", speechlike(6)))
    assert report.ok, report.problems
    assert 5.9 < report.duration_s < 6.1
    assert -25 < report.rms_dbfs < -5


def test_stereo_clip_is_noted_not_refused(tmp_path: Path) -> None:
    stereo = np.stack([speechlike(5), speechlike(5)], axis=1)
    report = check_clip(write(tmp_path / "stereo.wav", stereo))
    assert report.ok and report.channels == 2 and report.notes


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: speechlike(1.5), "too short"),
        (lambda: speechlike(31), "too long"),
        (lambda: np.zeros(22_050 * 5, np.float32), "silent"),
        (lambda: speechlike(5, amplitude=0.003), "too quiet"),
        (lambda: np.clip(speechlike(5, amplitude=3.0), -1, 1), "clipped"),
    ],
)
def test_bad_clips(tmp_path: Path, make, words: str) -> None:  # type: ignore[no-untyped-def]
    report = check_clip(write(tmp_path / "bad.wav", make()))
    assert not report.ok
    assert any(words in p for p in report.problems), report.problems


def test_low_rate_and_unreadable_clips(tmp_path: Path) -> None:
    low = check_clip(write(tmp_path / "low.wav", speechlike(5, rate=8000), rate=8000))
    assert any("sample rate" in p for p in low.problems)
    (tmp_path / "text.wav").write_text("not audio")
    bad = check_clip(tmp_path / "text.wav")
    assert any("not a readable audio file" in p for p in bad.problems)


def test_add_voice(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    clip = write(tmp_path / "me.flac", np.stack([speechlike(6), speechlike(6)], axis=1))
    voice, reports = add_voice(settings, "me", [clip], engine="xtts", languages=["zh", "en"])
    assert voice.path == (tmp_path / "voices" / "me").resolve()
    assert [c.name for c in voice.reference_clips] == ["reference1.wav"]
    assert sf.info(str(voice.reference_clips[0])).channels == 1
    assert reports[0].ok
    with pytest.raises(SynthesizeError) as err:
        add_voice(settings, "me", [clip])
    assert err.value.code == "tts-voice-exists"


def test_add_voice_refuses_a_bad_clip_with_every_problem(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    short = write(tmp_path / "short.wav", speechlike(1))
    silent = write(tmp_path / "silent.wav", np.zeros(22_050 * 5, np.float32))
    with pytest.raises(SynthesizeError) as err:
        add_voice(settings, "bad", [short, silent])
    assert err.value.code == "tts-clip-unusable"
    assert "too short" in err.value.message and "silent" in err.value.message
    assert not (tmp_path / "voices" / "bad").exists()


def test_identity_changes_with_toml_and_clips(tmp_path: Path) -> None:
    folder = tmp_path / "v"
    folder.mkdir()
    write(folder / "a.wav", speechlike(4))
    (folder / "voice.toml").write_text('engine = "xtts"\nreference_clips = ["a.wav"]\n')
    first = voice_identity(load_voice(folder))
    assert voice_identity(load_voice(folder)) == first
    write(folder / "a.wav", speechlike(4, seed=1))
    second = voice_identity(load_voice(folder))
    assert second != first
    (folder / "voice.toml").write_text('engine = "xtts"\nreference_clips = ["a.wav"]\nspeed = 1.2\n')
    assert voice_identity(load_voice(folder)) not in (first, second)
