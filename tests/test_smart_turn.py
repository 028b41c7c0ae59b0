"""smart-turn v3.2 (assistant/engines/smart_turn.py): its features, its input window, its errors, and
the real model on real speech (embedded: needs models/smart-turn-v3.2/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.engines.smart_turn import WINDOW_SAMPLES, SmartTurn, last_window, log_mel
from assistant.stages import AssistantError

MODEL = Path(__file__).resolve().parent.parent / "models" / "smart-turn-v3.2" / "smart-turn-v3.2-cpu.onnx"


def _tones() -> np.ndarray:
    """2 s of 440 Hz (0.5) plus 3 kHz (0.1), float32: the golden signal."""
    t = np.arange(2 * 16_000) / 16_000
    return (0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)


def test_features_match_the_reference_on_a_golden_signal() -> None:
    # Values computed by pipecat 1.14.0's compute_whisper_log_mel_features on the same signal.
    f = log_mel(_tones())
    assert f.shape == (80, 800) and f.dtype == np.float32
    assert f[11, 100] == pytest.approx(1.8102326, abs=1e-5)  # 440 Hz: the loudest bin
    assert f[54, 100] == pytest.approx(1.3365856, abs=1e-5)  # 3 kHz
    assert f[11, 0] == pytest.approx(1.4829390, abs=1e-5)  # the first frame (reflect padding)
    assert f[11, 200] == pytest.approx(1.6649188, abs=1e-5)  # the frame centred where the tones stop
    assert f.min() == pytest.approx(f.max() - 2.0, abs=1e-6)  # Whisper's 80 dB floor, scaled by 1/4
    assert f[:, 300:].max() == pytest.approx(f.min(), abs=1e-6)  # the zero padding sits on the floor


def test_features_take_exactly_eight_seconds_from_the_start() -> None:
    tones = _tones()
    longer = np.concatenate([np.zeros(WINDOW_SAMPLES, np.float32), tones])  # the tones beyond 8 s
    assert np.array_equal(log_mel(tones), log_mel(np.concatenate([tones, np.zeros(1000, np.float32)])))
    assert np.array_equal(log_mel(longer[:WINDOW_SAMPLES]), log_mel(longer))
    with pytest.raises(ValueError):
        log_mel(np.zeros((2, 100), np.float32))


def test_the_window_is_the_last_eight_seconds_padded_in_front() -> None:
    pcm = np.arange(-5000, 5000, dtype=np.int16)
    window = last_window(pcm)
    assert window.shape == (WINDOW_SAMPLES,) and window.dtype == np.float32
    assert not window[: WINDOW_SAMPLES - len(pcm)].any()
    assert np.array_equal(window[-len(pcm) :], pcm / np.float32(32768.0))
    long = np.tile(pcm, 20)  # 12.5 s
    assert np.array_equal(last_window(long), long[-WINDOW_SAMPLES:] / np.float32(32768.0))
    floats = np.linspace(-0.5, 0.5, 3000, dtype=np.float32)
    assert np.array_equal(last_window(floats)[-3000:], floats)


def test_a_missing_model_names_the_command_that_fetches_it(tmp_path: Path) -> None:
    with pytest.raises(AssistantError) as caught:
        SmartTurn.from_path(tmp_path / "smart-turn-v3.2-cpu.onnx")
    assert caught.value.code == "turn-model" and "models fetch smart-turn-v3.2" in caught.value.message


def test_a_corrupt_model_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "smart-turn-v3.2-cpu.onnx"
    bad.write_bytes(b"not an onnx graph" * 100)
    with pytest.raises(AssistantError) as caught:
        SmartTurn.from_path(bad)
    assert caught.value.code == "turn-model" and str(bad) in caught.value.message


def test_another_onnx_model_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(AssistantError) as caught:
        SmartTurn.from_path(path)
    assert caught.value.code == "turn-model" and "not a smart-turn" in caught.value.message


# -- the real model ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurn:
    if not MODEL.is_file():
        pytest.skip(f"{MODEL.relative_to(MODEL.parents[2])} is missing (assistant models fetch smart-turn-v3.2)")
    return SmartTurn.from_path(MODEL)


@pytest.mark.embedded
@pytest.mark.parametrize(
    ("clip", "cut_s"),
    [
        # "And Mr. John Dashwood had then leisure to consider how much | there might be prudently in
        # his power to do for them." Cut scores <= 0.01 for cuts 30 ms either way, 200 or 500 ms on.
        ("librivox/sense_and_sensibility_01_austen_64kb-0870.wav", 4.185),
        # "Unless to be rather cold-hearted and rather selfish is | to be ill-disposed." <= 0.05.
        ("librivox/sense_and_sensibility_01_austen_64kb-0890.wav", 3.875),
    ],
)
def test_a_finished_sentence_ends_the_turn_and_the_same_cut_short_does_not(
    smart_turn: SmartTurn, clip: str, cut_s: float
) -> None:
    """Human speech, 200 ms of silence after it (when the endpointer would ask): the whole sentence
    scores high (0.93-0.98 measured), the same recording cut mid-sentence at a word boundary low."""
    from audio_data import recording, silence, trimmed

    pcm = recording(clip)
    complete = np.concatenate([trimmed(pcm), silence(200)])
    cut = np.concatenate([pcm[: int(cut_s * 16_000)], silence(200)])
    p_complete, p_cut = smart_turn.probability(complete), smart_turn.probability(cut)
    assert p_complete > 0.8, p_complete
    assert p_cut < 0.1, p_cut
    # float32 in [-1, 1] is the same input as int16.
    assert smart_turn.probability(complete.astype(np.float32) / 32768.0) == pytest.approx(p_complete, abs=1e-6)


# -- through the registry: the [turn] model, or the silence rule alone ---------------------------


def test_without_the_pack_the_registry_says_so_once_and_returns_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from assistant import registry
    from assistant.config import Settings

    settings = Settings(root=tmp_path)  # no models/ there
    with caplog.at_level("WARNING", logger="assistant.registry"):
        assert registry.turn_detector(settings) is None
    (record,) = caplog.records
    assert "silence alone" in record.getMessage() and "assistant models fetch smart-turn-v3.2" in record.getMessage()
    settings.turn.model = ""  # switched off: nothing to say
    caplog.clear()
    assert registry.turn_detector(settings) is None and caplog.records == []
    settings.turn.model = "smart-turn-v9"
    with pytest.raises(AssistantError) as caught:
        registry.turn_detector(settings)
    assert caught.value.code == "config-engine"


@pytest.mark.embedded
async def test_the_registry_loads_the_pack_and_judges_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from audio_data import recording, silence, trimmed

    from assistant import registry
    from assistant.config import Settings
    from assistant.stages import TurnDetector

    if not MODEL.is_file():
        pytest.skip("models/smart-turn-v3.2 is missing (assistant models fetch smart-turn-v3.2)")
    detector = registry.turn_detector(Settings(root=MODEL.parents[2]))
    assert isinstance(detector, SmartTurn) and isinstance(detector, TurnDetector)
    seen: list[str] = []
    real = detector.probability
    monkeypatch.setattr(detector, "probability", lambda pcm: seen.append(threading.current_thread().name) or real(pcm))
    pcm = np.concatenate([trimmed(recording("librivox/sense_and_sensibility_01_austen_64kb-0890.wav")), silence(200)])
    p = await detector.judge(pcm)
    assert p > 0.8 and seen and seen[0] != threading.main_thread().name  # a worker thread, not the loop's
