"""Any OpenAI-compatible ``/v1/chat/completions`` server: vLLM, llama.cpp's server, Ollama, ...

This is how many kiosks share one LLM: each daemon streams its answers from a serving engine that
scales by itself (vLLM across GPUs). Requests stream over Server-Sent Events through httpx.

Failures, each wrapped once as a GenerateError with a stable code:
- ``llm-unreachable``: the server cannot be connected to (down, wrong URL), after ``[llm] retries``
  retries with a short backoff. Connection errors are retried only before the first byte of a reply:
  once text has streamed (and may have been spoken), a retry would repeat it.
- ``llm-timeout``: no byte for ``[llm] timeout_s`` seconds (connecting, waiting, or between chunks).
- ``llm-auth``: 401/403 (check the API key variable named by ``[llm] api_key_env``).
- ``llm-failed``: any other HTTP error or a broken stream; the server's own message is included.

Stopping: closing the iterator (or cancelling its task) closes the HTTP response; vLLM and llama.cpp
abort a request whose client went away, so generation stops on the server too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import weakref
from collections.abc import AsyncIterator
from typing import Any

import httpx

from assistant.config import Settings
from assistant.stages import GenerateError, Message

log = logging.getLogger(__name__)

RETRY_STATUS = {502, 503, 504}
"""Statuses that mean "not ready / overloaded": retried like connection errors."""
BACKOFF_S = 0.25


class OpenAICompatModel:
    """A ``LanguageModel`` backed by a remote (or local) OpenAI-compatible server."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "",
        api_key: str = "",
        timeout_s: float = 30.0,
        retries: int = 2,
        temperature: float = 0.2,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.temperature = temperature
        self._headers = {"Accept": "text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        # httpx's connection pool belongs to the event loop that opened it: one client per loop.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAICompatModel:
        llm = settings.llm
        return cls(
            llm.base_url,
            model=llm.model,
            api_key=os.environ.get(llm.api_key_env, "") if llm.api_key_env else "",
            timeout_s=llm.timeout_s,
            retries=llm.retries,
            temperature=llm.temperature,
        )

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s), headers=self._headers)
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    async def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float | None = None
    ) -> AsyncIterator[str]:
        """Text deltas of the reply, as the server streams them. Closing the iterator closes the
        connection, which makes the server abort the request."""
        url = f"{self.base_url}/chat/completions"
        body: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": self.temperature if temperature is None else temperature,
        }
        if self.model:
            body["model"] = self.model
        client = self._client()
        attempt = 0
        while True:
            started = False
            try:
                async with client.stream("POST", url, json=body) as response:
                    if response.status_code in RETRY_STATUS and attempt < self.retries:
                        raise _Retry(f"HTTP {response.status_code}")
                    if response.status_code >= 400:
                        raise await _http_error(response, url)
                    async for delta in _deltas(response):
                        started = True
                        yield delta
                return
            except _Retry as err:
                reason = str(err)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError) as err:
                if started:
                    raise GenerateError("llm-failed", f"the LLM server at {self.base_url} broke off the reply: {err}") from err
                if attempt >= self.retries:
                    raise GenerateError(
                        "llm-unreachable",
                        f"cannot reach the LLM server at {self.base_url} ({type(err).__name__}: {err or 'no answer'}); "
                        f"is it running? (tried {attempt + 1} time{'s' if attempt else ''})",
                    ) from err
                reason = f"{type(err).__name__}: {err}"
            except httpx.TimeoutException as err:
                raise GenerateError(
                    "llm-timeout", f"the LLM server at {self.base_url} sent nothing for {self.timeout_s:g} s"
                ) from err
            except httpx.HTTPError as err:
                raise GenerateError("llm-failed", f"talking to the LLM server at {self.base_url} failed: {err}") from err
            attempt += 1
            log.warning("LLM server %s: %s; retry %d of %d", self.base_url, reason, attempt, self.retries)
            await asyncio.sleep(BACKOFF_S * 2 ** (attempt - 1))


class _Retry(Exception):
    pass


async def _http_error(response: httpx.Response, url: str) -> GenerateError:
    raw = (await response.aread()).decode("utf-8", "replace")
    detail = raw.strip()[:300]
    try:
        data = json.loads(raw)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            detail = str(data["error"].get("message", detail))
        elif isinstance(data, dict) and "detail" in data:  # FastAPI-style (vLLM)
            detail = str(data["detail"])
    except ValueError:
        pass
    code = "llm-auth" if response.status_code in (401, 403) else "llm-failed"
    return GenerateError(code, f"the LLM server answered HTTP {response.status_code} for {url}: {detail}")


async def _deltas(response: httpx.Response) -> AsyncIterator[str]:
    """The content pieces of an SSE ``chat.completion.chunk`` stream."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, comments (": ping"), event names
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError as err:
            raise GenerateError("llm-failed", f"the LLM server sent a malformed event: {data[:120]!r}") from err
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise GenerateError("llm-failed", f"the LLM server reported: {message}")
        for choice in chunk.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if content:
                yield str(content)
