"""The sound-card source: a clear typed error without a device, real capture through PulseAudio."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import numpy as np
import pytest
from pulse import PulseServer, pulse_server  # noqa: F401  (the fixture)

from assistant.audio.device import DeviceSource, NoInputDeviceError, find_input_device
from assistant.config import Audio


def test_no_device_is_a_typed_error_in_a_fresh_process() -> None:
    # A process that never saw a sound server: PortAudio lists no devices on this kind of machine.
    code = (
        "import asyncio\n"
        "from assistant.audio.device import DeviceSource, NoInputDeviceError\n"
        "from assistant.config import Audio\n"
        "try:\n"
        "    asyncio.run(DeviceSource(Audio()).start())\n"
        "except NoInputDeviceError as err:\n"
        "    print(err.code, '|', err.message)\n"
        "else:\n"
        "    print('opened')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE")}
    env["PULSE_SERVER"] = "unix:/nonexistent/pulse/native"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    line = out.stdout.strip().splitlines()[-1]
    if line == "opened":
        pytest.skip("this machine has a real input device")
    assert line.startswith("audio-no-device |")
    assert "browser clients still work" in line or "PortAudio" in line


def test_a_device_name_that_matches_nothing_lists_what_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    import assistant.audio.device as device

    monkeypatch.setattr(device, "input_devices", lambda: [{"index": 3, "name": "USB Mic", "default_samplerate": 48000.0, "channels": 1}])
    with pytest.raises(NoInputDeviceError) as err:
        find_input_device("webcam")
    assert "3: USB Mic" in err.value.message and err.value.code == "audio-no-device"
    assert find_input_device("usb")["index"] == 3
    assert find_input_device("3")["name"] == "USB Mic"


@pytest.mark.slow
async def test_capture_through_a_pulseaudio_null_sink(pulse_server: PulseServer) -> None:  # noqa: F811
    source = DeviceSource(Audio(sample_rate_hz=16_000))
    await source.start()
    assert source.device is not None
    t = np.arange(16_000 * 2) / 16_000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()
    player = pulse_server.play(tone)
    frames: list[np.ndarray] = []

    async def capture() -> None:
        async for frame in source:
            frames.append(frame)
            if sum(map(len, frames)) >= 16_000 * 2.5:
                return

    try:
        await asyncio.wait_for(capture(), 15)
    finally:
        await source.aclose()
        player.wait(timeout=10)
    pcm = np.concatenate(frames).astype(np.float64)
    assert all(f.dtype == np.int16 for f in frames)
    loud = pcm[np.abs(pcm) > 1000]
    assert len(loud) > 16_000  # most of the 2 s tone came back, in real time
    peak = np.argmax(np.abs(np.fft.rfft(pcm))) * 16_000 / len(pcm)
    assert abs(peak - 440) < 5
