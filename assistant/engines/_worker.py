"""One dedicated thread for a local LLM's blocking calls, and the bridge that streams its text to
the event loop. Shared by the llama.cpp and transformers engines.

Why one thread: a loaded model serves one request at a time, so requests run in arrival order (a
FIFO executor) and any number of sessions share the weights without sharing a KV cache mid-reply.

The contract of a job (``run(put, stop)``, called in the worker thread): call ``put(text)`` for
each piece of the reply (or ``put(GenerateError(...))`` to fail the reply from inside a callback), return when done, and check ``stop`` (a ``threading.Event``) often: it is
set when the consumer closes the iterator or its task is cancelled, and also when the consumer gave
up while the job was still queued (then the job is skipped without touching the model). An
exception escaping the job reaches the consumer once, wrapped by the engine's ``wrap`` into its
stable error code.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from assistant.stages import GenerateError

Put = Callable[[object], None]
"""Hands the consumer a piece of text (``str``) or an error to raise (``GenerateError``)."""
Job = Callable[[Put, threading.Event], None]
"""``run(put, stop)``: the blocking body of one request (see the module note)."""

_END = object()


class ModelWorker:
    """The worker thread of one loaded model."""

    def __init__(self, name: str, *, wrap: Callable[[Exception], GenerateError]) -> None:
        """``wrap`` turns an exception the job raised into the engine's GenerateError (its code and
        message); a GenerateError the job raises itself passes through unchanged."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._wrap = wrap

    async def stream(self, job: Job) -> AsyncGenerator[str]:
        """Run ``job`` in the worker (after every job queued before it) and yield what it puts."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def put(item: object) -> None:
            # The loop may be gone if the consumer's loop closed while the model was working.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def run() -> None:
            if stop.is_set():  # the consumer gave up while this job waited its turn
                put(_END)
                return
            try:
                job(put, stop)
            except GenerateError as err:
                put(err)
            except Exception as err:
                put(self._wrap(err))
            finally:
                put(_END)

        future = loop.run_in_executor(self._executor, run)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, GenerateError):
                    raise item
                yield str(item)
        finally:
            stop.set()
            # The job still runs if we stopped early; it ends at its next check of ``stop``. Nobody
            # awaits it, so retrieve its (always None) result to keep asyncio from warning about it.
            future.add_done_callback(_retrieve)

    async def call(self, job: Job) -> None:
        """Run a job whose output nobody reads (a prefill): returns when it is done; cancelling the
        caller sets ``stop``."""
        stream = self.stream(job)
        try:
            async for _ in stream:
                pass
        finally:
            await stream.aclose()

    async def idle(self) -> None:
        """Wait until every job queued so far has finished (the worker is FIFO)."""
        await asyncio.wrap_future(self._executor.submit(lambda: None))

    def close(self) -> None:
        """Finish the running job, drop queued ones, and stop the thread."""
        self._executor.shutdown(wait=True, cancel_futures=True)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
