"""A PulseAudio null sink for tests that need a real-time sound device on a machine without one.

Use it from a test module with ``from tests.pulse import pulse_server  # noqa: F401`` (or from
conftest). The fixture starts ``pulseaudio`` with a private socket and config that loads only a
null sink (``assistant_test``, 16 kHz mono) and makes it the default sink, and its monitor the
default source: what is played to the sink comes back, in real time, on the default input. It sets
``PULSE_SERVER`` before PortAudio enumerates devices (and re-initialises PortAudio if
``sounddevice`` was already imported), and stops the server afterwards. Skips when PulseAudio is
not installed (Debian: pulseaudio pulseaudio-utils libasound2-plugins libportaudio2).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SINK = "assistant_test"


@dataclass(frozen=True)
class PulseServer:
    server: str
    """The ``PULSE_SERVER`` value (``unix:/.../native``)."""
    sink: str
    source: str
    env: dict[str, str]
    """An environment for subprocesses (pacat, paplay) that talk to this server."""

    def play(self, pcm_s16le: bytes, rate_hz: int = 16_000) -> subprocess.Popen[bytes]:
        """Start playing raw mono int16 audio to the null sink (returns at once; wait() to finish)."""
        proc = subprocess.Popen(
            ["pacat", "--playback", "--raw", "--format=s16le", f"--rate={rate_hz}", "--channels=1", f"--device={self.sink}"],
            stdin=subprocess.PIPE,
            env=self.env,
        )
        assert proc.stdin is not None
        proc.stdin.write(pcm_s16le)
        proc.stdin.close()
        return proc


def _reinit_portaudio() -> None:
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        # PortAudio enumerated devices when sounddevice was imported: make it look again.
        sd._terminate()
        sd._initialize()


@pytest.fixture(scope="session")
def pulse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseServer]:
    if shutil.which("pulseaudio") is None or shutil.which("pacat") is None:
        pytest.skip("PulseAudio is not installed (apt-get install pulseaudio pulseaudio-utils libasound2-plugins)")
    home = tmp_path_factory.mktemp("pulse")
    socket = home / "native"
    config = home / "default.pa"
    config.write_text(
        f"load-module module-native-protocol-unix auth-anonymous=1 socket={socket}\n"
        f"load-module module-null-sink sink_name={SINK} rate=16000 channels=1\n"
        f"set-default-sink {SINK}\n"
        f"set-default-source {SINK}.monitor\n"
    )
    env = dict(os.environ)
    env.update(HOME=str(home), XDG_RUNTIME_DIR=str(home), PULSE_RUNTIME_PATH=str(home), PULSE_SERVER=f"unix:{socket}")
    log = (home / "pulseaudio.log").open("wb")
    proc = subprocess.Popen(
        ["pulseaudio", "-n", "-F", str(config), "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
         "--log-target=stderr"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while not socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"pulseaudio did not start: {(home / 'pulseaudio.log').read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    saved = {k: os.environ.get(k) for k in ("PULSE_SERVER", "PULSE_RUNTIME_PATH")}
    os.environ["PULSE_SERVER"] = env["PULSE_SERVER"]
    os.environ["PULSE_RUNTIME_PATH"] = str(home)
    _reinit_portaudio()
    try:
        yield PulseServer(env["PULSE_SERVER"], SINK, f"{SINK}.monitor", env)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        _reinit_portaudio()


def pulse_home(server: PulseServer) -> Path:
    return Path(server.server.removeprefix("unix:")).parent
