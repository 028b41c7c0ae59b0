"""The kiosk's own sound card as the daemon's ``LocalAudio``: the ears' microphone source and the
mouth's player behind the small interface the kiosk session uses (frames in, chunks out, position).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from assistant.config import Settings
from assistant.stages import AssistantError, AudioChunk

log = logging.getLogger(__name__)


class SoundCard:
    """Microphone (``assistant.audio.device.DeviceSource``) + speaker (``assistant.audio.playback.Player``).

    Either half may be missing (``[audio] input`` / ``output`` off, or no device): ``frames()`` then
    never yields, and ``play`` drops audio.
    """

    def __init__(self, mic: Any | None, player: Any | None) -> None:
        self.mic = mic
        self.player = player

    @classmethod
    async def open(cls, settings: Settings) -> SoundCard | None:
        """Open what the settings ask for and the machine has; None (with a log line) when neither."""
        mic = player = None
        if settings.audio.input != "off":
            from assistant.audio.device import DeviceSource

            source = DeviceSource(settings.audio)
            try:
                await source.start()
                mic = source
            except AssistantError as err:
                level = logging.ERROR if settings.audio.input == "on" else logging.INFO
                log.log(level, "no local microphone (%s); the kiosk listens to browsers only", err.message)
        if settings.audio.output != "off":
            from assistant.audio.playback import Player

            p = Player.from_settings(settings)
            try:
                p.start()
                player = p
            except AssistantError as err:
                level = logging.ERROR if settings.audio.output == "on" else logging.INFO
                log.log(level, "no local speaker (%s); replies play in browsers only", err.message)
        if mic is None and player is None:
            return None
        return cls(mic, player)

    async def frames(self) -> AsyncIterator[np.ndarray]:
        if self.mic is None:
            return
        async for frame in self.mic:
            yield frame

    def play(self, chunk: AudioChunk) -> None:
        if self.player is not None:
            self.player.write(chunk)

    def end(self) -> None:
        if self.player is not None:
            self.player.end()

    def stop(self) -> None:
        if self.player is not None:
            self.player.stop()

    @property
    def playing(self) -> bool:
        if self.player is None:
            return False
        return bool(self.player.sounding)

    @property
    def played_ms(self) -> float:
        return float(self.player.position_ms) if self.player is not None else 0.0

    def new_reply(self) -> None:
        if self.player is not None:
            self.player.reset()

    async def aclose(self) -> None:
        if self.mic is not None:
            await self.mic.aclose()
        if self.player is not None:
            self.player.close()
