"""``assistant doctor``: what is ready and what is missing, each with the command that fixes it."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from assistant.config import Settings

Level = Literal["ok", "warning", "problem"]


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str


def doctor(args: argparse.Namespace, settings: Settings) -> int:
    checks = run_checks(settings)
    if args.json:
        print(json.dumps({"ok": all(c.level != "problem" for c in checks), "checks": [asdict(c) for c in checks]},
                         ensure_ascii=False))
    else:
        mark = {"ok": "ok  ", "warning": "warn", "problem": "FAIL"}
        for c in checks:
            print(f"[{mark[c.level]}] {c.name:<14} {c.detail}")
    return 1 if any(c.level == "problem" for c in checks) else 0


def run_checks(settings: Settings) -> list[Check]:
    out = [Check("config", "ok", f"settings loaded (relative paths from {settings.root})")]
    out += [Check("config", "warning", f"{note}: please move it (it still applies)") for note in settings.moved]
    for probe in (_answer, _models, _index, _voices, _audio, _tools):
        try:
            out.extend(probe(settings))
        except Exception as err:  # a broken probe is itself a finding, never a crash
            out.append(Check(probe.__name__.strip("_"), "problem", f"{type(err).__name__}: {err}"))
    return out


def _answer(settings: Settings) -> list[Check]:
    from assistant import tuning

    return [Check("answer", "ok", tuning.describe(settings))]


def _models(settings: Settings) -> list[Check]:
    from assistant import models

    needed = {"asr": settings.asr.model if settings.asr.engine == "faster-whisper" else None,
              "llm": settings.llm.model if settings.llm.engine in ("llamacpp", "transformers") else None}
    out = []
    for role, name in needed.items():
        if not name:
            continue
        if (role == "asr" and settings.asr.model_path) or (role == "llm" and settings.llm.model_path):
            path = settings.path(settings.asr.model_path if role == "asr" else settings.llm.model_path)
            level: Level = "ok" if path.exists() else "problem"
            out.append(Check(f"model:{role}", level, f"{path} {'exists' if path.exists() else 'does not exist'}"))
            continue
        if name not in models.PACKS:
            present = models.model_path(settings, name).is_dir()
            out.append(Check(f"model:{role}", "ok" if present else "problem",
                             f"{name}: {'folder present' if present else 'no folder at ' + str(models.model_path(settings, name))}"))
            continue
        st = models.status(settings, name, hash_unknown=False)
        level = "ok" if st.state in ("present", "unpinned") else "problem"
        fix = "" if level == "ok" else f" -> run `assistant models fetch {name}`"
        out.append(Check(f"model:{role}", level, f"{name}: {st.state}, {models.human_size(st.size_bytes)}{fix}"))
    if settings.turn.model:
        # Not a problem: without it the daemon serves, ending turns on silence alone (and waits longer).
        name = settings.turn.model
        st = models.status(settings, name, hash_unknown=False)
        ok = st.state == "present"
        detail = f"{name}: {st.state}, {models.human_size(st.size_bytes)}"
        if not ok:
            detail += f" -> turns end on silence alone; run `assistant models fetch {name}`"
        out.append(Check("model:turn", "ok" if ok else "warning", detail))
    return out


def _index(settings: Settings) -> list[Check]:
    """The live generation, every file of it read (a damaged one fails every turn's retrieval)."""
    from assistant.errors import RetrieveError
    from assistant.kb.store import check_embedder, current_generation, find_damage, read_manifest

    index = settings.path(settings.kb.index_dir)
    generation = current_generation(index)
    if generation is None:
        return [Check("index", "problem", f"no index at {index} -> run `assistant kb build`")]
    try:
        damage = find_damage(generation)
        if damage is not None:
            raise damage
        manifest = read_manifest(generation)
        check_embedder(manifest, index, name=settings.kb.embedder)
    except RetrieveError as err:
        return [Check("index", "problem", f"{err.message} [{err.code}]")]
    counts = manifest["counts"]
    return [Check("index", "ok", f"index at {index}: {counts.get('entries', 0)} FAQ entries, "
                                 f"{counts.get('chunks', 0)} document chunks")]


def _voices(settings: Settings) -> list[Check]:
    """The configured voices and whether their engines can speak here (a voice with a fallback
    that can is a warning: it speaks with the fallback)."""
    from assistant import registry
    from assistant.errors import AssistantError
    from assistant.tts.voices import find_voice

    if not settings.tts.enabled:
        return [Check("voices", "warning", "speech output disabled ([tts] enabled = false)")]
    out = []
    for key, name in (("voice", settings.tts.voice), ("voice_zh", settings.tts.voice_zh)):
        try:
            voice = find_voice(settings, name)
        except AssistantError as err:
            out.append(Check(f"voice:{name}", "problem", f"[tts] {key}: {err.message} (`assistant voices list`)"))
            continue
        state = registry.voice_availability(settings, voice)
        if state in ("ready", "remote"):
            out.append(Check(f"voice:{name}", "ok", f"{voice.engine}, {state} ({voice.path})"))
            continue
        fallback = str(voice.options.get("fallback") or "")
        level: Level = "problem"
        if fallback:
            try:
                if registry.voice_availability(settings, find_voice(settings, fallback)) in ("ready", "remote"):
                    level = "warning"
            except AssistantError:
                pass
        note = f"; speaks with its fallback '{fallback}'" if level == "warning" else ""
        out.append(Check(f"voice:{name}", level, f"{voice.engine}: {state}{note}"))
    return out


def _audio(settings: Settings) -> list[Check]:
    if settings.audio.input == "off" and settings.audio.output == "off":
        return [Check("audio", "ok", "local audio off: browser clients only")]
    try:
        import sounddevice as sd

        devices = sd.query_devices()
    except (OSError, ImportError) as err:
        return [Check("audio", "warning", f"no sound system ({err}); the daemon serves browser clients only")]
    if len(devices) == 0:
        return [Check("audio", "warning", "no sound card found; the daemon serves browser clients only")]
    return [Check("audio", "ok", f"{len(devices)} audio device(s); default in/out: {sd.default.device}")]


def _tools(settings: Settings) -> list[Check]:
    wanted: dict[str, Callable[[], bool]] = {
        "ffmpeg": lambda: shutil.which("ffmpeg") is not None,
        "espeak-ng": lambda: shutil.which("espeak-ng") is not None,
    }
    return [
        Check(f"tool:{name}", "ok" if found() else "warning",
              "found" if found() else f"not found (Debian package {name}; `make setup` installs it)")
        for name, found in wanted.items()
    ]
