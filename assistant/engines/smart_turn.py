"""smart-turn v3.2: the probability that a visitor has finished their turn, from the sound alone.

Silence tells the endpointer that the voice stopped, not that the visitor is done: people pause
mid-sentence ("I'd like to know... how to reset my password"). smart-turn (Daily, BSD-2) is a
Whisper-encoder classifier that reads the last <= 8 s of 16 kHz audio, intonation and all, and
answers with one number in [0, 1]; above 0.5 means "complete". The model file ships in the
``pipecat-ai`` wheel (``pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx``, 8,679,182 B,
sha256 ``SMART_TURN_SHA256``) and is assembled into ``models/smart-turn-v3.2/`` like every model
pack; pipecat itself is never imported.

``log_mel`` is a port of pipecat's numpy Whisper features
(``pipecat/audio/turn/smart_turn/_whisper_features.py``, itself derived from Hugging Face
transformers' ``WhisperFeatureExtractor``, Apache-2.0), Copyright (c) 2024-2026, Daily, BSD 2-Clause
License, https://github.com/pipecat-ai/pipecat. The same arithmetic (only the mel projection skips
the frame the reference drops afterwards): on this machine its output was bit-identical to pipecat
1.14.0's (max abs difference 0.0 over the pocketsphinx
recordings, whole, halved and tripled, and random noise); another BLAS may differ by float32 rounding.

Cost on one thread: ~10 ms of features and 50-90 ms of inference per call, 120-180 ms while a
compiler or the LLM keeps both cores busy (bench/hesitation.py), so callers run
``SmartTurn.probability`` off the event loop (``asyncio.to_thread``), once per pause, not per frame.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from assistant.config import Settings
from assistant.stages import SAMPLE_RATE_HZ, AssistantError

SMART_TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
"""sha256 of ``smart-turn-v3.2-cpu.onnx`` as shipped in ``pipecat-ai==1.14.0``."""
WINDOW_SECONDS = 8
"""The model sees exactly the last 8 s: shorter audio is zero-padded in front, longer cut in front."""
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE_HZ
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
"""The file's name in its pack folder (``models/smart-turn-v3.2/``)."""
COMPLETE_ABOVE = 0.5
"""The model's own decision threshold: a probability above it means the turn is complete."""

_N_FFT = 400
"""25 ms analysis frames, 10 ms apart (``_HOP``): Whisper's front end."""
_HOP = 160
_N_MELS = 80
_FRAMES = WINDOW_SAMPLES // _HOP
"""800 feature frames: the reference computes 801 and drops the last."""


def _mel_filters() -> np.ndarray:
    """``[201, 80]`` Slaney-scale, Slaney-normalised triangles over 0-8 kHz (librosa's and Whisper's)."""

    def to_mel(hz: np.ndarray) -> np.ndarray:
        # Linear below 1 kHz, logarithmic above; maximum() only keeps log() off the zeros np.where discards.
        return np.where(
            hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1.0) / 1000.0) * 27.0 / np.log(6.4), 3.0 * hz / 200.0
        )

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0)), 200.0 * mel / 3.0)

    edges = to_hz(np.linspace(0.0, float(to_mel(np.array(SAMPLE_RATE_HZ / 2.0))), _N_MELS + 2))
    slopes = edges[None, :] - np.linspace(0.0, SAMPLE_RATE_HZ // 2, _N_FFT // 2 + 1)[:, None]
    widths = np.diff(edges)
    triangles = np.maximum(0.0, np.minimum(-slopes[:, :-2] / widths[:-1], slopes[:, 2:] / widths[1:]))
    return triangles * (2.0 / (edges[2:] - edges[:-2]))[None, :]


_MEL_FILTERS = _mel_filters()
_HANN = np.hanning(_N_FFT + 1)[:-1]
"""Periodic Hann window (``torch.hann_window``'s), not numpy's symmetric one."""


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Whisper log-mel features as smart-turn expects them: float32 ``[80, 800]``, roughly in [-1, 1].

    ``audio``: 1-D float samples at 16 kHz in [-1, 1]. Exactly ``WINDOW_SAMPLES`` (8 s) are used, as in
    the reference: shorter audio is zero-padded at the END, longer is cut to its FIRST 8 s (callers
    that want the last 8 s, padded in front, do that first, as ``SmartTurn.probability`` does).
    """
    if audio.ndim != 1:
        raise ValueError(f"log_mel takes 1-D audio, not shape {audio.shape}")
    x = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    n = min(audio.size, WINDOW_SAMPLES)
    x[:n] = audio[:n]
    # The waveform is normalised in float32 (as the reference does), everything after in float64.
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), _N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, _N_FFT)[::_HOP]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2
    spec = np.log10(np.maximum(1e-10, power[:_FRAMES] @ _MEL_FILTERS)).T
    # Whisper's dynamic range: 80 dB below the loudest bin, then scaled to about [-1, 1].
    spec = np.maximum(spec, spec.max() - 8.0)
    return ((spec + 4.0) / 4.0).astype(np.float32)


def last_window(pcm: np.ndarray) -> np.ndarray:
    """The last 8 s of ``pcm`` as float32 in [-1, 1], zero-padded in front when shorter.

    ``pcm``: 1-D int16 (divided by 32768, as pipecat does) or float samples at 16 kHz.
    """
    if pcm.ndim != 1:
        raise ValueError(f"smart-turn takes 1-D mono audio, not shape {pcm.shape}")
    tail = pcm[-WINDOW_SAMPLES:]
    samples = tail.astype(np.float32) / 32768.0 if tail.dtype == np.int16 else tail.astype(np.float32)
    window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    window[WINDOW_SAMPLES - samples.size :] = samples
    return window


class SmartTurn:
    """One loaded smart-turn model: ``assistant.stages.TurnDetector`` (``judge``, off the event loop)
    over the blocking ``probability``, which is safe to call from several threads.

    One instance serves every session (onnxruntime's ``run`` is thread-safe and keeps no state
    between calls: each call is judged on the audio it is given).
    """

    def __init__(self, session: Any) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name

    @classmethod
    def from_settings(cls, settings: Settings) -> SmartTurn:
        """The ``[turn] model`` pack, verified (``models.model_dir``: raises ModelMissingError naming
        the fetch command when it is absent or fails its sha256)."""
        from assistant.models import model_dir

        return cls.from_path(model_dir(settings, settings.turn.model) / MODEL_FILE)

    @classmethod
    def from_path(cls, path: Path | str, *, threads: int = 1) -> SmartTurn:
        """Load ``smart-turn-v3.2-cpu.onnx`` (or a compatible export) with ``threads`` intra-op threads.

        Raises AssistantError("turn-model") when the file is missing, is not an ONNX model, or has
        not smart-turn's input (``[batch, 80, 800]`` log-mel features).
        """
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise AssistantError(
                "turn-model",
                f"smart-turn model not found at {path}; run `assistant models fetch smart-turn-v3.2` to get it",
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # No busy-waiting after a call: the model runs once per pause, and spinning threads would
        # steal the cores that Whisper and the LLM are using at that very moment.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
            raise AssistantError("turn-model", f"smart-turn model at {path} could not be loaded: {err}") from err
        inputs = session.get_inputs()
        if len(inputs) != 1 or list(inputs[0].shape)[1:] != [_N_MELS, _FRAMES]:
            found = [(i.name, i.shape) for i in inputs]
            raise AssistantError(
                "turn-model", f"{path} is not a smart-turn v3 model: its inputs are {found}, not [batch, 80, 800]"
            )
        return cls(session)

    def probability(self, pcm: np.ndarray) -> float:
        """The probability (0-1) that the turn ending with ``pcm``'s last sample is complete.

        ``pcm``: 1-D 16 kHz mono, int16 or float32 in [-1, 1], ideally the whole turn so far including
        the pause after it; only the last 8 s count. Blocking (~60-100 ms on one thread).
        """
        features = log_mel(last_window(pcm))[None]
        try:
            outputs = self._session.run(None, {self._input: features})
        except Exception as err:
            raise AssistantError("turn-model", f"smart-turn inference failed: {err}") from err
        return float(np.asarray(outputs[0]).reshape(-1)[0])

    async def judge(self, pcm: np.ndarray) -> float:
        """``probability`` in a worker thread: ~60-180 ms of CPU, never on the event loop."""
        return await asyncio.to_thread(self.probability, pcm)


__all__ = ["COMPLETE_ABOVE", "MODEL_FILE", "SMART_TURN_SHA256", "WINDOW_SAMPLES", "SmartTurn", "last_window", "log_mel"]
