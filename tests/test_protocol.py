"""Protocol conformance: docs/protocol.md against the code and against a real WebSocket session, and
the sans-I/O client message parser on its own."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from daemon_support import Collected, collect, hello, mic_frames, open_client, running_daemon, silence_pcm, speech_pcm
from fakes import FakeLanguageModel, FakeRetriever, FakeSynthesizer, fake_engines, settings_for_tests

from assistant import events as ev
from assistant.server import protocol as proto
from assistant.stages import AudioChunk, RetrieveError

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## ", text, flags=re.M)
    return {p.split("\n", 1)[0].strip(): p for p in parts[1:]}


def _messages(section: str) -> dict[str, str]:
    parts = re.split(r"^### ", section, flags=re.M)
    out = {}
    for p in parts[1:]:
        m = re.match(r"`([a-z-]+)`", p)
        if m:
            out[m.group(1)] = p
    return out


def _fields(block: str) -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)` \|", block, flags=re.M))


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    text = DOC.read_text(encoding="utf-8")
    sections = _sections(text)
    return {
        "text": text,
        "server": _messages(sections["Server → client"]),
        "client": _messages(sections["Client → server"]),
        "frames": sections["Frames"],
        "errors": sections["Errors and close codes"],
        "example": sections["A whole turn, worked"],
    }


def documented_fields(doc: dict[str, Any], kind: str) -> set[str]:
    return _fields(doc["server"][kind])


# --- the document against the code ------------------------------------------------------------


def test_the_document_states_the_version() -> None:
    assert DOC.read_text(encoding="utf-8").startswith(
        f"# The assistant's WebSocket protocol, version {ev.PROTOCOL_VERSION}"
    )


def test_every_server_event_is_documented_with_exactly_its_fields(doc: dict[str, Any]) -> None:
    assert set(doc["server"]) == set(ev.EVENT_TYPES)
    for kind, cls in ev.EVENT_TYPES.items():
        if cls is ev.Audio:
            assert "binary" in doc["server"][kind].lower()
            continue
        code_fields = {"type"} | {f.name for f in dataclasses.fields(cls)}
        assert documented_fields(doc, kind) == code_fields, kind


def test_every_client_message_is_documented_and_its_example_parses(doc: dict[str, Any]) -> None:
    assert set(doc["client"]) == set(proto.CLIENT_TYPES)
    for kind, block in doc["client"].items():
        example = re.search(r"```json\n(.*?)\n```", block, flags=re.S)
        assert example, kind
        message = proto.parse_text(example.group(1), max_bytes=65536)
        assert json.loads(example.group(1))["type"] == kind
        # every field the example uses is documented
        assert set(json.loads(example.group(1))) <= _fields(block), kind
        assert message is not None


def test_the_binary_layout_table_matches_the_encoder(doc: dict[str, Any]) -> None:
    rows = re.findall(r"^\| (\d+) \| (\d+) \| ([a-z_]+) \|", doc["frames"], flags=re.M)
    assert [name for _, _, name in rows] == [
        "magic",
        "turn",
        "sequence",
        "sample_rate_hz",
        "channels",
        "envelope_count",
        "envelope_frame_ms",
        "sentence",
    ]
    offsets = [int(o) for o, _, _ in rows]
    sizes = [int(s) for _, s, _ in rows]
    assert offsets == [sum(sizes[:i]) for i in range(len(sizes))]
    assert sum(sizes) == ev.AUDIO_HEADER_BYTES == 24
    chunk = AudioChunk(np.arange(10, dtype="<i2").tobytes(), 22_050, (0.0, 0.5, 1.0))
    frame = ev.encode_audio_frame(chunk, turn=7, sequence=3, sentence=2)
    assert frame[:4] == b"ASA1"
    assert int.from_bytes(frame[4:8], "little") == 7 and int.from_bytes(frame[8:12], "little") == 3
    assert int.from_bytes(frame[12:16], "little") == 22_050 and int.from_bytes(frame[16:18], "little") == 1
    assert int.from_bytes(frame[18:20], "little") == 3 and int.from_bytes(frame[20:22], "little") == 20
    assert int.from_bytes(frame[22:24], "little") == 2
    assert list(frame[24:27]) == [0, 128, 255] and frame[27:] == chunk.pcm


def test_every_error_code_the_parser_raises_is_documented(doc: dict[str, Any]) -> None:
    source = "".join(Path(m.__file__).read_text(encoding="utf-8") for m in (proto, ev))  # type: ignore[arg-type]
    codes = set(re.findall(r'ProtocolError\(\s*"([a-z-]+)"', source))
    assert codes >= {"bad-json", "bad-message", "unknown-type", "too-big", "bad-audio", "audio-rate"}
    table = set(re.findall(r"^\| `([a-z-]+)` \|", doc["errors"], flags=re.M))
    assert codes | {"internal"} <= table
    closes = set(re.findall(r"^\| (\d{4}) \|", doc["errors"], flags=re.M))
    assert {str(proto.CLOSE_GOING_AWAY), str(proto.CLOSE_POLICY), str(proto.CLOSE_TOO_BIG)} <= closes


def test_the_worked_example_follows_the_documented_shapes_and_order(doc: dict[str, Any]) -> None:
    lines = re.search(r"```text\n(.*?)\n```", doc["example"], flags=re.S).group(1).splitlines()  # type: ignore[union-attr]
    server: list[dict[str, Any]] = []
    for line in lines:
        who, _, body = line.partition(": ")
        if not body.startswith("{"):
            continue
        if who == "C":
            proto.parse_text(body, max_bytes=65536)
        else:
            event = json.loads(body)
            assert set(event) == documented_fields(doc, event["type"]), event["type"]
            server.append(event)
    check_turn_order([e for e in server if e["turn"] == 1], voice=True)


# --- a live session against the document --------------------------------------------------------


def check_turn_order(events: list[dict[str, Any]], *, voice: bool = False, outcome: str = "answered") -> None:
    """The ordering guarantees of docs/protocol.md for one turn's text events."""
    labels = [f"state:{e['state']}" if e["type"] == "state" else e["type"] for e in events]
    times = [e["t_ms"] for e in events]
    assert times == sorted(times)
    assert labels[-1] == "state:idle" and labels.count("state:idle") == 1
    if outcome == "interrupted":
        assert labels[-2] == "interrupted" and "trace" not in labels and "reply-end" not in labels
        return
    if outcome == "error":
        assert labels[-2] == "error" and "trace" not in labels
        return
    assert labels[-2] == "trace"
    if voice:
        assert labels.index("state:transcribing") < labels.index("state:thinking")
        finals = [i for i, e in enumerate(events) if e["type"] == "transcript" and e["final"]]
        assert len(finals) == 1 and finals[0] < labels.index("state:thinking")
    core = [x for x in labels if x in ("state:thinking", "sources", "reply-start")]
    assert core == ["state:thinking", "sources", "reply-start"]
    assert labels.index("reply-start") < labels.index("reply-delta")
    deltas = [i for i, x in enumerate(labels) if x == "reply-delta"]
    assert deltas[-1] < labels.index("reply-end")
    # speaking: sentence i, (state:speaking once), audio-start i, audio-end i, in index order
    speaking = [(x, e) for x, e in zip(labels, events, strict=True) if x in ("sentence", "audio-start", "audio-end")]
    expected: list[tuple[str, int]] = []
    for i in range(len([x for x, _ in speaking if x == "sentence"])):
        expected += [("sentence", i), ("audio-start", i), ("audio-end", i)]
    assert [(x, e["index"] if x == "sentence" else e["sentence"]) for x, e in speaking] == expected
    assert labels.count("state:speaking") == 1
    assert labels.index("sentence") < labels.index("state:speaking") < labels.index("audio-start")


def check_conforms(doc: dict[str, Any], got: Collected) -> None:
    for event in got.events:
        assert event["type"] in doc["server"], event
        assert set(event) == documented_fields(doc, event["type"]), event
    for turn in {f.turn for f in got.audio}:
        frames = [f for f in got.audio if f.turn == turn]
        assert [f.sequence for f in frames] == list(range(len(frames)))


async def test_live_turns_conform_to_the_document(doc: dict[str, Any]) -> None:
    settings = settings_for_tests()
    settings.asr.partial_interval_ms = 300
    llm = FakeLanguageModel(delay_s=0.01)
    retriever = FakeRetriever()
    engines = fake_engines(llm=llm, retriever=retriever, synthesizer=FakeSynthesizer(delay_s=0.02))
    async with running_daemon(engines, settings) as d, await open_client(d.ws_url) as ws:
        got = Collected()
        first = await hello(ws)
        assert set(first) == documented_fields(doc, "hello") and first["role"] == "watcher"
        # 1: a voice question (makes the watcher a visitor: a new hello first)
        frames = mic_frames(np.concatenate([speech_pcm(1200), silence_pcm(700)]))
        await ws.send(frames[0])
        again = await hello(ws)
        assert again["role"] == "visitor" and again["session"] != first["session"]
        for frame in frames[1:]:
            await ws.send(frame)
            await asyncio.sleep(0.01)
        await collect(ws, into=got)
        # 2: a generated answer, interrupted after the first sentence
        await ws.send(json.dumps({"type": "text", "text": "Where do visitors get a badge?"}))
        await collect(ws, "audio-end", into=got)
        await ws.send(json.dumps({"type": "interrupt", "turn": 2, "played_ms": 500}))
        await collect(ws, into=got)
        # 3: a failing stage
        retriever.fail = RetrieveError("kb-missing", "no index")
        await ws.send(json.dumps({"type": "text", "text": "anything"}))
        await collect(ws, into=got)
        retriever.fail = None
        # 4: a fallback answer, and a bad message in between
        await ws.send('{"type": "nonsense"}')
        await ws.send(json.dumps({"type": "text", "text": "What is the airspeed of a swallow?"}))
        await collect(ws, into=got)
    check_conforms(doc, got)
    by_turn = {n: [e for e in got.events if e["turn"] == n] for n in (1, 2, 3, 4)}
    check_turn_order(by_turn[1], voice=True)
    check_turn_order(by_turn[2], outcome="interrupted")
    check_turn_order(by_turn[3], outcome="error")
    check_turn_order(by_turn[4])
    assert any(e["type"] == "transcript" and not e["final"] for e in by_turn[1])
    assert [e["code"] for e in got.of("error")] == ["kb-missing", "unknown-type"]


# --- the parser, sans I/O -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"type":"hello"}', proto.HelloMessage()),
        ('{"type":"hello","role":"visitor","client":"x"}', proto.HelloMessage("visitor", "x")),
        ('{"type":"text","text":"  hi  "}', proto.TextMessage("hi")),
        ('{"type":"interrupt"}', proto.InterruptMessage()),
        ('{"type":"interrupt","turn":2,"played_ms":-5}', proto.InterruptMessage(2, 0.0)),
        ('{"type":"playback","turn":1,"played_ms":12.5,"extra":1}', proto.PlaybackMessage(1, 12.5)),
        ('{"type":"mode","mode":"push-to-talk"}', proto.ModeMessage("push-to-talk")),
        ('{"type":"talk-start"}', proto.TalkStartMessage()),
        ('{"type":"talk-end"}', proto.TalkEndMessage()),
    ],
)
def test_parse_text_accepts(raw: str, expected: object) -> None:
    assert proto.parse_text(raw, max_bytes=1000) == expected


@pytest.mark.parametrize(
    ("raw", "code", "close"),
    [
        ("nope", "bad-json", None),
        ("null", "bad-message", None),
        ('{"type": 5}', "bad-message", None),
        ('{"type":"hello","role":"admin"}', "bad-message", None),
        ('{"type":"playback","turn":true,"played_ms":1}', "bad-message", None),
        ('{"type":"playback","turn":1}', "bad-message", None),
        ('{"type":"interrupt","played_ms":"x"}', "bad-message", None),
        ('{"type":"shout"}', "unknown-type", None),
        ('{"type":"text","text":"' + "é" * 600 + '"}', "too-big", proto.CLOSE_TOO_BIG),
    ],
)
def test_parse_text_rejects(raw: str, code: str, close: int | None) -> None:
    with pytest.raises(proto.ProtocolError) as err:
        proto.parse_text(raw, max_bytes=1000)
    assert err.value.code == code and err.value.close_code == close


def test_lone_surrogates_never_reach_a_turn_or_the_wire() -> None:
    # issue 23, item 5: a lone surrogate inside a typed question failed the turn with `internal`
    # (it cannot be encoded as UTF-8 to log, speak or send)
    message = proto.parse_text('{"type":"text","text":"hello \\ud83d there"}', max_bytes=1000)
    assert isinstance(message, proto.TextMessage)
    assert message.text == "hello \ufffd there" and message.text.encode("utf-8")
    hello_msg = proto.parse_text('{"type":"hello","client":"\\udc00x"}', max_bytes=1000)
    assert isinstance(hello_msg, proto.HelloMessage) and hello_msg.client == "\ufffdx"
    # a pair is one character and stays
    assert proto.parse_text('{"type":"text","text":"\\ud83d\\ude00"}', max_bytes=1000) == proto.TextMessage("\U0001f600")
    # whatever reaches an event, its frame is valid UTF-8
    frame = ev.to_wire(ev.ErrorEvent(code="x", message="bad \ud83d"))
    assert isinstance(frame, str) and frame.encode("utf-8")


def test_huge_integers_are_a_bad_message_not_a_crash() -> None:
    # issue 23, item 5: `{"type":"playback","turn":<5000 digits>,...}` raised ValueError (Python's
    # 4300-digit limit) out of the parser; any integer beyond 2**31-1 is out of range too
    for raw, code in (
        ('{"type":"playback","turn":' + "9" * 5000 + ',"played_ms":1}', "bad-json"),
        ('{"type":"interrupt","played_ms":' + "9" * 5000 + "}", "bad-json"),
        ('{"type":"playback","turn":' + "9" * 4000 + ',"played_ms":1}', "bad-message"),
        ('{"type":"playback","turn":2147483648,"played_ms":1}', "bad-message"),
        ('{"type":"interrupt","played_ms":1e400}', "bad-message"),
        # under the 4300-digit limit but no float: math.isfinite raised OverflowError (found by bench/chaos.py)
        ('{"type":"interrupt","played_ms":' + "9" * 400 + "}", "bad-message"),
        ('{"type":"playback","turn":1,"played_ms":-' + "9" * 400 + "}", "bad-message"),
    ):
        with pytest.raises(proto.ProtocolError) as err:
            proto.parse_text(raw, max_bytes=100_000)
        assert err.value.code == code, raw[:50]
    assert proto.parse_text('{"type":"playback","turn":2147483647,"played_ms":1}', max_bytes=100) == proto.PlaybackMessage(
        2**31 - 1, 1.0
    )


def test_parse_binary() -> None:
    pcm = (np.arange(320) * 10).astype("<i2")
    frame = proto.parse_binary(ev.encode_audio_frame(AudioChunk(pcm.tobytes(), 16_000), sequence=9), max_bytes=100_000)
    assert frame.sequence == 9 and frame.pcm.dtype == np.int16 and np.array_equal(frame.pcm, pcm)
    bad = {
        b"ASA1": "bad-audio",
        ev.encode_audio_frame(AudioChunk(b"\x00" * 3, 16_000)): "bad-audio",
        ev.encode_audio_frame(AudioChunk(pcm.tobytes(), 8_000)): "audio-rate",
        ev.encode_audio_frame(AudioChunk(b"\x00" * 2 * 16_001, 16_000)): "bad-audio",
        # issue 23, item 6: an envelope_count claiming more bytes than follow was accepted silently
        ev.encode_audio_frame(AudioChunk(b"", 16_000, (0.5,) * 40))[:-30]: "bad-audio",
        ev.encode_audio_frame(AudioChunk(b"", 16_000, (0.5,) * 40))[:-1]: "bad-audio",
    }
    for data, code in bad.items():
        with pytest.raises(proto.ProtocolError) as err:
            proto.parse_binary(data, max_bytes=100_000)
        assert err.value.code == code
    with pytest.raises(proto.ProtocolError) as err:
        proto.parse_binary(b"\x00" * 2000, max_bytes=1000)
    assert err.value.close_code == proto.CLOSE_TOO_BIG


# --- the owner's page (additions within version 2) ---------------------------------------------


def test_the_owners_messages_and_events_are_documented_with_their_fields() -> None:
    from assistant import owner_wire
    from assistant.server import admin

    section = _sections(DOC.read_text(encoding="utf-8"))["The owner's page"]
    blocks = _messages(section)
    assert set(blocks) == set(owner_wire.OWNER_MESSAGE_TYPES) | set(owner_wire.OWNER_EVENT_TYPES)
    for kind, cls in owner_wire.OWNER_EVENT_TYPES.items():
        assert _fields(blocks[kind]) == {"type"} | {f.name for f in dataclasses.fields(cls)}, kind
    for kind, message_cls in owner_wire.OWNER_MESSAGE_TYPES.items():
        example = re.search(r"```json\n(.*?)\n```", blocks[kind], flags=re.S)
        assert example, kind
        parsed = proto.parse_text(example.group(1), max_bytes=65536)
        assert isinstance(parsed, message_cls)
        documented = _fields(blocks[kind])
        if kind not in owner_wire.OWNER_EVENT_TYPES:  # owner-queue is both ways: its table is the event's
            assert documented == {"type"} | {f.name for f in dataclasses.fields(message_cls)}, kind  # type: ignore[arg-type]
    source = "".join(Path(m.__file__).read_text(encoding="utf-8") for m in (owner_wire, admin))  # type: ignore[arg-type]
    codes = set(re.findall(r'(?:ProtocolError|AssistantError)\(\s*"([a-z-]+)"', source))
    table = set(re.findall(r"^\| `([a-z-]+)`", _sections(DOC.read_text(encoding="utf-8"))["Errors and close codes"], flags=re.M))
    assert codes >= {"forbidden", "owner-token", "owner-disabled", "empty-answer"} and codes <= table
    owner_source = Path(__file__).resolve().parent.parent.joinpath("assistant", "owner.py").read_text(encoding="utf-8")
    assert set(re.findall(r'AssistantError\(\s*"([a-z-]+)"', owner_source)) <= table
