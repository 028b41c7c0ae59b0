"""The kiosk on a real-time sound device (a PulseAudio null sink: the microphone records the speaker's
monitor): interrupted at every point of a turn, it always hears the next question.

Real time, so marked slow. The speaker plays a fake reply (a tone) and the microphone hears it back at
full level, the worst case; the visitor's voice is played into the same sink with ``pacat``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from daemon_support import EnergyDetector, open_client, silence_pcm, speech_pcm
from fakes import FakeLanguageModel, FakeTranscriber, fake_engines, settings_for_tests
from pulse import PulseServer, pulse_server  # noqa: F401  (the fixture)

from assistant.audio.soundcard import SoundCard
from assistant.daemon import Daemon
from assistant.server.app import AssistantServer

pytestmark = pytest.mark.slow


class Watcher:
    """A watcher client of the kiosk session that records every event as it comes."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for frame in self.ws:
                if isinstance(frame, str):
                    self.events.append(json.loads(frame))

    async def wait_for(self, pred: Any, *, after: int = 0, timeout_s: float = 15.0) -> dict[str, Any]:
        """The first event from index ``after`` on that satisfies ``pred``."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            for event in self.events[after:]:
                if pred(event):
                    return event
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no such event in {[e['type'] for e in self.events[after:]]}")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()


@contextlib.asynccontextmanager
async def kiosk_on_the_sink() -> AsyncIterator[tuple[Daemon, SoundCard, Watcher]]:
    settings = settings_for_tests()
    settings.audio.input = "on"
    settings.audio.output = "on"
    settings.asr.partials = False
    # a generated reply, written slowly enough to have a thinking and a speaking phase
    engines = fake_engines(
        transcriber=FakeTranscriber(text="Where do visitors get a badge?"),
        llm=FakeLanguageModel(delay_s=0.05),
    )
    daemon = Daemon(settings, engines, detector_factory=EnergyDetector)
    card = await SoundCard.open(settings)
    assert card is not None and card.mic is not None and card.player is not None, "the null sink gave no devices"
    daemon.attach_local_audio(card)
    server = AssistantServer(settings, daemon, host="127.0.0.1", port=0)
    await server.start()
    watcher = Watcher(await open_client(f"ws://127.0.0.1:{server.port}/ws"))
    try:
        await asyncio.sleep(0.5)  # the microphone settles
        yield daemon, card, watcher
    finally:
        await watcher.close()
        await daemon.close()
        await server.close()


async def ask_aloud(pulse: PulseServer) -> None:
    """The visitor speaks a question into the room (the null sink) and stops."""
    pcm = np.concatenate([speech_pcm(900), silence_pcm(100)])
    proc = pulse.play(pcm.tobytes())
    await asyncio.to_thread(proc.wait, 10)


async def quiet(daemon: Daemon, card: SoundCard, *, timeout_s: float = 15.0) -> None:
    """Until no turn runs and the speaker is silent (then the echo tail)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while daemon.kiosk.busy or card.playing or daemon.kiosk.state != "idle":
        assert loop.time() < deadline, f"the kiosk never went quiet (state {daemon.kiosk.state})"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.6)


POINTS = ["listening", "thinking", "speaking", "after reply-end", "after playback"]


async def test_interrupted_at_every_point_of_a_turn_the_kiosk_hears_the_next_question(
    pulse_server: PulseServer,  # noqa: F811
) -> None:
    # issue 23, item 1: after an interrupt about 1 s after `reply-end` (the audio still playing), the
    # kiosk never heard another question until a restart
    async with kiosk_on_the_sink() as (daemon, card, watcher):
        for point in POINTS:
            try:
                await interrupt_at(point, daemon, card, watcher, pulse_server)
            except AssertionError as err:
                raise AssertionError(f"interrupted {point}: {err}") from err
        # and after all that, a question is heard and answered to the end
        mark = len(watcher.events)
        await ask_aloud(pulse_server)
        start = await watcher.wait_for(lambda e: e["type"] == "speech-start", after=mark)
        await watcher.wait_for(lambda e: e["type"] == "reply-end" and e["turn"] == start["turn"], after=mark)
        await watcher.wait_for(lambda e: e.get("state") == "idle" and e["turn"] == start["turn"], after=mark)
        assert not [e for e in watcher.events if e["type"] == "error"]


async def interrupt_at(point: str, daemon: Daemon, card: SoundCard, watcher: Watcher, pulse: PulseServer) -> None:
    """Ask aloud, interrupt at ``point`` as a watcher's button would, and wait until all is quiet."""
    mark = len(watcher.events)
    await ask_aloud(pulse)
    start = await watcher.wait_for(lambda e: e["type"] == "speech-start", after=mark)
    turn = start["turn"]
    if point == "listening":
        await watcher.ws.send(json.dumps({"type": "interrupt"}))
    else:
        if point == "thinking":
            await watcher.wait_for(lambda e: e.get("state") == "thinking" and e["turn"] == turn, after=mark)
        elif point == "speaking":
            await watcher.wait_for(lambda e: e["type"] == "audio-start" and e["turn"] == turn, after=mark)
        elif point == "after reply-end":
            await watcher.wait_for(lambda e: e["type"] == "reply-end" and e["turn"] == turn, after=mark)
            await asyncio.sleep(1.0)
            assert card.playing, "the reply should still be playing 1 s after reply-end"
        else:
            await watcher.wait_for(lambda e: e.get("state") == "idle" and e["turn"] == turn, after=mark)
            await quiet(daemon, card)
        await watcher.ws.send(json.dumps({"type": "interrupt", "turn": turn}))
    await asyncio.sleep(0.2)
    assert not card.playing, "the speaker still plays after the interrupt"
    await quiet(daemon, card)
