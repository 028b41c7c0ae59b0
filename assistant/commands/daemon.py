"""``assistant run``: load the engines once, warm them, serve HTTP + WebSocket, stop cleanly on a signal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from assistant.config import Settings
from assistant.stages import AssistantError, Message, Passage, Utterance

if TYPE_CHECKING:
    from assistant.daemon import Daemon

log = logging.getLogger("assistant.daemon")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "host", None):
        settings.server.host = args.host
    if getattr(args, "port", None):
        settings.server.port = args.port
    return asyncio.run(serve(settings))


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
    local_audio: bool = True,
) -> int:
    """Run the daemon until ``stop`` is set or SIGINT/SIGTERM arrives. Returns the exit code."""
    from assistant.daemon import Daemon
    from assistant.models import describe_tuned
    from assistant.server.app import AssistantServer
    from assistant.turn import Engines

    started = time.monotonic()
    log.info("answer thresholds: %s", describe_tuned(settings))
    engines = await asyncio.to_thread(Engines.from_settings, settings)
    await warm(engines, settings)
    daemon = Daemon(settings, engines)
    server = AssistantServer(settings, daemon, metrics=daemon.metrics)
    await server.start()
    background: set[asyncio.Task[None]] = set()
    if local_audio:
        from assistant.server.soundcard import SoundCard

        card = await SoundCard.open(settings)
        if card is None:
            log.info("no local sound card: the kiosk session is browser-only (avatar pages and their microphones)")
        else:
            daemon.attach_local_audio(card)
    prerender = getattr(engines.synthesizer, "prerender", None)
    if prerender is not None and settings.tts.faq_cache:
        from assistant.tts.faq import prerender_faq

        daemon.background["faq_cache"] = "rendering"
        task = asyncio.create_task(_prerender(daemon, prerender_faq(settings, engines.synthesizer, wait_idle=daemon.wait_idle)))  # type: ignore[arg-type]
        background.add(task)
        task.add_done_callback(background.discard)
    if settings.llm.warm_passages and getattr(engines.llm, "prompt_cache_mib", 0) > 0:
        after = list(background)  # the FAQ audio first: both at once would slow each other down
        daemon.background["prompt_cache"] = "waiting"
        task = asyncio.create_task(_warm_prompts(daemon, after))
        background.add(task)
        task.add_done_callback(background.discard)

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)
    print(f"assistant: serving {server.url} (ready in {time.monotonic() - started:.1f} s)", flush=True)
    if on_ready is not None:
        on_ready(server.url)
    try:
        await stop.wait()
    finally:
        log.info("shutting down: cancelling turns, closing clients")
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        for task in background:
            task.cancel()
        await daemon.close()
        await server.close()
        await close_engines(engines)
    print("assistant: stopped", file=sys.stderr, flush=True)
    return 0


async def _prerender(daemon: Daemon, coro: object) -> None:
    """Render the FAQ answers into the instant-reply cache in the background (cached on disk, so
    only the first start after a knowledge-base change pays for it)."""
    t0 = time.monotonic()
    try:
        made = await coro  # type: ignore[misc]
    except asyncio.CancelledError:
        raise
    except Exception as err:
        daemon.background["faq_cache"] = "failed"
        log.warning("rendering the FAQ answers ahead failed (they render on first use): %s", err)
    else:
        daemon.background["faq_cache"] = "ready"
        log.info("FAQ answers ready for instant replies (%s rendered now, %.1f s)", made, time.monotonic() - t0)


async def _warm_prompts(daemon: Daemon, after: list[asyncio.Task[None]]) -> None:
    """Fill the LLM's prompt cache with the start of every first-turn prompt, one per passage
    (assistant.prompts.passage_prefix), in idle time: a later question whose best passage is
    one of them has only its question left to process. /healthz shows ``prompt_cache``."""
    from assistant import prompts

    if after:
        await asyncio.wait(after)
    passages = daemon.engines.retriever.all_passages()  # type: ignore[attr-defined]
    # A document is also asked about in the other language (an English question over the Chinese
    # staff handbook), whose system message differs, so it gets both beginnings; an FAQ phrasing
    # gets its own language's ("" = the passage's).
    prefixes = [
        prompts.passage_prefix(p, language=language)
        for p in passages
        for language in (("zh", "en") if p.kind == "document" else ("",))
    ]
    # Sorted, so that each beginning shares the most with the one just before it. llama.cpp loads a
    # cached state only when it shares more with the new prompt than the slot's own does, and a
    # loaded state leaves the cache (its tail is overwritten): in this order no warmed state is
    # taken out by the next one. Measured: unsorted, "How do I print?" took "How do I book a
    # meeting room?"'s state, and the latter's first token was no faster than without a cache.
    prefixes.sort(key=lambda messages: [m.content for m in messages])
    total = len(prefixes)
    daemon.background["prompt_cache"] = f"warming 0/{total}"
    llm = daemon.engines.llm
    t0 = time.monotonic()
    done = 0
    try:
        for i in range(0, total, WARM_STEP):
            done += await llm.warm(prefixes[i : i + WARM_STEP], yield_while=daemon.busy)  # type: ignore[attr-defined]
            daemon.background["prompt_cache"] = f"warming {done}/{total}"
    except asyncio.CancelledError:
        raise
    except Exception as err:
        daemon.background["prompt_cache"] = "failed"
        log.warning("warming the LLM's prompt cache failed (prompts are processed in full): %s", err)
        return
    daemon.background["prompt_cache"] = "ready"
    log.info("prompt cache: %d passage prompts ready (%.1f s)", done, time.monotonic() - t0)
    # A request that shares only part of a warmed state (a question whose passage is in another
    # language, a follow-up) may load that state and overwrite its tail; the engine notes which,
    # and after replies, once the kiosk is quiet again, those are rebuilt. Every REWARM_ALL_S all
    # are processed again (one still cached costs a load and a save, ~70 ms here), which also keeps
    # them from being the oldest states when the cache fills up with turns.
    last_all = time.monotonic()
    while True:
        seen = daemon.replies
        quiet_since = time.monotonic()
        while daemon.replies == seen or time.monotonic() - quiet_since < REWARM_QUIET_S:
            await asyncio.sleep(min(1.0, REWARM_QUIET_S / 2))
            if daemon.busy():
                quiet_since = time.monotonic()
        again = time.monotonic() - last_all >= REWARM_ALL_S
        try:
            await llm.warm(prefixes, yield_while=daemon.busy, again=again)  # type: ignore[attr-defined]
        except Exception as err:
            log.warning("re-warming the LLM's prompt cache failed: %s", err)
            return
        if again:
            last_all = time.monotonic()


WARM_STEP = 8
"""Prompts per ``warm`` call: /healthz's progress moves in steps of this many."""
REWARM_QUIET_S = 10.0
"""After replies, the prompt cache is warmed again once the daemon has been quiet this long."""
REWARM_ALL_S = 3600.0
"""At most this often, a re-warm processes every beginning again, not only those known lost."""


async def close_engines(engines: object) -> None:
    """Stop the engines' worker threads and processes before the interpreter exits: llama.cpp's
    loop, a TTS worker process. Left running, native threads abort the process at exit."""
    synthesizer = getattr(engines, "synthesizer", None)
    parts = [getattr(engines, name, None) for name in ("transcriber", "retriever", "llm")]
    # the voice router holds one engine per voice kind; close those too
    parts += [*list(getattr(synthesizer, "_engines", {}).values()), synthesizer]
    for engine in parts:
        if engine is None:
            continue
        try:
            if hasattr(engine, "aclose"):
                await engine.aclose()
            elif hasattr(engine, "close"):
                await asyncio.to_thread(engine.close)
        except Exception as err:
            log.warning("closing %s failed: %s", type(engine).__name__, err)


async def warm(engines: object, settings: Settings | None = None) -> None:
    """One tiny call through each engine, so the first visitor does not pay for lazy loading.
    With ``settings``, the LLM's warm-up is a grounded prompt in the interface language: its
    compute buffers are sized for real prompts, and its system prompt stays in the KV cache as the
    prefix the first real request reuses."""
    t0 = time.monotonic()
    transcriber = getattr(engines, "transcriber", None)
    if transcriber is not None:
        await _warm_step("asr", transcriber.transcribe(Utterance(pcm=np.zeros(8000, dtype=np.int16))))
    await _warm_step("retriever", engines.retriever.search("hello", k=1))  # type: ignore[attr-defined]

    async def llm() -> None:
        messages = [Message("user", "Say OK.")]
        if settings is not None:
            from assistant import prompts

            passage = Passage("warm-up", "The front desk opens at 8:30.", "warm-up", 1.0)
            messages = prompts.build_messages("OK?", [passage], [], language=settings.general.language)
        stream = engines.llm.stream(messages, max_tokens=2)  # type: ignore[attr-defined]
        try:
            async for _ in stream:
                pass
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    await _warm_step("llm", llm())
    synthesizer = getattr(engines, "synthesizer", None)
    if synthesizer is not None:
        warm_tts = getattr(synthesizer, "warm", None)
        if warm_tts is not None:
            await _warm_step("tts", warm_tts())
    log.info("engines warm in %.1f s", time.monotonic() - t0)


async def _warm_step(name: str, coro: object) -> None:
    try:
        await coro  # type: ignore[misc]
    except AssistantError as err:
        # a broken engine fails its turns with this same message; the daemon still serves the rest
        log.warning("warming %s failed: %s [%s]", name, err.message, err.code)
