"""The one error hierarchy: every error a person or a client can act on is an ``AssistantError``.

Each carries a stable ``code`` (it goes on the wire, in ``error`` events, in ``--json`` output and
in logs; docs/protocol.md lists the wire ones) and a ``message`` for people. An error is wrapped
once, at the edge of the stage or layer it comes from (``raise TranscribeError("asr-failed", ...)
from err``), and travels unchanged from there: the turn turns any of them into an ``error`` event,
the command line into one line on standard error, the server into an ``error`` event or a close.

The subclasses only say which layer raised it; a code's prefix says the same for the wire
(``asr-*``, ``kb-*``, ``llm-*``, ``tts-*``, ``model-*``, ``config``, protocol codes like
``bad-message``). This module imports nothing, so every other one may import it.
"""

from __future__ import annotations

from pathlib import Path


class AssistantError(Exception):
    """An error a user can act on. ``code`` is stable; ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class TranscribeError(AssistantError):
    """asr-*, vad-*: hearing failed."""


class RetrieveError(AssistantError):
    """kb-*: the knowledge base could not be built, read or searched."""


class GenerateError(AssistantError):
    """llm-*: the language model failed."""


class SynthesizeError(AssistantError):
    """tts-*: speaking failed."""


class ModelMissingError(AssistantError):
    """A model's files are not in ``models/``: the message names what provides them."""

    def __init__(self, name: str, path: Path | str, fetch_hint: str | None = None) -> None:
        """``fetch_hint``: the command (or action) that provides the model; default: its fetch."""
        hint = fetch_hint or f"run `assistant models fetch {name}`"
        super().__init__("model-missing", f"model '{name}' is not present at {path}; {hint}")
        self.name = name


class ConfigError(AssistantError):
    """A bad configuration; the message, for the person who wrote the file, names the key, what was
    expected and what was found."""

    def __init__(self, message: str) -> None:
        super().__init__("config", message)


class ProtocolError(AssistantError):
    """A client message that breaks the wire protocol. ``close_code`` is None when an ``error``
    event suffices, else the WebSocket close code the connection ends with."""

    def __init__(self, code: str, message: str, *, close_code: int | None = None) -> None:
        super().__init__(code, message)
        self.close_code = close_code


class FrameError(ProtocolError):
    """A binary audio frame that does not follow its layout (``assistant.events``): ``bad-audio``."""

    def __init__(self, message: str) -> None:
        super().__init__("bad-audio", message)
