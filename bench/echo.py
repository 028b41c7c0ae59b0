"""Does the kiosk hear itself, and does it still hear a visitor? A real-time measurement through a
PulseAudio null sink.

    flock /tmp/bench.lock .venv/bin/python bench/echo.py [--config assistant.toml] [--listen-s 8]

A PulseAudio null sink stands in for the room: the kiosk's speaker plays into the sink and its
microphone records the sink's monitor, i.e. the microphone hears every sample of the reply at full
level, with no echo cancellation: the worst case. The daemon's real kiosk path runs on it (the
ears' DeviceSource and Silero endpointer, Whisper, the mouth's Player, the embedded voices).

Two measurements, each with the echo guard of this version (``timing``: speech heard while the
speaker sounded, words of what was playing) and the one before it (``words``: any transcript that
shares 60% of its characters with anything said in the last 30 s), in the same run:

- own voice: the kiosk answers FAQ questions aloud, then listens for ``--listen-s``; every turn it
  starts that nobody asked for is a self-triggered turn. Conditions: no protection, half-duplex
  gating only, the echo filter only, both (the default).
- questions after answers: the kiosk answers a question, and once its speaker is quiet a visitor
  asks a follow-up (rendered with the kiosk's own voices and played into the room) after 0.5, 1.5
  or 4 s (and the shuttle question 14.5 s after the shuttle answer, the issue's case). A follow-up
  dropped as an echo is a real question lost.

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
FOLLOW_UPS = [
    # (asked first, the visitor's follow-up); the examples of real questions dropped as echoes
    ("Is there a shuttle bus?", "How often does the shuttle run?"),
    ("How much does visitor parking cost?", "Where can I park my car?"),
    ("请问商旅的出差制度", "出差住酒店的标准是多少"),
    ("What is the weather on Mars?", "What is the weather on Mars?"),
    ("When is the canteen open?", "Where is the IT help desk?"),
]
DELAYS_S = (0.5, 1.5, 4.0)
LONG_DELAY = ("Is there a shuttle bus?", "How often does the shuttle run?", 14.5)


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


class WordsOnlyGuard:
    """The echo filter before issue 23 (a bench baseline, not used by the daemon): any transcript
    sharing ``threshold`` of its characters (in order, any run length) with anything said in the
    last 30 s is dropped, whenever it was heard. Gating is the current guard's."""

    def __init__(self, guard: Any) -> None:
        self.guard = guard

    @staticmethod
    def similarity(heard: str, said: str) -> float:
        import difflib

        from assistant.echo import _normalise

        h, s = _normalise(heard), _normalise(said)
        if not h or not s:
            return 0.0
        if h in s:
            return 1.0
        match = difflib.SequenceMatcher(None, h, s, autojunk=False)
        return sum(block.size for block in match.get_matching_blocks()) / len(h)

    def is_echo(self, heard: str, **_: Any) -> bool:
        from assistant.echo import _normalise

        now = self.guard._clock()
        if len(_normalise(heard)) < 4:  # its MIN_CHARS: shorter ones were never judged
            return False
        return any(now - t <= 30.0 and self.similarity(heard, text) >= 0.6 for t, text in self.guard._said)


def use_guard(kiosk: Any, guard: str, *, echo_filter: bool = True) -> None:
    """Give the kiosk's echo guard the chosen filter (``timing`` is the daemon's own)."""
    echo = kiosk.echo
    if not echo_filter:
        echo.is_echo = lambda heard, **_: False
    elif guard == "words":
        echo.is_echo = WordsOnlyGuard(echo).is_echo


async def open_kiosk(settings: Any, engines: Any) -> tuple[Any, Any]:
    from assistant.audio.soundcard import SoundCard
    from assistant.daemon import Daemon

    daemon = Daemon(settings, engines)
    card = await SoundCard.open(settings)
    if card is None or card.mic is None or card.player is None:
        raise SystemExit("the null sink did not give a microphone and a speaker")
    daemon.attach_local_audio(card)
    return daemon, card


async def until_quiet(kiosk: Any, card: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (kiosk.busy or card.playing) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls two sources
        await asyncio.sleep(0.05)


async def condition(
    settings: Any, engines: Any, *, gating: bool, echo_filter: bool, guard: str, listen_s: float
) -> dict[str, Any]:
    daemon, card = await open_kiosk(settings, engines)
    kiosk = daemon.kiosk
    kiosk.half_duplex = gating
    use_guard(kiosk, guard, echo_filter=echo_filter)
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
            await until_quiet(kiosk, card)  # the reply is sent and played out
            # then listen: anything heard now is the kiosk's own voice (nobody else is in the room)
            await asyncio.sleep(listen_s)
            # a self-triggered turn may still be talking: stop it before the next question
            await kiosk.interrupt()
    finally:
        await daemon.close()
    return {
        "gating": gating,
        "echo_filter": echo_filter,
        "guard": guard if echo_filter else None,
        "replies_spoken": asked,
        "transcripts_heard": len(heard),
        "heard": heard,
        # turns are numbered on: the asked ones, each heard utterance (dropped ones use up a number too)
        "self_triggered_turns": int(daemon.metrics.turns.value(outcome="answered"))
        + int(daemon.metrics.turns.value(outcome="interrupted"))
        + int(daemon.metrics.turns.value(outcome="error"))
        - asked,
        "echo_dropped": int(daemon.metrics.echo_dropped.value()),
        # the kiosk's own voice detected as speech while it talks stops its reply (barge-in on itself)
        "interrupted_turns": int(daemon.metrics.turns.value(outcome="interrupted")),
    }


async def render(engines: Any, text: str) -> tuple[bytes, int]:
    """``text`` spoken by the kiosk's voice for its language: int16 PCM and its rate."""
    from assistant.language import detect_language

    voice = engines.voices.voice_for(detect_language(text) or "en")
    chunks = [c async for c in engines.synthesizer.synthesize(text, voice=voice)]
    rate = chunks[0].sample_rate_hz
    return b"".join(c.pcm for c in chunks), rate


async def follow_ups(settings: Any, engines: Any, *, guard: str, pulse_env: dict[str, str]) -> dict[str, Any]:
    """Each follow-up asked aloud after its answer was spoken: answered, or dropped as an echo?"""
    trials = [(first, second, delay) for first, second in FOLLOW_UPS for delay in DELAYS_S] + [LONG_DELAY]
    audio = {second: await render(engines, second) for _, second, _ in trials}
    daemon, card = await open_kiosk(settings, engines)
    kiosk = daemon.kiosk
    use_guard(kiosk, guard)
    results = []
    heard: list[str] = []
    original = kiosk._question

    async def spy(item: Any, upcoming: int) -> None:
        heard.append(item.transcript.text)
        await original(item, upcoming)

    kiosk._question = spy  # type: ignore[method-assign]
    try:
        await asyncio.sleep(1.0)
        for first, second, delay in trials:
            await kiosk.ask(first)
            await until_quiet(kiosk, card)
            await asyncio.sleep(delay)
            dropped_before = daemon.metrics.echo_dropped.value()
            heard.clear()
            pcm, rate = audio[second]
            play = await asyncio.create_subprocess_exec(
                "pacat", "--playback", "--raw", "--format=s16le", f"--rate={rate}", "--channels=1",
                stdin=subprocess.PIPE,
                env=pulse_env,
            )  # fmt: skip
            await play.communicate(pcm)
            deadline = time.monotonic() + 15
            while not heard and time.monotonic() < deadline:  # noqa: ASYNC110 - waits for the spy
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            dropped = daemon.metrics.echo_dropped.value() > dropped_before
            outcome = "not heard" if not heard else ("dropped as echo" if dropped else "answered")
            results.append({"first": first, "question": second, "after_s": delay, "heard": list(heard), "outcome": outcome})
            print(json.dumps({"guard": guard, **results[-1]}, ensure_ascii=False), file=sys.stderr)
            await kiosk.interrupt()
            await until_quiet(kiosk, card)
    finally:
        await daemon.close()
    return {
        "guard": guard,
        "trials": len(results),
        "answered": sum(r["outcome"] == "answered" for r in results),
        "dropped_as_echo": sum(r["outcome"] == "dropped as echo" for r in results),
        "not_heard": sum(r["outcome"] == "not heard" for r in results),
        "results": results,
    }


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count()}


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config")
    parser.add_argument("--listen-s", type=float, default=8.0)
    parser.add_argument("--skip-own-voice", action="store_true", help="only the questions after answers")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "echo.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    pulse, home = start_pulse()
    pulse_env = dict(os.environ, PULSE_SERVER=os.environ["PULSE_SERVER"], PULSE_RUNTIME_PATH=home)
    try:
        from assistant import registry

        settings = registry.load_settings(args.config)
        settings.audio.input = "on"
        settings.audio.output = "on"
        engines = registry.engines(settings, lazy_llm=True)
        own_voice = []
        if not args.skip_own_voice:
            for gating, echo_filter, guard in (
                (False, False, "timing"),
                (True, False, "timing"),
                (False, True, "words"),
                (False, True, "timing"),
                (True, True, "words"),
                (True, True, "timing"),
            ):
                r = await condition(
                    settings, engines, gating=gating, echo_filter=echo_filter, guard=guard, listen_s=args.listen_s
                )
                print(json.dumps({k: v for k, v in r.items() if k != "heard"}), file=sys.stderr)
                own_voice.append(r)
        questions = [await follow_ups(settings, engines, guard=g, pulse_env=pulse_env) for g in ("words", "timing")]
    finally:
        pulse.terminate()
        pulse.wait(timeout=5)
    report = {
        "command": "flock /tmp/bench.lock .venv/bin/python bench/echo.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "setup": "PulseAudio null sink: the microphone records the speaker's every sample (worst case, no AEC)",
        "guards": {
            "words": "before issue 23: a transcript sharing 60% of its characters with anything said in 30 s",
            "timing": "issue 23: heard while the speaker sounded (or 600 ms after), and a fragment of what was playing",
        },
        "questions": QUESTIONS,
        "listen_s_after_each_reply": args.listen_s,
        "own_voice": own_voice,
        "questions_after_answers": questions,
    }
    write_json(Path(args.out), report)
    print(json.dumps({"own_voice": [{k: v for k, v in r.items() if k != "heard"} for r in own_voice],
                      "questions_after_answers": [{k: v for k, v in q.items() if k != "results"} for q in questions]},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
