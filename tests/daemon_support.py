"""Test support for the daemon, server and protocol tests: a daemon with fake engines on a free port,
a real WebSocket client that collects events, and a deterministic energy endpointer."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fakes import fake_engines, settings_for_tests
from websockets.asyncio.client import ClientConnection, connect

from assistant.config import Settings
from assistant.daemon import Daemon
from assistant.events import AudioFrame, decode_audio_frame, encode_audio_frame
from assistant.reload import IndexSource
from assistant.server.app import AssistantServer
from assistant.stages import SAMPLE_RATE_HZ, AudioChunk, Engines, QueueRecorder


class EnergyDetector:
    """A voice detector for tests (the ``VoiceDetector`` shape of ``assistant.audio.vad``): a window
    louder than ``threshold`` RMS is speech. The real endpointer logic runs on top of it."""

    def __init__(self, threshold: float = 0.015) -> None:
        self.threshold = threshold

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        rms = np.sqrt(np.mean(np.square(windows.astype(np.float64)), axis=1))
        return np.where(rms > self.threshold, 0.95, 0.02).astype(np.float32)

    def reset(self) -> None:
        pass


def speech_pcm(duration_ms: float, amplitude: int = 8000) -> np.ndarray:
    n = int(SAMPLE_RATE_HZ * duration_ms / 1000)
    return (np.sin(np.arange(n) / 5) * amplitude).astype(np.int16)


def silence_pcm(duration_ms: float) -> np.ndarray:
    return np.zeros(int(SAMPLE_RATE_HZ * duration_ms / 1000), dtype=np.int16)


def mic_frames(pcm: np.ndarray, frame_ms: int = 20, start_sequence: int = 0) -> list[bytes]:
    step = SAMPLE_RATE_HZ * frame_ms // 1000
    return [
        encode_audio_frame(
            AudioChunk(pcm[i : i + step].astype("<i2").tobytes(), SAMPLE_RATE_HZ), sequence=start_sequence + n
        )
        for n, i in enumerate(range(0, len(pcm), step))
    ]


@dataclass
class Running:
    daemon: Daemon
    server: AssistantServer
    engines: Engines

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


@contextlib.asynccontextmanager
async def running_daemon(
    engines: Engines | None = None,
    settings: Settings | None = None,
    *,
    recorder: QueueRecorder | None = None,
    index: IndexSource | None = None,
    **server_kw: Any,
) -> AsyncIterator[Running]:
    settings = settings or settings_for_tests()
    engines = engines or fake_engines()
    daemon = Daemon(settings, engines, detector_factory=EnergyDetector, recorder=recorder, index=index)
    server = AssistantServer(settings, daemon, host="127.0.0.1", port=0, **server_kw)
    await server.start()
    try:
        yield Running(daemon, server, engines)
    finally:
        await daemon.close()
        await server.close()


@dataclass
class Collected:
    events: list[dict[str, Any]] = field(default_factory=list)
    audio: list[AudioFrame] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    """Every frame's type in arrival order (``audio`` for binary frames)."""

    def types(self, collapse_audio: bool = True) -> list[str]:
        out: list[str] = []
        for t in self.order:
            if collapse_audio and t == "audio" and out and out[-1] == "audio":
                continue
            out.append(t)
        return out

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


def label(event: dict[str, Any]) -> str:
    return f"state:{event['state']}" if event["type"] == "state" else event["type"]


async def collect(
    ws: ClientConnection,
    until: str = "state:idle",
    *,
    after: int = 1,
    timeout_s: float = 10.0,
    into: Collected | None = None,
) -> Collected:
    """Receive until the ``after``-th frame labelled ``until`` (``state:idle`` ends a turn)."""
    got = into or Collected()
    seen = 0

    async def run() -> None:
        nonlocal seen
        async for frame in ws:
            if isinstance(frame, bytes):
                got.audio.append(decode_audio_frame(frame))
                got.order.append("audio")
                continue
            event = json.loads(frame)
            got.events.append(event)
            got.order.append(label(event))
            if label(event) == until:
                seen += 1
                if seen >= after:
                    return

    await asyncio.wait_for(run(), timeout=timeout_s)
    return got


async def hello(ws: ClientConnection) -> dict[str, Any]:
    """The greeting: ``hello`` then the session's current ``state``."""
    first = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert first["type"] == "hello"
    second = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert second["type"] == "state"
    return first


async def open_client(url: str, **kw: Any) -> ClientConnection:
    return await connect(url, **kw)
