"""Decoding every supported file format to 16 kHz mono, and the errors for files that are not audio."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from assistant.audio.codecs import decode_file, encode_wav
from assistant.stages import TranscribeError


def _tone(rate_hz: int, channels: int = 1, seconds: float = 1.0, freq_hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    mono = 0.4 * np.sin(2 * np.pi * freq_hz * t)
    return np.stack([mono] * channels, axis=1).astype(np.float32) if channels > 1 else mono.astype(np.float32)


def _peak_hz(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * 16_000 / len(pcm))


def _check(pcm: np.ndarray, seconds: float = 1.0) -> None:
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert abs(len(pcm) / 16_000 - seconds) < 0.12  # lossy codecs add priming / padding (AAC: ~90 ms)
    assert abs(_peak_hz(pcm) - 440) < 5
    assert 0.2 < np.abs(pcm).max() / 32768 < 0.6


def test_wav_stereo_44k(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, _tone(44_100, channels=2), 44_100, subtype="PCM_16")
    _check(decode_file(path))


def test_flac_48k(tmp_path: Path) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, _tone(48_000), 48_000, format="FLAC")
    _check(decode_file(path))


def test_ogg_vorbis_22k(tmp_path: Path) -> None:
    path = tmp_path / "a.ogg"
    sf.write(path, _tone(22_050), 22_050, format="OGG", subtype="VORBIS")
    _check(decode_file(path))


def test_mp3_made_by_pyav(tmp_path: Path) -> None:
    import av

    path = tmp_path / "a.mp3"
    samples = (_tone(44_100) * 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libmp3lame", rate=44_100)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = 44_100
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    _check(decode_file(path))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary")
def test_ogg_opus_made_by_ffmpeg_decodes(tmp_path: Path) -> None:
    src = tmp_path / "src.wav"
    sf.write(src, _tone(48_000), 48_000)
    path = tmp_path / "a.ogg"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(src), "-c:a", "libopus", str(path)], check=True)
    _check(decode_file(path))


def test_a_file_only_pyav_reads_goes_through_the_fallback(tmp_path: Path) -> None:
    import av

    path = tmp_path / "a.m4a"  # AAC in MP4: libsndfile cannot, FFmpeg can
    samples = (_tone(16_000) * 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16_000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = 16_000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    _check(decode_file(path))


def test_a_corrupt_file_is_audio_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(TranscribeError) as err:
        decode_file(path)
    assert err.value.code == "audio-unreadable"
    assert str(path) in err.value.message and "WAV" in err.value.message


def test_a_truncated_header_is_audio_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "cut.flac"
    sf.write(path, _tone(16_000), 16_000, format="FLAC")
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(TranscribeError) as err:
        decode_file(path)
    assert err.value.code in ("audio-unreadable", "audio-empty")


def test_empty_files_are_audio_empty(tmp_path: Path) -> None:
    zero = tmp_path / "zero.wav"
    zero.write_bytes(b"")
    with pytest.raises(TranscribeError) as err:
        decode_file(zero)
    assert err.value.code == "audio-empty"
    no_frames = tmp_path / "header-only.wav"
    with wave.open(str(no_frames), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
    with pytest.raises(TranscribeError) as err:
        decode_file(no_frames)
    assert err.value.code == "audio-empty"
    assert "no samples" in err.value.message


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(TranscribeError) as err:
        decode_file(tmp_path / "nope.mp3")
    assert err.value.code == "audio-unreadable" and "does not exist" in err.value.message


def test_encode_wav_round_trips(tmp_path: Path) -> None:
    pcm = (np.sin(np.arange(1600) / 5) * 10_000).astype(np.int16)
    path = tmp_path / "out.wav"
    path.write_bytes(encode_wav(pcm))
    np.testing.assert_array_equal(decode_file(path), pcm)


def test_read_audio_file_is_the_light_entry_point(tmp_path: Path) -> None:
    from assistant.audio import read_audio_file

    path = tmp_path / "a.wav"
    sf.write(path, _tone(8_000), 8_000)
    _check(read_audio_file(path))
