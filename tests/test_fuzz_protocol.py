"""Property-based fuzzing of the client half of the protocol (hypothesis).

The sans-I/O parser gets every shape a client could send: any text, any JSON value, every message
type with wrong, huge, non-finite or surrogate-laden values, binary frames with lying headers. Its
one contract: a typed message or a ``ProtocolError`` with a documented code, nothing else, and
whatever it accepts can be used (valid Unicode, integers in range). A smaller run does the same
against the real server: the connection answers with documented errors, never drops without a
close frame, and nothing reaches the log as a traceback. ``bench/chaos.py`` runs 100k of these.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from assistant import events as ev
from assistant.server import protocol as proto

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED = set(re.findall(r"^\| `([a-z-]+)` \|", (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8"), re.M))
CLOSE_CODES = {1000, 1001, 1008, 1009, 1011}
MAX_BYTES = 16_384

# --- strategies -----------------------------------------------------------------------------------

SURROGATES = st.sampled_from(["\ud83d", "\udc00", "a\ud800b", "\udfff\ud800"])
TEXTS = st.one_of(st.text(max_size=40), SURROGATES, st.text(max_size=3).map(lambda t: t + "\ud83d"))
HUGE = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**31 - 1, 2**31, -1, 0, 10**400, -(10**400), 10**309]),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), HUGE, st.floats(allow_nan=True, allow_infinity=True), TEXTS
)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXTS, inner, max_size=3), max_leaves=8)
FIELDS = ["turn", "played_ms", "text", "role", "mode", "client", "type"]


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object shaped like a client message: a known (or unknown) type and some of the
    fields any message has, each of any JSON type."""
    kind = draw(st.one_of(st.sampled_from(list(proto.CLIENT_TYPES)), TEXTS, SCALARS))
    body: dict[str, Any] = {"type": kind}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        body[name] = draw(JSON_VALUES)
    return body


@st.composite
def numeric_messages(draw: st.DrawFn) -> dict[str, Any]:
    """The messages with numbers (``interrupt``, ``playback``), their numbers any size or kind."""
    numbers = st.one_of(HUGE, st.floats(allow_nan=True, allow_infinity=True))
    body: dict[str, Any] = {"type": draw(st.sampled_from(["interrupt", "playback"]))}
    for name in ("turn", "played_ms"):
        if draw(st.booleans()):
            body[name] = draw(numbers)
    return body


def dumps(body: object) -> str:
    """JSON text as a crafted client would send it: lone surrogates escaped (``"\\ud83d"``: a frame
    itself must be UTF-8), Python's spellings of what JSON lacks (NaN, Infinity), and now and then
    an integer beyond Python's 4300-digit conversion limit."""
    text = json.dumps(body, ensure_ascii=False, allow_nan=True)
    text = re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text)
    return text.replace("10000000000", "1" + "0" * 5000, 1) if "10000000000" in text else text


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """A binary frame whose header may lie: mostly a valid microphone header with an envelope count
    that may claim more than follows, else any magic, rate, channels and envelope step; sometimes cut."""
    if draw(st.integers(0, 3)):
        magic, rate, channels, step = ev.AUDIO_MAGIC, 16_000, 1, 20
    else:
        magic = draw(st.sampled_from([ev.AUDIO_MAGIC, b"ASA2", b"\x00\x00\x00\x00"]))
        rate = draw(st.sampled_from([16_000, 8_000, 0, 48_001, 2**32 - 1]))
        channels = draw(st.sampled_from([1, 0, 2, 65_535]))
        step = draw(st.sampled_from([20, 0, 65_535]))
    body = draw(st.binary(max_size=600))
    n_env = draw(st.one_of(st.integers(0, len(body) + 4), st.integers(0, 65_535)))
    header = struct.pack("<4sIIIHHHH", magic, 0, draw(st.integers(0, 2**32 - 1)), rate, channels, n_env, step, 0)
    frame = header + body
    return frame[: draw(st.integers(0, len(frame)))] if draw(st.integers(0, 4)) == 0 else frame


# --- sans I/O -------------------------------------------------------------------------------------


def check_accepted(message: object) -> None:
    """What the parser accepts can be used: every string encodes, every int is in range."""
    for value in vars(message).values() if hasattr(message, "__dict__") else []:
        if isinstance(value, str):
            value.encode("utf-8")
        elif isinstance(value, int) and not isinstance(value, bool):
            assert 0 <= value <= ev.MAX_INT
        elif isinstance(value, float):
            assert np.isfinite(value)


def check_rejected(err: proto.ProtocolError) -> None:
    assert err.code in DOCUMENTED, err.code
    frame = ev.to_wire(ev.ErrorEvent(code=err.code, message=err.message))
    assert isinstance(frame, str)
    frame.encode("utf-8")  # the error itself can always be sent


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), messages().map(dumps), numeric_messages().map(dumps), JSON_VALUES.map(dumps)))
def test_any_text_frame_is_a_message_or_a_documented_error(raw: str) -> None:
    try:
        message = proto.parse_text(raw, max_bytes=MAX_BYTES)
    except proto.ProtocolError as err:
        check_rejected(err)
    else:
        assert isinstance(message, tuple(ev.MESSAGE_TYPES.values()))
        check_accepted(message)


@settings(max_examples=400, deadline=None)
@given(st.one_of(frames(), st.binary(max_size=300)))
def test_any_binary_frame_is_audio_or_a_documented_error(data: bytes) -> None:
    try:
        frame = proto.parse_binary(data, max_bytes=MAX_BYTES)
    except proto.ProtocolError as err:
        check_rejected(err)
    else:
        n_env = struct.unpack_from("<H", data, 18)[0]
        assert len(frame.pcm) * 2 + ev.AUDIO_HEADER_BYTES + n_env == len(data)


@settings(max_examples=200, deadline=None)
@given(st.one_of(messages(), numeric_messages()))
def test_message_from_dict_never_raises_anything_else(body: dict[str, Any]) -> None:
    try:
        check_accepted(ev.message_from_dict(body))
    except proto.ProtocolError as err:
        check_rejected(err)


# --- against the real server ----------------------------------------------------------------------


class ServerThread:
    """A daemon with fake engines serving on its own event loop in a thread (hypothesis drives
    synchronous clients; one server for all the examples)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        from daemon_support import running_daemon
        from fakes import settings_for_tests

        s = settings_for_tests()
        s.server.max_message_bytes = MAX_BYTES
        self._stop = asyncio.Event()
        async with running_daemon(settings=s) as d:
            self.port = d.server.port
            self.daemon = d.daemon
            self.ready.set()
            await self._stop.wait()

    def __enter__(self) -> ServerThread:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread() as running:
        yield running


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(messages().map(dumps), numeric_messages().map(dumps), frames(), st.text(max_size=50)),
        min_size=1,
        max_size=25,
    )
)
def test_the_server_answers_fuzz_with_documented_errors_and_closes_cleanly(
    server: ServerThread, caplog: pytest.LogCaptureFixture, sent: list[str | bytes]
) -> None:
    caplog.set_level(logging.WARNING)
    with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=5, close_timeout=5) as ws:
        closed = None
        try:
            for message in sent:
                ws.send(message)
            # a last, good message: the connection is still useful (or it closed properly)
            ws.send(json.dumps({"type": "shout"}))
            while True:
                frame = ws.recv(timeout=5)
                if isinstance(frame, str):
                    event = json.loads(frame)
                    if event["type"] == "error":
                        assert event["code"] in DOCUMENTED, event
                        if event["code"] == "unknown-type" and "shout" in event["message"]:
                            break
        except ConnectionClosed as err:
            closed = err
        if closed is not None:
            assert closed.rcvd is not None, "closed without a close frame"
            assert closed.rcvd.code in CLOSE_CODES, closed.rcvd
    assert "Traceback" not in caplog.text, caplog.text[-2000:]
