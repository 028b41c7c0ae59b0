"""Voice activity detection (Silero, streaming) and the endpointer that cuts a stream into utterances.

Silero VAD v6 comes from the ONNX copy faster-whisper ships (``faster_whisper/assets/
silero_vad_v6.onnx``). That graph takes ``[n, 64 + 512]`` windows (64 samples of the previous
window as context, then 512 new ones) and carries its LSTM state ``h``/``c`` across rows, so one
stream is fed one row at a time with the state kept between calls: exactly what the batch call in
faster-whisper computes, but incrementally. One window costs ~0.1-0.3 ms, so it runs inline on the
event loop (a 32 ms frame per call) rather than paying a thread hop per frame.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from assistant.audio import FRAME_SAMPLES
from assistant.config import VAD as VADSettings
from assistant.stages import SAMPLE_RATE_HZ, TranscribeError, Utterance

WINDOW_SAMPLES = FRAME_SAMPLES
"""Silero at 16 kHz decides every 512 samples (32 ms)."""
WINDOW_MS = WINDOW_SAMPLES * 1000 / SAMPLE_RATE_HZ
_CONTEXT = 64
_POST_ROLL_MS = 200
"""Audio kept after the last voiced sample: Whisper mis-hears words cut right at their last sample."""
_HYSTERESIS = 0.15
"""Speech continues until the probability falls below threshold - this (Silero's own rule)."""

_session_lock = threading.Lock()
_sessions: dict[str, Any] = {}


def silero_model_path() -> Path:
    import faster_whisper

    return Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"


def _session(path: Path) -> Any:
    """One ONNX session per model file, shared by every stream (onnxruntime's run() is thread-safe)."""
    with _session_lock:
        if str(path) not in _sessions:
            import onnxruntime

            if not path.is_file():
                raise TranscribeError("vad-missing", f"Silero VAD model not found at {path} (reinstall faster-whisper)")
            opts = onnxruntime.SessionOptions()
            opts.inter_op_num_threads = 1
            opts.intra_op_num_threads = 1
            opts.log_severity_level = 4
            _sessions[str(path)] = onnxruntime.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        return _sessions[str(path)]


class VoiceDetector(Protocol):
    """A streaming speech detector: one probability per ``WINDOW_SAMPLES`` window fed."""

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        """``windows``: float32 ``[n, WINDOW_SAMPLES]`` in stream order -> ``[n]`` speech probabilities."""
        ...

    def reset(self) -> None: ...


class SileroVAD:
    """One stream's Silero state over the shared ONNX session."""

    def __init__(self, model_path: Path | None = None) -> None:
        self._session = _session(model_path or silero_model_path())
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows, dtype=np.float32).reshape(-1, WINDOW_SAMPLES)
        if len(windows) == 0:
            return np.zeros(0, dtype=np.float32)
        contexts = np.concatenate([self._context[None, :], windows[:-1, -_CONTEXT:]], axis=0)
        batch = np.ascontiguousarray(np.concatenate([contexts, windows], axis=1))
        probs, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = windows[-1, -_CONTEXT:].copy()
        return np.asarray(probs, dtype=np.float32).reshape(-1)


@dataclass(frozen=True)
class SpeechState:
    """A snapshot of the utterance in progress (what the Listener needs to transcribe ahead).

    Sample positions are absolute stream positions at 16 kHz.
    """

    start_sample: int
    """First sample of the utterance, pre-roll included."""
    last_voiced_sample: int
    """One past the last sample of the last voiced window."""
    now_sample: int
    """One past the last sample the endpointer has processed."""
    started: bool
    """VoiceStart has been emitted (min_speech_ms of voice seen)."""
    last_gap_samples: int = 0
    """Length of the most recent pause inside the utterance that voice has ended (0: none yet)."""

    @property
    def silence_ms(self) -> float:
        return (self.now_sample - self.last_voiced_sample) * 1000 / SAMPLE_RATE_HZ


@dataclass(frozen=True)
class VoiceStart:
    """Speech began: ``stream_ms`` is the stream time of the first voiced window."""

    stream_ms: float


@dataclass(frozen=True)
class VoiceEnd:
    """The endpoint was decided at stream time ``stream_ms``; ``duration_ms`` of voice, from the
    first voiced sample to the last."""

    stream_ms: float
    duration_ms: float


Endpoint = VoiceStart | VoiceEnd | Utterance


class Endpointer:
    """Cuts a 16 kHz int16 stream into utterances with Silero VAD and the ``[vad]`` settings.

    ``feed(frame)`` returns, in order, what happened during the frame:
      ``VoiceStart``   once ``min_speech_ms`` of voice has been heard (``stream_ms`` = stream time of
                       the first voiced window, so a cough shorter than min_speech_ms starts nothing);
      ``VoiceEnd``     after ``silence_ms`` of silence, or at ``max_utterance_s``, or ``end_now()``;
                       ``duration_ms`` from the first to the last voiced sample;
      ``Utterance``    right after its VoiceEnd: pcm from ``pre_roll_ms`` before the first voiced
                       window to 200 ms after the last one; ``end_of_speech_ms`` = stream time of
                       the last voiced sample.
    All times are stream times (ms since the first sample fed, ``*_ms``/``stream_ms``); the session
    maps them to its own clock.

    ``pause()`` gates the input (half duplex: the assistant is speaking): frames still advance the
    stream clock but are ignored, and an utterance in progress is dropped without a VoiceEnd.
    ``resume()`` starts listening afresh (Silero state reset).
    """

    def __init__(self, settings: VADSettings, *, detector: VoiceDetector | None = None) -> None:
        self.settings = settings
        self.detector: VoiceDetector = detector if detector is not None else SileroVAD()
        self.threshold = settings.threshold
        self.neg_threshold = max(0.01, settings.threshold - _HYSTERESIS)
        self._pending = np.zeros(0, dtype=np.int16)
        self._processed = 0
        """Samples processed by the detector (the stream clock)."""
        self._paused = False
        pre_windows = int(np.ceil(settings.pre_roll_ms / WINDOW_MS))
        self._pre_roll: deque[np.ndarray] = deque(maxlen=pre_windows)
        self._reset_speech()

    # -- state -------------------------------------------------------------------------------

    def _reset_speech(self) -> None:
        self._in_speech = False
        self._started = False
        self._chunks: list[np.ndarray] = []
        self._probs: list[float] = []
        """Speech probability of each window in _chunks (pre-roll windows: 0)."""
        self._start_sample = 0
        self._first_voiced = 0
        self._last_voiced = 0
        self._voiced_samples = 0
        self._silence_run = 0
        self._last_gap = 0

    @property
    def stream_ms(self) -> float:
        return self._processed * 1000 / SAMPLE_RATE_HZ

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def in_speech(self) -> bool:
        """True from the first voiced window of a (possible) utterance until its end."""
        return self._in_speech

    def state(self) -> SpeechState | None:
        if not self._in_speech:
            return None
        return SpeechState(self._start_sample, self._last_voiced, self._processed, self._started, self._last_gap)

    def quietest_window(self, start_sample: int, end_sample: int) -> tuple[int, float] | None:
        """The least speech-like window of the utterance in progress between two positions.

        Returns (the sample position of the window's middle, its probability), or None. A listener
        cuts a long utterance there when it has no real pause: the dip between two words.
        """
        if not self._in_speech or not self._probs:
            return None
        first = max(0, -(-(start_sample - self._start_sample) // WINDOW_SAMPLES))
        last = min(len(self._probs), (end_sample - self._start_sample) // WINDOW_SAMPLES)
        if last <= first:
            return None
        i = first + int(np.argmin(self._probs[first:last]))
        return self._start_sample + i * WINDOW_SAMPLES + WINDOW_SAMPLES // 2, self._probs[i]

    def audio(self, start_sample: int | None = None, end_sample: int | None = None) -> np.ndarray:
        """The utterance in progress between two absolute sample positions (default: all of it)."""
        if not self._in_speech:
            return np.zeros(0, dtype=np.int16)
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        a = 0 if start_sample is None else max(0, start_sample - self._start_sample)
        b = len(pcm) if end_sample is None else max(a, end_sample - self._start_sample)
        return pcm[a:b]

    # -- control -----------------------------------------------------------------------------

    def pause(self) -> bool:
        """Stop listening; returns True when an utterance in progress was dropped."""
        dropped = self._in_speech and self._started
        self._paused = True
        self._reset_speech()
        self._pre_roll.clear()
        return dropped

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self.detector.reset()

    def reset(self) -> None:
        """Forget everything heard so far (an utterance in progress, pre-roll, Silero state); the
        stream clock keeps counting."""
        self._reset_speech()
        self._pre_roll.clear()
        self._pending = np.zeros(0, dtype=np.int16)
        self.detector.reset()

    def end_now(self) -> list[Endpoint]:
        """End the utterance in progress now (an early end-of-turn decided by the caller).

        Returns ``[VoiceEnd, Utterance]``, or ``[]`` when no started utterance is in progress.
        """
        if not (self._in_speech and self._started):
            return []
        return self._finish()

    def flush(self) -> list[Endpoint]:
        """The stream ended: close an utterance in progress (if it ever started)."""
        out: list[Endpoint] = []
        if self._in_speech and self._started:
            out = self._finish()
        self._reset_speech()
        return out

    # -- the work ----------------------------------------------------------------------------

    def feed(self, frame: np.ndarray) -> list[Endpoint]:
        frame = np.asarray(frame, dtype=np.int16).reshape(-1)
        if self._paused:
            self._processed += frame.size
            return []
        pcm = np.concatenate([self._pending, frame]) if self._pending.size else frame
        n = len(pcm) // WINDOW_SAMPLES
        self._pending = pcm[n * WINDOW_SAMPLES :].copy()
        if n == 0:
            return []
        windows = pcm[: n * WINDOW_SAMPLES].reshape(n, WINDOW_SAMPLES)
        probs = self.detector.probabilities(windows.astype(np.float32) / 32768.0)
        out: list[Endpoint] = []
        for window, prob in zip(windows, probs, strict=True):
            out.extend(self._step(window, float(prob)))
        return out

    def _step(self, window: np.ndarray, prob: float) -> list[Endpoint]:
        s = self.settings
        start = self._processed
        self._processed += WINDOW_SAMPLES
        end = self._processed
        out: list[Endpoint] = []
        if not self._in_speech:
            if prob >= self.threshold:
                self._in_speech = True
                pre = list(self._pre_roll)
                self._chunks = [*pre, window]
                self._probs = [0.0] * len(pre) + [prob]
                self._start_sample = start - WINDOW_SAMPLES * len(pre)
                self._first_voiced = start
                self._last_voiced = end
                self._voiced_samples = WINDOW_SAMPLES
                self._pre_roll.clear()
            else:
                self._pre_roll.append(window)
                return out
        else:
            self._chunks.append(window)
            self._probs.append(prob)
            if prob >= self.threshold or (prob >= self.neg_threshold and self._silence_run == 0):
                if self._silence_run:
                    self._last_gap = self._silence_run
                self._last_voiced = end
                self._voiced_samples += WINDOW_SAMPLES
                self._silence_run = 0
            else:
                self._silence_run += WINDOW_SAMPLES
        if not self._started and self._voiced_samples * 1000 / SAMPLE_RATE_HZ >= s.min_speech_ms:
            self._started = True
            out.append(VoiceStart(stream_ms=self._first_voiced * 1000 / SAMPLE_RATE_HZ))
        silence_ms = self._silence_run * 1000 / SAMPLE_RATE_HZ
        length_s = (end - self._start_sample) / SAMPLE_RATE_HZ
        if silence_ms >= s.silence_ms:
            if self._started:
                out.extend(self._finish())
            else:
                # Too little voice to be speech (a cough, a click): forget it, keep the tail as pre-roll.
                tail = self._chunks[-self._pre_roll.maxlen :] if self._pre_roll.maxlen else []
                self._reset_speech()
                self._pre_roll.extend(tail)
        elif length_s >= s.max_utterance_s:
            if self._started:
                out.extend(self._finish())
            else:
                self._reset_speech()
        return out

    def _finish(self) -> list[Endpoint]:
        post = int(_POST_ROLL_MS * SAMPLE_RATE_HZ / 1000)
        cut = min(self._processed, self._last_voiced + post)
        pcm = self.audio(self._start_sample, cut)
        eos_ms = self._last_voiced * 1000 / SAMPLE_RATE_HZ
        utterance = Utterance(
            pcm=pcm.copy(),
            start_ms=self._start_sample * 1000 / SAMPLE_RATE_HZ,
            end_of_speech_ms=eos_ms,
        )
        end = VoiceEnd(stream_ms=self.stream_ms, duration_ms=eos_ms - self._first_voiced * 1000 / SAMPLE_RATE_HZ)
        # Audio after the cut is the start of whatever comes next: keep it as pre-roll.
        tail = self.audio(cut, None)
        self._reset_speech()
        for i in range(0, len(tail) - WINDOW_SAMPLES + 1, WINDOW_SAMPLES):
            self._pre_roll.append(tail[i : i + WINDOW_SAMPLES])
        return [end, utterance]
