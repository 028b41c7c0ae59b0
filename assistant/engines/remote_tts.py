"""A remote speech server with the OpenAI-compatible ``POST /v1/audio/speech`` API (OpenAI, vLLM-omni,
openedai-speech, Kokoro-FastAPI, LocalAI, ...), for scaling synthesis out to a GPU box.

The response is streamed: audio is handed on as the bytes arrive, so the first audio does not wait for
the whole sentence. ``response_format`` is ``pcm`` (raw int16 mono; 24 kHz unless ``[options]
sample_rate_hz`` says otherwise) or ``wav`` (rate read from the header).

voice.toml ``[options]``: ``model`` (default ``tts-1``), ``voice`` (the server's voice name, default
``alloy``), ``response_format`` (``pcm``), ``sample_rate_hz`` (24000), ``base_url`` and ``api_key_env``
(default: ``[tts]``'s).
"""

from __future__ import annotations

import os
import struct
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from assistant.audio.envelope import EnvelopeFollower
from assistant.audio.pcm import CHUNK_MS, chunks_from_pcm
from assistant.config import Settings
from assistant.stages import AudioChunk, SynthesizeError, Voice


class _WavStream:
    """Parses a (possibly streamed) WAV: header first, then the data chunk's bytes."""

    def __init__(self) -> None:
        self.buffer = b""
        self.rate: int | None = None
        self.in_data = False

    def feed(self, data: bytes) -> bytes:
        if self.in_data:
            return data
        self.buffer += data
        if len(self.buffer) < 12:
            return b""
        if self.buffer[:4] != b"RIFF" or self.buffer[8:12] != b"WAVE":
            raise SynthesizeError("tts-remote-format", "the speech server did not return WAV audio")
        pos = 12
        while pos + 8 <= len(self.buffer):
            kind, size = self.buffer[pos : pos + 4], struct.unpack("<I", self.buffer[pos + 4 : pos + 8])[0]
            if kind == b"fmt ":
                if pos + 8 + 16 > len(self.buffer):
                    return b""
                channels, rate, _, _, bits = struct.unpack("<HIIHH", self.buffer[pos + 10 : pos + 24])
                if channels != 1 or bits != 16:
                    raise SynthesizeError(
                        "tts-remote-format", f"the speech server sent {channels}-channel {bits}-bit WAV; need mono 16-bit"
                    )
                self.rate = rate
            elif kind == b"data":
                self.in_data = True
                rest = self.buffer[pos + 8 :]
                self.buffer = b""
                return rest
            pos += 8 + size + (size & 1)
        return b""


class RemoteSynthesizer:
    def __init__(self, *, base_url: str, api_key_env: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteSynthesizer:
        return cls(base_url=settings.tts.base_url, api_key_env=settings.tts.api_key_env, timeout_s=settings.tts.timeout_s)

    @property
    def version(self) -> str:
        return f"openai-speech {self.base_url}"

    def _http(self) -> Any:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        return self._client

    async def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
        import httpx

        text = sentence.strip()
        if not text:
            return
        options = voice.options
        base_url = str(options.get("base_url") or self.base_url).rstrip("/")
        key = os.environ.get(str(options.get("api_key_env") or self.api_key_env), "")
        fmt = str(options.get("response_format", "pcm"))
        if fmt not in ("pcm", "wav"):
            raise SynthesizeError("tts-voice-invalid", f"voice '{voice.name}': response_format must be pcm or wav")
        rate: int | None = int(options.get("sample_rate_hz", 24_000)) if fmt == "pcm" else None  # type: ignore[call-overload]
        body = {
            "model": options.get("model", "tts-1"),
            "input": text,
            "voice": options.get("voice", "alloy"),
            "response_format": fmt,
            "speed": voice.speed,
        }
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        wav = _WavStream() if fmt == "wav" else None
        follower = EnvelopeFollower()
        pending = b""
        try:
            async with self._http().stream("POST", f"{base_url}/audio/speech", json=body, headers=headers) as response:
                if response.status_code != 200:
                    detail = (await response.aread())[:300].decode(errors="replace")
                    raise SynthesizeError("tts-remote", f"speech server {base_url} answered {response.status_code}: {detail}")
                async for data in response.aiter_bytes():
                    if wav is not None:
                        data = wav.feed(data)
                        rate = wav.rate
                    pending += data
                    if rate is None:
                        continue
                    # Hand on whole chunks as they arrive; keep the remainder (and odd bytes) for later.
                    step = rate * CHUNK_MS // 1000 * 2
                    while len(pending) >= step:
                        piece, pending = pending[:step], pending[step:]
                        for chunk in chunks_from_pcm(np.frombuffer(piece, dtype="<i2"), rate, follower=follower):
                            yield chunk
        except httpx.HTTPError as err:
            raise SynthesizeError("tts-remote", f"speech server {base_url} unreachable: {err}") from err
        if rate is None:
            raise SynthesizeError("tts-remote-format", "the speech server's WAV had no format header")
        pending = pending[: len(pending) // 2 * 2]
        if pending:
            for chunk in chunks_from_pcm(np.frombuffer(pending, dtype="<i2"), rate, follower=follower):
                yield chunk

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
