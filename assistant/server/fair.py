"""Fair sharing of one set of engines between concurrent sessions.

Every session's turn uses the same model instances. Each stage gets a FIFO gate: a call waits its
turn instead of failing, and waiters are served in arrival order, so no session starves. The gate
is held per unit of work the engine can do alone: one transcription, one search, one whole LLM
stream (a model generates one reply at a time unless the engine says otherwise), one sentence of
speech (so two sessions speaking interleave sentence by sentence). Stages still overlap across
sessions: one session's reply is synthesised while another's is generated.

An engine that serves several callers at once itself (a remote server, a batched model) can say so
with an integer ``max_concurrency`` attribute; the gate then admits that many.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace

from assistant.stages import (
    AudioChunk,
    LanguageModel,
    Message,
    Passage,
    Synthesizer,
    Transcriber,
    Transcript,
    Utterance,
    Voice,
)
from assistant.turn import Engines


class Gate:
    """A FIFO semaphore that also counts how long callers waited (for /metrics and the benchmark)."""

    def __init__(self, name: str, capacity: int = 1) -> None:
        self.name = name
        self.capacity = max(1, capacity)
        self._sem = asyncio.Semaphore(self.capacity)
        self.waiting = 0
        self.wait_ms_total = 0.0
        self.entries = 0

    async def __aenter__(self) -> None:
        self.waiting += 1
        started = time.monotonic()
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        self.entries += 1
        self.wait_ms_total += (time.monotonic() - started) * 1000.0

    async def __aexit__(self, *exc: object) -> None:
        self._sem.release()

    @property
    def busy(self) -> bool:
        """A caller holds the gate or waits for it. Plain reads: safe from an engine's thread."""
        return self.waiting > 0 or self._sem.locked()


def _capacity(engine: object) -> int:
    value = getattr(engine, "max_concurrency", 1)
    return value if isinstance(value, int) and value > 0 else 1


class FairTranscriber:
    def __init__(self, inner: Transcriber) -> None:
        self.inner = inner
        self.gate = Gate("asr", _capacity(inner))

    async def transcribe(self, utterance: Utterance) -> Transcript:
        async with self.gate:
            return await self.inner.transcribe(utterance)


class FairRetriever:
    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.gate = Gate("retrieve", _capacity(inner))

    async def search(self, query: str, *, k: int) -> list[Passage]:
        async with self.gate:
            return await self.inner.search(query, k=k)  # type: ignore[attr-defined, no-any-return]

    def all_passages(self) -> list[Passage]:
        """Every passage the index holds (``IndexRetriever.all_passages``); none for a retriever without."""
        passages = getattr(self.inner, "all_passages", None)
        return list(passages()) if passages is not None else []


class FairLanguageModel:
    def __init__(self, inner: LanguageModel, *, prefill_yields_to: Sequence[Gate] = ()) -> None:
        """``prefill_yields_to``: gates of stages on a turn's critical path (speech recognition);
        a speculative prefill pauses while any of them is busy."""
        self.inner = inner
        self.gate = Gate("llm", _capacity(inner))
        self.prefill_yields_to = tuple(prefill_yields_to)

    async def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float | None = None
    ) -> AsyncIterator[str]:
        # Closing this generator (the turn does, also on cancel) closes the inner stream, which stops
        # generation, and only then releases the gate: the next session never shares a busy model.
        async with self.gate:
            inner = self.inner.stream(messages, max_tokens=max_tokens, temperature=temperature)
            try:
                async for delta in inner:
                    yield delta
            finally:
                aclose = getattr(inner, "aclose", None)
                if aclose is not None:
                    await aclose()

    async def prefill(self, messages: list[Message]) -> bool:
        """Passed straight to the engine, without the gate: a prefill is speculative, and the
        engine itself drops it when a real stream needs the model (assistant.stages.Prefiller).
        It pauses while speech recognition runs or waits (``prefill_yields_to``): on a small CPU
        the two slow each other down several times over, and the transcript comes first."""
        prefill = getattr(self.inner, "prefill", None)
        if prefill is None:
            return False
        gates = self.prefill_yields_to
        return bool(await prefill(messages, yield_while=(lambda: any(g.busy for g in gates)) if gates else None))

    async def warm(
        self, prompts: Sequence[list[Message]], *, yield_while: Callable[[], bool] | None = None, again: bool = False
    ) -> int:
        """Passed straight to the engine (assistant.stages.PromptCache), without the gate: the
        engine gives way to any real request itself, and to ``yield_while``."""
        warm = getattr(self.inner, "warm", None)
        return int(await warm(prompts, yield_while=yield_while, again=again)) if warm is not None else 0


class FairSynthesizer:
    def __init__(self, inner: Synthesizer) -> None:
        self.inner = inner
        self.gate = Gate("tts", _capacity(inner))

    async def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
        async with self.gate:
            inner = self.inner.synthesize(sentence, voice=voice)
            try:
                async for chunk in inner:
                    yield chunk
            finally:
                aclose = getattr(inner, "aclose", None)
                if aclose is not None:
                    await aclose()


def fair_engines(engines: Engines) -> tuple[Engines, list[Gate]]:
    """The same engines behind FIFO gates, and the gates (to report queueing)."""
    transcriber = FairTranscriber(engines.transcriber) if engines.transcriber is not None else None
    retriever = FairRetriever(engines.retriever)
    llm = FairLanguageModel(engines.llm, prefill_yields_to=[transcriber.gate] if transcriber is not None else [])
    synthesizer = FairSynthesizer(engines.synthesizer) if engines.synthesizer is not None else None
    gates = [g.gate for g in (transcriber, retriever, llm, synthesizer) if g is not None]
    wrapped = replace(engines, transcriber=transcriber, retriever=retriever, llm=llm, synthesizer=synthesizer)
    return wrapped, gates
