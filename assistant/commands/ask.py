"""``assistant ask``: one turn from the command line, through the same Turn the daemon runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np

from assistant import events as ev
from assistant import registry
from assistant.config import Settings
from assistant.stages import AssistantError, AudioChunk, Utterance
from assistant.turn import Turn, TurnResult


def ask(args: argparse.Namespace, settings: Settings) -> int:
    if bool(args.question) == bool(args.wav):
        print("assistant ask: give either a QUESTION or --wav FILE", file=sys.stderr)
        return 2
    if args.index:
        settings.kb.index_dir = args.index
    question: str | Utterance
    if args.wav:
        from assistant.audio import read_audio_file

        pcm = read_audio_file(Path(args.wav))
        # A recording's voice ends at its last sample, as far as the turn can know.
        question = Utterance(pcm=pcm, end_of_speech_ms=0.0, language=settings.asr.language)
    else:
        question = args.question
    # the LLM loads on first use: an FAQ or fallback answer never waits for it
    engines = registry.engines(settings, asr=bool(args.wav), tts=bool(args.out), lazy_llm=True)
    audio: list[AudioChunk] = []
    printer = _Printer(as_json=args.json)

    def emit(event: ev.Event) -> None:
        if isinstance(event, ev.Audio):
            audio.append(event.chunk)
        printer(event)

    turn = Turn(1, engines=engines, settings=settings, emit=emit)
    result = asyncio.run(turn.run(question, speech_end_clock_ms=0.0 if args.wav else None))
    if args.out and audio:
        write_wav(Path(args.out), audio)
    if args.json:
        print(json.dumps(ask_object(result, voice=bool(args.wav)), ensure_ascii=False))
    else:
        printer.finish(result)
    return 1 if result.error else 0


def ask_object(result: TurnResult, *, voice: bool) -> dict[str, Any]:
    """The documented ``ask --json`` object."""
    t = result.timings_ms
    out: dict[str, Any] = {
        "question": result.question,
        "answer": result.reply,
        "route": result.route,
        "language": result.language,
        "sources": [{"id": p.id, "source": p.source, "score": round(p.score, 4)} for p in result.sources],
        "timings_ms": {"retrieve": t.get("retrieve"), "first_token": t.get("first_token"), "total": t.get("total")},
    }
    if voice:
        out["transcript"] = result.question
        out["trace_ms"] = {
            "transcript": t.get("transcript"),
            "retrieve": t.get("retrieve"),
            "first_token": t.get("first_token"),
            "first_sentence": t.get("first_sentence"),
            "first_audio": t.get("first_audio"),
            "total": t.get("total"),
        }
    if result.error:
        out["error"] = {"code": result.error.code, "message": result.error.message}
    return out


class _Printer:
    """Streams the reply to the terminal; with --json it stays silent (the object comes at the end)."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json

    def __call__(self, event: ev.Event) -> None:
        if self.as_json:
            return
        if isinstance(event, ev.TranscriptEvent) and event.final:
            print(f"> {event.text}", flush=True)
        elif isinstance(event, ev.ReplyDelta):
            print(event.text, end="", flush=True)
        elif isinstance(event, ev.ErrorEvent):
            print(f"\nassistant: {event.message} [{event.code}]", file=sys.stderr)

    def finish(self, result: TurnResult) -> None:
        if result.error:
            return
        print()
        if result.sources:
            print(f"\nroute: {result.route}   sources:")
            for p in result.sources:
                where = " / ".join(x for x in (p.title, p.section) if x)
                print(f"  [{p.score:.2f}] {p.id}  {p.source}{'  (' + where + ')' if where else ''}")
        else:
            print(f"\nroute: {result.route}   (no source in the knowledge base)")


def write_wav(path: Path, chunks: list[AudioChunk]) -> None:
    """One mono int16 WAV at the first chunk's rate (chunks from other voices are resampled)."""
    rate = chunks[0].sample_rate_hz
    parts = []
    for c in chunks:
        pcm = np.frombuffer(c.pcm, dtype="<i2")
        if c.sample_rate_hz != rate:
            n = round(len(pcm) * rate / c.sample_rate_hz)
            pcm = np.interp(np.linspace(0, len(pcm) - 1, n), np.arange(len(pcm)), pcm).astype("<i2")
        parts.append(pcm)
    try:
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(np.concatenate(parts).astype("<i2").tobytes())
    except OSError as err:
        raise AssistantError("output-unwritable", f"cannot write {path}: {err}") from err
