"""Everything done ahead of time, so that a reply starts sooner (``[ahead]`` in assistant.toml).

None of it is needed for a right answer; all of it is speculative or idle-time work that must never
delay a turn:

- at start-up, one tiny call through each engine (``preload``), so the first visitor does not pay
  for lazy loading (the voices are loaded before, strictly, by the daemon's start-up check);
- while the visitor talks and at each pause (``Preparer``, the listener's ``prepare`` hook): the
  answer is planned on the transcript so far (retrieval, route), the LLM prefills the grounded
  prompt (``prefill``, ``prefill_guess``), and an FAQ question ends the turn early (``early_faq``);
- in idle time after start (``Background``): the FAQ answers' audio is rendered (``faq_audio``) and
  the LLM's prompt cache filled with every passage's prompt beginning (``warm_prompts``), then kept
  filled after replies.

A wrong guess costs only CPU the turn did not need: prefills give way to any real request, the
warm-up to any turn, and the plan is used only if it was made for exactly the final question.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from assistant import prompts
from assistant.config import Settings
from assistant.errors import AssistantError
from assistant.routing import Plan, grounded_messages, plan_answer
from assistant.stages import (
    Engines,
    Message,
    Passage,
    SpeechPrerenderer,
    Transcript,
    Utterance,
    closing,
)

log = logging.getLogger(__name__)

WARM_STEP = 8
"""Prompts per ``warm`` call: /healthz's progress moves in steps of this many."""
REWARM_QUIET_S = 10.0
"""After replies, the prompt cache is warmed again once the daemon has been quiet this long."""
REWARM_ALL_S = 3600.0
"""At most this often, a re-warm processes every beginning again, not only those known lost."""


# --- at start-up ------------------------------------------------------------------------------


async def preload(engines: Engines, settings: Settings | None = None) -> None:
    """One tiny call through each engine, so the first visitor does not pay for lazy loading. With
    ``settings``, the LLM's call is a grounded prompt in the interface language: its compute buffers
    are sized for real prompts, and its system prompt stays in the KV cache as the prefix the first
    real request reuses. A failing engine is logged (its turns fail with the same message)."""
    t0 = time.monotonic()
    if engines.transcriber is not None:
        await _step("asr", engines.transcriber.transcribe(Utterance(pcm=np.zeros(8000, dtype=np.int16))))
    await _step("retriever", engines.retriever.search("hello", k=1))

    async def llm() -> None:
        messages = [Message("user", "Say OK.")]
        if settings is not None:
            passage = Passage("warm-up", "The front desk opens at 8:30.", "warm-up", 1.0)
            messages = prompts.build_messages("OK?", [passage], [], language=settings.general.language)
        async with closing(engines.llm.stream(messages, max_tokens=2)) as stream:
            async for _ in stream:
                pass

    await _step("llm", llm())
    log.info("engines loaded in %.1f s", time.monotonic() - t0)


async def _step(name: str, work: Awaitable[object]) -> None:
    try:
        await work
    except AssistantError as err:
        # a broken engine fails its turns with this same message; the daemon still serves the rest
        log.warning("loading %s failed: %s [%s]", name, err.message, err.code)


# --- while the visitor talks --------------------------------------------------------------------


def guess_messages(plan: Plan, settings: Settings) -> list[Message] | None:
    """The messages worth prefilling for a partial transcript: the plan's own on the ``generated``
    route; on ``fallback`` (nothing relevant yet, the question half said), those the generated route
    would build from the best candidate if it scores at least ``[ahead] prefill_guess``. The passages
    come before the question in the prompt, so when the finished question lands on the same best
    passage its request reuses the prefill up to the question; when it does not, only the system
    message is shared, and a batch of the guess still under way delays the real request (why it is
    off by default; docs/configuration.md has the measurement). None: nothing worth prefilling."""
    if plan.messages is not None:
        return plan.messages
    floor = settings.ahead.prefill_guess
    if plan.decision.route != "fallback" or floor <= 0:
        return None
    best = max(plan.candidates, key=lambda p: p.score, default=None)
    if best is None or best.score < floor:
        return None
    return grounded_messages(plan.transcript, [best], plan.history, plan.language, settings)


class Preparer:
    """One session's ``prepare`` hook for its listener (``assistant.listening.Prepare``).

    ``transcript`` is the question so far, a partial one while the visitor talks (``answerable``
    None) or the whole of it at a pause. The answer is planned now (retrieval, route), so that:

    - on the ``faq`` route, at a pause, the question is known to be answerable, and the turn may end
      after the short early silence (``[ahead] early_faq``);
    - on the ``generated`` route the LLM processes the prompt while the visitor is still talking or
      the endpoint is still being decided (``[ahead] prefill``); the turn's request then reuses it
      from the KV cache (all of it when the question is the same; else the common prefix: system
      prompt, history and the passages, which come before the question).

    The latest plan is kept (``take``) for the turn, which uses it only if it fits the final question.
    """

    def __init__(
        self,
        engines: Engines,
        settings: Settings,
        *,
        history: Callable[[], Sequence[Message]],
        is_echo: Callable[[str], bool] | None = None,
    ) -> None:
        """``history``: the session's conversation now; ``is_echo``: whether a transcript is the
        kiosk's own voice (nothing is prepared for it)."""
        self.engines = engines
        self.settings = settings
        self._history = history
        self._is_echo = is_echo
        self._plan: Plan | None = None

    @property
    def plan(self) -> Plan | None:
        """The latest plan (kept)."""
        return self._plan

    def take(self) -> Plan | None:
        """The latest plan, once (the next question starts afresh)."""
        plan, self._plan = self._plan, None
        return plan

    async def __call__(self, transcript: Transcript, answerable: Callable[[], None] | None) -> None:
        ahead = self.settings.ahead
        if answerable is None and ahead.prefill != "speech":
            return  # a partial transcript is only worth planning to prefill on
        if self._is_echo is not None and self._is_echo(transcript.text):
            return
        plan = await plan_answer(transcript, self._history(), engines=self.engines, settings=self.settings)
        self._plan = plan
        log.debug(
            "planned ahead (%s) %r -> %s %s",
            "partial" if answerable is None else "pause",
            transcript.text,
            plan.decision.route,
            [p.id for p in plan.decision.passages],
        )
        if plan.decision.route == "faq":
            if answerable is not None and ahead.early_faq:
                answerable()
        elif ahead.prefill != "off" and self.engines.prefiller is not None:
            # at a pause only the plan's own prompt; on a partial also a guess
            messages = plan.messages if answerable is not None else guess_messages(plan, self.settings)
            if messages is not None:
                await self.engines.prefiller.prefill(messages)


# --- in idle time -----------------------------------------------------------------------------


async def prerender_faq(
    settings: Settings, prerenderer: SpeechPrerenderer, *, wait_idle: Callable[[], Awaitable[None]] | None = None
) -> int:
    """Render the index's FAQ answers, and the "I don't know" lines of the fallback route, into the
    instant-reply audio (each unit in its language's voice); returns how many were new. Nothing
    with ``[ahead] faq_audio`` off."""
    from assistant.kb import faq_answers

    if not settings.ahead.faq_audio:
        return 0
    answers = await asyncio.to_thread(faq_answers, settings)  # reads the index's records from disk
    texts = [*answers, prompts.fallback_line("zh"), prompts.fallback_line("en")]
    return await prerenderer.prerender(texts, wait_idle=wait_idle)


def prompt_beginnings(passages: Sequence[Passage]) -> list[list[Message]]:
    """Every first-turn prompt beginning (``prompts.passage_prefix``), in the order to warm them.

    A document is also asked about in the other language (an English question over the Chinese
    staff handbook), whose system message differs, so it gets both beginnings; an FAQ phrasing gets
    its own language's. Sorted, so that each beginning shares the most with the one just before it:
    llama.cpp loads a cached state only when it shares more with the new prompt than the slot's own
    does, and a loaded state leaves the cache, so in this order no warmed state is taken out by the
    next one (unsorted, "How do I print?" took "How do I book a meeting room?"'s state)."""
    beginnings = [
        prompts.passage_prefix(p, language=language)
        for p in passages
        for language in (("zh", "en") if p.kind == "document" else ("",))
    ]
    beginnings.sort(key=lambda messages: [m.content for m in messages])
    return beginnings


class Background:
    """The daemon's idle-time work: the FAQ answers' audio, then the LLM's prompt cache (both at
    once would slow each other down). ``status`` is for /healthz (``faq_audio``: rendering / ready /
    failed; ``prompt_cache``: waiting / warming N/M / ready / failed)."""

    def __init__(
        self,
        engines: Engines,
        settings: Settings,
        *,
        busy: Callable[[], bool],
        wait_idle: Callable[[], Awaitable[None]],
        replies: Callable[[], int],
    ) -> None:
        """``busy()``: a visitor is heard or answered somewhere (plain reads: called from an engine's
        thread); ``wait_idle()``: returns once no turn runs; ``replies()``: replies finished so far."""
        self.engines = engines
        self.settings = settings
        self._busy = busy
        self._wait_idle = wait_idle
        self._replies = replies
        self.status: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        faq = None
        if self.engines.prerenderer is not None and self.settings.ahead.faq_audio:
            self.status["faq_audio"] = "rendering"
            faq = self._spawn(self._faq_audio())
        if self.engines.prompt_cache is not None and self.engines.catalog is not None and self.settings.ahead.warm_prompts:
            self.status["prompt_cache"] = "waiting"
            self._spawn(self._prompt_cache(faq))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _faq_audio(self) -> None:
        """Render the FAQ answers into the instant-reply audio (kept on disk, so only the first start
        after a knowledge-base change pays for it)."""
        t0 = time.monotonic()
        assert self.engines.prerenderer is not None
        try:
            made = await prerender_faq(self.settings, self.engines.prerenderer, wait_idle=self._wait_idle)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self.status["faq_audio"] = "failed"
            log.warning("rendering the FAQ answers ahead failed (they render on first use): %s", err)
        else:
            self.status["faq_audio"] = "ready"
            log.info("FAQ answers ready for instant replies (%s rendered now, %.1f s)", made, time.monotonic() - t0)

    async def _prompt_cache(self, after: asyncio.Task[None] | None) -> None:
        """Fill the LLM's prompt cache with the start of every first-turn prompt, one per passage, in
        idle time; a later question whose best passage is one of them has only its question left to
        process. Then keep it filled (``_rewarm``)."""
        cache, catalog = self.engines.prompt_cache, self.engines.catalog
        assert cache is not None and catalog is not None
        if after is not None:
            await asyncio.wait({after})
        beginnings = prompt_beginnings(catalog.all_passages())
        total = len(beginnings)
        self.status["prompt_cache"] = f"warming 0/{total}"
        t0 = time.monotonic()
        done = 0
        try:
            for i in range(0, total, WARM_STEP):
                done += await cache.warm(beginnings[i : i + WARM_STEP], yield_while=self._busy)
                self.status["prompt_cache"] = f"warming {done}/{total}"
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self.status["prompt_cache"] = "failed"
            log.warning("warming the LLM's prompt cache failed (prompts are processed in full): %s", err)
            return
        self.status["prompt_cache"] = "ready"
        log.info("prompt cache: %d passage prompts ready (%.1f s)", done, time.monotonic() - t0)
        await self._rewarm(beginnings)

    async def _rewarm(self, beginnings: list[list[Message]]) -> None:
        """A request that shares only part of a warmed state (a question whose passage is in another
        language, a follow-up) may load that state and overwrite its tail; the engine notes which, and
        after replies, once the kiosk is quiet again, those are rebuilt. Every ``REWARM_ALL_S`` all are
        processed again (one still cached costs a load and a save, ~70 ms here), which also keeps them
        from being the oldest states when the cache fills up with turns."""
        cache = self.engines.prompt_cache
        assert cache is not None
        loop = asyncio.get_running_loop()  # its clock: a test loop may run on virtual time
        last_all = loop.time()
        while True:
            seen = self._replies()
            quiet_since = loop.time()
            while self._replies() == seen or loop.time() - quiet_since < REWARM_QUIET_S:
                await asyncio.sleep(min(1.0, REWARM_QUIET_S / 2))
                if self._busy():
                    quiet_since = loop.time()
            again = loop.time() - last_all >= REWARM_ALL_S
            try:
                await cache.warm(beginnings, yield_while=self._busy, again=again)
            except Exception as err:
                log.warning("re-warming the LLM's prompt cache failed: %s", err)
                return
            if again:
                last_all = loop.time()
