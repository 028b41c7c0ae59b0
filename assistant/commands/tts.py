"""``assistant say TEXT [--voice NAME] [--out FILE.wav]``: speak a text through the same voice router
the daemon uses (speakable text, per-language voices, the instant-reply cache)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from assistant.config import Settings
from assistant.stages import AudioChunk, SynthesizeError


async def _speak(settings: Settings, text: str, voice_name: str | None) -> tuple[list[AudioChunk], float, float]:
    from assistant import registry
    from assistant.language import detect_language

    router = registry.synthesizer(settings)
    voice = router.voice(voice_name) if voice_name else router.voice_for(detect_language(text))
    started = time.perf_counter()
    first_ms = 0.0
    chunks: list[AudioChunk] = []
    async for chunk in router.synthesize(text, voice=voice):
        if not chunks:
            first_ms = (time.perf_counter() - started) * 1000
        chunks.append(chunk)
    return chunks, first_ms, (time.perf_counter() - started) * 1000


def speak_to_file(settings: Settings, text: str, out: str, *, voice_name: str | None = None) -> dict[str, float]:
    from assistant.audio.pcm import join_chunks, write_wav

    chunks, first_ms, total_ms = asyncio.run(_speak(settings, text, voice_name))
    if not chunks:
        raise SynthesizeError("tts-empty", f"nothing to say in {text!r}")
    pcm, rate = join_chunks(chunks)
    write_wav(out, pcm, rate)
    duration_ms = len(pcm) / rate * 1000
    return {"duration_ms": duration_ms, "first_audio_ms": first_ms, "total_ms": total_ms, "sample_rate_hz": rate}


def say(args: argparse.Namespace, settings: Settings) -> int:
    text = args.text.strip()
    if not text:
        print("assistant say: the text is empty", file=sys.stderr)
        return 2
    if args.out:
        stats = speak_to_file(settings, text, args.out, voice_name=args.voice)
        print(
            f"wrote {args.out}: {stats['duration_ms'] / 1000:.2f} s at {stats['sample_rate_hz']} Hz; "
            f"first audio {stats['first_audio_ms']:.0f} ms, "
            f"real-time factor {stats['total_ms'] / max(stats['duration_ms'], 1):.3f}",
            file=sys.stderr,
        )
        return 0
    return asyncio.run(_play(settings, text, args.voice))


async def _play(settings: Settings, text: str, voice_name: str | None) -> int:
    from assistant import registry
    from assistant.audio.playback import Player
    from assistant.language import detect_language

    router = registry.synthesizer(settings)
    voice = router.voice(voice_name) if voice_name else router.voice_for(detect_language(text))
    with Player.from_settings(settings) as player:
        played_ms = await player.play(router.synthesize(text, voice=voice))
    print(f"played {played_ms / 1000:.2f} s", file=sys.stderr)
    return 0
