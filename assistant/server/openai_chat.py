"""A chat completion from the turn's events: whole (one JSON body) or streamed (server-sent events).

A streamed completion starts its HTTP response only when the reply's first text is known, so a turn
that fails at once still gets an error status, and the sources it carries on its first chunk are
final (a decline withdraws them before its first words). One that fails later ends its stream with
an ``error`` event, which the SDKs raise as ``openai.APIError``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from assistant import events as ev
from assistant.server import openai_wire as wire
from assistant.server.openai_wire import ApiError


def _failure(event: ev.Event) -> ApiError:
    if isinstance(event, ev.ErrorEvent):
        return ApiError(503 if event.code.endswith("-unavailable") else 500, event.message, code=event.code)
    return ApiError(500, "the answer was interrupted", code="interrupted")


class _Answer:
    """What the turn's events said so far: the route, and the sources. A reply that turns out to be
    the decline line withdraws its sources (an empty ``sources`` event) before its first words, so
    the sources are final once the reply's first text (or its end) arrives."""

    def __init__(self) -> None:
        self.route = ""
        self.sources: list[ev.Source] = []
        self.declined = False

    def hear(self, event: ev.Event) -> None:
        if isinstance(event, ev.Sources):
            self.declined = bool(self.route) and not event.sources  # withdrawn after the reply began
            self.sources = event.sources
        elif isinstance(event, ev.ReplyStart):
            self.route = event.route

    def extension(self) -> dict[str, Any]:
        return wire.extension(self.route, self.sources, declined=self.declined)


async def whole(events: AsyncIterator[ev.Event], cid: str, created: int) -> dict[str, Any]:
    answer = _Answer()
    async for event in events:
        answer.hear(event)
        if isinstance(event, ev.ReplyEnd):
            return wire.completion(cid, created, event.text, answer.extension())
        if isinstance(event, ev.ErrorEvent | ev.Interrupted):
            raise _failure(event)
    raise ApiError(500, "the turn ended without a reply", code="no-reply")


async def stream(request: web.Request, events: AsyncIterator[ev.Event], cid: str, created: int) -> web.StreamResponse:
    answer = _Answer()
    response: web.StreamResponse | None = None
    failure: ApiError | None = None
    async for event in events:
        answer.hear(event)
        if isinstance(event, ev.ReplyDelta | ev.ReplyEnd) and response is None:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            await response.prepare(request)
            first = {"role": "assistant", "content": ""}
            await response.write(wire.sse(wire.chunk(cid, created, first, extra=answer.extension())))
        if isinstance(event, ev.ReplyDelta) and response is not None:
            await response.write(wire.sse(wire.chunk(cid, created, {"content": event.text})))
        elif isinstance(event, ev.ReplyEnd) and response is not None:
            await response.write(wire.sse(wire.chunk(cid, created, {}, finish="stop")))
            await response.write(wire.sse("[DONE]"))
            await response.write_eof()
            return response
        elif isinstance(event, ev.ErrorEvent | ev.Interrupted):
            failure = _failure(event)
            break
    failure = failure or ApiError(500, "the turn ended without a reply", code="no-reply")
    if response is None:
        raise failure
    await response.write(wire.sse(failure.body()))
    await response.write_eof()
    return response
