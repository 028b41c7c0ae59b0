"""Live reload: the running daemon rebuilds its knowledge base and swaps the new index in.

A reload is asked for when a file under ``[kb] paths`` changes (``[kb] watch``: modification times
and sizes are polled every ``watch_interval_s``, and a change is built once the files stayed the same
for ``watch_quiet_s``, so a burst of saves is one build) or programmatically (``Reloader.reload``,
which the owner's page calls through ``Daemon.reload_kb``). Requests that arrive while a build runs
are served together by the next one.

One reload, in order:

1. the incremental, atomic build (``assistant.kb.build``) runs in a thread, with the daemon's
   embedder and, with ``[kb] synthesize``, the daemon's LLM (``LoopModel``: through its fair gate,
   after the visitors' turns); a file the live index read but this build had to skip stops it before
   it goes live;
2. the new generation is opened (in the thread) and swapped in on the event loop, between two
   awaits: every turn holds the ``Engines`` it started with, so a turn in flight finishes on the old
   index and the next one searches the new;
3. ``kb-updated`` goes to every client, ``/healthz`` says the new ``kb_generation``; then, in idle
   time, the new FAQ answers' audio is rendered and the prompt cache warmed for the new passages.

A build that fails (an unreadable file, a full disk, an error opening the result) changes nothing
that answers: the error goes to the log, to ``/healthz`` (``kb_reload_error``) and to every client
(``kb-update-failed``). The owner fixes the file and saves again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant import events as ev
from assistant.ahead import prerender_faq, prompt_beginnings
from assistant.config import Settings
from assistant.errors import AssistantError
from assistant.stages import Engines, LanguageModel, Message, Retriever, closing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenedIndex:
    """A loaded index generation, ready to be swapped in."""

    retriever: Retriever
    generation: str
    """Its folder's name under the index folder."""
    entries: int = 0
    chunks: int = 0


@dataclass(frozen=True)
class IndexSource:
    """How the daemon rebuilds and reopens its index; the composition root supplies it
    (``registry.index_source``), with the embedders the live index already loaded."""

    build: Callable[[LanguageModel | None], Mapping[str, Any]]
    """Build ``[kb] paths`` into the index folder, incrementally (blocking: run in a thread); the
    LLM writes synthetic questions (None: the build's own choice). Returns the build report's JSON;
    raises ``AssistantError`` (or ``OSError``) and then leaves the live generation as it was."""
    open: Callable[[], OpenedIndex]
    """Load the live generation (blocking)."""
    generation: str
    """The generation the daemon started with."""
    paths: tuple[Path, ...] = ()
    """What is watched: the ``[kb] paths`` files and folders."""
    ignore: tuple[Path, ...] = ()
    """Folders under ``paths`` that are not sources (the index folder itself)."""


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    generation: str
    """The generation live after the reload (the old one when it failed)."""
    seconds: float
    code: str = ""
    message: str = ""
    report: Mapping[str, Any] = field(default_factory=dict)
    """The build report (``BuildReport.to_json``), when the build finished."""


Scan = dict[str, tuple[int, int]]


def scan(paths: Sequence[Path], ignore: Sequence[Path] = ()) -> Scan:
    """Every file under ``paths`` (hidden ones and ``ignore`` left out) with its modification time
    (ns) and size: two scans differ when a file was added, removed or saved."""
    skip = {os.path.abspath(p) for p in ignore}
    out: Scan = {}

    def add(path: str) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return  # removed while we looked: the next scan says so
        out[path] = (st.st_mtime_ns, st.st_size)

    for root in paths:
        top = os.path.abspath(root)
        if os.path.isfile(top):
            add(top)
            continue
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith(".") and os.path.join(folder, d) not in skip]
            for name in files:
                if not name.startswith("."):
                    add(os.path.join(folder, name))
    return out


class LoopModel:
    """The daemon's ``LanguageModel`` for a build thread, whose synthetic-question writer runs its
    own event loop: each request runs on the daemon's loop, waits until no visitor's turn is running
    (``wait_idle``) and then queues at the model's fair gate, so visitors come first and a build
    delays a turn by one short request at most. The reply comes whole, as one delta."""

    def __init__(
        self, llm: LanguageModel, loop: asyncio.AbstractEventLoop, *, wait_idle: Callable[[], Awaitable[None]]
    ) -> None:
        self._llm = llm
        self._loop = loop
        self._wait_idle = wait_idle
        self._pending: set[concurrent.futures.Future[str]] = set()

    async def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float | None = None
    ) -> AsyncIterator[str]:
        future = asyncio.run_coroutine_threadsafe(self._whole(messages, max_tokens, temperature), self._loop)
        self._pending.add(future)
        try:
            yield await asyncio.wrap_future(future)
        finally:
            self._pending.discard(future)

    async def _whole(self, messages: list[Message], max_tokens: int, temperature: float | None) -> str:
        await self._wait_idle()
        async with closing(self._llm.stream(messages, max_tokens=max_tokens, temperature=temperature)) as deltas:
            return "".join([d async for d in deltas])

    def cancel(self) -> None:
        """Stop the requests under way (shutdown): the build thread gets ``CancelledError``."""
        for future in list(self._pending):
            future.cancel()


class Reloader:
    """The daemon's live reload (see the module docstring). ``status`` is for ``/healthz``:
    ``kb_generation``, ``kb_reload`` (``idle`` / ``building``) and ``kb_reload_error`` (null, or the
    last failure as ``code: message`` until a reload succeeds)."""

    def __init__(
        self,
        source: IndexSource,
        settings: Settings,
        *,
        engines: Callable[[], Engines],
        swap: Callable[[Retriever], None],
        announce: Callable[[ev.Event], None],
        busy: Callable[[], bool],
        wait_idle: Callable[[], Awaitable[None]],
    ) -> None:
        """``engines()``: the daemon's shared engines now; ``swap(retriever)``: make new turns search
        it; ``announce(event)``: send to every client; ``busy()`` / ``wait_idle()``: as
        ``assistant.ahead.Background`` takes them."""
        self.source = source
        self.settings = settings
        self._engines = engines
        self._swap = swap
        self._announce = announce
        self._busy = busy
        self._wait_idle = wait_idle
        self.status: dict[str, object] = {
            "kb_generation": source.generation,
            "kb_reload": "idle",
            "kb_reload_error": None,
        }
        self.builds = 0
        """Builds run so far (failed ones included)."""
        self._scanned: Scan | None = None
        self._waiters: list[asyncio.Future[ReloadResult]] = []
        self._wanted = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ahead: asyncio.Task[None] | None = None
        self._model: LoopModel | None = None

    def start(self) -> None:
        self._spawn(self._work(), "kb-reload")
        if self.settings.kb.watch and self.source.paths:
            # the files as the daemon starts (a stat per file; a knowledge base is a few files), taken
            # now so that any change after start is noticed, however soon
            self._scanned = scan(self.source.paths, self.source.ignore)
            self._spawn(self._watch(), "kb-watch")

    async def close(self) -> None:
        if self._model is not None:
            self._model.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for waiter in self._waiters:
            waiter.cancel()

    async def reload(self) -> ReloadResult:
        """Build and swap in the index now (or right after the build under way, which may have read
        the files before the change that asked for this one); the result of that build."""
        waiter: asyncio.Future[ReloadResult] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wanted.set()
        return await asyncio.shield(waiter)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- watching ------------------------------------------------------------------------------

    async def _watch(self) -> None:
        kb = self.settings.kb
        paths, ignore = self.source.paths, self.source.ignore
        while True:
            await asyncio.sleep(kb.watch_interval_s)
            now = await asyncio.to_thread(scan, paths, ignore)
            if now == self._scanned:
                continue
            # a burst of saves (an editor's temporary file and rename, a copy of many files): wait
            # until nothing changed for watch_quiet_s, then build once
            while True:
                await asyncio.sleep(kb.watch_quiet_s)
                later = await asyncio.to_thread(scan, paths, ignore)
                if later == now:
                    break
                now = later
            if now == self._scanned:
                continue  # a reload asked for meanwhile already read these files
            log.info("knowledge base: files changed under %s, rebuilding", ", ".join(str(p) for p in paths))
            await self.reload()

    # -- building ------------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            waiters, self._waiters = self._waiters, []
            result = await self._once()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(result)

    def _build_and_open(self, model: LanguageModel | None) -> tuple[Mapping[str, Any], OpenedIndex]:
        # the files as this build reads them: the watcher compares later scans with this one
        self._scanned = scan(self.source.paths, self.source.ignore)
        report = self.source.build(model)
        return report, self.source.open()

    async def _once(self) -> ReloadResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.builds += 1
        self.status["kb_reload"] = "building"
        engines = self._engines()
        self._model = LoopModel(engines.llm, loop, wait_idle=self._wait_idle) if self.settings.kb.synthesize else None
        try:
            report, opened = await asyncio.to_thread(self._build_and_open, self._model)
        except Exception as err:
            return self._failed(err, loop.time() - started)
        finally:
            self._model = None
            self.status["kb_reload"] = "idle"
        for warning in report.get("warnings") or []:
            log.warning("knowledge base reload: %s", warning)
        before = engines.catalog
        old_passages = before.all_passages() if before is not None else []
        self._swap(opened.retriever)  # between two awaits: new turns search the new index
        seconds = loop.time() - started
        self.status["kb_generation"] = opened.generation
        self.status["kb_reload_error"] = None
        log.info(
            "knowledge base reloaded: %s (%d entries, %d chunks) live in %.1f s",
            opened.generation,
            opened.entries,
            opened.chunks,
            seconds,
        )
        self._announce(
            ev.KbUpdated(
                generation=opened.generation, entries=opened.entries, chunks=opened.chunks, build_ms=seconds * 1000.0
            )
        )
        if self._ahead is not None:
            self._ahead.cancel()
        self._ahead = self._spawn(self._render_and_warm(old_passages), "kb-reload-ahead")
        return ReloadResult(True, opened.generation, seconds, report=report)

    def _failed(self, err: Exception, seconds: float) -> ReloadResult:
        if isinstance(err, AssistantError):
            code, message = err.code, err.message
        elif isinstance(err, OSError):
            code, message = "kb-write", f"{err.strerror or err}{f' ({err.filename})' if err.filename else ''}"
        else:
            code, message = "kb-reload", f"{type(err).__name__}: {err}"
        generation = str(self.status["kb_generation"])
        self.status["kb_reload_error"] = f"{code}: {message}"
        log.error("knowledge base reload failed, %s keeps answering: %s [%s]", generation, message, code)
        self._announce(ev.KbUpdateFailed(generation=generation, code=code, message=message))
        return ReloadResult(False, generation, seconds, code=code, message=message)

    # -- after the swap ------------------------------------------------------------------------

    async def _render_and_warm(self, old_passages: Sequence[Any]) -> None:
        """The work ``assistant.ahead.Background`` does at start, for what the reload added: the FAQ
        answers' audio (already rendered ones are kept by the prerenderer), then the prompt cache
        for the passages whose prompt beginnings are new. Idle time only; failures are logged."""
        engines, ahead = self._engines(), self.settings.ahead
        if engines.prerenderer is not None and ahead.faq_audio:
            try:
                made = await prerender_faq(self.settings, engines.prerenderer, wait_idle=self._wait_idle)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("rendering the new FAQ answers ahead failed (they render on first use): %s", err)
            else:
                log.info("knowledge base reload: %d new FAQ answer(s) rendered for instant replies", made)
        if engines.prompt_cache is None or engines.catalog is None or not ahead.warm_prompts:
            return
        catalog = engines.catalog

        def fresh() -> list[list[Message]]:
            seen = {tuple(m.content for m in b) for b in prompt_beginnings(old_passages)}
            return [b for b in prompt_beginnings(catalog.all_passages()) if tuple(m.content for m in b) not in seen]

        beginnings = await asyncio.to_thread(fresh)
        if not beginnings:
            return
        t0 = time.monotonic()
        try:
            done = await engines.prompt_cache.warm(beginnings, yield_while=self._busy)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning("warming the prompt cache for the new passages failed: %s", err)
        else:
            log.info("prompt cache: %d new passage prompt(s) warmed (%.1f s)", done, time.monotonic() - t0)
