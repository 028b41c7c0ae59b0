"""``assistant voices list | add NAME CLIP... | test NAME``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from assistant import registry
from assistant.config import Settings
from assistant.stages import AssistantError, Voice, VoicePreparing

SAMPLES = {
    "zh": "您好，欢迎光临。我是前台助手，可以回答您关于访客登记、停车和会议室的问题。",
    "en": "Hello, and welcome. I'm the front desk assistant; ask me about visitor passes, parking or meeting rooms.",
}


def list_voices(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.tts.voices import load_voice, voices_dir

    rows: list[dict[str, Any]] = []
    for toml in sorted(voices_dir(settings).glob("*/voice.toml")):
        try:
            voice = load_voice(toml.parent)
        except AssistantError as err:
            rows.append({"name": toml.parent.name, "error": err.message})
            continue
        rows.append(
            {
                "name": voice.name,
                "engine": voice.engine,
                "languages": list(voice.languages),
                "speed": voice.speed,
                "reference_clips": [str(c) for c in voice.reference_clips],
                "description": voice.options.get("description", ""),
                "status": registry.voice_availability(settings, voice),
                "default_for": [
                    lang
                    for lang, name in (("en", settings.tts.voice), ("zh", settings.tts.voice_zh))
                    if name == voice.name
                ],
            }
        )
    if args.json:
        print(json.dumps({"voices_dir": str(voices_dir(settings)), "voices": rows}, ensure_ascii=False))
        return 0
    if not rows:
        print(f"no voices in {voices_dir(settings)}")
        return 0
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<14} INVALID: {row['error']}")
            continue
        default = f"  (default {', '.join(row['default_for'])})" if row["default_for"] else ""
        clips = f", {len(row['reference_clips'])} clip(s)" if row["reference_clips"] else ""
        print(
            f"{row['name']:<14} {row['engine']:<7} {','.join(row['languages']):<6} {row['status']}{clips}{default}"
            + (f"\n{'':<15}{row['description']}" if row["description"] else "")
        )
    return 0


def add(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.tts.voices import add_voice

    voice, reports = add_voice(
        settings, args.name, [Path(c) for c in args.clips], engine=args.engine, languages=args.languages
    )
    for report in reports:
        notes = f" ({'; '.join(report.notes)})" if report.notes else ""
        print(
            f"{report.path}: {report.duration_s:.1f} s, {report.sample_rate_hz} Hz, speech {report.rms_dbfs:.0f} dBFS, "
            f"peak {report.peak_dbfs:.1f} dBFS{notes}",
            file=sys.stderr,
        )
    print(f"voice '{voice.name}' created at {voice.path} (engine {voice.engine}, languages {', '.join(voice.languages)})")
    if voice.engine == "xtts":
        _prepare_clone(settings, voice)
    print(f"try it: assistant voices test {voice.name} --out test.wav")
    return 0


def _prepare_clone(settings: Settings, voice: Voice) -> None:
    """Compute the XTTS speaker conditioning now, so the voice's first reply does not wait for it."""
    import importlib.util

    if importlib.util.find_spec("TTS") is None:
        print("coqui-tts is not installed: the clone is ready to use once it is (pip install '.[heavy]')", file=sys.stderr)
        return
    engine = registry.synthesizer_engine(settings, voice.engine)
    if not isinstance(engine, VoicePreparing):
        return
    try:
        kept = engine.prepare_voice(voice)
    except AssistantError as err:
        print(f"speaker conditioning not computed yet ({err.message}); it is computed on first use", file=sys.stderr)
        return
    print(f"speaker conditioning cached in {kept}", file=sys.stderr)


def test(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.commands.tts import speak_to_file
    from assistant.tts.voices import find_voice

    voice = find_voice(settings, args.name)
    text = " ".join(SAMPLES.get(lang[:2], SAMPLES["en"]) for lang in voice.languages)
    out = args.out or f"voice-{voice.name}.wav"
    stats = speak_to_file(settings, text, out, voice_name=voice.name)
    print(
        f"{voice.name}: wrote {out} ({stats['duration_ms'] / 1000:.1f} s); first audio {stats['first_audio_ms']:.0f} ms, "
        f"real-time factor {stats['total_ms'] / max(stats['duration_ms'], 1):.3f}"
    )
    return 0
