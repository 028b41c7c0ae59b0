"""ArraySource / FileSource pacing and framing, PushSource resampling and its bounded queue."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from assistant.audio import FRAME_SAMPLES, AudioSource
from assistant.audio.sources import ArraySource, FileSource, PushSource
from assistant.stages import TranscribeError


async def collect(source: AudioSource) -> list[np.ndarray]:
    return [frame async for frame in source]


async def test_array_source_frames_and_trailing_silence() -> None:
    pcm = np.arange(1300, dtype=np.int16)
    source = ArraySource(pcm, trailing_silence_ms=100)
    assert isinstance(source, AudioSource)
    frames = await collect(source)
    assert [len(f) for f in frames] == [512] * 5 + [1300 + 1600 - 5 * 512]
    joined = np.concatenate(frames)
    np.testing.assert_array_equal(joined[:1300], pcm)
    assert not joined[1300:].any() and all(f.dtype == np.int16 for f in frames)


async def test_realtime_pacing_follows_the_clock() -> None:
    source = ArraySource(np.zeros(16_000 // 2, dtype=np.int16), realtime=True, speed=2.0)
    t0 = time.perf_counter()
    frames = await collect(source)
    elapsed = time.perf_counter() - t0
    assert 0.2 <= elapsed < 0.6  # 0.5 s of audio at twice real time
    assert source.started_at is not None and sum(map(len, frames)) == 8000


async def test_file_source_decodes_and_reports_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, np.zeros(44_100, dtype=np.float32), 44_100, format="FLAC")
    frames = await collect(FileSource(path))
    assert sum(map(len, frames)) == 16_000 and len(frames[0]) == FRAME_SAMPLES
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"ID3 but nothing else")
    with pytest.raises(TranscribeError) as err:
        FileSource(bad)
    assert err.value.code in ("audio-unreadable", "audio-empty")


async def test_push_source_resamples_a_48k_client() -> None:
    source = PushSource()
    t = np.arange(48_000) / 48_000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    for i in range(0, len(tone), 960):  # 20 ms frames, as a browser sends them
        source.push(tone[i : i + 960].tobytes(), 48_000)
    source.close()
    pcm = np.concatenate(await collect(source))
    assert abs(len(pcm) - 16_000) <= 40  # the filter holds back its last half-width
    peak = np.argmax(np.abs(np.fft.rfft(pcm.astype(np.float64)))) * 16_000 / len(pcm)
    assert abs(peak - 440) < 5


async def test_push_source_drops_the_oldest_audio_when_nobody_reads() -> None:
    source = PushSource(max_queued_ms=100)
    for k in range(20):
        source.push(np.full(320, k, dtype=np.int16))  # 20 ms each, 400 ms in all
    source.close()
    frames = await collect(source)
    assert source.dropped_ms == pytest.approx(300, abs=20)
    assert [int(f[0]) for f in frames] == list(range(15, 20))


async def test_push_source_wakes_a_waiting_reader_and_stops_on_close() -> None:
    source = PushSource()
    got: list[np.ndarray] = []

    async def read() -> None:
        async for frame in source:
            got.append(frame)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.01)
    source.push(np.ones(160, dtype=np.int16).tobytes())
    await asyncio.sleep(0.01)
    assert len(got) == 1
    await source.aclose()
    await asyncio.wait_for(reader, 1)
    source.push(np.ones(160, dtype=np.int16).tobytes())  # ignored after close
    assert len(got) == 1
