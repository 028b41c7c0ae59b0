"""``assistant transcribe FILE [--language zh|en] [--json]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import replace

from assistant.config import Settings
from assistant.stages import SAMPLE_RATE_HZ, Utterance


def transcribe(args: argparse.Namespace, settings: Settings) -> int:
    """Transcribe a whole file with the configured engine; prints the text (or one JSON object).

    ``rtf`` is the transcription time (decoding the file excluded, model loading excluded) over
    the audio's duration.
    """
    from assistant import registry
    from assistant.audio.codecs import decode_file

    if args.language:
        settings = replace(settings, asr=replace(settings.asr, language=args.language))
    pcm = decode_file(args.file)
    transcriber = registry.transcriber(settings)
    duration_s = len(pcm) / SAMPLE_RATE_HZ
    t0 = time.perf_counter()
    # Long files go through the engine's own windowed path (faster-whisper: > 28 s uses 30 s windows).
    transcript = asyncio.run(transcriber.transcribe(Utterance(pcm=pcm, language=settings.asr.language)))
    elapsed = time.perf_counter() - t0
    result = {
        "text": transcript.text,
        "language": transcript.language,
        "duration_s": round(duration_s, 3),
        "rtf": round(elapsed / duration_s, 3) if duration_s else 0.0,
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(transcript.text)
        print(
            f"[{transcript.language or '?'}] {result['duration_s']} s of audio, RTF {result['rtf']}",
            file=sys.stderr,
        )
    return 0
