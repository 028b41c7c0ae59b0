"""Piper's HiFi-GAN decoder (latent frames -> samples) on ONNX Runtime or OpenVINO.

The decoder is ~75% of a Piper voice's CPU time. On ONNX Runtime it runs in float32 as exported.
OpenVINO's CPU plugin runs it in bfloat16 on CPUs that have bf16 instructions (AVX512_BF16, AMX),
after one exact rewrite of the graph (``polyphase_upsampling``): its transposed convolutions, which
OpenVINO's bf16 kernels run slowly (60% of the decoder's time), become ordinary convolutions plus an
interleave. Measured on the joe voice (AMD EPYC Zen 5, 1 thread, 276-frame windows, CPU seconds per
audio second): ONNX Runtime 0.036, OpenVINO f32 0.030, OpenVINO bf16 0.015 (without the rewrite
0.031). bf16 against the float32 audio, on
the same latent frames: SNR 40 dB, log-mel difference 0.2 dB on speech, the difference in pauses
at -91 dBFS (one int16 step), Whisper's WER unchanged; an int8 decoder, by comparison, changed the
log-mel spectrum by 11 dB (docs/voices.md).

``openvino`` is optional: without it, ``resolve_backend("auto")`` picks ONNX Runtime.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import io
import logging
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

OPENVINO_FRAMES_MULTIPLE = 16
"""OpenVINO decodes windows of a multiple of this many frames (see ``OpenVinoDecoder.__call__``):
~18 input lengths in all instead of one per piece, for ~5% more decoder work."""

BACKENDS = ("auto", "openvino", "onnxruntime")
"""``[options] decoder`` of a Piper voice: auto = OpenVINO when installed, else ONNX Runtime."""
PRECISIONS = ("auto", "f32")
"""``[options] precision`` (OpenVINO only): auto = bf16 where the CPU has it, else f32; f32 = always f32."""


class Decoder(Protocol):
    name: str
    """What decodes, e.g. ``openvino 2026.4.1 bf16``: part of the engine version (the FAQ cache key)."""

    def __call__(self, latent: np.ndarray) -> np.ndarray:
        """Latent frames (1, channels, frames), float32 -> samples (float32, any shape, ``frames * hop`` values)."""
        ...

    def prepare(self, frames: list[int]) -> None:
        """Get ready for windows of these lengths (called once at load), so no sentence pays for it."""
        ...


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``openvino`` when the package is importable, else ``onnxruntime``."""
    if backend not in BACKENDS:
        raise ValueError(f"decoder must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "auto":
        return "openvino" if openvino_installed() else "onnxruntime"
    return backend


@functools.cache
def openvino_precision(precision: str) -> str:
    """The precision OpenVINO's CPU plugin will run at: ``bf16`` or ``f32`` (``auto``: its own choice for this CPU)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "f32":
        return "f32"
    import openvino as ov

    hint = str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
    return "bf16" if "bfloat16" in hint or "bf16" in hint else "f32"  # f16 only on ARM: not worth it here


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


class OnnxRuntimeDecoder:
    """The decoder graph as exported, float32, on ONNX Runtime."""

    def __init__(self, model: bytes, *, options: Any) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.name = f"onnxruntime {_version('onnxruntime')} f32"

    def __call__(self, latent: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: latent})[0]  # type: ignore[no-any-return]

    def prepare(self, frames: list[int]) -> None:
        """Nothing to do: ONNX Runtime runs any length at the same speed."""


class OpenVinoDecoder:
    """The decoder graph, transposed convolutions rewritten (exact), on OpenVINO's CPU plugin."""

    def __init__(self, model: bytes, *, threads: int, precision: str = "auto") -> None:
        import onnx
        import openvino as ov

        graph = onnx.load_from_string(model)
        set_input_shape(graph)
        polyphase_upsampling(graph)
        self.precision = openvino_precision(precision)
        core = ov.Core()
        config = {
            "INFERENCE_PRECISION_HINT": self.precision,
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            # The 2 cores are shared with the LLM and ASR: pinning our threads to cores would only
            # stop the scheduler from moving them out of the others' way.
            "ENABLE_CPU_PINNING": False,
        }
        compiled = core.compile_model(core.read_model(io.BytesIO(graph.SerializeToString())), "CPU", config)
        self.request = compiled.create_infer_request()
        self.name = f"openvino {_version('openvino')} {self.precision}"
        self.channels = int(graph.graph.input[0].type.tensor_type.shape.dim[1].dim_value)

    def __call__(self, latent: np.ndarray) -> np.ndarray:
        # OpenVINO prepares its kernels for each new input length, which costs ~50-90 ms of CPU, more
        # than decoding a window: lengths are rounded up to a multiple of OPENVINO_FRAMES_MULTIPLE by
        # repeating the last frame, and the extra output dropped. Every kept sample still has its 10
        # real frames of context on the right, or is at the piece's end, where the repeated frames
        # change it by at most 2 int16 steps (measured on the bench sentences: -84 dBFS, -104 dBFS
        # RMS over the last 10 frames, which are near silence).
        frames = latent.shape[2]
        extra = -frames % OPENVINO_FRAMES_MULTIPLE
        if extra:
            latent = np.pad(latent, ((0, 0), (0, 0), (0, extra)), mode="edge")
        samples = self.request.infer({0: np.ascontiguousarray(latent, dtype=np.float32)})[0].reshape(-1)
        # a copy: the request reuses its output tensor on the next call
        return np.array(samples[: samples.size * frames // (frames + extra)], dtype=np.float32)

    def prepare(self, frames: list[int]) -> None:
        for n in sorted({-(-n // OPENVINO_FRAMES_MULTIPLE) * OPENVINO_FRAMES_MULTIPLE for n in frames}):
            self.request.infer({0: np.zeros((1, self.channels, n), np.float32)})


def set_input_shape(model: Any) -> None:
    """Give the decoder's input (the cut-off latent) the shape (1, channels, frames) that OpenVINO needs.

    ``onnx.utils.Extractor`` leaves a cut tensor without a shape; the channels are read from the
    first convolution's weight.
    """
    from onnx import numpy_helper

    name = model.graph.input[0].name
    weights = {i.name: i for i in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and name in n.input)
    channels = int(numpy_helper.to_array(weights[conv.input[1]]).shape[1])
    tensor = model.graph.input[0].type.tensor_type
    tensor.shape.Clear()
    for value in (1, channels, "frames"):
        dim = tensor.shape.dim.add()
        if isinstance(value, int):
            dim.dim_value = value
        else:
            dim.dim_param = value


def polyphase_upsampling(model: Any) -> int:
    """Rewrite each 1-D ``ConvTranspose`` (group 1, no dilation) as ``Conv`` + interleave, in place.

    A transposed convolution with stride ``s`` and kernel ``k`` gives output sample ``t = q*s + r - p``
    from ``M = ceil(k/s)`` input frames only: phase ``r`` is an ordinary convolution with ``M`` taps
    (``W[:, :, r + m*s]``, m < M). All ``s`` phases are one convolution with ``s`` times the output
    channels, then interleaved (reshape, transpose, reshape) and trimmed by the padding: the same
    sums as the original, no multiplications by inserted zeros. Returns how many nodes were rewritten.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    nodes = []
    rewritten = 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (
            node.op_type != "ConvTranspose"
            or node.input[1] not in weights
            or len(attrs.get("strides", [1])) != 1
            or attrs.get("group", 1) != 1
            or any(d != 1 for d in attrs.get("dilations", [1]))
            or any(attrs.get("output_padding", [0]))
            or "output_shape" in attrs
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        ):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weights[node.input[1]])  # (in channels, out channels, k)
        cin, cout, k = w.shape
        s = int(attrs["strides"][0])
        pad_start, pad_end = (int(p) for p in attrs.get("pads", [0, 0]))
        taps = -(-k // s)
        padded = np.zeros((cin, cout, taps * s), w.dtype)
        padded[:, :, :k] = w
        # conv weight (cout*s, cin, taps): output channel o*s + r, tap j reads frame q - (taps-1-j)
        conv_w = np.zeros((cout, s, cin, taps), w.dtype)
        for r in range(s):
            for j in range(taps):
                conv_w[:, r, :, j] = padded[:, :, r + (taps - 1 - j) * s].T
        # the conv gives (frames + taps - 1) * s samples; the transposed conv's are
        # (frames - 1) * s + k - pads: drop pad_start at the front, the rest at the end
        trim_end = pad_end + taps * s - k
        prefix = f"{node.name or node.output[0]}/polyphase"
        constants = {
            "weight": conv_w.reshape(cout * s, cin, taps),
            "phases": np.array([0, cout, s, -1], np.int64),
            "samples": np.array([0, cout, -1], np.int64),
            "starts": np.array([pad_start], np.int64),
            "ends": np.array([-trim_end if trim_end else np.iinfo(np.int64).max], np.int64),
            "axes": np.array([2], np.int64),
        }
        inputs = [node.input[0], f"{prefix}/weight"]
        if len(node.input) > 2 and node.input[2]:
            bias = numpy_helper.to_array(weights[node.input[2]])
            constants["bias"] = np.repeat(bias, s).astype(bias.dtype)
            inputs.append(f"{prefix}/bias")
        graph.initializer.extend(numpy_helper.from_array(value, f"{prefix}/{key}") for key, value in constants.items())
        nodes += [
            helper.make_node(
                "Conv",
                inputs,
                [f"{prefix}/conv"],
                name=f"{prefix}/Conv",
                kernel_shape=[taps],
                pads=[taps - 1, taps - 1],
                strides=[1],
                dilations=[1],
                group=1,
            ),
            helper.make_node(
                "Reshape", [f"{prefix}/conv", f"{prefix}/phases"], [f"{prefix}/r1"], name=f"{prefix}/Reshape1"
            ),
            helper.make_node(
                "Transpose", [f"{prefix}/r1"], [f"{prefix}/t"], name=f"{prefix}/Transpose", perm=[0, 1, 3, 2]
            ),
            helper.make_node(
                "Reshape", [f"{prefix}/t", f"{prefix}/samples"], [f"{prefix}/r2"], name=f"{prefix}/Reshape2"
            ),
            helper.make_node(
                "Slice",
                [f"{prefix}/r2", f"{prefix}/starts", f"{prefix}/ends", f"{prefix}/axes"],
                [node.output[0]],
                name=f"{prefix}/Slice",
            ),
        ]
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return rewritten
