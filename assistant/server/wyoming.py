"""Home Assistant's Wyoming protocol on its own port: ``describe``, asr, tts and handle.

The server knows the wire, not the assistant: every connection is a ``Connection``
(``wyoming_connection``: the wyoming package's ``AsyncEventHandler``, its reader made strict by
``wyoming_wire.read_event``), and every service goes through ``Services``, which the daemon's side
implements (``assistant.services``) on the shared engines behind the fair gates, so a Wyoming client
queues with the avatar pages. ``describe`` is answered from a ``Catalogue`` made once at start.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wyoming.error import Error

from assistant.errors import AssistantError
from assistant.server.wyoming_connection import Connection, Services
from assistant.server.wyoming_info import Catalogue, info
from assistant.server.wyoming_wire import frame

__all__ = ["Services", "WyomingServer"]

MAX_CONNECTIONS = 64


class WyomingServer:
    """Listens on ``uri`` (``tcp://HOST:PORT``, port 0 picks a free one, or ``unix:///path``)."""

    def __init__(
        self, uri: str, services: Services, catalogue: Catalogue, *, max_audio_s: float, max_event_bytes: int
    ) -> None:
        self.uri = uri
        self.services = services
        self.info = info(catalogue)
        self.max_audio_s = max_audio_s
        self.max_event_bytes = max_event_bytes
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    async def start(self) -> None:
        """Listen; raises ``AssistantError("wyoming-unavailable")`` when the address cannot be had."""
        parts = urlsplit(self.uri)
        try:
            if parts.scheme == "unix":
                await asyncio.to_thread(Path(parts.path).unlink, missing_ok=True)  # a socket left by a crash
                self._server = await asyncio.start_unix_server(self._connected, path=parts.path)
            else:
                self._server = await asyncio.start_server(self._connected, host=parts.hostname, port=parts.port)
                self.port = self._server.sockets[0].getsockname()[1]
        except OSError as err:
            raise AssistantError(
                "wyoming-unavailable",
                f"cannot serve Wyoming on {self.uri}: {err.strerror or err} (another program may be using it); "
                "choose another with `assistant run --wyoming tcp://HOST:PORT` or [wyoming] uri",
            ) from err

    @property
    def url(self) -> str:
        parts = urlsplit(self.uri)
        return self.uri if parts.scheme == "unix" else f"tcp://{parts.hostname}:{self.port}"

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if len(self._tasks) > MAX_CONNECTIONS:
                writer.write(frame(Error(text="too many Wyoming connections", code="wyoming-busy").event()))
                writer.close()
                return
            await Connection(reader, writer, self).run()
        except asyncio.CancelledError:
            # the server is closing; ending quietly here, because asyncio's stream callback reports a
            # cancelled connection task as an error in the log
            pass
        finally:
            self._tasks.discard(task)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        if urlsplit(self.uri).scheme == "unix":
            await asyncio.to_thread(Path(urlsplit(self.uri).path).unlink, missing_ok=True)
