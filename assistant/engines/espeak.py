"""espeak-ng (Debian ``espeak-ng``): the last-resort voice, for any language it knows.

Formant synthesis: robotic, but always there, tiny and instant. Used when no neural voice for a
language is installed (e.g. as the ``fallback`` of the Chinese voice). ``[options] voice`` is the
espeak-ng voice name (``en-us``, ``cmn`` for Mandarin); default: from the voice's first language.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import wave
from collections.abc import AsyncIterator

import numpy as np

from assistant.audio.envelope import EnvelopeFollower
from assistant.audio.pcm import chunks_from_pcm
from assistant.config import Settings
from assistant.stages import AudioChunk, ModelMissingError, SynthesizeError, Voice

BASE_WPM = 165
"""espeak-ng's words per minute at speed 1.0 (its default is 175; a little slower is clearer)."""
_DEFAULT_VOICES = {"zh": "cmn", "en": "en-us"}


class EspeakSynthesizer:
    def __init__(self, *, binary: str = "espeak-ng") -> None:
        self.binary = binary
        self._version: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EspeakSynthesizer:
        return cls()

    def _path(self) -> str:
        path = shutil.which(self.binary)
        if path is None:
            raise ModelMissingError("espeak-ng", self.binary, "run `apt-get install espeak-ng`")
        return path

    @property
    def version(self) -> str:
        if self._version is None:
            try:
                out = subprocess.run([self._path(), "--version"], capture_output=True, text=True, timeout=5).stdout
                self._version = out.split("Data at")[0].strip()
            except (OSError, subprocess.SubprocessError, ModelMissingError):
                self._version = "espeak-ng (not installed)"
        return self._version

    async def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
        text = sentence.strip()
        if not text:
            return
        name = str(voice.options.get("voice") or _DEFAULT_VOICES.get(voice.languages[0][:2], voice.languages[0]))
        wpm = max(80, min(450, round(BASE_WPM * voice.speed)))
        process = await asyncio.create_subprocess_exec(
            self._path(), "-v", name, "-s", str(wpm), "--stdout", "--stdin",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await process.communicate(text.encode("utf-8"))
        except asyncio.CancelledError:
            process.kill()
            raise
        if process.returncode != 0 or not out:
            raise SynthesizeError("tts-failed", f"espeak-ng ({name}) failed: {err.decode(errors='replace').strip()}")
        try:
            with wave.open(io.BytesIO(out)) as w:
                rate = w.getframerate()
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        except (wave.Error, EOFError) as error:
            # espeak-ng writes a streaming WAV header (size 0xffffffff); fall back to the raw payload.
            if out[:4] != b"RIFF":
                raise SynthesizeError("tts-failed", f"espeak-ng returned no WAV: {error}") from error
            rate = int.from_bytes(out[24:28], "little")
            pcm = np.frombuffer(out[44 : 44 + (len(out) - 44) // 2 * 2], dtype="<i2")
        follower = EnvelopeFollower()
        for chunk in chunks_from_pcm(pcm, rate, follower=follower):
            yield chunk
