"""Chaos: the daemon under malformed input, long valid streams, kill -9, a full disk, frozen clients.

    flock /tmp/bench.lock .venv/bin/python bench/chaos.py [--messages 100000] [--memory-messages 100000]

The daemon runs in a child process with the test suite's fake engines (tests/fakes.py: instant,
deterministic; this measures the server, the sessions and the protocol, not the models), serving on
a free port; this process is its clients. Five measurements, written to bench/results/chaos.json:

- fuzz: ``--messages`` fuzzed messages (malformed JSON, every message type with wrong, huge,
  non-finite or surrogate-laden values, binary frames with lying headers, oversized messages) over
  many connections, with good turns alongside. Counted: crashes (the child died), tracebacks in its
  log, connections closed without a close frame, close codes, error codes, good turns answered.
- memory: the child's resident memory before and after ``--memory-messages`` valid messages of each
  type on one connection, and after that client disconnected.
- kill -9 during ``kb build``: a build (a hashing embedder: no model) killed at a random moment,
  ``--kills`` times; after each the index must open and answer.
- a full disk: a build into a small tmpfs that fills up; the previous index must survive and the
  error must be one line (``kb-write``), not a traceback.
- slow and frozen clients: a visitor that never reads while another asks; the other's latency is
  compared with a run without the frozen one, and the frozen one must be closed (1008).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

MAX_MESSAGE_BYTES = 16_384
GOOD_QUESTION = {"type": "text", "text": "请问商旅的出差制度"}


# --- the daemon in a child process ------------------------------------------------------------------


class Discard(list):  # type: ignore[type-arg]
    """A list that keeps nothing (for the fakes' call records)."""

    def append(self, item: object) -> None:
        pass


def serve_child(port_file: str) -> None:
    """``--serve``: the daemon with fake engines on a free port (written to ``port_file``)."""
    import logging

    from daemon_support import EnergyDetector
    from fakes import (
        FakeLanguageModel,
        FakeRetriever,
        FakeSynthesizer,
        FakeTranscriber,
        fake_engines,
        settings_for_tests,
    )

    from assistant.daemon import Daemon
    from assistant.server.app import AssistantServer

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    async def main() -> None:
        settings = settings_for_tests()
        settings.server.max_message_bytes = MAX_MESSAGE_BYTES
        settings.server.max_clients = 1000
        # The fakes record every call for the tests' assertions (an utterance's audio, each prompt):
        # here that would be the fakes' memory growing, not the daemon's.
        transcriber = FakeTranscriber(calls=Discard())
        retriever = FakeRetriever(queries=Discard())
        llm = FakeLanguageModel(calls=Discard(), temperatures=Discard())
        # replies long enough that a client which never reads falls behind (~0.5 MB of audio each)
        synthesizer = FakeSynthesizer(ms_per_char=400, chunks_per_sentence=20, calls=Discard())
        engines = fake_engines(transcriber=transcriber, retriever=retriever, llm=llm, synthesizer=synthesizer)
        daemon = Daemon(settings, engines, detector_factory=EnergyDetector)
        server = AssistantServer(settings, daemon, host="127.0.0.1", port=0)
        await server.start()
        await asyncio.to_thread(Path(port_file).write_text, str(server.port))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await daemon.close()
        await server.close()

    asyncio.run(main())


class Child:
    """The daemon's process: its port, its memory, its log."""

    def __init__(self, workdir: Path) -> None:
        self.port_file = workdir / "port"
        self.log_path = workdir / "daemon.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port_file)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not start: {self.log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        time.sleep(0.1)
        self.port = int(self.port_file.read_text())

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def rss_mib(self) -> float:
        import psutil

        return float(psutil.Process(self.proc.pid).memory_info().rss) / 2**20

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        return self.log_path.read_text(errors="replace")


# --- fuzzed messages ---------------------------------------------------------------------------------

TYPES = ["hello", "text", "interrupt", "playback", "mode", "talk-start", "talk-end"]
FIELDS = ["turn", "played_ms", "text", "role", "mode", "client", "type"]


def surrogate(rng: random.Random) -> str:
    return f"\\u{rng.randint(0xD800, 0xDFFF):04x}"


def value(rng: random.Random, depth: int = 0) -> str:
    """A JSON value as text, often a hostile one."""
    pick = rng.randrange(14)
    if pick == 0:
        return "9" * rng.choice([20, 400, 4400, 5000])  # beyond int64, beyond Python's 4300 digits
    if pick == 1:
        return rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-0.0", "1e-400"])
    if pick == 2:
        return f'"{surrogate(rng)}x{surrogate(rng)}"'
    if pick == 3:
        return str(rng.randint(-(2**40), 2**40))
    if pick == 4:
        return rng.choice(["true", "false", "null"])
    if pick == 5 and depth < 3:
        return "[" + ",".join(value(rng, depth + 1) for _ in range(rng.randrange(3))) + "]"
    if pick == 6 and depth < 3:
        return "{" + ",".join(f'"{rng.choice(FIELDS)}":{value(rng, depth + 1)}' for _ in range(rng.randrange(3))) + "}"
    if pick == 7:
        return json.dumps("".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randrange(30))), ensure_ascii=False)
    if pick == 8:
        return json.dumps(rng.choice(["visitor", "watcher", "hands-free", "push-to-talk", "admin", ""]))
    return str(rng.randint(0, 5000))


def fuzzed_text(rng: random.Random) -> str:
    pick = rng.randrange(10)
    if pick == 0:
        return "".join(chr(rng.randint(1, 0x7F)) for _ in range(rng.randrange(60)))  # not JSON
    if pick == 1:
        return "[" * rng.randint(1, MAX_MESSAGE_BYTES - 1)  # deep nesting, under the size limit
    if pick == 2:
        return value(rng)  # JSON but not an object
    kind = rng.choice([*TYPES, "shout", "", "TEXT"]) if rng.random() < 0.9 else None
    fields = [f'"{f}":{value(rng)}' for f in rng.sample(FIELDS, rng.randrange(4))]
    head = [f'"type":{json.dumps(kind) if kind is not None else value(rng)}']
    if rng.random() < 0.1:
        head = [f'"type":"{surrogate(rng)}"']
    return "{" + ",".join(head + fields) + "}"


def fuzzed_binary(rng: random.Random) -> bytes:
    magic = b"ASA1" if rng.random() < 0.8 else rng.choice([b"ASA2", b"\x00" * 4, b"RIFF"])
    rate = 16_000 if rng.random() < 0.7 else rng.choice([8_000, 0, 44_100, 2**32 - 1])
    channels = 1 if rng.random() < 0.8 else rng.choice([0, 2, 65_535])
    body = rng.randbytes(rng.randrange(0, 800))
    n_env = rng.choice([0, 0, rng.randrange(0, len(body) + 1), rng.randrange(0, 65_536)])
    frame = struct.pack("<4sIIIHHHH", magic, 0, rng.randrange(2**32), rate, channels, n_env, 20, 0) + body
    return frame[: rng.randrange(len(frame) + 1)] if rng.random() < 0.1 else frame


def fuzzed(rng: random.Random) -> str | bytes:
    pick = rng.random()
    if pick < 0.005:
        return "x" * (MAX_MESSAGE_BYTES + 1)  # oversized: too-big, then 1009
    if pick < 0.3:
        return fuzzed_binary(rng)
    return fuzzed_text(rng)


PROTOCOL_CODES = ("bad-json", "bad-message", "unknown-type", "empty-question", "too-long", "too-big", "bad-audio", "audio-rate")


async def server_counts(http_url: str) -> dict[str, float]:
    """The daemon's own counters (/metrics): messages it handled, by type, and errors, by code."""
    import re

    import httpx

    async with httpx.AsyncClient() as http:
        text = (await http.get(http_url + "/metrics")).text
    out: dict[str, float] = {}
    for name, label, number in re.findall(r'^(assistant_(?:messages_in|errors)_total)\{\w+="([^"]+)"\} (\S+)$', text, re.M):
        out[f"{name.removeprefix('assistant_').removesuffix('_total')}:{label}"] = float(number)
    return out


def processed(counts: dict[str, float]) -> int:
    """Client messages the daemon has handled: the valid ones, and those answered with a protocol error."""
    valid = sum(v for k, v in counts.items() if k.startswith("messages_in:"))
    bad = sum(counts.get(f"errors:{code}", 0) for code in PROTOCOL_CODES)
    return int(valid + bad)


async def fuzz(url: str, total: int, *, connections: int = 8, seed: int = 23) -> dict[str, Any]:
    """Fuzzed messages over ``connections`` concurrent clients until the daemon has handled ``total``
    of them (its /metrics say), reconnecting whenever it closes one (after 20 malformed messages, by
    design); beside them a visitor asks good questions, whose turns must be answered whole."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed
    from websockets.protocol import State

    http_url = url.replace("ws://", "http://").removesuffix("/ws")
    start_count = processed(await server_counts(http_url))
    sent = Counter[str]()
    closes = Counter[str]()
    errors = Counter[str]()
    no_close_frame = 0
    answered = 0
    asked = 0
    done = [False]

    async def one(worker: int) -> None:
        nonlocal no_close_frame, answered, asked
        rng = random.Random(seed * 1000 + worker)
        while not done[0]:
            async with connect(url + "?role=visitor", max_size=None, close_timeout=5) as ws:

                async def read() -> None:
                    nonlocal answered
                    async for frame in ws:
                        if isinstance(frame, str):
                            event = json.loads(frame)
                            if event["type"] == "error":
                                errors[event["code"]] += 1
                            elif event["type"] == "reply-end":
                                answered += 1

                reader = asyncio.create_task(read())
                try:
                    # until the daemon closes it (the 21st malformed message) or we have enough
                    while not done[0] and ws.protocol.state is State.OPEN:
                        if rng.random() < 0.01:
                            await ws.send(json.dumps(GOOD_QUESTION, ensure_ascii=False))
                            sent["good question"] += 1
                            asked += 1
                        else:
                            message = fuzzed(rng)
                            sent["binary" if isinstance(message, bytes) else "text"] += 1
                            await ws.send(message)
                        await asyncio.sleep(0.001)  # the reader notices a close
                    if ws.protocol.state is State.OPEN:
                        await ws.close()
                except ConnectionClosed:
                    pass
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(reader, 5)
                reader.cancel()
                rcvd = ws.protocol.close_rcvd
                if rcvd is None:  # the server dropped the connection without a close frame
                    no_close_frame += 1
                closes[str(rcvd.code) if rcvd is not None else "none received"] += 1

    good: list[float] = []

    async def good_visitor() -> None:
        """Another visitor asking good questions all along: its turns must be answered, whole."""
        while not done[0]:
            good.extend(await timed_turns(url, 1))
            await asyncio.sleep(0.2)

    async def until_handled() -> None:
        while processed(await server_counts(http_url)) - start_count < total:  # noqa: ASYNC110 - polls /metrics
            await asyncio.sleep(0.5)
        done[0] = True

    started = time.monotonic()
    await asyncio.gather(until_handled(), good_visitor(), *(one(i) for i in range(connections)))
    seconds = time.monotonic() - started
    await asyncio.sleep(1.0)
    counts = await server_counts(http_url)
    handled = processed(counts) - start_count
    return {
        "messages_handled_by_the_daemon": handled,
        "messages_sent": dict(sent),
        "seconds": round(seconds, 1),
        "handled_per_s": round(handled / seconds),
        "connections": sum(closes.values()),
        "closes": dict(closes),
        "closed_without_close_frame": no_close_frame,
        "errors_received": dict(errors.most_common()),
        "daemon_counters": counts,
        "good_questions_among_fuzz": asked,
        "their_replies_finished": answered,
        "good_visitor_beside": {
            "turns": len(good),
            "answered": sum(1 for t in good if t == t),
            "first_audio_ms_median": round(sorted(good)[len(good) // 2] * 1000, 1) if good else None,
        },
    }


# --- memory ------------------------------------------------------------------------------------------


def valid_stream(kind: str, n: int) -> Any:
    """``n`` valid messages of one kind (a visitor's, unless said otherwise)."""
    from daemon_support import mic_frames, silence_pcm, speech_pcm

    if kind == "playback, a new turn number each":
        return (json.dumps({"type": "playback", "turn": i + 1, "played_ms": i}) for i in range(n))
    if kind == "interrupt, a new turn number each":
        return (json.dumps({"type": "interrupt", "turn": i + 1, "played_ms": i}) for i in range(n))
    if kind == "mode":
        return (json.dumps({"type": "mode", "mode": ("hands-free", "push-to-talk")[i % 2]}) for i in range(n))
    if kind == "hello, switching role":
        return (json.dumps({"type": "hello", "role": ("visitor", "watcher")[i % 2], "client": f"c{i}"}) for i in range(n))
    if kind == "talk-start / talk-end":
        return (json.dumps({"type": ("talk-start", "talk-end")[i % 2]}) for i in range(n))
    if kind == "microphone frames (20 ms)":
        one_turn = mic_frames(__import__("numpy").concatenate([speech_pcm(600), silence_pcm(1400)]))
        return (one_turn[i % len(one_turn)] for i in range(n))
    if kind == "text questions":
        return (json.dumps(GOOD_QUESTION, ensure_ascii=False) for _ in range(n))
    raise ValueError(kind)


MEMORY_KINDS = [
    "playback, a new turn number each",
    "interrupt, a new turn number each",
    "mode",
    "hello, switching role",
    "talk-start / talk-end",
    "microphone frames (20 ms)",
    "text questions",
]


async def memory(child: Child, n: int, *, text_n: int) -> list[dict[str, Any]]:
    """Resident memory of the daemon before and after a stream of each kind, and after disconnect."""
    from websockets.asyncio.client import connect

    out = []
    for kind in MEMORY_KINDS:
        count = text_n if kind == "text questions" else n
        await asyncio.sleep(1.0)
        before = child.rss_mib()
        role = "watcher" if kind.startswith(("playback", "interrupt")) else "visitor"
        async with connect(f"{child.url}?role={role}", max_size=None) as ws:

            async def drain() -> None:
                async for _ in ws:
                    pass

            reader = asyncio.create_task(drain())
            started = time.monotonic()
            for i, message in enumerate(valid_stream(kind, count)):
                await ws.send(message)
                if kind == "text questions" and i % 20 == 19:
                    await asyncio.sleep(0.05)  # let turns finish (each interrupts the one before)
                elif kind.startswith("microphone") and i % 50 == 49:
                    await asyncio.sleep(0)
            await asyncio.sleep(2.0)
            during = child.rss_mib()
            seconds = time.monotonic() - started
            reader.cancel()
        await asyncio.sleep(2.0)
        after = child.rss_mib()
        per_100k = (during - before) * 100_000 / count
        out.append(
            {
                "kind": kind,
                "messages": count,
                "seconds": round(seconds, 1),
                "rss_before_mib": round(before, 1),
                "rss_after_stream_mib": round(during, 1),
                "rss_after_disconnect_mib": round(after, 1),
                "growth_per_100k_mib": round(per_100k, 2),
                "held_after_disconnect_mib": round(after - before, 2),
            }
        )
        print(json.dumps(out[-1]), file=sys.stderr)
    return out


# --- kill -9 during a build, and a full disk ---------------------------------------------------------

BUILD_SCRIPT = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
from kb_support import HashEmbedder, settings_in
from pathlib import Path
from assistant.kb import build_index
from assistant.errors import AssistantError
work = Path(sys.argv[1])
try:
    report = build_index(settings_in(work), [work / "kb"], progress=False, embedder=HashEmbedder())
except AssistantError as err:
    print(f"assistant: {{err.message}} [{{err.code}}]", file=sys.stderr)
    sys.exit(1)
print(report.entries, report.chunks)
"""


def build(work: Path, *, preexec: Any = None) -> subprocess.Popen[bytes]:
    script = BUILD_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"))
    return subprocess.Popen(
        [sys.executable, "-c", script, str(work)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec
    )


def index_answers(work: Path) -> bool:
    from kb_support import HashEmbedder, settings_in

    from assistant.kb import open_retriever

    retriever = open_retriever(settings_in(work), embedder=HashEmbedder(), view_for=lambda name: HashEmbedder())
    return bool(retriever.search_sync("visitor parking", k=1))


def make_kb(work: Path, extra: int = 0) -> None:
    kb = work / "kb"
    kb.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "kb" / "faq_en.jsonl", kb / "faq_en.jsonl")
    shutil.copy(ROOT / "kb" / "faq_zh.csv", kb / "faq_zh.csv")
    shutil.copytree(ROOT / "kb" / "docs", kb / "docs", dirs_exist_ok=True)
    if extra:
        (kb / "docs" / "extra.md").write_text("# Extra\n\n" + "\n\n".join(f"Paragraph {i}: " + "words " * 60 for i in range(extra)))


def kill_during_build(kills: int, seed: int = 23) -> dict[str, Any]:
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="chaos-build-"))
    make_kb(work)
    first = build(work)
    first.wait(120)
    full_s = 0.0
    survived = 0
    tries = []
    try:
        for i in range(kills):
            make_kb(work, extra=i + 1)  # a change, so the build has work to do
            started = time.monotonic()
            proc = build(work)
            delay = rng.uniform(0.05, max(0.1, full_s or 3.0))
            try:
                proc.wait(delay)
                outcome = "finished before the kill"
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                outcome = "killed"
            full_s = max(full_s, time.monotonic() - started) if outcome != "killed" else full_s
            ok = index_answers(work)
            survived += ok
            tries.append({"kill_after_s": round(delay, 2), "outcome": outcome, "index_answers": ok})
        # a build after the kills cleans up what they left
        build(work).wait(120)
        leftovers = [p.name for p in (work / "index").glob(".build-*")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"tries": kills, "index_answered_after": survived, "leftovers_after_next_build": leftovers, "each": tries}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def full_disk() -> dict[str, Any]:
    """A build on a disk with room for one index and a little more: the next, larger one fills it."""
    work = Path(tempfile.mkdtemp(prefix="chaos-disk-"))
    index = work / "index"
    make_kb(work)
    probe = build(work)
    probe.wait(120)
    size = folder_bytes(index)
    shutil.rmtree(index)
    index.mkdir()
    room_kib = size // 1024 + 1024
    mounted = False
    try:
        mount = ["mount", "-t", "tmpfs", "-o", f"size={room_kib}k", "tmpfs", str(index)]
        mounted = subprocess.run(mount, capture_output=True).returncode == 0
        if not mounted:
            return {"skipped": "cannot mount a small tmpfs here (not root?)"}
        first = build(work)
        _, first_err = first.communicate(timeout=120)
        if first.returncode != 0:
            return {"skipped": f"the first build did not fit: {first_err.decode(errors='replace')[-300:]}"}
        make_kb(work, extra=3000)  # a larger knowledge base: the new generation does not fit beside the old
        proc = build(work)
        _, err = proc.communicate(timeout=300)
        message = err.decode(errors="replace").strip()
        return {
            "disk": f"tmpfs of {room_kib} KiB (the first index: {size // 1024} KiB)",
            "exit_code": proc.returncode,
            "message": message[-600:],
            "one_line": "Traceback" not in message and len(message.splitlines()) == 1,
            "previous_index_answers": index_answers(work),
            "leftovers": [p.name for p in index.glob(".build-*")],
        }
    finally:
        if mounted:
            subprocess.run(["umount", str(index)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


# --- slow and frozen clients -------------------------------------------------------------------------


async def frozen_client(port: int) -> socket.socket:
    """A visitor that asks one question and then never reads again (a frozen tab)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request = (
        f"GET /ws?role=visitor HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    await asyncio.sleep(0.2)
    payload = json.dumps(GOOD_QUESTION, ensure_ascii=False).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    await loop.sock_sendall(sock, bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return sock


async def timed_turns(url: str, n: int) -> list[float]:
    """Seconds from asking to the first audio frame, for ``n`` questions in a row."""
    from websockets.asyncio.client import connect

    out = []
    async with connect(url + "?role=visitor", max_size=None) as ws:
        for _ in range(n):
            started = time.monotonic()
            await ws.send(json.dumps(GOOD_QUESTION, ensure_ascii=False))
            first = None
            async for frame in ws:
                if isinstance(frame, bytes) and first is None:
                    first = time.monotonic() - started
                if isinstance(frame, str) and json.loads(frame).get("state") == "idle" and first is not None:
                    break
            out.append(first or float("nan"))
    return out


async def slow_clients(child: Child, turns: int = 10, frozen: int = 5) -> dict[str, Any]:
    """Visitors that ask and never read, beside one that asks ``turns`` questions: its latency alone
    and beside them, and what the daemon did with them (dropped as slow once their backlog passed
    its limit; a reply that fits the kernel's socket buffers never gets that far)."""
    import re

    import httpx

    async def dropped_slow() -> float:
        async with httpx.AsyncClient() as http:
            text = (await http.get(child.url.replace("ws://", "http://").removesuffix("/ws") + "/metrics")).text
        found = re.search(r'^assistant_clients_dropped_total\{reason="slow"\} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    base = await timed_turns(child.url, turns)
    rss_before, dropped_before = child.rss_mib(), await dropped_slow()
    sockets = [await frozen_client(child.port) for _ in range(frozen)]
    await asyncio.sleep(0.5)
    with_frozen = await timed_turns(child.url, turns)
    await asyncio.sleep(3.0)
    rss_during = child.rss_mib()
    dropped = await dropped_slow() - dropped_before
    for sock in sockets:
        sock.close()
    await asyncio.sleep(2.0)

    def median(values: list[float]) -> float:
        return round(sorted(values)[len(values) // 2] * 1000, 1)

    return {
        "frozen_visitors": frozen,
        "first_audio_ms_median_alone": median(base),
        "first_audio_ms_median_beside_frozen": median(with_frozen),
        "frozen_dropped_as_slow": int(dropped),
        "rss_mib": {"before": round(rss_before, 1), "with_frozen": round(rss_during, 1), "after": round(child.rss_mib(), 1)},
    }


# --- main --------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    return {"cpu": cpu, "cores": os.cpu_count()}


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    child = Child(workdir)
    report: dict[str, Any] = {}
    try:
        report["fuzz"] = await fuzz(child.url, args.messages)
        print(json.dumps(report["fuzz"]), file=sys.stderr)
        report["fuzz"]["daemon_alive_after"] = child.alive()
        report["memory"] = await memory(child, args.memory_messages, text_n=args.text_messages)
        report["slow_clients"] = await slow_clients(child)
        print(json.dumps(report["slow_clients"]), file=sys.stderr)
    finally:
        log = child.stop()
    report["daemon_log"] = {
        "tracebacks": log.count("Traceback"),
        "lines": len(log.splitlines()),
        "warnings_and_errors": Counter(line.split(":", 1)[0] for line in log.splitlines() if line[:5] in ("WARNI", "ERROR")),
        "tail": log.splitlines()[-10:],
    }
    report["fuzz"]["crashes"] = 0 if report["fuzz"].get("daemon_alive_after") else 1
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", metavar="PORT_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--memory-messages", type=int, default=100_000)
    parser.add_argument("--text-messages", type=int, default=2_000, help="text questions (each a whole turn)")
    parser.add_argument("--kills", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "chaos.json"))
    args = parser.parse_args()
    if args.serve:
        serve_child(args.serve)
        return 0
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    try:
        report = asyncio.run(run(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["kill_during_build"] = kill_during_build(args.kills)
    print(json.dumps({k: v for k, v in report["kill_during_build"].items() if k != "each"}), file=sys.stderr)
    report["full_disk"] = full_disk()
    print(json.dumps(report["full_disk"]), file=sys.stderr)
    result = {
        "command": "flock /tmp/bench.lock .venv/bin/python bench/chaos.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "engines": "tests/fakes.py (instant, deterministic): the server, sessions and protocol are measured, not models",
        **report,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k not in ("memory",)}, indent=1, default=str)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
