"""HTTP and WebSocket on one port (websockets 17): the avatar page, /healthz, /metrics and protocol v1.

The server knows the wire, not the assistant: each connection becomes a ``Client`` with a bounded
outbound queue, every received frame goes through ``assistant.server.protocol`` and valid messages go
to the ``Hub`` (the daemon). Sending never waits: ``Client.send`` queues and returns, one writer task
per client drains the queue, and a client that falls too far behind is closed (1008), so a slow or
dead client can stall neither a turn nor other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import itertools
import json
import logging
import mimetypes
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server as WSServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from assistant.config import Settings
from assistant.errors import AssistantError
from assistant.events import ErrorEvent, Event, to_wire
from assistant.metrics import DaemonMetrics
from assistant.owner_wire import OwnerMessage
from assistant.server import guard
from assistant.server.admin import OwnerDesk, OwnerGate
from assistant.server.guard import is_loopback
from assistant.server.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    MAX_BAD_MESSAGES,
    ClientMessage,
    MicFrame,
    ProtocolError,
    Role,
    parse_binary,
    parse_text,
)

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
WS_PATH = "/ws"
CLIENT_QUEUE_BYTES = 8 * 1024 * 1024
"""Outbound bytes a client may have pending (about 3 minutes of 22 kHz reply audio) before it is closed."""
CLIENT_QUEUE_FRAMES = 4_000
CLOSE_DEADLINE_S = 2.0
"""A closing handshake that takes longer than this (a dead or frozen client) ends with a TCP abort."""


class Hub(Protocol):
    """What the server needs from the daemon."""

    metrics: DaemonMetrics
    """One registry for both: the daemon counts turns, the server counts clients and bad input."""

    def attach(self, client: Client, role: Role) -> None:
        """A client connected (and was sent nothing yet): greet it and subscribe it to a session."""

    def detach(self, client: Client) -> None:
        """The client is gone (any reason); forget it, and cancel its session's turn if it owned one."""

    async def handle(self, client: Client, message: ClientMessage | MicFrame) -> None:
        """A valid message from the client."""

    def healthy(self) -> dict[str, object]:
        """The /healthz body (``{"ok": true, ...}``)."""
        ...


class BadRequest(Exception):
    """A request the server refuses before routing it (a repeated header)."""


def single_header(request: Request, name: str) -> str | None:
    """The value of a header that must appear at most once; a repeated one is a bad request (two
    ``Origin`` or ``Authorization`` headers are a trick or a broken proxy, never a browser)."""
    values = request.headers.get_all(name)
    if len(values) > 1:
        raise BadRequest(f"repeated {name} header")
    return values[0] if values else None


class Client:
    """One WebSocket connection, as the hub sees it: an id, a role, a session and a non-blocking send."""

    _ids = itertools.count(1)

    def __init__(self, conn: ServerConnection, *, max_bytes: int, max_frames: int, metrics: DaemonMetrics) -> None:
        self.conn = conn
        self.id = f"c{next(self._ids)}"
        self.role: Role = "watcher"
        self.owner = False
        """Logged in as the owner (``owner-hello`` with ``[admin] token``) on this connection."""
        self.session_id = ""
        self.bad_messages = 0
        self._queue: deque[str | bytes] = deque()
        self._pending_bytes = 0
        self._max_bytes = max_bytes
        self._max_frames = max_frames
        self._ready = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        self._metrics = metrics
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self.sent_frames = 0

    # -- sending, never waiting ---------------------------------------------------------------

    def send(self, event: Event | str | bytes) -> bool:
        """Queue one frame; False when the client is closing or was just dropped for being too slow."""
        if self._closing is not None:
            return False
        frame = to_wire(event) if isinstance(event, Event) else event
        size = len(frame)
        if self._pending_bytes + size > self._max_bytes or len(self._queue) >= self._max_frames:
            self._metrics.dropped.inc(reason="slow")
            log.warning("client %s is too slow (%d bytes pending); closing it", self.id, self._pending_bytes)
            self.close(CLOSE_POLICY, "client too slow to keep up")
            return False
        self._queue.append(frame)
        self._pending_bytes += size
        self._ready.set()
        return True

    def close(self, code: int, reason: str) -> None:
        """Close after what is already queued is written (``writer`` does it); never waits.

        A client closed for being slow gets none of its backlog: its writer is probably stuck in a
        send that will never finish, so the writer is cancelled and the close gets a deadline."""
        if self._closing is not None:
            return
        self._closing = (code, reason)
        if code == CLOSE_POLICY and "slow" in reason:
            self._queue.clear()
            self._pending_bytes = 0
            if self._writer is not None:
                self._writer.cancel()
            self._closer = asyncio.get_running_loop().create_task(self._close_now(code, reason))
        self._ready.set()

    async def _close_now(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.conn.close(code, reason), timeout=CLOSE_DEADLINE_S)
        except (TimeoutError, ConnectionClosed, OSError):
            pass
        finally:
            if self.conn.transport is not None and not self.conn.transport.is_closing():
                self.conn.transport.abort()

    @property
    def closing(self) -> bool:
        return self._closing is not None

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def start(self) -> asyncio.Task[None]:
        self._writer = asyncio.get_running_loop().create_task(self._write(), name=f"writer-{self.id}")
        return self._writer

    async def _write(self) -> None:
        """Drain the queue into the socket; the only place that awaits a client's pace."""
        try:
            while True:
                await self._ready.wait()
                while self._queue:
                    frame = self._queue.popleft()
                    self._pending_bytes -= len(frame)
                    await self.conn.send(frame)
                    self.sent_frames += 1
                self._ready.clear()
                if self._closing is not None:
                    await self._close_now(*self._closing)
                    return
        except ConnectionClosed:
            return
        except Exception as err:  # a frame the socket refused: end with a close frame, not a TCP reset
            log.error("sending to client %s failed (%s: %s); closing it", self.id, type(err).__name__, err)
            self._closing = (CLOSE_INTERNAL, "internal error")
            self._queue.clear()
            self._pending_bytes = 0
            await self._close_now(*self._closing)


class _Connection(ServerConnection):
    """A connection that says why before it closes with 1009: websockets refuses a message over
    ``max_size`` while reading it (the whole message never reaches memory, nor the parser), so the
    documented ``too-big`` error is sent here, right before the library's close frame."""

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        super().__init__(protocol, *args, **kwargs)
        self.too_big = False
        fail = protocol.fail

        def fail_saying_why(code: int, reason: str = "") -> None:
            if code == CloseCode.MESSAGE_TOO_BIG and protocol.state is State.OPEN:
                self.too_big = True
                error = ErrorEvent(code="too-big", message=f"message over {protocol.max_message_size} bytes")
                protocol.send_text(str(to_wire(error)).encode("utf-8"))
            fail(code, reason)

        protocol.fail = fail_saying_why  # type: ignore[method-assign]


class AssistantServer:
    """The one listening port. ``start()`` binds it; ``close()`` closes every client with 1001."""

    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        *,
        metrics: DaemonMetrics | None = None,
        host: str | None = None,
        port: int | None = None,
        web_dir: Path = WEB_DIR,
        client_queue_bytes: int = CLIENT_QUEUE_BYTES,
        desk: OwnerDesk | None = None,
    ) -> None:
        """``desk``: the owner's page's work (``assistant.owner``); None: ``owner-hello`` is refused."""
        self.owner_gate = OwnerGate(settings.admin.token, desk)
        self.settings = settings
        self.hub = hub
        self.metrics = metrics if metrics is not None else hub.metrics
        self.host = host if host is not None else settings.server.host
        self.port = port if port is not None else settings.server.port
        self.web_dir = web_dir.resolve()
        self.token = settings.server.token
        self.max_bytes = settings.server.max_message_bytes
        self.client_queue_bytes = client_queue_bytes
        self.clients: set[Client] = set()
        self._server: WSServer | None = None
        if not is_loopback(self.host) and not self.token:
            raise AssistantError(
                "server-token",
                f"binding to {self.host} exposes the assistant beyond this machine: set [server] token "
                "(or ASSISTANT__SERVER__TOKEN) so clients must present it",
            )

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        # websockets logs every HTTP request and connection at INFO: a kiosk polled by a health
        # check would log nothing else. Its warnings and errors still come through.
        ws_log = logging.getLogger("websockets.server")
        if ws_log.getEffectiveLevel() > logging.DEBUG:
            ws_log.setLevel(logging.WARNING)
        try:
            self._server = await self._bind()
        except OSError as err:
            raise AssistantError(
                "server-port",
                f"cannot listen on {self.host} port {self.port}: {err.strerror or err} (another assistant, or another "
                "program, may be using it); choose another with `assistant run --port N` or [server] port",
            ) from err
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]

    async def _bind(self) -> WSServer:
        return await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=self.max_bytes,
            create_connection=_Connection,
            # the client's own frames queue here; a flood beyond it is TCP backpressure, not memory
            max_queue=32,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=2,
            server_header=None,
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def close(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        if self._server is None:
            return
        self._server.close(close_connections=False)
        for client in list(self.clients):
            client.close(code, reason)
        conns = [c.conn for c in self.clients]
        if conns:
            await asyncio.wait([asyncio.ensure_future(c.wait_closed()) for c in conns], timeout=CLOSE_DEADLINE_S + 1)
        for conn in conns:
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.abort()
        self._server.close(close_connections=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), timeout=3)
        self._server = None

    # -- HTTP ----------------------------------------------------------------------------------

    def _response(
        self, status: int, body: bytes | str, content_type: str, extra: dict[str, str] | None = None
    ) -> Response:
        data = body.encode() if isinstance(body, str) else body
        st = http.HTTPStatus(status)
        headers = Headers(
            [
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Connection", "close"),
                ("Content-Length", str(len(data))),
                ("Content-Type", content_type),
                ("Cache-Control", "no-cache"),
                ("X-Content-Type-Options", "nosniff"),
            ]
        )
        for k, v in (extra or {}).items():
            headers[k] = v
        return Response(st.value, st.phrase, headers, data)

    def _token_ok(self, request: Request, query: dict[str, list[str]]) -> bool:
        return guard.token_ok(
            self.token, query_token=query.get("token", [""])[0], authorization=single_header(request, "Authorization")
        )

    def host_ok(self, request: Request) -> bool:
        """``guard.host_ok`` for this request (a repeated ``Host`` is a bad request)."""
        return guard.host_ok(self.host, single_header(request, "Host"), self.settings.server.allowed_origins)

    def origin_ok(self, request: Request) -> bool:
        """``guard.origin_ok`` for this request."""
        return guard.origin_ok(
            self.host,
            single_header(request, "Origin"),
            single_header(request, "Host"),
            self.settings.server.allowed_origins,
        )

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        try:
            return self._route(request)
        except BadRequest as err:
            self.metrics.dropped.inc(reason="bad-request")
            return self._response(400, f"bad request: {err}\n", "text/plain; charset=utf-8")

    def _route(self, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        single_header(request, "Host")  # two Host headers: which one names us? neither
        if not self.host_ok(request):
            self.metrics.dropped.inc(reason="host")
            return self._response(421, "this daemon answers to its loopback names only\n", "text/plain; charset=utf-8")
        upgrade = (single_header(request, "Upgrade") or "").lower() == "websocket"
        if upgrade:
            if url.path not in (WS_PATH, "/"):
                return self._response(404, "no WebSocket here; connect to /ws\n", "text/plain; charset=utf-8")
            if not self.origin_ok(request):
                self.metrics.dropped.inc(reason="origin")
                return self._response(403, "origin not allowed\n", "text/plain; charset=utf-8")
            if not self._token_ok(request, query):
                self.metrics.dropped.inc(reason="token")
                return self._response(401, "a valid token is required\n", "text/plain; charset=utf-8")
            if len(self.clients) >= self.settings.server.max_clients:
                self.metrics.dropped.inc(reason="full")
                return self._response(503, "too many clients\n", "text/plain; charset=utf-8")
            return None
        if url.path == "/healthz":
            body = json.dumps(self.hub.healthy() | {"clients": len(self.clients)})
            return self._response(200, body + "\n", "application/json")
        if url.path == "/metrics":
            if not self._token_ok(request, query):
                return self._response(401, "a valid token is required\n", "text/plain; charset=utf-8")
            self.metrics.clients.set(len(self.clients))
            return self._response(200, self.metrics.render(), DaemonMetrics.CONTENT_TYPE)
        if url.path in ("/admin", "/admin/"):
            # the page is public (it holds nothing); what it shows needs the owner's token, on the WebSocket
            return self._static("/admin.html", frame_ancestors=True)
        return self._static(url.path)

    def _static(self, path: str, *, frame_ancestors: bool = False) -> Response:
        rel = path.lstrip("/") or "index.html"
        target = (self.web_dir / rel).resolve()
        if target.is_dir():
            target = target / "index.html"
        # resolve() collapses "..": anything outside the web folder is simply not found
        if not target.is_relative_to(self.web_dir) or not target.is_file():
            if rel == "index.html":
                return self._response(
                    200,
                    "<!doctype html><meta charset=utf-8><title>assistant</title>"
                    "<p>The assistant is running; the avatar page is not installed (assistant/web/).",
                    "text/html; charset=utf-8",
                )
            return self._response(404, "not found\n", "text/plain; charset=utf-8")
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if target.suffix in (".js", ".mjs"):
            ctype = "text/javascript"
        if ctype.startswith("text/") or ctype in ("application/json", "image/svg+xml"):
            ctype += "; charset=utf-8"
        # the owner's page may not be framed by another page (a click on it would be an edit)
        extra = {"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY"} if frame_ancestors else None
        return self._response(200, target.read_bytes(), ctype, extra)

    # -- WebSocket -----------------------------------------------------------------------------

    async def _handle(self, conn: ServerConnection) -> None:
        client = Client(conn, max_bytes=self.client_queue_bytes, max_frames=CLIENT_QUEUE_FRAMES, metrics=self.metrics)
        query = parse_qs(urlsplit(conn.request.path if conn.request else "").query)
        role: Role = "visitor" if query.get("role", [""])[0] == "visitor" else "watcher"
        self.clients.add(client)
        self.metrics.clients.set(len(self.clients))
        writer = client.start()
        try:
            self.hub.attach(client, role)
            async for data in conn:
                if client.closing:
                    break
                await self._receive(client, data)
        except ConnectionClosed:
            pass
        finally:
            if isinstance(conn, _Connection) and conn.too_big:
                self.metrics.errors.inc(code="too-big")
            self.clients.discard(client)
            self.metrics.clients.set(len(self.clients))
            self.hub.detach(client)
            if not client.closing:
                client.close(CLOSE_GOING_AWAY, "")
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, ConnectionClosed):
                await asyncio.wait_for(asyncio.shield(writer), timeout=CLOSE_DEADLINE_S + 1)
            if not writer.done():
                writer.cancel()
                if conn.transport is not None:
                    conn.transport.abort()

    async def _receive(self, client: Client, data: str | bytes) -> None:
        try:
            message: ClientMessage | OwnerMessage | MicFrame
            if isinstance(data, str):
                message = parse_text(data, max_bytes=self.max_bytes)
                kind = message.type
            else:
                message = parse_binary(data, max_bytes=self.max_bytes)
                kind = "audio"
        except ProtocolError as err:
            self._reject(client, err)
            return
        except Exception:  # a parser bug: the message is refused, the connection goes on
            log.exception("parsing a message from %s failed", client.id)
            self._reject(client, ProtocolError("internal", "the server failed to read that message"))
            return
        self.metrics.messages_in.inc(type=kind)
        if isinstance(message, OwnerMessage):
            try:
                await self.owner_gate.handle(client, message, address=_address(client))
            except ProtocolError as err:
                self._reject(client, err)
            except Exception:
                log.exception("handling an owner's message from %s failed", client.id)
                self.metrics.errors.inc(code="internal")
                client.send(ErrorEvent(code="internal", message="the server failed to handle that message"))
            return
        # Awaited inline so a client's messages are handled in the order sent; the hub's handlers
        # are quick (they hand work to the session's turn task and return).
        try:
            await self.hub.handle(client, message)
        except ProtocolError as err:
            self._reject(client, err)
        except Exception:
            log.exception("handling a message from %s failed", client.id)
            self.metrics.errors.inc(code="internal")
            client.send(ErrorEvent(code="internal", message="the server failed to handle that message"))

    def _reject(self, client: Client, err: ProtocolError) -> None:
        self.metrics.errors.inc(code=err.code)
        client.bad_messages += 1
        client.send(ErrorEvent(code=err.code, message=err.message))
        if err.close_code is not None:
            client.close(err.close_code, err.message[:120])
        elif client.bad_messages > MAX_BAD_MESSAGES:
            client.close(CLOSE_POLICY, "too many malformed messages")


def _address(client: Client) -> str:
    """The peer's address for the audit trail (a proxy's own, behind one)."""
    peer = client.conn.remote_address
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


def make_emitter(clients: Callable[[], list[Client]]) -> Callable[[Event], None]:
    """Fan an event out to whatever ``clients()`` returns now, never waiting on any of them."""

    def emit(event: Event) -> None:
        frame = to_wire(event)  # encode once for all clients
        for client in clients():
            client.send(frame)

    return emit
