"""Preparing the answer ahead: at a pause, the session plans the answer on the transcript so far,
prefills the LLM on the generated route, and ends the turn early on the faq route.

Fake engines (tests/fakes.py) plus a fake LLM that can prefill; a real WebSocket client sends
microphone frames in real time, as a browser does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from daemon_support import collect, hello, mic_frames, open_client, running_daemon, silence_pcm, speech_pcm
from fakes import DOC_PASSAGE, FakeLanguageModel, FakeRetriever, FakeTranscriber, fake_engines, settings_for_tests

from assistant.ahead import guess_messages
from assistant.config import Settings
from assistant.daemon import Daemon
from assistant.routing import plan_answer
from assistant.sharing import share
from assistant.stages import Message, Passage, Prefiller, Transcript
from assistant.turn import Turn

GENERATED = "Where do visitors get a badge"  # the fake retriever's document words: route generated
FAQ = "How do I download the DiDi app"  # an FAQ entry's question, unpunctuated

pytestmark = pytest.mark.virtual_time


@dataclass
class PrefillingLanguageModel(FakeLanguageModel):
    """A fake LLM that can prefill (``Prefiller``): records each prefill and how it ended."""

    prefill_s: float = 0.0
    prefills: list[list[Message]] = field(default_factory=list)
    prefills_done: int = 0
    prefills_cancelled: int = 0
    yield_conditions: list[Callable[[], bool] | None] = field(default_factory=list)

    async def prefill(self, messages: list[Message], *, yield_while: Callable[[], bool] | None = None) -> bool:
        self.prefills.append(messages)
        self.yield_conditions.append(yield_while)
        try:
            await asyncio.sleep(self.prefill_s)
        except asyncio.CancelledError:
            self.prefills_cancelled += 1
            raise
        self.prefills_done += 1
        return True


def voice_settings(prefill: str = "speech", early_faq: bool = True) -> Settings:
    s = settings_for_tests()
    s.asr.partial_interval_ms = 300
    s.ahead.prefill = prefill  # type: ignore[assignment]
    s.ahead.early_faq = early_faq
    return s


async def voice_turn(
    settings: Settings, text: str, llm: FakeLanguageModel, speech_ms: int = 900
) -> tuple[dict, list[str], object]:  # type: ignore[type-arg]
    engines = fake_engines(transcriber=FakeTranscriber(text=text, language="en"), llm=llm)
    async with running_daemon(engines, settings) as d, await open_client(d.ws_url + "?role=visitor") as ws:
        await hello(ws)
        for frame in mic_frames(np.concatenate([silence_pcm(100), speech_pcm(speech_ms), silence_pcm(700)])):
            await ws.send(frame)
            await asyncio.sleep(0.02)  # real time: the pause comes before the endpoint
        got = await collect(ws)
        retriever = d.engines.retriever
        return got.of("trace")[0], got.types(), retriever


def test_the_fake_prefills() -> None:
    assert isinstance(PrefillingLanguageModel(), Prefiller)


async def test_a_generated_question_is_prefilled_with_the_prompt_the_turn_then_streams() -> None:
    llm = PrefillingLanguageModel()
    trace, types, retriever = await voice_turn(voice_settings(), GENERATED, llm, speech_ms=1500)
    assert trace["route"] == "generated" and types[-2:] == ["trace", "state:idle"]
    # partials while talking (every 300 ms) and the transcript at the final pause
    assert len(llm.prefills) >= 2 and llm.prefills_done == len(llm.prefills)
    assert llm.calls == [llm.prefills[-1]]  # the real request is exactly the prefilled prompt
    # the plan made ahead was reused: retrieval ran at the pause, not again after the endpoint
    assert retriever.queries.count(GENERATED) == len(llm.prefills)


async def test_the_daemon_prefills_only_while_speech_recognition_leaves_the_cpu_free() -> None:
    llm = PrefillingLanguageModel()
    await voice_turn(voice_settings(), GENERATED, llm, speech_ms=1500)
    conditions = [c for c in llm.yield_conditions if c is not None]
    assert conditions and len(conditions) == len(llm.yield_conditions)
    assert conditions[-1]() is False  # after the turn nothing transcribes


async def test_a_prefill_is_told_to_yield_while_the_transcriber_is_busy_or_awaited() -> None:
    llm = PrefillingLanguageModel()
    engines, gates = share(fake_engines(llm=llm))
    asr = next(g for g in gates if g.name == "asr")
    assert engines.prefiller is not None
    await engines.prefiller.prefill([Message("user", "hi")])
    condition = llm.yield_conditions[-1]
    assert condition is not None and condition() is False
    async with asr:
        assert condition() is True
    assert condition() is False


async def test_prefill_at_pauses_only_waits_for_the_pause() -> None:
    llm = PrefillingLanguageModel()
    trace, _, _ = await voice_turn(voice_settings(prefill="pause"), GENERATED, llm, speech_ms=1500)
    # one pause (the end of the question): one prefill, none on the partials before it
    assert trace["route"] == "generated" and len(llm.prefills) == 1 and llm.calls == llm.prefills


async def test_without_prefill_the_llm_is_asked_only_after_the_endpoint() -> None:
    llm = PrefillingLanguageModel()
    trace, _, _ = await voice_turn(voice_settings(prefill="off"), GENERATED, llm)
    assert trace["route"] == "generated" and not llm.prefills and len(llm.calls) == 1


async def test_an_faq_question_ends_after_the_early_silence_without_punctuation() -> None:
    trace, _, _ = await voice_turn(voice_settings(), FAQ, PrefillingLanguageModel())
    s = Settings()
    assert trace["route"] == "faq"
    assert trace["endpoint_ms"] < s.vad.early_silence_ms + 150  # the answer is known: the short silence


async def test_without_early_faq_an_unpunctuated_question_waits_for_the_full_silence() -> None:
    trace, _, _ = await voice_turn(voice_settings(early_faq=False), FAQ, PrefillingLanguageModel())
    assert trace["route"] == "faq" and trace["endpoint_ms"] >= Settings().vad.silence_ms - 40


async def test_a_plan_is_used_only_for_its_own_question_and_history() -> None:
    settings = settings_for_tests()
    retriever = FakeRetriever()
    llm = PrefillingLanguageModel()
    engines = fake_engines(retriever=retriever, llm=llm)
    plan = await plan_answer(Transcript(GENERATED, "en"), [], engines=engines, settings=settings)
    assert plan.messages is not None and plan.fits(GENERATED, "en", [])
    searches = len(retriever.queries)
    # same question, same (empty) history: no retrieval again
    await Turn(1, engines=engines, settings=settings).run(Transcript(GENERATED, "en"), plan=plan)
    assert len(retriever.queries) == searches and llm.calls[-1] == plan.messages
    # another session's history (or a changed question) makes the turn plan afresh
    history = [Message("user", "What is the Wi-Fi?"), Message("assistant", "Acme-Guest.")]
    assert not plan.fits(GENERATED, "en", history)
    await Turn(1, engines=engines, settings=settings, history=history).run(Transcript(GENERATED, "en"), plan=plan)
    assert len(retriever.queries) > searches and llm.calls[-1] != plan.messages
    assert any(m.content == "Acme-Guest." for m in llm.calls[-1])


async def test_sessions_keep_their_own_plans() -> None:
    llm = PrefillingLanguageModel()
    daemon = Daemon(voice_settings(), fake_engines(llm=llm))
    a, b = daemon._new_session("visitor"), daemon._new_session("visitor")
    b.history = [Message("user", "Hi"), Message("assistant", "Hello.")]
    marked: list[str] = []
    answerable: Callable[[], None] = lambda: marked.append("a")  # noqa: E731
    await a.preparer(Transcript(GENERATED, "en"), answerable)
    assert a.preparer.plan is not None and b.preparer.plan is None and not marked
    assert a.preparer.plan.history == ()  # planned on a's history, which b's turn would not match
    assert not a.preparer.plan.fits(GENERATED, "en", b.history)
    await a.preparer(Transcript(FAQ, "en"), answerable)
    assert marked == ["a"] and len(llm.prefills) == 1  # the faq route needs no LLM
    await daemon.close()


async def test_a_failing_prepare_leaves_the_turn_working() -> None:
    retriever = FakeRetriever()
    llm = PrefillingLanguageModel()

    async def broken(messages: list[Message]) -> bool:
        raise RuntimeError("prefill exploded")

    llm.prefill = broken  # type: ignore[method-assign]
    engines = fake_engines(transcriber=FakeTranscriber(text=GENERATED, language="en"), retriever=retriever, llm=llm)
    async with running_daemon(engines, voice_settings()) as d, await open_client(d.ws_url + "?role=visitor") as ws:
        await hello(ws)
        for frame in mic_frames(np.concatenate([silence_pcm(100), speech_pcm(900), silence_pcm(700)])):
            await ws.send(frame)
            await asyncio.sleep(0.02)
        got = await collect(ws)
    assert got.of("reply-end")[0]["route"] == "generated" and not got.of("error")


@dataclass
class HalfSaidRetriever(FakeRetriever):
    """The document scores 0.3 for a half-said question ("Where do") and 0.6 once it is said."""

    async def search(self, query: str, *, k: int) -> list[Passage]:
        out = await super().search(query, k=k)
        if query.lower().startswith("where do") and all(p.score < 0.45 for p in out):
            out = [Passage(**{**p.__dict__, "score": 0.3 if p.kind != "faq" else p.score}) for p in out]
            out.sort(key=lambda p: -p.score)
        return out


def guessing_settings(floor: float = 0.25) -> Settings:
    s = voice_settings()
    s.ahead.prefill_guess = floor
    return s


async def test_a_half_said_question_prefills_its_best_passage_which_the_finished_one_reuses() -> None:
    settings = guessing_settings()
    llm = PrefillingLanguageModel()
    engines = fake_engines(retriever=HalfSaidRetriever(), llm=llm)
    daemon = Daemon(settings, engines)
    session = daemon._new_session("visitor")
    await session.preparer(Transcript("Where do", "en"), None)  # a partial: nothing relevant yet
    assert session.preparer.plan is not None and session.preparer.plan.decision.route == "fallback"
    assert len(llm.prefills) == 1
    guess = llm.prefills[0][-1].content
    assert DOC_PASSAGE.text in guess
    # the finished question lands on the same passage: its prompt starts with the guess's, up to
    # the question, which is what llama.cpp reuses from the KV cache
    final = await plan_answer(Transcript(GENERATED, "en"), [], engines=engines, settings=settings)
    assert final.messages is not None and final.messages[0] == llm.prefills[0][0]
    shared = guess.split("Question: ")[0]
    assert len(shared) > len(DOC_PASSAGE.text) and final.messages[-1].content.startswith(shared)
    await daemon.close()


async def test_no_guess_at_a_pause_under_the_floor_or_when_switched_off() -> None:
    llm = PrefillingLanguageModel()
    engines = fake_engines(retriever=HalfSaidRetriever(), llm=llm)
    daemon = Daemon(guessing_settings(), engines)
    session = daemon._new_session("visitor")
    # at a pause the question may be finished: a fallback there is the answer, nothing to prefill
    await session.preparer(Transcript("Where do", "en"), lambda: None)
    # a partial whose best candidate is under the floor
    await session.preparer(Transcript("What is the dress code", "en"), None)
    assert llm.prefills == []
    await daemon.close()
    daemon = Daemon(voice_settings(), engines)  # the default: off
    await daemon._new_session("visitor").preparer(Transcript("Where do", "en"), None)
    assert llm.prefills == []
    await daemon.close()


async def test_guess_messages_follows_the_route() -> None:
    settings = guessing_settings()
    engines = fake_engines(retriever=HalfSaidRetriever())
    generated = await plan_answer(Transcript(GENERATED, "en"), [], engines=engines, settings=settings)
    assert guess_messages(generated, settings) is generated.messages
    faq = await plan_answer(Transcript(FAQ, "en"), [], engines=engines, settings=settings)
    assert faq.decision.route == "faq" and guess_messages(faq, settings) is None
    half = await plan_answer(Transcript("Where do", "en"), [], engines=engines, settings=settings)
    guessed = guess_messages(half, settings)
    assert half.messages is None and guessed is not None and DOC_PASSAGE.text in guessed[-1].content
    settings.ahead.prefill_guess = 0.5  # above the half-said question's 0.3
    assert guess_messages(half, settings) is None
