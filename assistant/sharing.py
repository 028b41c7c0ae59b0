"""Fair sharing of one set of engines between concurrent sessions.

Every session's turn uses the same model instances. Each stage gets a FIFO gate: a call waits its
turn instead of failing, and waiters are served in arrival order, so no session starves. The gate
is held per unit of work the engine can do alone: one transcription, one search, one whole LLM
stream (a model generates one reply at a time), one sentence of speech (so two sessions speaking
interleave sentence by sentence). Stages still overlap across sessions: one session's reply is
synthesised while another's is generated.

Capabilities pass through explicitly (``share``): the prefiller is wrapped so that it pauses while
speech recognition has work; the others (voices, the passage catalog, the prompt cache, the
prerenderer, the turn detector: one short inference per pause, thread-safe) need no gate and are
handed on as they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace

from assistant.stages import (
    AudioChunk,
    Engines,
    LanguageModel,
    Message,
    Passage,
    PassageCatalog,
    Prefiller,
    Retriever,
    Synthesizer,
    Transcriber,
    Transcript,
    Utterance,
    Voice,
    closing,
)


class Gate:
    """A FIFO semaphore that knows whether anyone holds it or waits for it, and how many got in."""

    def __init__(self, name: str, capacity: int = 1) -> None:
        self.name = name
        self.capacity = max(1, capacity)
        self._sem = asyncio.Semaphore(self.capacity)
        self.waiting = 0
        self.entries = 0

    async def __aenter__(self) -> None:
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        self.entries += 1

    async def __aexit__(self, *exc: object) -> None:
        self._sem.release()

    @property
    def busy(self) -> bool:
        """A caller holds the gate or waits for it. Plain reads: safe from an engine's thread."""
        return self.waiting > 0 or self._sem.locked()


class FairTranscriber:
    def __init__(self, inner: Transcriber) -> None:
        self.inner = inner
        self.gate = Gate("asr")

    async def transcribe(self, utterance: Utterance) -> Transcript:
        async with self.gate:
            return await self.inner.transcribe(utterance)


class FairRetriever:
    def __init__(self, inner: Retriever, gate: Gate | None = None) -> None:
        """``gate``: the one to queue at (a reloaded index shares its predecessor's)."""
        self.inner = inner
        self.gate = gate or Gate("retrieve")

    async def search(self, query: str, *, k: int) -> list[Passage]:
        async with self.gate:
            return await self.inner.search(query, k=k)


class FairLanguageModel:
    def __init__(self, inner: LanguageModel) -> None:
        self.inner = inner
        self.gate = Gate("llm")

    async def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float | None = None
    ) -> AsyncIterator[str]:
        # Closing this generator (the turn does, also on cancel) closes the inner stream, which stops
        # generation, and only then releases the gate: the next session never shares a busy model.
        async with self.gate:
            async with closing(self.inner.stream(messages, max_tokens=max_tokens, temperature=temperature)) as inner:
                async for delta in inner:
                    yield delta


class YieldingPrefiller:
    """A ``Prefiller`` that pauses while any of ``yields_to`` (the gates of stages on a turn's
    critical path: speech recognition) is busy. Not gated itself: a prefill is speculative, and the
    engine drops it when a real stream needs the model. On a small CPU a prefill and Whisper slow
    each other down several times over, and the transcript comes first."""

    def __init__(self, inner: Prefiller, yields_to: Sequence[Gate]) -> None:
        self.inner = inner
        self.yields_to = tuple(yields_to)

    async def prefill(self, messages: list[Message], *, yield_while: Callable[[], bool] | None = None) -> bool:
        gates = self.yields_to

        def busy() -> bool:
            return any(g.busy for g in gates) or (yield_while is not None and yield_while())

        return await self.inner.prefill(messages, yield_while=busy if gates or yield_while else None)


class FairSynthesizer:
    def __init__(self, inner: Synthesizer) -> None:
        self.inner = inner
        self.gate = Gate("tts")

    async def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
        async with self.gate:
            async with closing(self.inner.synthesize(sentence, voice=voice)) as inner:
                async for chunk in inner:
                    yield chunk


def share(engines: Engines) -> tuple[Engines, list[Gate]]:
    """The same engines behind FIFO gates, each capability passed on, and the gates (to report
    queueing)."""
    transcriber = FairTranscriber(engines.transcriber) if engines.transcriber is not None else None
    retriever = FairRetriever(engines.retriever)
    llm = FairLanguageModel(engines.llm)
    synthesizer = FairSynthesizer(engines.synthesizer) if engines.synthesizer is not None else None
    gates = [g.gate for g in (transcriber, retriever, llm, synthesizer) if g is not None]
    prefiller = (
        YieldingPrefiller(engines.prefiller, [transcriber.gate] if transcriber is not None else [])
        if engines.prefiller is not None
        else None
    )
    wrapped = replace(
        engines, transcriber=transcriber, retriever=retriever, llm=llm, synthesizer=synthesizer, prefiller=prefiller
    )
    return wrapped, gates


def with_retriever(engines: Engines, retriever: Retriever) -> Engines:
    """``engines`` searching ``retriever`` instead (a reloaded index, ``assistant.reload``): behind the
    same gate when they were shared, and with its passage catalog. Engines are immutable, so a turn
    that holds the old ones finishes on the old index."""
    fair = FairRetriever(retriever, engines.retriever.gate) if isinstance(engines.retriever, FairRetriever) else retriever
    return replace(engines, retriever=fair, catalog=retriever if isinstance(retriever, PassageCatalog) else None)

