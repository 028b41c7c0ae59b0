"""The instant-reply cache: FAQ answers rendered once per voice, played back at once.

An FAQ answer is fixed text, so its audio can be made ahead (when the daemon starts, when the
knowledge base is built, or the first time it is spoken) and replayed in a few milliseconds on the
``faq`` route instead of waiting for synthesis.

Layout: ``<cache_dir>/tts/<voice name>/<sha256(text)[:32]>.json`` (metadata and envelope) beside the
same name ``.pcm`` (raw int16 little-endian). The metadata records the key the audio was made under:
the text, the voice's identity (its voice.toml and clip hashes) and the engine version. A lookup whose
key differs (the voice was edited, the engine upgraded) is a miss and the stale entry is deleted, so a
changed voice never speaks with old audio. Writes go to a temporary name and are renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.audio.pcm import CHUNK_MS
from assistant.stages import ENVELOPE_FRAME_MS, AudioChunk

FORMAT_VERSION = 1


def text_digest(text: str) -> str:
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class CachedReply:
    pcm: bytes
    sample_rate_hz: int
    envelope: tuple[float, ...]

    def chunks(self, *, chunk_ms: int = CHUNK_MS) -> Iterator[AudioChunk]:
        """The audio as chunks of ``chunk_ms`` (whole envelope frames), envelope sliced to match."""
        frame = self.sample_rate_hz * ENVELOPE_FRAME_MS // 1000
        frames_per_chunk = max(1, chunk_ms // ENVELOPE_FRAME_MS)
        step = frame * frames_per_chunk * 2  # bytes
        for i, start in enumerate(range(0, len(self.pcm), step)):
            yield AudioChunk(
                pcm=self.pcm[start : start + step],
                sample_rate_hz=self.sample_rate_hz,
                envelope=self.envelope[i * frames_per_chunk : (i + 1) * frames_per_chunk],
            )


class ReplyCache:
    """Audio of whole replies keyed by text + voice identity + engine version (see the module doc)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _paths(self, text: str, voice_name: str) -> tuple[Path, Path]:
        base = self.root / "tts" / voice_name / text_digest(text)
        return base.with_suffix(".json"), base.with_suffix(".pcm")

    def get(self, text: str, *, voice_name: str, voice_identity: str, engine_version: str) -> CachedReply | None:
        meta_path, pcm_path = self._paths(text, voice_name)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        wanted = {
            "format": FORMAT_VERSION,
            "text": text.strip(),
            "voice_identity": voice_identity,
            "engine_version": engine_version,
        }
        if any(meta.get(k) != v for k, v in wanted.items()):
            self._remove(meta_path, pcm_path)
            return None
        try:
            pcm = pcm_path.read_bytes()
        except FileNotFoundError:
            self._remove(meta_path, pcm_path)
            return None
        return CachedReply(pcm=pcm, sample_rate_hz=int(meta["sample_rate_hz"]), envelope=tuple(meta["envelope"]))

    def put(
        self,
        text: str,
        chunks: list[AudioChunk],
        *,
        voice_name: str,
        voice_identity: str,
        engine_version: str,
    ) -> CachedReply:
        """Store a reply made of ``chunks`` (all at one rate, as the router delivers a sentence)."""
        if not chunks:
            raise ValueError("nothing to cache")
        rate = chunks[0].sample_rate_hz
        if any(c.sample_rate_hz != rate for c in chunks):
            raise ValueError("chunks of one reply must share a sample rate")
        reply = CachedReply(
            pcm=b"".join(c.pcm for c in chunks),
            sample_rate_hz=rate,
            envelope=tuple(v for c in chunks for v in c.envelope),
        )
        meta_path, pcm_path = self._paths(text, voice_name)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT_VERSION,
            "text": text.strip(),
            "voice": voice_name,
            "voice_identity": voice_identity,
            "engine_version": engine_version,
            "sample_rate_hz": rate,
            "duration_ms": round(len(reply.pcm) / 2 / rate * 1000, 1),
            "envelope": list(reply.envelope),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        suffix = f".{os.getpid()}.tmp"
        tmp_pcm = pcm_path.with_name(pcm_path.name + suffix)
        tmp_meta = meta_path.with_name(meta_path.name + suffix)
        tmp_pcm.write_bytes(reply.pcm)
        tmp_meta.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        # Audio first, metadata last: a reader that sees the metadata finds the audio complete.
        os.replace(tmp_pcm, pcm_path)
        os.replace(tmp_meta, meta_path)
        return reply

    def clear(self, voice_name: str | None = None) -> int:
        root = self.root / "tts" / voice_name if voice_name else self.root / "tts"
        count = 0
        for path in root.rglob("*.json") if root.exists() else []:
            self._remove(path, path.with_suffix(".pcm"))
            count += 1
        return count

    @staticmethod
    def _remove(*paths: Path) -> None:
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def as_array(reply: CachedReply) -> np.ndarray:
    return np.frombuffer(reply.pcm, dtype="<i2")
