"""The owner's page's vocabulary on the WebSocket, both ways (docs/protocol.md, "The owner's page").

Additions within protocol version 2: a client that never sends ``owner-*`` sees none of this. The
page logs in with ``owner-hello`` and the owner's token (``[admin] token``, not the kiosk's); until
then every other ``owner-*`` message is refused with ``forbidden``. Derived from the dataclasses as
``assistant.events`` derives the rest: the type is the class name in kebab-case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from assistant.errors import ProtocolError
from assistant.events import Event, Inbound

MAX_ANSWER_CHARS = 4_000
MAX_QUESTION_CHARS = 1_000
MAX_ID_CHARS = 200


# --- client -> server ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OwnerHelloMessage(Inbound):
    """Log in as the owner on this connection."""

    token: str
    """Compared whole (never cut: a long token must still match); ``[server] max_message_bytes`` bounds it."""


@dataclass(frozen=True)
class OwnerQueueMessage(Inbound):
    """Send the queue (``owner-queue``) now."""


def _id(kind: str, name: str, value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_ID_CHARS:
        raise ProtocolError("bad-message", f"'{kind}' needs '{name}', 1..{MAX_ID_CHARS} characters")
    return value


@dataclass(frozen=True)
class OwnerAnswerMessage(Inbound):
    """Write an answer for a group: a new FAQ entry, the group's phrasings as its alternates."""

    group: str
    answer: str
    question: str = ""
    """The entry's question; ``""``: the group's most asked phrasing."""

    def checked(self) -> OwnerAnswerMessage:
        answer, question = self.answer.strip(), self.question.strip()
        if not answer:
            raise ProtocolError("empty-answer", "the answer is empty")
        if len(answer) > MAX_ANSWER_CHARS:
            raise ProtocolError("too-long", f"an answer is limited to {MAX_ANSWER_CHARS} characters")
        if len(question) > MAX_QUESTION_CHARS:
            raise ProtocolError("too-long", f"a question is limited to {MAX_QUESTION_CHARS} characters")
        return OwnerAnswerMessage(_id("owner-answer", "group", self.group), answer, question)


@dataclass(frozen=True)
class OwnerAddMessage(Inbound):
    """Add a group's phrasings to an existing FAQ entry as alternates."""

    group: str
    entry: str

    def checked(self) -> OwnerAddMessage:
        return OwnerAddMessage(_id("owner-add", "group", self.group), _id("owner-add", "entry", self.entry))


@dataclass(frozen=True)
class OwnerDismissMessage(Inbound):
    """Nothing to learn from this group: hide it (until a visitor asks it again)."""

    group: str

    def checked(self) -> OwnerDismissMessage:
        return OwnerDismissMessage(_id("owner-dismiss", "group", self.group))


OwnerMessage = OwnerHelloMessage | OwnerQueueMessage | OwnerAnswerMessage | OwnerAddMessage | OwnerDismissMessage
OwnerEdit = OwnerAnswerMessage | OwnerAddMessage | OwnerDismissMessage

OWNER_MESSAGE_TYPES: dict[str, type[Inbound]] = {
    cls.type: cls
    for cls in (OwnerHelloMessage, OwnerQueueMessage, OwnerAnswerMessage, OwnerAddMessage, OwnerDismissMessage)
}


# --- server -> client ----------------------------------------------------------------------------


@dataclass(kw_only=True)
class OwnerReady(Event):
    """The token was right: this connection may send the other ``owner-*`` messages."""

    reloadable: bool = False
    """Whether the daemon applies an edit at once; false: after `assistant kb build` and a restart."""


@dataclass(kw_only=True)
class OwnerQueue(Event):
    """The unanswered queue, grouped by meaning, most asked first."""

    groups: list[dict[str, Any]] = field(default_factory=list)
    """Objects ``{id, count, languages, first_s, last_s, reply, phrasings: [{question, count}],
    candidates: [{id, title, kind, score}]}`` (times are Unix seconds)."""
    days: list[dict[str, Any]] = field(default_factory=list)
    """Objects ``{day, unanswered, turns, rate}`` for each of the last 14 days (UTC), oldest first:
    ``rate`` = unanswered / turns, None for a day without a turn total."""


@dataclass(kw_only=True)
class OwnerDone(Event):
    """An edit was written (and recorded in the audit trail)."""

    action: str
    """``answer``, ``add`` or ``dismiss``."""
    group: str
    entry: str = ""
    """The entry written; ``""`` for a dismissal."""
    applied: str = ""
    """``reloaded`` (live now), ``pending`` (after the next build and restart), or the reload's error."""


OWNER_EVENT_TYPES: dict[str, type[Event]] = {cls.type: cls for cls in (OwnerReady, OwnerQueue, OwnerDone)}
