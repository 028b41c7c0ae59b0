"""Playback: the jitter buffer and position logic (driven directly), and real playback into a
PulseAudio null sink, recorded back from its monitor."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator

import numpy as np
from pulse import PulseServer, pulse_server  # noqa: F401  (the fixture)

from assistant.audio.pcm import chunks_from_pcm
from assistant.audio.playback import Player
from assistant.stages import AudioChunk

RATE = 22_050


def tone(ms: float, rate: int = RATE, amplitude: float = 0.4) -> np.ndarray:
    t = np.arange(int(rate * ms / 1000)) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def pull(player: Player, frames: int) -> np.ndarray:
    out = np.zeros((frames, 1), dtype=np.int16)
    player._callback(out, frames, None, None)
    return out.reshape(-1)


def test_jitter_buffer_waits_for_enough_audio() -> None:
    player = Player(sample_rate_hz=RATE, jitter_buffer_ms=60)
    block = RATE // 50  # 20 ms
    player.write(AudioChunk(tone(40).tobytes(), RATE))
    assert not pull(player, block).any()  # 40 ms queued < 60 ms: still buffering, silence out
    player.write(AudioChunk(tone(40).tobytes(), RATE))
    assert pull(player, block).any()  # 80 ms queued: playing
    assert abs(player._delivered - block) <= 1


def test_short_reply_plays_once_ended_and_underruns_rebuffer() -> None:
    player = Player(sample_rate_hz=RATE, jitter_buffer_ms=60)
    block = RATE // 50
    player.write(AudioChunk(tone(30).tobytes(), RATE))
    assert not pull(player, block).any()
    player.end()  # the whole reply is 30 ms: play it without waiting for 60 ms
    assert pull(player, block).any()
    pull(player, block)
    assert player._idle.is_set()
    # A chunk that arrives late: the device ran dry mid-reply, which counts as an underrun.
    player.write(AudioChunk(tone(100).tobytes(), RATE))
    while player._queue:
        pull(player, block)
    assert player.underruns == 1 and player._buffering


def test_other_rates_are_resampled_and_stop_drops_the_rest() -> None:
    player = Player(sample_rate_hz=RATE, jitter_buffer_ms=20)
    player.write(AudioChunk(tone(500, rate=16_000).tobytes(), 16_000))
    assert abs(player.written_ms - 500) < 1
    pull(player, RATE // 10)
    heard = player.stop()
    assert 90 < heard <= 101
    assert not player._queue and not pull(player, 100).any()


async def chunks_of(pcm: np.ndarray, delay_s: float = 0.0) -> AsyncIterator[AudioChunk]:
    for chunk in chunks_from_pcm(pcm, RATE):
        if delay_s:
            await asyncio.sleep(delay_s)
        yield chunk


class Recorder:
    """Records the null sink's monitor with parec: what the speaker put out. (The null sink also only
    keeps real time while something reads it, like a real speaker being listened to.)"""

    def __init__(self, server: PulseServer) -> None:
        self.process = subprocess.Popen(
            ["parec", "--raw", "--format=s16le", "--rate=16000", "--channels=1", f"--device={server.source}"],
            stdout=subprocess.PIPE,
            env=server.env,
        )

    def stop(self) -> np.ndarray:
        self.process.terminate()
        return np.frombuffer(self.process.communicate(timeout=5)[0], dtype="<i2")


async def test_plays_into_a_pulseaudio_null_sink(pulse_server: PulseServer) -> None:  # noqa: F811
    recorder = Recorder(pulse_server)
    try:
        await asyncio.sleep(0.3)
        with Player(sample_rate_hz=RATE, jitter_buffer_ms=60) as player:
            audio = np.concatenate([tone(600), np.zeros(RATE // 10, np.int16)])
            played_ms = await player.play(chunks_of(audio, delay_s=0.05))
            assert player.written_ms == len(audio) / RATE * 1000
            assert abs(played_ms - player.written_ms) < 5  # all of it was heard, latency included
        await asyncio.sleep(0.3)
    finally:
        recorded = recorder.stop()
    level = np.sqrt(np.mean(recorded.astype(np.float64) ** 2)) if len(recorded) else 0.0
    peak = np.abs(recorded).max() if len(recorded) else 0
    assert peak > 0.2 * 32767, "the tone did not come back from the sink's monitor"
    assert level > 300


async def test_barge_in_reports_what_was_heard(pulse_server: PulseServer) -> None:  # noqa: F811
    recorder = Recorder(pulse_server)
    try:
        with Player(sample_rate_hz=RATE, jitter_buffer_ms=60) as player:
            for chunk in chunks_from_pcm(tone(5000), RATE):
                player.write(chunk)
            player.end()
            # A PulseAudio stream can take a second or more to start on a busy machine: wait for it.
            for _ in range(200):
                if player.position_ms >= 100:
                    break
                await asyncio.sleep(0.05)
            start_ms = player.position_ms
            assert start_ms >= 100, "playback never started"
            await asyncio.sleep(0.5)
            assert player.written_ms == 5000
            heard = player.stop()
            assert 0 <= player.written_ms - heard < 250  # the rest was dropped: it will never sound
    finally:
        recorder.stop()
    # Half a second more was heard (real time), give or take a block, the device latency and scheduling.
    assert 350 < heard - start_ms < 700


def test_stop_ends_playing_so_the_kiosk_microphone_opens_again() -> None:
    # issue 23, item 1: after an interrupt the sound card said "playing" forever and the kiosk's
    # microphone stayed gated (deaf) until a restart
    from assistant.audio.soundcard import SoundCard

    player = Player(sample_rate_hz=RATE, jitter_buffer_ms=20)
    card = SoundCard(None, player)
    player.write(AudioChunk(tone(2000).tobytes(), RATE))
    player.end()
    pull(player, RATE // 10)
    assert card.playing
    heard = player.stop()
    assert 90 < heard <= 101
    assert not card.playing
    assert abs(player.written_ms - heard) < 1
    # the next reply starts from zero and plays as usual
    card.new_reply()
    player.write(AudioChunk(tone(200).tobytes(), RATE))
    player.end()
    assert card.playing
    while player._queue:
        pull(player, RATE // 50)
    assert not card.playing
