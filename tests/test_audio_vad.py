"""Silero VAD (streaming) and the Endpointer, on real recordings and on sounds that are not speech."""

from __future__ import annotations

import numpy as np
import pytest
from audio_data import recording, silence, with_silence

from assistant.audio.vad import WINDOW_SAMPLES, Endpointer, SileroVAD, VoiceEnd, VoiceStart
from assistant.config import VAD
from assistant.stages import Utterance


def run(pcm: np.ndarray, settings: VAD | None = None, frame: int = 512) -> list[object]:
    ep = Endpointer(settings or VAD())
    out: list[object] = []
    for i in range(0, len(pcm), frame):
        out.extend(ep.feed(pcm[i : i + frame]))
    out.extend(ep.flush())
    return out


def kinds(events: list[object]) -> list[str]:
    return [type(e).__name__ for e in events]


def speech_bounds_ms(pcm: np.ndarray) -> tuple[float, float]:
    """First and last 10 ms block louder than -35 dBFS: a crude, independent speech extent."""
    blocks = pcm[: len(pcm) // 160 * 160].astype(np.float64).reshape(-1, 160)
    rms = np.sqrt((blocks**2).mean(axis=1)) / 32768
    loud = np.nonzero(rms > 10 ** (-35 / 20))[0]
    return loud[0] * 10.0, (loud[-1] + 1) * 10.0


def test_streaming_silero_matches_faster_whispers_batch_call() -> None:
    from faster_whisper.vad import SileroVADModel

    from assistant.audio.vad import silero_model_path

    pcm = recording("librivox/sense_and_sensibility_01_austen_64kb-0880.wav")
    audio = pcm[: len(pcm) // WINDOW_SAMPLES * WINDOW_SAMPLES].astype(np.float32) / 32768
    batch = np.asarray(SileroVADModel(str(silero_model_path()))(audio)).reshape(-1)
    vad = SileroVAD()
    windows = audio.reshape(-1, WINDOW_SAMPLES)
    streamed = np.concatenate([vad.probabilities(windows[i : i + 3]) for i in range(0, len(windows), 3)])
    np.testing.assert_allclose(streamed, batch, atol=1e-4)
    assert streamed.max() > 0.9 and streamed.min() < 0.2


def test_one_sentence_gives_start_end_and_utterance() -> None:
    speech = recording("librivox/sense_and_sensibility_01_austen_64kb-0930.wav")
    pcm = with_silence(speech, 500, 1000)
    events = run(pcm, frame=700)  # frames that do not line up with VAD windows
    assert kinds(events) == ["VoiceStart", "VoiceEnd", "Utterance"]
    start, end, utt = events
    assert isinstance(start, VoiceStart) and isinstance(end, VoiceEnd) and isinstance(utt, Utterance)
    first_ms, last_ms = speech_bounds_ms(pcm)
    assert abs(start.stream_ms - first_ms) < 200
    assert abs(utt.end_of_speech_ms - last_ms) < 250
    # Pre-roll before the first voiced window, 200 ms kept after the last one.
    assert start.stream_ms - utt.start_ms == pytest.approx(VAD().pre_roll_ms, abs=40)
    assert utt.start_ms + utt.duration_s * 1000 == pytest.approx(utt.end_of_speech_ms + 200, abs=1)
    # The endpoint is decided silence_ms after the last voiced sample.
    assert end.stream_ms - utt.end_of_speech_ms == pytest.approx(VAD().silence_ms, abs=40)
    assert end.duration_ms == pytest.approx(utt.end_of_speech_ms - start.stream_ms)
    assert utt.pcm.dtype == np.int16 and utt.sample_rate_hz == 16_000


def test_two_commands_with_a_long_gap_are_two_utterances() -> None:
    a = recording("cards/001.wav")
    b = recording("cards/003.wav")
    events = run(np.concatenate([silence(300), a, silence(1200), b, silence(800)]))
    assert kinds(events) == ["VoiceStart", "VoiceEnd", "Utterance"] * 2
    first, second = events[2], events[5]
    assert isinstance(first, Utterance) and isinstance(second, Utterance)
    assert second.start_ms > first.end_of_speech_ms + 500


def test_silence_and_noise_alone_start_nothing() -> None:
    rng = np.random.default_rng(0)
    white = (rng.standard_normal(16_000 * 3) * 0.05 * 32767).astype(np.int16)
    hum = (0.3 * np.sin(2 * np.pi * 50 * np.arange(48_000) / 16_000) * 32767).astype(np.int16)
    assert run(silence(3000)) == []
    assert run(white) == []
    assert run(hum) == []


def _cough(rng: np.random.Generator, ms: int, level: float) -> np.ndarray:
    n = ms * 16
    t = np.arange(n) / 16_000
    envelope = np.minimum(1, t / 0.01) * np.exp(-t / 0.06)  # sharp attack, fast decay
    noise = np.convolve(rng.standard_normal(n), np.ones(4) / 4, "same")
    return (noise / np.abs(noise).max() * envelope * level * 32767).astype(np.int16)


def test_a_cough_is_not_an_utterance() -> None:
    rng = np.random.default_rng(3)
    bursts = np.concatenate([silence(500), _cough(rng, 180, 0.6), silence(150), _cough(rng, 250, 0.8), silence(1000)])
    assert run(bursts) == []


def test_a_voiced_grunt_shorter_than_min_speech_starts_nothing() -> None:
    # 200 ms cut out of a word: Silero calls part of it speech, min_speech_ms (250) keeps it out.
    speech = recording("librivox/sense_and_sensibility_01_austen_64kb-0880.wav").astype(np.float32)
    snippet = (speech[19_200 : 19_200 + 3200] * np.hanning(3200)).astype(np.int16)
    pcm = np.concatenate([silence(500), snippet, silence(1000)])
    windows = pcm[: len(pcm) // 512 * 512].reshape(-1, 512).astype(np.float32) / 32768
    assert SileroVAD().probabilities(windows).max() > 0.5
    assert run(pcm) == []
    assert kinds(run(pcm, VAD(min_speech_ms=64))) == ["VoiceStart", "VoiceEnd", "Utterance"]


def test_max_utterance_cuts_long_speech() -> None:
    speech = recording("librivox/sense_and_sensibility_01_austen_64kb-0870.wav")  # 7.1 s
    events = run(with_silence(speech, 300, 800), VAD(max_utterance_s=3.0))
    utterances = [e for e in events if isinstance(e, Utterance)]
    assert len(utterances) >= 2
    assert utterances[0].duration_s <= 3.3


def test_pause_drops_the_utterance_in_progress_and_resume_listens_again() -> None:
    a = recording("cards/001.wav")
    pcm = np.concatenate([silence(300), a, silence(800)])
    ep = Endpointer(VAD())
    out: list[object] = []
    half = 300 * 16 + len(a) // 2
    for i in range(0, half, 512):
        out.extend(ep.feed(pcm[i : i + 512]))
    assert kinds(out) == ["VoiceStart"]
    clock = ep.stream_ms
    assert ep.pause() is True
    for i in range(half, len(pcm), 512):
        assert ep.feed(pcm[i : i + 512]) == []
    assert ep.stream_ms > clock  # the stream clock keeps running while paused
    ep.resume()
    later: list[object] = []
    for i in range(0, len(pcm), 512):
        later.extend(ep.feed(pcm[i : i + 512]))
    assert kinds(later) == ["VoiceStart", "VoiceEnd", "Utterance"]


class _Scripted:
    """A detector that plays back given probabilities (pins the state machine exactly)."""

    def __init__(self, probs: list[float]) -> None:
        self.probs = list(probs)

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        out, self.probs = self.probs[: len(windows)], self.probs[len(windows) :]
        return np.array(out + [0.0] * (len(windows) - len(out)), dtype=np.float32)

    def reset(self) -> None:
        pass


def test_endpointer_rules_with_a_scripted_detector() -> None:
    # 10 quiet windows, 12 voiced, one dip to 0.4 (hysteresis: still speech), 6 voiced, then quiet.
    probs = [0.0] * 10 + [0.9] * 12 + [0.4] + [0.9] * 6 + [0.1] * 40
    settings = VAD(threshold=0.5, silence_ms=320, min_speech_ms=256, pre_roll_ms=96, pause_ms=96)
    ep = Endpointer(settings, detector=_Scripted(probs))
    pcm = np.arange(len(probs) * 512, dtype=np.int64) % 1000
    events = []
    for i, chunk in enumerate(pcm.reshape(-1, 512).astype(np.int16)):
        for e in ep.feed(chunk):
            events.append((i, e))
    names = [(i, type(e).__name__) for i, e in events]
    # VoiceStart once 256 ms (8 windows) of voice were heard: window 17; stamped at window 10.
    assert names[0] == (17, "VoiceStart") and events[0][1].stream_ms == 10 * 32
    # Last voiced window is 28; 320 ms = 10 quiet windows later the turn ends (window 38).
    assert names[1:] == [(38, "VoiceEnd"), (38, "Utterance")]
    utt = events[2][1]
    assert isinstance(utt, Utterance)
    assert utt.end_of_speech_ms == 29 * 32
    assert utt.start_ms == 7 * 32  # 96 ms = 3 windows of pre-roll
    np.testing.assert_array_equal(utt.pcm, pcm[7 * 512 : 29 * 512 + 3200].astype(np.int16))


def test_reset_forgets_the_utterance_in_progress() -> None:
    speech = recording("cards/001.wav")
    ep = Endpointer(VAD())
    out: list[object] = []
    for i in range(0, len(speech) // 2 + 4800, 512):
        out.extend(ep.feed(np.concatenate([silence(300), speech])[i : i + 512]))
    assert kinds(out) == ["VoiceStart"] and ep.in_speech
    clock = ep.stream_ms
    ep.reset()
    assert not ep.in_speech and ep.state() is None and ep.stream_ms == clock
    assert kinds(run(with_silence(speech, 300, 800))) == ["VoiceStart", "VoiceEnd", "Utterance"]
