"""The embedded llama.cpp engine with the real Qwen2.5 0.5B pack: streaming, stopping, sharing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from assistant.config import LLM, Settings
from assistant.engines.llamacpp import LlamaCppModel
from assistant.stages import LanguageModel, Message, ModelMissingError

ROOT = Path(__file__).resolve().parent.parent
GGUF = ROOT / "models" / "qwen2.5-0.5b" / "model.gguf"
LONG = [Message("user", "Write a very long story about a cat named Tom, with many chapters.")]

embedded = [
    pytest.mark.embedded,
    pytest.mark.slow,
    pytest.mark.skipif(not GGUF.exists(), reason="run `assistant models fetch qwen2.5-0.5b` first"),
]


@pytest.fixture(scope="module")
def model() -> Iterator[LlamaCppModel]:
    m = LlamaCppModel(GGUF, context_tokens=1024, threads=2, temperature=0.0, metrics=True)
    yield m
    m.close()


def predicted_tokens(m: LlamaCppModel) -> int:
    match = re.search(r"^llamacpp:tokens_predicted_total (\d+)", m.metrics(), re.MULTILINE)
    assert match, "llama.cpp metrics lack tokens_predicted_total"
    return int(match.group(1))


async def idle(m: LlamaCppModel) -> None:
    await m.idle()


async def collect(stream: AsyncIterator[str]) -> list[str]:
    return [d async for d in stream]


def test_missing_model_names_the_fetch_command(tmp_path: Path) -> None:
    settings = Settings(root=tmp_path, llm=LLM(model="qwen2.5-0.5b"))
    with pytest.raises(ModelMissingError) as info:
        LlamaCppModel.from_settings(settings)
    assert "assistant models fetch qwen2.5-0.5b" in info.value.message


def test_missing_explicit_path(tmp_path: Path) -> None:
    settings = Settings(root=tmp_path, llm=LLM(model_path="nowhere/model.gguf"))
    with pytest.raises(ModelMissingError, match="model_path"):
        LlamaCppModel.from_settings(settings)


class TestEmbedded:
    pytestmark = embedded

    def test_is_a_language_model(self, model: LlamaCppModel) -> None:
        assert isinstance(model, LanguageModel)

    async def test_streams_text_deltas(self, model: LlamaCppModel) -> None:
        messages = [
            Message("system", "You answer in one short sentence."),
            Message("user", "What colour is the sky on a clear day?"),
        ]
        deltas = await collect(model.stream(messages, max_tokens=24))
        assert len(deltas) > 1  # streamed, not one block
        assert all(isinstance(d, str) and d for d in deltas)
        assert "blue" in "".join(deltas).lower()

    async def test_a_temperature_given_to_stream_overrides_the_configured_one(self, model: LlamaCppModel) -> None:
        messages = [Message("user", "Name three fruits.")]
        greedy = "".join(await collect(model.stream(messages, max_tokens=12)))  # the fixture's 0.0
        model.temperature = 5.0  # sampling this hot would scramble the reply
        try:
            again = ["".join(await collect(model.stream(messages, max_tokens=12, temperature=0.0))) for _ in range(2)]
        finally:
            model.temperature = 0.0
        assert again == [greedy, greedy]

    async def test_closing_the_stream_stops_generation(self, model: LlamaCppModel) -> None:
        await idle(model)
        before = predicted_tokens(model)
        stream = model.stream(LONG, max_tokens=400)
        got = []
        async for delta in stream:
            got.append(delta)
            if len(got) == 3:
                break
        await stream.aclose()
        await idle(model)
        # 400 tokens were allowed; llama.cpp decoded only up to the chunk after we stopped.
        assert predicted_tokens(model) - before <= 6

    async def test_cancelling_the_consumer_stops_generation(self, model: LlamaCppModel) -> None:
        await idle(model)
        before = predicted_tokens(model)
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in model.stream(LONG, max_tokens=400):
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), timeout=60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await idle(model)
        assert predicted_tokens(model) - before <= 6

    async def test_concurrent_callers_share_one_model_safely(self, model: LlamaCppModel) -> None:
        a = [Message("user", "Reply with one word: the capital of France.")]
        b = [Message("user", "Reply with one number: 2 + 2.")]
        solo_a = "".join(await collect(model.stream(a, max_tokens=4)))
        solo_b = "".join(await collect(model.stream(b, max_tokens=4)))
        together = await asyncio.gather(*(collect(model.stream(m, max_tokens=4)) for m in (b, a, b)))
        # Greedy decoding: a caller gets exactly what it gets alone, whoever else is waiting.
        assert ["".join(t) for t in together] == [solo_b, solo_a, solo_b]
        assert "Paris" in solo_a and "4" in solo_b

    async def test_a_caller_that_gives_up_while_queued_costs_nothing(self, model: LlamaCppModel) -> None:
        await idle(model)
        before = predicted_tokens(model)
        busy = model.stream(LONG, max_tokens=12)
        first = await anext(busy)
        queued = model.stream(LONG, max_tokens=400)
        waiting = asyncio.create_task(anext(queued))
        await asyncio.sleep(0.05)
        waiting.cancel()  # never got its turn
        with pytest.raises(asyncio.CancelledError):
            await waiting
        rest = await collect(busy)
        await idle(model)
        assert first and rest
        # Only the first request's tokens were decoded: the abandoned one never started.
        assert predicted_tokens(model) - before <= 12


def prompt_tokens(m: LlamaCppModel) -> int:
    """Prompt tokens llama.cpp processed, not counting those reused from its KV cache."""
    match = re.search(r"^llamacpp:prompt_tokens_total (\d+)", m.metrics(), re.MULTILINE)
    assert match, "llama.cpp metrics lack prompt_tokens_total"
    return int(match.group(1))


PASSAGES = "\n".join(f"[{i}] Meeting room {i} is on floor {i + 2} and seats {i + 4} people." for i in range(1, 9))


def grounded(question: str, passages: str = PASSAGES) -> list[Message]:
    return [
        Message("system", "You answer questions from the passages only. Be brief."),
        Message("user", f"Passages:\n{passages}\n\nQuestion: {question}"),
    ]


class TestPrefill:
    pytestmark = embedded

    async def test_a_prefilled_prompt_is_not_processed_again(self, model: LlamaCppModel) -> None:
        question = grounded("Which floor is meeting room 3 on?")
        cold = "".join(await collect(model.stream(grounded("Who seats 9 people?", PASSAGES[::-1]), max_tokens=4)))
        assert cold
        before = prompt_tokens(model)
        assert await model.prefill(question) is True
        prefilled = prompt_tokens(model) - before
        assert prefilled > 100  # the passages and the question were processed ahead
        counted = dict(model.prompt_tokens)
        reply = "".join(await collect(model.stream(question, max_tokens=8)))
        # only the generation prompt's few tokens are new; the prefilled prompt came from the cache
        assert prompt_tokens(model) - before - prefilled <= 8
        assert model.prompt_tokens["new"] - counted["new"] <= 8
        assert model.prompt_tokens["cached"] - counted["cached"] >= prefilled
        assert reply.strip()

    async def test_a_prefill_of_a_partial_question_still_saves_the_passages(self, model: LlamaCppModel) -> None:
        await collect(model.stream(grounded("Unrelated?", PASSAGES[::-1]), max_tokens=2))
        assert await model.prefill(grounded("Which floor is meeting room"))
        before = prompt_tokens(model)
        await collect(model.stream(grounded("Which floor is meeting room 6 on?"), max_tokens=2))
        assert prompt_tokens(model) - before <= 20

    async def test_an_unrelated_real_request_drops_a_queued_prefill(self, model: LlamaCppModel) -> None:
        await idle(model)
        busy = model.stream(LONG, max_tokens=8)
        assert await anext(busy)
        speculative = asyncio.create_task(model.prefill(grounded("Which floor is meeting room 2 on?")))
        await asyncio.sleep(0.05)
        other = asyncio.create_task(collect(model.stream([Message("user", "Say hi.")], max_tokens=2)))
        await collect(busy)
        before = prompt_tokens(model)
        assert await speculative is False  # skipped: the real request does not start with its prompt
        await other
        assert prompt_tokens(model) - before < 60  # only "Say hi." and the template

    async def test_a_newer_prefill_replaces_a_queued_one(self, model: LlamaCppModel) -> None:
        await idle(model)
        busy = model.stream(LONG, max_tokens=8)
        assert await anext(busy)
        old = asyncio.create_task(model.prefill(grounded("Which floor is")))
        await asyncio.sleep(0.05)
        new = asyncio.create_task(model.prefill(grounded("Who seats 7 people?")))
        await collect(busy)
        assert await old is False
        assert await new is True

    async def test_cancelling_the_caller_drops_the_prefill(self, model: LlamaCppModel) -> None:
        await idle(model)
        busy = model.stream(LONG, max_tokens=8)
        assert await anext(busy)
        speculative = asyncio.create_task(model.prefill(grounded("How many people does room 8 seat?")))
        await asyncio.sleep(0.05)
        speculative.cancel()  # the visitor spoke again
        with pytest.raises(asyncio.CancelledError):
            await speculative
        await collect(busy)
        before = prompt_tokens(model)
        await idle(model)
        assert prompt_tokens(model) == before


class _YieldAfterFirstBatch:
    """A ``yield_while`` condition: False at the first progress chunk, then True until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.hold = False

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls == 2:  # the first batch of prompt tokens is done
            self.hold = True
        return self.hold


class TestPrefillYields:
    pytestmark = embedded

    async def test_a_paused_prefill_resumes_where_it_stopped(self, model: LlamaCppModel) -> None:
        prompt = grounded("Which floor is meeting room 5 on?", PASSAGES + "\n" + PASSAGES[::-1])
        await collect(model.stream(grounded("Unrelated?"), max_tokens=2))
        before = prompt_tokens(model)
        assert await model.prefill(prompt) is True
        whole = prompt_tokens(model) - before  # the prompt processed in one go
        assert whole > 2 * 64

        await collect(model.stream(grounded("Unrelated?"), max_tokens=2))  # the cache holds another prompt
        condition = _YieldAfterFirstBatch()
        pauses = model.prefill_pauses
        before = prompt_tokens(model)
        task = asyncio.create_task(model.prefill(prompt, yield_while=condition))
        for _ in range(300):
            if model.prefill_pauses > pauses:
                break
            await asyncio.sleep(0.01)
        assert model.prefill_pauses == pauses + 1 and not task.done()
        await asyncio.sleep(0.3)
        assert not task.done()  # it waits while told to
        condition.hold = False
        assert await task is True
        # Resumed from the KV cache: the batch done before the pause was kept, so every prompt token
        # was processed once (without the resume the first batch would have been processed twice).
        assert abs((prompt_tokens(model) - before) - whole) <= 2

    async def test_a_real_request_does_not_wait_for_a_paused_prefill(self, model: LlamaCppModel) -> None:
        prompt = grounded("Which floor is meeting room 7 on?", PASSAGES[::-1] + "\n" + PASSAGES)
        await collect(model.stream(grounded("Unrelated?"), max_tokens=2))
        condition = _YieldAfterFirstBatch()
        pauses = model.prefill_pauses
        task = asyncio.create_task(model.prefill(prompt, yield_while=condition))
        for _ in range(300):
            if model.prefill_pauses > pauses:
                break
            await asyncio.sleep(0.01)
        assert not task.done()
        counted = dict(model.prompt_tokens)
        reply = "".join(await collect(model.stream(prompt, max_tokens=4)))  # the question is final now
        assert reply.strip()
        assert model.prompt_tokens["cached"] - counted["cached"] > 0  # it reused the batch done ahead
        assert await task is False  # given up: the real request took over


@pytest.fixture(scope="module")
def cached_model() -> Iterator[LlamaCppModel]:
    m = LlamaCppModel(GGUF, context_tokens=1024, threads=2, temperature=0.0, metrics=True, prompt_cache_mib=256)
    yield m
    m.close()


def room_passage(i: int) -> str:
    return " ".join(f"Meeting room {i} is on floor {i + 2}, seats {i + 4} people and has screen {j}." for j in range(4))


def first_turn(passage: str, question: str = "") -> list[Message]:
    """A grounded first-turn prompt; with no question, just its beginning (what ``warm`` keeps)."""
    messages = grounded(question, passage)
    if not question:
        messages[1] = Message("user", f"Passages:\n{passage}")
    return messages


class TestPromptCache:
    pytestmark = embedded

    async def test_a_prompt_starting_like_a_warmed_one_processes_only_the_rest(self, cached_model: LlamaCppModel) -> None:
        m = cached_model
        assert await m.warm([first_turn(room_passage(i)) for i in (1, 2, 3)]) == 3
        await collect(m.stream([Message("user", "Say hi.")], max_tokens=2))  # the slot holds another prompt now
        counted = dict(m.prompt_tokens)
        reply = "".join(await collect(m.stream(first_turn(room_passage(2), "Which floor is room 2 on?"), max_tokens=4)))
        assert reply.strip()
        new = m.prompt_tokens["new"] - counted["new"]
        cached = m.prompt_tokens["cached"] - counted["cached"]
        assert cached > 60  # the system message and the passage came from the prompt cache
        assert new <= 20  # only the question and the template's end were processed

    async def test_without_a_prompt_cache_warm_does_nothing(self, model: LlamaCppModel) -> None:
        before = prompt_tokens(model)
        assert await model.warm([first_turn(room_passage(4))]) == 0
        assert prompt_tokens(model) == before

    async def test_warming_waits_while_told_to(self, cached_model: LlamaCppModel) -> None:
        m = cached_model
        hold = True
        task = asyncio.create_task(m.warm([first_turn(room_passage(5))], yield_while=lambda: hold))
        before = prompt_tokens(m)
        await asyncio.sleep(0.4)
        assert not task.done() and prompt_tokens(m) == before
        hold = False
        assert await task == 1
        assert prompt_tokens(m) - before > 60

    async def test_a_real_request_goes_first_and_warming_resumes_after(self, cached_model: LlamaCppModel) -> None:
        m = cached_model
        warming = asyncio.create_task(m.warm([first_turn(room_passage(i)) for i in (6, 7, 8, 9)]))
        await asyncio.sleep(0.3)  # the first prefix is being processed
        reply = "".join(await collect(m.stream([Message("user", "Say hello.")], max_tokens=3)))
        assert reply.strip()
        assert not warming.done()  # it gave way instead of finishing its four prompts first
        assert await warming == 4
        assert m.warmed >= 4

    async def test_a_beginning_still_cached_is_not_processed_again(self, cached_model: LlamaCppModel) -> None:
        m = cached_model
        beginnings = [first_turn(room_passage(i)) for i in (11, 12)]
        assert await m.warm(beginnings) == 2
        before = prompt_tokens(m)
        assert await m.warm(beginnings) == 0
        assert prompt_tokens(m) == before
        assert await m.warm(beginnings, again=True) == 2
        assert prompt_tokens(m) - before <= 4  # loaded from the cache: next to nothing processed

    async def test_a_beginning_a_request_took_over_is_rebuilt(self, cached_model: LlamaCppModel) -> None:
        m = cached_model
        beginnings = [first_turn(room_passage(i)) for i in (13, 14)]
        assert await m.warm(beginnings) == 2
        await collect(m.stream([Message("user", "Say hi.")], max_tokens=2))  # the slot holds another prompt
        # A passage that begins like room 13's and then differs: llama.cpp starts it from room 13's
        # warmed state (it shares the most with it) and overwrites that state's tail.
        first = room_passage(13).split(". ")[0]
        other = first + ". It also has a whiteboard, a phone, two cameras and a coffee machine next door."
        await collect(m.stream(first_turn(other, "Which floor?"), max_tokens=2))
        await collect(m.stream([Message("user", "Say hi.")], max_tokens=2))
        before = prompt_tokens(m)
        assert await m.warm(beginnings) == 1  # the engine knew which one was lost
        assert prompt_tokens(m) - before > 20  # and it really was: the rest of its passage was processed again
        before = prompt_tokens(m)
        # prompts that start with a warmed beginning (and go on differently) take nothing away
        await collect(m.stream(first_turn(room_passage(13), "Which floor?"), max_tokens=2))
        await collect(m.stream(first_turn(room_passage(14) + " Extra.", "Which floor?"), max_tokens=2))
        assert await m.warm(beginnings) == 0
