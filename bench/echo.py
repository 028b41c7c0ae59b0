"""Does the kiosk hear itself? A measurement with a real-time recording of its own speaker.

    .venv/bin/python bench/echo.py [--config assistant.toml] [--listen-s 10]

A PulseAudio null sink stands in for the room: the kiosk's speaker plays into the sink and its
microphone records the sink's monitor, i.e. the microphone hears every sample of the reply at full
level, with no echo cancellation: the worst case. The daemon's real kiosk path runs on it (the
ears' DeviceSource and Silero endpointer, Whisper, the mouth's Player, the embedded Piper voice):
the kiosk answers FAQ questions aloud, then listens for ``--listen-s``. Every turn it starts that
nobody asked for is a self-triggered turn.

Four conditions: no protection, half-duplex gating only, the echo filter only, both (the default).
Writes bench/results/echo.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTIONS = ["How much does visitor parking cost?", "When is the canteen open?", "Where is the IT help desk?"]


def start_pulse() -> tuple[subprocess.Popen[bytes], str]:
    if shutil.which("pulseaudio") is None:
        raise SystemExit("PulseAudio is not installed (apt-get install pulseaudio pulseaudio-utils libasound2-plugins)")
    home = Path(tempfile.mkdtemp(prefix="echo-pulse-"))
    socket = home / "native"
    (home / "default.pa").write_text(
        f"load-module module-native-protocol-unix auth-anonymous=1 socket={socket}\n"
        "load-module module-null-sink sink_name=room rate=16000 channels=1\n"
        "set-default-sink room\nset-default-source room.monitor\n"
    )
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(home), PULSE_RUNTIME_PATH=str(home))
    proc = subprocess.Popen(
        [
            "pulseaudio",
            "-n",
            "-F",
            str(home / "default.pa"),
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--use-pid-file=no",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while not socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("pulseaudio did not start")
        time.sleep(0.05)
    # PortAudio reads these once, when sounddevice is first imported (below, after this)
    os.environ["PULSE_SERVER"] = f"unix:{socket}"
    os.environ["PULSE_RUNTIME_PATH"] = str(home)
    return proc, str(home)


async def condition(settings: Any, engines: Any, *, gating: bool, echo_filter: bool, listen_s: float) -> dict[str, Any]:
    from assistant.audio.soundcard import SoundCard
    from assistant.daemon import Daemon

    daemon = Daemon(settings, engines)
    card = await SoundCard.open(settings)
    if card is None or card.mic is None or card.player is None:
        raise SystemExit("the null sink did not give a microphone and a speaker")
    daemon.attach_local_audio(card)
    kiosk = daemon.kiosk
    kiosk.half_duplex = gating
    if not echo_filter and kiosk.echo is not None:
        kiosk.echo.threshold = float("inf")  # the filter never matches; the gating stays
    heard: list[str] = []
    original = kiosk._question

    async def spy(item: Any, upcoming: int) -> None:
        heard.append(item.transcript.text)
        await original(item, upcoming)

    kiosk._question = spy  # type: ignore[method-assign]
    asked = 0
    try:
        await asyncio.sleep(1.0)  # the microphone settles
        for question in QUESTIONS:
            await kiosk.ask(question)
            asked += 1
            # wait for the reply to be sent and played out
            deadline = time.monotonic() + 60
            while (kiosk.busy or card.playing) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls two sources
                await asyncio.sleep(0.1)
            # then listen: anything heard now is the kiosk's own voice (nobody else is in the room)
            await asyncio.sleep(listen_s)
            # a self-triggered turn may still be talking: stop it before the next question
            await kiosk.interrupt()
    finally:
        await daemon.close()
    return {
        "gating": gating,
        "echo_filter": echo_filter,
        "replies_spoken": asked,
        "transcripts_heard": len(heard),
        "heard": heard,
        "self_triggered_turns": kiosk.last_number - asked,
        "echo_dropped": int(daemon.metrics.echo_dropped.value()),
        # the kiosk's own voice detected as speech while it talks stops its reply (barge-in on itself)
        "interrupted_turns": int(daemon.metrics.turns.value(outcome="interrupted")),
    }


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config")
    parser.add_argument("--listen-s", type=float, default=8.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "echo.json"))
    args = parser.parse_args()
    pulse, _home = start_pulse()
    try:
        from assistant import registry

        settings = registry.load_settings(args.config)
        settings.audio.input = "on"
        settings.audio.output = "on"
        engines = registry.engines(settings, lazy_llm=True)
        results = []
        for gating, echo_filter in ((False, False), (True, False), (False, True), (True, True)):
            r = await condition(settings, engines, gating=gating, echo_filter=echo_filter, listen_s=args.listen_s)
            print(json.dumps({k: v for k, v in r.items() if k != "heard"}), file=sys.stderr)
            results.append(r)
    finally:
        pulse.terminate()
        pulse.wait(timeout=5)
    report = {
        "setup": "PulseAudio null sink: the microphone records the speaker's every sample (worst case, no AEC)",
        "questions": QUESTIONS,
        "listen_s_after_each_reply": args.listen_s,
        "conditions": results,
    }
    write_json(Path(args.out), report)
    print(json.dumps([{k: v for k, v in r.items() if k != "heard"} for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
