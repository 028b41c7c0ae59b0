"""``assistant run``: load the engines once, preload them, serve HTTP + WebSocket, stop cleanly on a signal."""

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

from assistant import config
from assistant.config import Settings
from assistant.stages import AsyncClosing, Closing, Engines

if TYPE_CHECKING:
    from assistant.daemon import Daemon
    from assistant.owner import OwnerDesk

log = logging.getLogger("assistant.daemon")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.host:
        settings.server.host = args.host
    if args.port is not None:
        settings.server.port = args.port
    if args.wyoming:
        settings.wyoming.enabled = True
        settings.wyoming.uri = args.wyoming
    if args.openai:
        settings.openai.enabled = True
        settings.openai.uri = args.openai
    config.validate(settings, "the command line (--host, --port, --wyoming, --openai) or its configuration")
    return asyncio.run(serve(settings))


async def check_ready(engines: Engines) -> None:
    """What a turn needs and ``registry.engines`` does not load up front, loaded now, so that a
    missing voice stops ``run`` before it serves instead of failing every turn after it. (Models
    and the index are loaded by ``registry.engines`` itself: a missing or damaged one raises there.)
    Raises ``AssistantError``."""
    if engines.preloader is not None:
        # the configured voices ([tts] voice, voice_zh) and their engines; a voice with a fallback
        # that is there falls back (with a warning) instead of failing
        await engines.preloader.preload()


def owner_desk(settings: Settings, daemon: Daemon) -> OwnerDesk | None:
    """The owner's page's desk (``/admin``), when ``[admin] token`` is set; the daemon reloads the
    index after an edit when it can (``assistant.owner.Reloading``)."""
    from assistant import registry
    from assistant.owner import OwnerDesk

    if not settings.admin.token:
        return None
    return OwnerDesk(
        queue_path=registry.queue_path(settings),
        learned_path=settings.path(settings.admin.learned_path),
        audit_path=settings.path(settings.admin.audit_path),
        embedder=lambda: registry.kb_embedder(settings),
        catalog=lambda: daemon.engines.catalog,
        reloader=daemon,
        similarity=settings.admin.group_similarity,
    )


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
    local_audio: bool = True,
) -> int:
    """Run the daemon until ``stop`` is set or SIGINT/SIGTERM arrives. Returns the exit code."""
    from assistant import ahead, registry, tuning
    from assistant.daemon import Daemon
    from assistant.server.app import AssistantServer

    started = time.monotonic()
    log.info("answer thresholds: %s", tuning.describe(settings))
    engines = await asyncio.to_thread(registry.engines, settings)
    recorder = None
    try:
        await check_ready(engines)
        await ahead.preload(engines, settings)
        recorder = registry.queue_recorder(settings)  # returns at once: the writer opens the file on its thread
        # live reload ([kb] watch, the owner's page) rebuilds on the embedders the live index loaded
        daemon = Daemon(settings, engines, recorder=recorder, index=registry.index_source(settings, engines.retriever))
        server = AssistantServer(settings, daemon, metrics=daemon.metrics, desk=owner_desk(settings, daemon))
        await server.start()
        wyoming = None
        if settings.wyoming.enabled:
            from assistant.commands.wyoming import wyoming_server

            wyoming = wyoming_server(settings, daemon)
            try:
                await wyoming.start()
            except BaseException:
                await server.close()
                raise
        openai = None
        if settings.openai.enabled:
            from assistant.commands.openai_api import openai_server

            try:
                openai = openai_server(settings, daemon)
                await openai.start()
            except BaseException:
                if wyoming is not None:
                    await wyoming.close()
                await server.close()
                raise
    except BaseException:
        # llama.cpp's threads, a TTS worker process: left running, they abort the interpreter at exit
        await close_engines(engines)
        if recorder is not None:
            await asyncio.to_thread(recorder.close)
        raise
    if local_audio:
        from assistant.audio.soundcard import SoundCard

        card = await SoundCard.open(settings)
        if card is None:
            log.info("no local sound card: the kiosk session is browser-only (avatar pages and their microphones)")
        else:
            daemon.attach_local_audio(card)
    background = ahead.Background(
        daemon.engines, settings, busy=daemon.busy, wait_idle=daemon.wait_idle, replies=lambda: daemon.replies
    )
    daemon.background = background.status
    background.start()

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)
    if wyoming is not None:
        print(f"assistant: Wyoming on {wyoming.url} (asr, tts, handle)", flush=True)
    if openai is not None:
        print(f"assistant: OpenAI-compatible API on {openai.url}", flush=True)
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
        await background.close()
        if wyoming is not None:
            await wyoming.close()
        if openai is not None:
            await openai.close()
        await daemon.close()
        await server.close()
        if recorder is not None:
            await asyncio.to_thread(recorder.close)  # what the last turns queued is written first
        await close_engines(engines)
    print("assistant: stopped", file=sys.stderr, flush=True)
    return 0


async def close_engines(engines: Engines) -> None:
    """Stop the engines' worker threads, processes and connections before the interpreter exits
    (llama.cpp's loop, a TTS worker process; left running, native threads abort the process at exit).
    The voice router closes the engines it made."""
    for engine in (engines.transcriber, engines.retriever, engines.llm, engines.synthesizer):
        try:
            if isinstance(engine, AsyncClosing):
                await engine.aclose()
            elif isinstance(engine, Closing):
                await asyncio.to_thread(engine.close)
        except Exception as err:
            log.warning("closing %s failed: %s", type(engine).__name__, err)
