"""The owner's page on the WebSocket: its token, and carrying its messages to the owner's desk.

A connection becomes the owner's with ``owner-hello`` and ``[admin] token`` (compared in constant
time); the kiosk's ``[server] token`` is not enough, and no token configured means no owner at all
(``owner-disabled``), on loopback too. A wrong token counts as a malformed message, so guessing
closes the connection after ``MAX_BAD_MESSAGES``. Everything else (grouping, files, reload) is the
daemon side's ``OwnerDesk``; this module knows only the wire.
"""

from __future__ import annotations

import hmac
import logging
from typing import Protocol

from assistant.errors import AssistantError, ProtocolError
from assistant.events import ErrorEvent, Event
from assistant.owner_wire import (
    OwnerEdit,
    OwnerHelloMessage,
    OwnerMessage,
    OwnerQueue,
    OwnerQueueMessage,
    OwnerReady,
)

log = logging.getLogger(__name__)


class OwnerDesk(Protocol):
    """What the owner's page needs from the daemon side (``assistant.owner.OwnerDesk``)."""

    @property
    def reloadable(self) -> bool: ...

    async def queue(self) -> OwnerQueue: ...

    async def act(self, message: OwnerEdit, *, address: str) -> Event: ...


class OwnerClient(Protocol):
    owner: bool

    def send(self, event: Event | str | bytes) -> bool: ...


class OwnerGate:
    """``token``: ``[admin] token``; ``desk``: None when the daemon offers no owner's page."""

    def __init__(self, token: str, desk: OwnerDesk | None) -> None:
        self.token = token
        self.desk = desk

    async def handle(self, client: OwnerClient, message: OwnerMessage, *, address: str) -> None:
        """Raises ``ProtocolError`` for what the client got wrong (counted as malformed input); the
        desk's own refusals (a stale group, a duplicate) are sent as ``error`` events."""
        if isinstance(message, OwnerHelloMessage):
            self._login(client, message, address)
            assert self.desk is not None
            client.send(OwnerReady(reloadable=self.desk.reloadable))
            client.send(await self.desk.queue())
            return
        if not client.owner or self.desk is None:
            raise ProtocolError("forbidden", "owner's messages need an 'owner-hello' with the owner's token first")
        try:
            if isinstance(message, OwnerQueueMessage):
                client.send(await self.desk.queue())
                return
            client.send(await self.desk.act(message, address=address))
        except AssistantError as err:
            client.send(ErrorEvent(code=err.code, message=err.message))
        client.send(await self.desk.queue())

    def _login(self, client: OwnerClient, message: OwnerHelloMessage, address: str) -> None:
        if not self.token or self.desk is None:
            raise ProtocolError(
                "owner-disabled",
                "the owner's page is off: set [admin] token (ASSISTANT__ADMIN__TOKEN) and restart the daemon",
            )
        if not hmac.compare_digest(message.token.encode("utf-8", "surrogateescape"), self.token.encode()):
            log.warning("owner's page: a wrong token from %s", address)
            client.owner = False
            raise ProtocolError("owner-token", "wrong owner's token")
        client.owner = True
