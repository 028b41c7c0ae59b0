"""The embedded LLM: llama.cpp through the ``xllamacpp`` wheel (prebuilt CPU build, no compiler).

``xllamacpp.Server`` is llama.cpp's server context driven in-process: ``handle_chat_completions``
takes an OpenAI-style request dict and, with ``"stream": True``, calls back once per
``chat.completion.chunk``. The call blocks its thread until the reply ends, so generation runs in one
dedicated worker thread and the deltas cross to the event loop through a queue.

Stopping: when the callback returns True, xllamacpp stops reading the response and drops it, and
dropping a response makes llama.cpp cancel its task (the slot is released at once; its log says
"cancel task"). The callback returns True as soon as the consumer closes the iterator or its task is
cancelled, so no compute is spent after barge-in beyond the token being decoded.

Sharing: one worker thread runs one request at a time, in arrival order (a FIFO executor), so any
number of sessions can share one loaded model without sharing a KV cache slot mid-reply; a request
whose consumer gave up while it was still queued is skipped without touching the model.

Prefill: ``prefill(messages)`` processes a prompt without generating, while the visitor is still
talking (assistant.daemon calls it on the transcript at a pause). llama.cpp keeps the slot's KV cache
and reuses the longest common prefix with the next request (``cache_prompt``), so the real request
then processes only its new tokens. It is speculative and yields to real requests (see ``prefill``),
and, through ``yield_while``, to speech recognition: the prompt is processed in batches of
``PROMPT_BATCH_TOKENS``, and at each batch the prefill may stop, keep what it processed (llama.cpp
keeps a cancelled request's processed tokens in the slot's cache) and resume once the CPU is free.
Why: on two cores llama.cpp's threads (one per core, meeting at a barrier after every operation)
and Whisper's slow each other down several times over when they run at once, and the transcript at
the end of the question is what decides when the turn may start at all.

Prompt cache (``prompt_cache_mib`` > 0): llama.cpp's server keeps processed prompt states in RAM
and, when a request arrives, loads the cached state sharing the longest prefix with it. ``warm``
fills it in idle time with the start of every first-turn prompt a knowledge-base passage can begin
(``assistant.prompts.passage_prefix``: system message + passage [1]), so a question's prompt then
needs only its question (and any further passages) processed: on two cores at ~140 prompt tokens/s
that is most of the time to the first token. llama.cpp swaps states through the cache only when it
picks the slot by "least recently used", not when the slot's prompt is similar enough to keep
(``slot_prompt_similarity``), so that threshold is set above any similarity (every request goes
through the cache: one copy of the slot's state, a few MB, milliseconds).

Loading starts llama.cpp's HTTP listener too (xllamacpp always does; port 0 picks a free one on
127.0.0.1). It is locked with a random API key nobody knows, since only in-process calls are used.
(llama.cpp's own HTTP server, for kiosks sharing one model, is ``assistant.engines.llamacpp_server``.)
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.config import Settings
from assistant.engines._worker import ModelWorker, Put
from assistant.engines.llamacpp_cache import CacheBook, common_prefix_chars, prompt_key
from assistant.stages import GenerateError, Message, ModelMissingError

log = logging.getLogger(__name__)


def resolve_gguf(settings: Settings) -> Path:
    """The GGUF file ``[llm]`` names: ``model_path`` (a file, or a folder holding one), else the
    model pack ``model`` (``models/<model>/model.gguf``). Raises ModelMissingError."""
    from assistant.models import model_dir

    llm = settings.llm
    if llm.model_path:
        path = settings.path(llm.model_path)
        if path.is_dir():
            found = sorted(path.glob("*.gguf"))
            if not found:
                raise ModelMissingError(llm.model or path.name, path, fetch_hint=f"put a .gguf file in {path}")
            return found[0]
        if not path.is_file():
            raise ModelMissingError(llm.model or path.name, path, fetch_hint=f"check [llm] model_path ({path})")
        return path
    folder = model_dir(settings, llm.model)
    path = folder / "model.gguf"
    if not path.is_file():
        ggufs = sorted(folder.glob("*.gguf"))
        if not ggufs:
            raise ModelMissingError(llm.model, path)
        path = ggufs[0]
    return path


class LlamaCppModel:
    """A ``LanguageModel`` over one GGUF file, loaded once and shared by every caller."""

    def __init__(
        self,
        model_file: Path,
        *,
        context_tokens: int = 4096,
        threads: int = 2,
        temperature: float = 0.2,
        metrics: bool = False,
        prompt_cache_mib: int = 0,
    ) -> None:
        import xllamacpp as xl

        if not model_file.is_file():
            raise ModelMissingError(model_file.parent.name, model_file)
        params = xl.CommonParams()
        params.model.path = str(model_file)
        params.n_ctx = context_tokens
        params.n_parallel = 1  # one slot: requests are serialised by our FIFO worker anyway
        params.n_batch = PROMPT_BATCH_TOKENS
        params.n_ubatch = PROMPT_BATCH_TOKENS
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.verbosity = 1  # errors only: llama.cpp's info log would flood the daemon's stderr
        params.hostnames = ["127.0.0.1"]
        params.api_keys = [secrets.token_hex(16)]
        params.endpoint_metrics = metrics
        params.cache_ram_mib = max(0, prompt_cache_mib)
        if prompt_cache_mib > 0:
            params.slot_prompt_similarity = 1.01  # never "similar enough": every request uses the cache
        self.prompt_cache_mib = max(0, prompt_cache_mib)
        self.model_file = model_file
        self.temperature = temperature
        try:
            self._server: Any = xl.Server(params)
        except Exception as err:  # xllamacpp raises RuntimeError("Failed to init server ...")
            raise GenerateError("llm-load", f"llama.cpp could not load {model_file}: {err}") from err
        self._worker = ModelWorker("llamacpp", wrap=lambda err: GenerateError("llm-failed", f"llama.cpp failed: {err}"))
        self._prefill: _Prefill | None = None
        self._demand = 0
        """Real requests and prefills submitted and not finished: a warm-up gives way to them."""
        self.warmed = 0
        """Prompts ``warm`` has processed so far."""
        self._book = CacheBook()
        """The warmed prompts believed to be in the prompt cache still (``llamacpp_cache``)."""
        self.prefill_pauses = 0
        """How often a prefill paused for ``yield_while`` (speech recognition needed the CPU)."""
        self.prompt_tokens = {"new": 0, "cached": 0}
        """Prompt tokens of real replies (not prefills) processed vs. reused from the KV cache."""
        log.info("llama.cpp loaded %s (context %d tokens, %d threads)", model_file, context_tokens, threads)

    @property
    def caches_prompts(self) -> bool:
        """``assistant.stages.PromptCache``: a prompt cache is configured."""
        return self.prompt_cache_mib > 0

    @classmethod
    def from_settings(cls, settings: Settings) -> LlamaCppModel:
        llm = settings.llm
        return cls(
            resolve_gguf(settings),
            context_tokens=llm.context_tokens,
            threads=llm.threads,
            temperature=llm.temperature,
            prompt_cache_mib=llm.prompt_cache_mib,
        )

    async def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float | None = None
    ) -> AsyncIterator[str]:
        """Text deltas of the reply. Closing the iterator, or cancelling the task consuming it,
        stops generation (see the module note)."""
        request = self._request(messages, max_tokens=max_tokens, temperature=temperature)
        key = prompt_key(messages)
        self._yield_to(key)
        self._book.starts(key)

        def job(put: Put, stop: threading.Event) -> None:
            def on_chunk(chunk: Any) -> bool:
                if stop.is_set():
                    return True
                for choice in chunk.get("choices", ()) if isinstance(chunk, dict) else ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        put(content)
                if isinstance(chunk, dict) and "error" in chunk:
                    # raising here would cross llama.cpp's C++ frames: hand the error over instead
                    put(GenerateError("llm-failed", f"llama.cpp: {chunk['error']}"))
                    return True
                if isinstance(chunk, dict) and "timings" in chunk:
                    self._count(chunk["timings"])
                return stop.is_set()

            self._server.handle_chat_completions(request, on_chunk)

        self._demand += 1
        try:
            async for delta in self._worker.stream(job):
                yield delta
        finally:
            self._demand -= 1

    async def prefill(self, messages: list[Message], *, yield_while: Callable[[], bool] | None = None) -> bool:
        """Process ``messages``' prompt into the KV cache without generating a reply, so that a
        later ``stream`` of the same prompt (or one sharing a long prefix with it) only processes
        what is new: llama.cpp keeps the slot's cache and reuses the longest common prefix.

        Speculative, so it never delays a real reply: a newer prefill replaces this one; a
        ``stream`` whose prompt does not start with (most of) this one stops it (skipped while
        queued, else dropped at its next batch of prompt tokens); cancelling the caller stops it.
        ``yield_while`` (called from llama.cpp's thread, so it must be cheap and thread-safe): while
        it returns True the prefill pauses at its next batch of prompt tokens, keeping what it has
        processed, and resumes when it returns False (polled every ``YIELD_POLL_S``).
        Returns True when the prompt was processed, False when the prefill was given up.
        """
        key = prompt_key(messages)
        self._book.starts(key)
        state = _Prefill(key)
        if self._prefill is not None:
            self._prefill.stop.set()
        self._prefill = state
        request = self._request(messages, max_tokens=0)
        # progress chunks arrive once per batch of prompt tokens: the points where it can stop
        request["return_progress"] = True

        def on_chunk(_chunk: Any) -> bool:
            if state.stop.is_set():
                return True
            if yield_while is not None and yield_while():
                state.paused = True
                return True
            return False

        def job(put: Put, stop: threading.Event) -> None:
            if state.stop.is_set():
                return
            state.paused = False
            self._server.handle_chat_completions(request, lambda chunk: stop.is_set() or on_chunk(chunk))
            state.done = not (state.stop.is_set() or state.paused or stop.is_set())

        self._demand += 1
        try:
            while True:
                await self._worker.call(job)
                if not state.paused or state.stop.is_set():
                    break
                self.prefill_pauses += 1
                # a plain condition shared with llama.cpp's thread, not an event: polled
                while yield_while is not None and yield_while() and not state.stop.is_set():  # noqa: ASYNC110
                    await asyncio.sleep(YIELD_POLL_S)
        finally:
            self._demand -= 1
            if self._prefill is state:
                self._prefill = None
            log.debug(
                "prefill of %d prompt chars %s",
                len(key),
                "done" if state.done else "replaced or stopped" if state.stop.is_set() else "given up",
            )
        return state.done

    async def warm(
        self, prompts: Sequence[list[Message]], *, yield_while: Callable[[], bool] | None = None, again: bool = False
    ) -> int:
        """Process each prompt into llama.cpp's prompt cache (see the module note), one at a time,
        only while no real request or prefill wants the model and ``yield_while`` is False. One
        interrupted at a batch of prompt tokens keeps what it processed and resumes from there.
        A prompt warmed before and believed still cached is skipped unless ``again`` (see
        ``llamacpp_cache``; ``again`` also renews states the cache would otherwise drop first, being
        the oldest). Does nothing without a prompt cache (``prompt_cache_mib`` 0). Returns how
        many were processed."""
        if self.prompt_cache_mib <= 0:
            return 0

        def blocked() -> bool:
            return self._demand > 0 or (yield_while is not None and yield_while())

        done = 0
        for messages in prompts:
            key = prompt_key(messages)
            if key in self._book and not again:
                continue
            request = self._request(messages, max_tokens=0)
            request["return_progress"] = True
            while True:
                # a plain condition shared with llama.cpp's thread, not an event: polled
                while blocked():  # noqa: ASYNC110
                    await asyncio.sleep(WARM_POLL_S)
                # in sorted order nothing is taken over; after a real request the slot holds its prompt
                self._book.starts(key)
                interrupted = threading.Event()

                def job(
                    put: Put,
                    stop: threading.Event,
                    request: dict[str, Any] = request,
                    interrupted: threading.Event = interrupted,
                ) -> None:
                    def on_chunk(_chunk: Any) -> bool:
                        if stop.is_set() or blocked():
                            interrupted.set()
                            return True
                        return False

                    if blocked():
                        interrupted.set()
                        return
                    self._server.handle_chat_completions(request, on_chunk)

                await self._worker.call(job)
                if not interrupted.is_set():
                    break
            done += 1
            self.warmed += 1
            self._book.warmed(key)
        if done:
            log.debug("prompt cache: %d prompt beginnings processed", done)
        return done

    def _count(self, timings: dict[str, Any]) -> None:
        """Prompt tokens a reply had to process vs. those reused from the KV cache (what a prefill
        saves): totals in ``prompt_tokens``, one log line per reply."""
        new, cached = int(timings.get("prompt_n", 0)), int(timings.get("cache_n", 0))
        self.prompt_tokens["new"] += new
        self.prompt_tokens["cached"] += cached
        log.info(
            "reply prompt: %d tokens new (%.0f ms), %d reused from the cache", new, timings.get("prompt_ms", 0), cached
        )

    def _yield_to(self, key: str) -> None:
        """A real request arrived: stop the speculative prefill unless this request reuses it and
        it is still running (a paused one would only resume after the request; the request
        continues from what it processed anyway)."""
        state = self._prefill
        if state is not None and (state.paused or not _reuses(state.key, key)):
            state.stop.set()

    def _request(self, messages: list[Message], *, max_tokens: int, temperature: float | None = None) -> dict[str, Any]:
        return {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": self.temperature if temperature is None else temperature,
            "cache_prompt": True,  # reuse the slot's KV cache for the common prefix (the default; relied on)
        }

    async def idle(self) -> None:
        """Wait until every request queued so far has finished (the worker is FIFO)."""
        await self._worker.idle()

    def metrics(self) -> str:
        """llama.cpp's Prometheus metrics text (only when built with ``metrics=True``)."""
        return str(self._server.handle_metrics())

    def close(self) -> None:
        """Stop the worker and free the model (the Server's destructor ends llama.cpp's loop)."""
        self._worker.close()
        self._server = None


PROMPT_BATCH_TOKENS = 64
"""llama.cpp processes prompts in batches of this many tokens; a speculative prefill can stop or
pause only between them (64 tokens: ~0.25 s here). Measured with the native build, Qwen2.5-0.5B,
2 threads: 250 prompt tokens/s at 64 against 264 at 512 (the default), 235 at 32."""
WARM_POLL_S = 0.05
"""How often a warm-up waiting for the model to be free looks again."""
YIELD_POLL_S = 0.01
"""How often a paused prefill asks ``yield_while`` whether it may resume."""

PREFILL_REUSE = 0.8
"""A real request keeps a speculative prefill going when their prompts share at least this share of
the prefill's prompt (the passages are the same and the question changed at its end)."""


@dataclass
class _Prefill:
    key: str
    stop: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    paused: bool = False
    """The last attempt stopped for ``yield_while``; what it processed stays in the KV cache."""


def _reuses(prefill: str, request: str) -> bool:
    return common_prefix_chars(prefill, request) >= PREFILL_REUSE * len(prefill)
