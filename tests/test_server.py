"""The server on its own terms: HTTP routes, /healthz and /metrics, token and Origin checks, bad input
(malformed, unknown, oversized, wrong-rate audio), slow clients, and the metrics text format."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path

import httpx
import numpy as np
import pytest
from daemon_support import collect, hello, mic_frames, open_client, running_daemon, speech_pcm
from fakes import FakeSynthesizer, fake_engines, settings_for_tests
from websockets.exceptions import ConnectionClosed, InvalidStatus

from assistant.events import encode_audio_frame
from assistant.metrics import DaemonMetrics, Registry
from assistant.server.app import AssistantServer, Client, is_loopback
from assistant.stages import AssistantError, AudioChunk

# --- HTTP ---------------------------------------------------------------------------------------


async def test_static_page_healthz_and_metrics(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>avatar</title>", encoding="utf-8")
    (tmp_path / "app.js").write_text("export const x = 1;", encoding="utf-8")
    async with running_daemon(web_dir=tmp_path) as d, httpx.AsyncClient(base_url=d.http_url) as http:
        page = await http.get("/")
        assert page.status_code == 200 and "avatar" in page.text
        assert page.headers["content-type"].startswith("text/html")
        js = await http.get("/app.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert (await http.get("/missing.css")).status_code == 404
        assert (await http.get("/../../etc/passwd")).status_code == 404
        assert (await http.get("/%2e%2e/%2e%2e/etc/passwd")).status_code == 404
        health = (await http.get("/healthz")).json()
        assert health["ok"] is True and health["protocol"] == 2 and health["sessions"] == 1

        async with await open_client(d.ws_url + "?role=visitor") as ws:
            await hello(ws)
            await ws.send(json.dumps({"type": "text", "text": "请问商旅的出差制度"}))
            await collect(ws)
            await ws.send("{not json")
            await collect(ws, "error")
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = metrics.text
        assert 'assistant_turns_total{outcome="answered"} 1' in text
        assert 'assistant_routes_total{route="faq"} 1' in text
        assert 'assistant_errors_total{code="bad-json"} 1' in text
        assert 'assistant_stage_latency_ms_count{stage="first_audio"} 1' in text
        assert re.search(r'assistant_stage_latency_ms_bucket\{stage="total",le="\+Inf"\} 1', text)


async def test_without_an_avatar_folder_the_root_still_answers(tmp_path: Path) -> None:
    async with running_daemon(web_dir=tmp_path / "nothing") as d, httpx.AsyncClient(base_url=d.http_url) as http:
        page = await http.get("/")
        assert page.status_code == 200 and "avatar page is not installed" in page.text


# --- safety -------------------------------------------------------------------------------------


def test_binding_beyond_loopback_needs_a_token() -> None:
    settings = settings_for_tests()
    settings.server.host = "0.0.0.0"
    with pytest.raises(AssistantError) as err:
        AssistantServer(settings, hub=None, metrics=DaemonMetrics())  # type: ignore[arg-type]
    assert err.value.code == "server-token"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")


async def test_token_is_checked_for_websocket_and_metrics() -> None:
    settings = settings_for_tests()
    settings.server.token = "s3cret"
    async with running_daemon(settings=settings) as d, httpx.AsyncClient(base_url=d.http_url) as http:
        with pytest.raises(InvalidStatus) as err:
            await open_client(d.ws_url)
        assert err.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            await open_client(d.ws_url + "?token=wrong")
        async with await open_client(d.ws_url + "?token=s3cret") as ws:
            assert (await hello(ws))["protocol"] == 2
        async with await open_client(d.ws_url, additional_headers={"Authorization": "Bearer s3cret"}) as ws:
            await hello(ws)
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics?token=s3cret")).status_code == 200
        assert (await http.get("/healthz")).status_code == 200


async def test_origin_allow_list() -> None:
    settings = settings_for_tests()
    settings.server.allowed_origins = ["https://kiosk.example"]
    async with running_daemon(settings=settings) as d:
        port = d.server.port
        with pytest.raises(InvalidStatus) as err:
            await open_client(d.ws_url, origin="https://evil.example")  # type: ignore[arg-type]
        assert err.value.response.status_code == 403
        for origin in (f"http://127.0.0.1:{port}", "https://kiosk.example"):
            async with await open_client(d.ws_url, origin=origin) as ws:  # type: ignore[arg-type]
                await hello(ws)
        async with await open_client(d.ws_url) as ws:  # no Origin: a local tool, not a browser page
            await hello(ws)


async def _raw_http(port: int, head: str) -> bytes:
    """Send a hand-written request (headers a client library would not let us repeat or forge)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode("latin-1"))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return data


def _upgrade(port: int, host: str | None = None, extra: str = "") -> str:
    return (
        f"GET /ws HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )


async def test_a_loopback_daemon_answers_to_loopback_names_only(caplog: pytest.LogCaptureFixture) -> None:
    # issue 23, item 4: DNS rebinding. A page on evil.example whose name resolves to 127.0.0.1 sends
    # Host and Origin evil.example:PORT; it got 101 and /metrics, so any web page could drive the kiosk.
    settings = settings_for_tests()
    settings.server.allowed_origins = ["https://kiosk.example"]
    async with running_daemon(settings=settings) as d:
        port = d.server.port
        evil = f"evil.example:{port}"
        head = _upgrade(port, evil, f"Origin: http://{evil}\r\n")
        assert (await _raw_http(port, head)).startswith(b"HTTP/1.1 421")
        for path in ("/metrics", "/healthz", "/"):
            got = await _raw_http(port, f"GET {path} HTTP/1.1\r\nHost: {evil}\r\n\r\n")
            assert got.startswith(b"HTTP/1.1 421"), path
        # the loopback names, and a host the owner listed (a reverse proxy's), still work
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "kiosk.example"):
            origin = "https://kiosk.example" if host == "kiosk.example" else f"http://{host}"
            got = await _raw_http(port, _upgrade(port, host, f"Origin: {origin}\r\n"))
            assert got.startswith(b"HTTP/1.1 101"), host
    assert "Traceback" not in caplog.text


async def test_repeated_origin_or_authorization_headers_are_a_bad_request(caplog: pytest.LogCaptureFixture) -> None:
    # issue 23, item 5: a duplicated Origin or Authorization header gave HTTP 500 and a
    # MultipleValuesError traceback, from unauthenticated requests
    settings = settings_for_tests()
    settings.server.token = "s3cret"
    async with running_daemon(settings=settings) as d:
        port = d.server.port
        for extra in (
            "Origin: http://a\r\nOrigin: http://b\r\n",
            "Authorization: Bearer x\r\nAuthorization: Bearer y\r\n",
            f"Host: 127.0.0.1:{port}\r\n",  # a second Host
        ):
            got = await _raw_http(port, _upgrade(port, extra=extra))
            assert got.startswith(b"HTTP/1.1 400"), extra
        got = await _raw_http(port, f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                                    "Authorization: Bearer x\r\nAuthorization: Bearer y\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 400")
        # a header value that is not ASCII is just a wrong token
        got = await _raw_http(port, _upgrade(port, extra="Authorization: Bearer \xe9\r\n"))
        assert got.startswith(b"HTTP/1.1 401")
    assert "Traceback" not in caplog.text and "MultipleValuesError" not in caplog.text


async def test_max_clients_is_enforced() -> None:
    settings = settings_for_tests()
    settings.server.max_clients = 2
    async with running_daemon(settings=settings) as d:
        a, b = await open_client(d.ws_url), await open_client(d.ws_url)
        with pytest.raises(InvalidStatus) as err:
            await open_client(d.ws_url)
        assert err.value.response.status_code == 503
        await a.close()
        await b.close()


# --- bad input ----------------------------------------------------------------------------------


async def test_malformed_and_unknown_messages_get_errors_and_the_session_goes_on() -> None:
    async with running_daemon() as d, await open_client(d.ws_url + "?role=visitor") as ws:
        await hello(ws)
        cases = {
            "{not json": "bad-json",
            "[1, 2]": "bad-message",
            '{"no": "type"}': "bad-message",
            '{"type": "dance"}': "unknown-type",
            '{"type": "text"}': "bad-message",
            '{"type": "text", "text": 42}': "bad-message",
            '{"type": "text", "text": "   "}': "empty-question",
            '{"type": "playback", "turn": "one", "played_ms": 1}': "bad-message",
            '{"type": "mode", "mode": "loud"}': "bad-message",
            json.dumps({"type": "text", "text": "x" * 5000}): "too-long",
            "[" * 100_000 + "]" * 100_000: "bad-json",
        }
        for raw, code in cases.items():
            await ws.send(raw)
            got = await collect(ws, "error")
            assert got.of("error")[0]["code"] == code, raw[:40]
        await ws.send(b"XXXX" + bytes(40))
        assert (await collect(ws, "error")).of("error")[0]["code"] == "bad-audio"
        await ws.send(b"AS")
        assert (await collect(ws, "error")).of("error")[0]["code"] == "bad-audio"
        # audio at a wrong rate is refused with a clear message, not resampled or crashed on
        await ws.send(encode_audio_frame(AudioChunk(speech_pcm(20, 8000).tobytes(), 44_100)))
        err = (await collect(ws, "error")).of("error")[0]
        assert err["code"] == "audio-rate" and "16000" in err["message"]
        await ws.send(json.dumps({"type": "text", "text": "请问商旅的出差制度"}))
        assert (await collect(ws)).of("reply-end")[0]["route"] == "faq"


async def test_crafted_values_get_an_error_and_the_connection_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    # issue 23, item 5: a 5000-digit integer closed the connection with 1001 after a ValueError
    # traceback; a lone surrogate as the type aborted it without a close frame
    async with running_daemon() as d, await open_client(d.ws_url + "?role=visitor") as ws:
        await hello(ws)
        huge = "9" * 5000
        cases = {
            '{"type":"playback","turn":' + huge + ',"played_ms":1}': "bad-json",
            '{"type":"playback","turn":1,"played_ms":' + huge + "}": "bad-json",
            '{"type":"interrupt","turn":' + "9" * 40 + "}": "bad-message",
            '{"type":"playback","turn":1,"played_ms":1e999}': "bad-message",
            '{"type":"\\ud83d"}': "unknown-type",
            '{"type":"hello","client":"\\udc00","role":"watcher"}': None,
        }
        for raw, code in cases.items():
            await ws.send(raw)
            if code is None:
                assert (await collect(ws)).of("hello")  # hello, then its state
                continue
            got = await collect(ws, "error")
            assert got.of("error")[0]["code"] == code, raw[:60]
        # a lone surrogate inside a question: answered, and every frame sent is valid UTF-8
        await ws.send('{"type":"text","text":"请问商旅的出差制度\\ud83d"}')
        got = await collect(ws, after=2)  # the watcher becomes a visitor again: hello, state, then the turn
        assert not got.of("error") and got.of("reply-end")
    assert "Traceback" not in caplog.text


async def test_oversized_messages_close_with_1009() -> None:
    settings = settings_for_tests()
    settings.server.max_message_bytes = 4096
    async with running_daemon(settings=settings) as d:
        ws = await open_client(d.ws_url + "?role=visitor")
        await hello(ws)
        await ws.send(json.dumps({"type": "text", "text": "y" * 8000}))
        # issue 23, item 6: the documented `too-big` error comes first, then the close
        error = json.loads(await asyncio.wait_for(ws.recv(), 3))
        assert error["type"] == "error" and error["code"] == "too-big"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 3)
        assert ws.close_code == 1009
        ws2 = await open_client(d.ws_url + "?role=visitor")
        await hello(ws2)
        await ws2.send(mic_frames(speech_pcm(1000), frame_ms=1000)[0])  # 32 KB binary frame
        assert json.loads(await asyncio.wait_for(ws2.recv(), 3))["code"] == "too-big"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws2.recv(), 3)
        assert ws2.close_code == 1009
        assert d.daemon.metrics.errors.value(code="too-big") == 2
        # others are unaffected
        async with await open_client(d.ws_url) as ok:
            await hello(ok)


async def test_a_flood_of_malformed_messages_ends_in_a_policy_close() -> None:
    async with running_daemon() as d:
        ws = await open_client(d.ws_url)
        await hello(ws)
        for _ in range(30):
            await ws.send("nope")
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 3)
        assert ws.close_code == 1008


async def _frozen_client(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads again (a frozen tab),
    with a small receive buffer so the kernel cannot hide its slowness."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = await asyncio.wait_for(loop.sock_recv(sock, 200), 3)
    assert head.startswith(b"HTTP/1.1 101")
    return sock


async def test_a_slow_watcher_is_closed_and_never_stalls_others() -> None:
    # a long reply (~10 MB of audio, far beyond what socket buffers absorb), paced like a real TTS
    synth = FakeSynthesizer(ms_per_char=4000, chunks_per_sentence=100, delay_s=0.002)
    async with running_daemon(fake_engines(synthesizer=synth), client_queue_bytes=256 * 1024) as d:
        slow = await _frozen_client(d.server.port)
        fast = await open_client(d.ws_url)
        await hello(fast)
        await d.daemon.kiosk.ask("Where do visitors get a badge?")
        got = await collect(fast, timeout_s=30)
        assert got.types()[-2:] == ["trace", "state:idle"]
        assert sum(len(f.chunk.pcm) for f in got.audio) > 10_000_000
        assert d.daemon.metrics.dropped.value(reason="slow") == 1
        for _ in range(100):
            if len(d.server.clients) == 1:
                break
            await asyncio.sleep(0.05)
        assert len(d.server.clients) == 1
        slow.close()
        await fast.close()


async def test_client_send_never_waits() -> None:
    class StuckConnection:
        transport = None

        async def send(self, frame: object) -> None:
            await asyncio.Event().wait()

        async def close(self, code: int, reason: str) -> None:
            self.closed = (code, reason)

    metrics = DaemonMetrics()
    client = Client(StuckConnection(), max_bytes=1000, max_frames=100, metrics=metrics)  # type: ignore[arg-type]
    writer = client.start()
    assert client.send(b"x" * 600)
    await asyncio.sleep(0)  # the writer takes it and is stuck in send
    assert client.send(b"y" * 900)
    assert not client.send(b"z" * 200)  # over the bound: dropped, and the client is being closed
    assert metrics.dropped.value(reason="slow") == 1
    assert not client.send(b"after")
    await asyncio.sleep(0.01)
    assert writer.cancelled()  # the stuck writer was not left waiting
    assert client.conn.closed == (1008, "client too slow to keep up")  # type: ignore[attr-defined]


# --- metrics format -----------------------------------------------------------------------------


def test_metrics_render_prometheus_text() -> None:
    r = Registry()
    c = r.counter("things_total", "Things.", ["kind"])
    h = r.histogram("lat_ms", "Latency.", ["stage"], buckets=[10, 100])
    g = r.gauge("up", "Up.")
    c.inc(kind='a"b')
    c.inc(2, kind="x")
    for v in (5, 50, 500):
        h.observe(v, stage="asr")
    g.set(1)
    text = r.render()
    assert "# TYPE things_total counter" in text and 'things_total{kind="a\\"b"} 1' in text
    assert 'things_total{kind="x"} 2' in text
    assert 'lat_ms_bucket{stage="asr",le="10"} 1' in text
    assert 'lat_ms_bucket{stage="asr",le="100"} 2' in text
    assert 'lat_ms_bucket{stage="asr",le="+Inf"} 3' in text
    assert 'lat_ms_sum{stage="asr"} 555' in text and 'lat_ms_count{stage="asr"} 3' in text
    assert "# TYPE up gauge\nup 1" in text
    with pytest.raises(ValueError):
        c.inc(wrong="label")
    # every sample line is NAME{labels} VALUE
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? [0-9.e+Inf-]+", line), line


async def test_wrong_rate_mic_audio_does_not_reach_the_endpointer() -> None:
    async with running_daemon() as d, await open_client(d.ws_url + "?role=visitor") as ws:
        await hello(ws)
        pcm = (np.sin(np.arange(48_000) / 5) * 8000).astype(np.int16)
        await ws.send(encode_audio_frame(AudioChunk(pcm[:960].tobytes(), 48_000)))
        await collect(ws, "error")
        assert d.engines.transcriber.calls == []  # type: ignore[union-attr]
