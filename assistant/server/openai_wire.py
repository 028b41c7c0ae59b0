"""OpenAI's HTTP API on the wire, sans I/O: requests checked into typed values, responses built as
OpenAI's clients read them, and errors in OpenAI's shape.

An error is ``{"error": {"message", "type", "param", "code"}}`` with the HTTP status OpenAI gives
the same fault (400 a bad request, 401 a bad key, 404 an unknown model, 413 too large); the official
SDKs turn each status into their own exception (``openai.BadRequestError`` ...). The knowledge-base
answer's route and sources ride in one extension field, ``assistant``, which OpenAI's clients keep
(``completion.model_extra["assistant"]``) and other servers never send.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from assistant import events as ev
from assistant.stages import Message

CHAT_MODEL = "assistant"
"""The one chat model: the daemon's knowledge-base turn."""
SPEECH_FORMATS = ("wav", "pcm")
PCM_RATE_HZ = 24_000
"""OpenAI's ``pcm`` speech format: 24 kHz, 16-bit signed little-endian, mono, no header."""
TRANSCRIPTION_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
LANGUAGE_NAMES = {"en": "english", "zh": "chinese"}
"""``verbose_json``'s ``language`` is a name, as Whisper's API writes it."""

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error"}
_TYPES |= {404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error"}
_TYPES |= {421: "invalid_request_error", 503: "server_error"}


class ApiError(Exception):
    """A request answered with an error status; ``code`` is stable (ours where OpenAI has none)."""

    def __init__(self, status: int, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        kind = _TYPES.get(self.status, "invalid_request_error" if self.status < 500 else "server_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def parse_json(raw: bytes) -> dict[str, Any]:
    """A JSON object, or ``ApiError`` 400 saying why not."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(400, f"the body is not valid JSON ({err})", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    return data


def _string(data: dict[str, Any], name: str, *, default: str | None = None) -> str:
    value = data.get(name, default)
    if value is None:
        raise ApiError(400, f"'{name}' is required", code="missing_required_parameter", param=name)
    if not isinstance(value, str):
        raise ApiError(400, f"'{name}' must be a string", code="invalid_type", param=name)
    return value


# -- chat ------------------------------------------------------------------------------------


@dataclass
class ChatRequest:
    question: str
    history: list[Message] = field(default_factory=list)
    """The request's earlier ``user`` and ``assistant`` messages, oldest first."""
    stream: bool = False


def _content(message: dict[str, Any], i: int) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text is understood
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise ApiError(
                    400, "only text content parts are supported", code="invalid_value", param=f"messages[{i}]"
                )
            texts.append(part["text"])
        return "".join(texts)
    raise ApiError(
        400, "'content' must be a string or a list of text parts", code="invalid_type", param=f"messages[{i}]"
    )


def parse_chat(data: dict[str, Any]) -> ChatRequest:
    """``/v1/chat/completions``: the last message is the question (a ``user`` message), the
    ``user`` and ``assistant`` messages before it the history. ``system`` and ``developer``
    messages are read and left out: the daemon's own grounded prompt decides how it answers."""
    model = _string(data, "model")
    if model != CHAT_MODEL:
        raise ApiError(
            404,
            f"the model '{model}' does not exist; this daemon answers as '{CHAT_MODEL}'",
            code="model_not_found",
            param="model",
        )
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", code="invalid_value", param="messages")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false", code="invalid_type", param="stream")
    n = data.get("n", 1)
    if n != 1:
        raise ApiError(400, "only n = 1 is supported", code="invalid_value", param="n")
    turns: list[Message] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ApiError(
                400, "each message must be an object with a 'role'", code="invalid_value", param=f"messages[{i}]"
            )
        role = message["role"]
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise ApiError(400, f"unknown role '{role}'", code="invalid_value", param=f"messages[{i}].role")
        text = _content(message, i)
        if role in ("user", "assistant") and text.strip():
            turns.append(Message(role, text))
    last = messages[-1]
    if last.get("role") != "user" or not turns or turns[-1].role != "user":
        raise ApiError(
            400, "the last message must be the user's question, with text", code="invalid_value", param="messages"
        )
    return ChatRequest(turns[-1].content.strip(), turns[:-1], stream)


def extension(route: str, sources: list[ev.Source], *, declined: bool = False) -> dict[str, Any]:
    """The ``assistant`` field: how the knowledge base answered (``declined``: the generated reply is
    the decline line, and stands on no source), and from what."""
    return {"route": route, "declined": declined, "sources": [asdict(s) for s in sources]}


def completion(cid: str, created: int, reply: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": CHAT_MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop", "logprobs": None}
        ],
        "assistant": extra,
    }


def chunk(
    cid: str, created: int, delta: dict[str, Any], *, finish: str | None = None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": CHAT_MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    if extra is not None:
        body["assistant"] = extra
    return body


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event (``data: …`` and a blank line)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


# -- speech ----------------------------------------------------------------------------------


@dataclass
class SpeechRequest:
    text: str
    voice: str
    response_format: str = "wav"


def parse_speech(data: dict[str, Any], *, voices: tuple[str, ...], max_input_chars: int) -> SpeechRequest:
    _string(data, "model")
    text = _string(data, "input").strip()
    if not text:
        raise ApiError(400, "'input' is empty: nothing to say", code="invalid_value", param="input")
    if len(text) > max_input_chars:
        raise ApiError(
            400, f"'input' is over {max_input_chars} characters", code="string_above_max_length", param="input"
        )
    voice = data.get("voice")
    if isinstance(voice, dict):  # the newer SDKs may send {"id": ...}
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice:
        raise ApiError(400, "'voice' is required", code="missing_required_parameter", param="voice")
    if voice not in voices:
        known = ", ".join(voices) or "none (no synthesizer loaded)"
        raise ApiError(
            400, f"no voice named '{voice}'; this daemon's voices: {known}", code="voice_not_found", param="voice"
        )
    fmt = _string(data, "response_format", default="wav")
    if fmt not in SPEECH_FORMATS:
        raise ApiError(
            400,
            f"response_format '{fmt}' is not served; use one of {', '.join(SPEECH_FORMATS)}",
            code="invalid_value",
            param="response_format",
        )
    speed = data.get("speed", 1.0)
    if speed != 1.0:  # the voices speak at their own pace; a different speed would be a silent lie
        raise ApiError(400, "only speed 1.0 is supported", code="invalid_value", param="speed")
    return SpeechRequest(text, voice, fmt)


# -- transcription ---------------------------------------------------------------------------


def _stamp(seconds: float, comma: bool) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{',' if comma else '.'}{ms:03d}"


def transcription(fmt: str, text: str, *, language: str, duration_s: float) -> tuple[str, bytes]:
    """The response to a transcription in ``fmt``: (content type, body). The daemon transcribes an
    upload whole, so ``verbose_json``, ``srt`` and ``vtt`` hold one segment spanning the audio."""
    if fmt == "text":
        return "text/plain; charset=utf-8", text.encode()
    if fmt == "srt":
        return "text/plain; charset=utf-8", f"1\n{_stamp(0, True)} --> {_stamp(duration_s, True)}\n{text}\n\n".encode()
    if fmt == "vtt":
        return (
            "text/vtt; charset=utf-8",
            f"WEBVTT\n\n{_stamp(0, False)} --> {_stamp(duration_s, False)}\n{text}\n\n".encode(),
        )
    body: dict[str, Any] = {"text": text}
    if fmt == "verbose_json":
        segment = {"id": 0, "seek": 0, "start": 0.0, "end": round(duration_s, 3), "text": text, "tokens": []}
        segment |= {"temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 1.0, "no_speech_prob": 0.0}
        body = {
            "task": "transcribe",
            "language": LANGUAGE_NAMES.get(language, language),
            "duration": round(duration_s, 3),
            "text": text,
            "segments": [segment],
        }
    return "application/json", json.dumps(body, ensure_ascii=False).encode()


def model_list(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``/v1/models``: each id with what it does in the ``assistant`` extension field."""
    return {"object": "list", "data": [model_card(name, about) for name, about in models.items()]}


def model_card(name: str, about: dict[str, Any]) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "assistant", "assistant": about}
