"""OpenAI-compatible HTTP endpoints (``/v1/...``) on their own port (aiohttp), behind the daemon's
token, Host and Origin rules.

Why not the daemon's port: that port is websockets' own HTTP server, whose parser takes GET
requests without a body only (a POST is refused before any code of ours runs). Serving both from
one port would mean a second HTTP stack in front of the WebSocket, re-proving every guarantee of
issue 23 (close codes, slow-client drops, the 1009 error frame) on it; a port of its own keeps those
untouched and can be turned off. The checks are the same functions (``guard``), applied to every
request before routing, with ``[server] token`` as the API key.

The server knows the wire, not the assistant: the routes (``openai_routes``) ask ``Services``,
which the daemon's side implements (``assistant.services``) on the shared engines behind the fair
gates, so an API client queues with the avatar pages.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from aiohttp import web

from assistant.errors import AssistantError
from assistant.server import guard
from assistant.server.openai_routes import Routes, Services
from assistant.server.openai_wire import ApiError

__all__ = ["OpenAIServer", "Services"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(err: ApiError) -> web.Response:
    return web.json_response(err.body(), status=err.status)


def _single(request: web.Request, name: str) -> str | None:
    values = request.headers.getall(name, [])
    if len(values) > 1:  # two Origin or Authorization headers are a trick or a broken proxy
        raise ApiError(400, f"repeated {name} header", code="bad_request")
    return values[0] if values else None


class OpenAIServer:
    """Listens on ``uri`` (``http://HOST:PORT``; port 0 picks a free one)."""

    def __init__(
        self,
        uri: str,
        routes: Routes,
        *,
        token: str,
        allowed_origins: Sequence[str],
    ) -> None:
        parts = urlsplit(uri)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 0
        self.routes = routes
        self.token = token
        self.allowed_origins = tuple(allowed_origins)
        self._runner: web.AppRunner | None = None
        if not guard.is_loopback(self.host) and not self.token:
            raise AssistantError(
                "server-token",
                f"serving the OpenAI endpoints on {self.host} exposes the assistant beyond this machine: set "
                "[server] token (or ASSISTANT__SERVER__TOKEN); clients send it as their API key",
            )

    def app(self) -> web.Application:
        limit = max(self.routes.max_upload_bytes, self.routes.max_body_bytes)
        app = web.Application(middlewares=[self._guard], client_max_size=limit)
        self.routes.add_to(app)
        return app

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    async def start(self) -> None:
        """Listen; raises ``AssistantError("openai-unavailable")`` when the address cannot be had."""
        # a client that goes away cancels its handler, and with it the turn or synthesis done for it
        runner = web.AppRunner(self.app(), handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as err:
            await runner.cleanup()
            raise AssistantError(
                "openai-unavailable",
                f"cannot serve the OpenAI endpoints on {self.host} port {self.port}: {err.strerror or err} (another "
                "program may be using it); choose another with `assistant run --openai http://HOST:PORT` or [openai] uri",
            ) from err
        self._runner = runner
        self.port = runner.addresses[0][1]  # port 0 picked one

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The WebSocket's rules for every request, then the route; every error in OpenAI's shape."""
        try:
            self._check(request)
            return await handler(request)
        except ApiError as err:
            return error_response(err)
        except web.HTTPRequestEntityTooLarge as err:
            return error_response(ApiError(413, err.text or "the body is too large", code="request_too_large"))
        except web.HTTPException as err:  # aiohttp's own: no such route (404), wrong method (405)
            if err.status < 400:
                raise
            message = f"{request.method} {request.path}: {err.reason}"
            return error_response(ApiError(err.status, message, code=err.reason.lower().replace(" ", "_")))
        except AssistantError as err:
            return error_response(ApiError(500, err.message, code=err.code))
        except ConnectionError:
            raise  # the client has gone: nobody to answer
        except Exception:  # a bug of ours: the client still gets OpenAI's shape, the log the trace
            log.exception("%s %s failed", request.method, request.path)
            return error_response(ApiError(500, "the server failed to handle the request", code="internal"))

    def _check(self, request: web.Request) -> None:
        host = _single(request, "Host")
        if not guard.host_ok(self.host, host, self.allowed_origins):
            raise ApiError(421, "this daemon answers to its loopback names only", code="host_not_allowed")
        if not guard.origin_ok(self.host, _single(request, "Origin"), host, self.allowed_origins):
            raise ApiError(403, "origin not allowed", code="origin_not_allowed")
        authorization = _single(request, "Authorization")
        if not guard.token_ok(self.token, query_token=request.query.get("token", ""), authorization=authorization):
            raise ApiError(401, "a valid API key is required ([server] token)", code="invalid_api_key")
        limit = (
            self.routes.max_upload_bytes if request.path == "/v1/audio/transcriptions" else self.routes.max_body_bytes
        )
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, f"the body is over {limit} bytes", code="request_too_large")
