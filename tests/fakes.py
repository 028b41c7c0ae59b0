"""Fake engines for every stage: deterministic, instant, and honest about what they were asked.

They satisfy the Protocols in assistant/stages.py, so turns, the daemon and the page can be tested
without models. Each records its calls so a test can assert what the turn asked of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from assistant.config import Settings
from assistant.language import detect_language
from assistant.stages import (
    AudioChunk,
    Engines,
    GenerateError,
    Message,
    Passage,
    Transcript,
    Utterance,
    Voice,
)


@dataclass
class FakeTranscriber:
    """Returns ``text`` (or ``by_duration[len]``) for any utterance."""

    text: str = "请问商旅的出差制度"
    language: str = ""
    delay_s: float = 0.0
    calls: list[Utterance] = field(default_factory=list)

    async def transcribe(self, utterance: Utterance) -> Transcript:
        self.calls.append(utterance)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return Transcript(self.text, self.language or detect_language(self.text))


FAQ_ENTRIES = [
    Passage(
        id="travel-policy",
        text="请问商旅的出差制度",
        source="kb/faq_zh.csv",
        score=0.0,
        kind="faq",
        answer="出差需提前三个工作日在OA提交申请。住宿标准为一线城市每晚600元。",
        language="zh",
    ),
    Passage(
        id="didi-app",
        text="How do I download the DiDi app?",
        source="kb/faq_en.jsonl",
        score=0.0,
        kind="faq",
        answer="Scan the QR code at the front desk, or search for DiDi in your phone's app store.",
        language="en",
    ),
]
DOC_PASSAGE = Passage(
    id="kb/docs/visitor-guide.md#2",
    text="Visitors get a badge at reception. The Wi-Fi network is Acme-Guest.",
    source="kb/docs/visitor-guide.md",
    score=0.0,
    title="Visitor guide",
    section="Arriving",
)


@dataclass
class FakeRetriever:
    """Scores passages by keyword overlap with the query, so tests can steer the route by wording:
    a query containing an FAQ question scores 0.95 on it; ``doc_words`` make the document 0.6."""

    passages: list[Passage] = field(default_factory=lambda: [*FAQ_ENTRIES, DOC_PASSAGE])
    doc_words: tuple[str, ...] = ("badge", "wi-fi", "visitor", "访客")
    queries: list[str] = field(default_factory=list)
    fail: Exception | None = None

    async def search(self, query: str, *, k: int) -> list[Passage]:
        self.queries.append(query)
        if self.fail:
            raise self.fail
        q = query.lower()
        out = []
        for p in self.passages:
            if p.kind == "faq":
                score = 0.95 if p.text.lower().rstrip("?？") in q else 0.1
            else:
                score = 0.6 if any(w in q for w in self.doc_words) else 0.05
            out.append(Passage(**{**p.__dict__, "score": score}))
        out.sort(key=lambda p: -p.score)
        return out[:k]


@dataclass
class FakeLanguageModel:
    """Streams ``reply`` in small pieces; records messages; notices when it is stopped early."""

    reply: str = "Visitors get a badge at reception, and the guest Wi-Fi is Acme-Guest. Enjoy your visit."
    piece_chars: int = 6
    delay_s: float = 0.0
    fail_after: int | None = None
    calls: list[list[Message]] = field(default_factory=list)
    temperatures: list[float | None] = field(default_factory=list)
    stopped_early: bool = False
    pieces_sent: int = 0

    async def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float | None = None
    ) -> AsyncIterator[str]:
        self.calls.append(messages)
        self.temperatures.append(temperature)
        self.pieces_sent = 0
        finished = False
        try:
            for i in range(0, len(self.reply), self.piece_chars):
                if self.fail_after is not None and self.pieces_sent >= self.fail_after:
                    raise GenerateError("llm-failed", "the fake model failed on purpose")
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                self.pieces_sent += 1
                yield self.reply[i : i + self.piece_chars]
            finished = True
        finally:
            if not finished:
                self.stopped_early = True


def tone(duration_ms: float, rate_hz: int = 16_000, amplitude: float = 0.3) -> bytes:
    n = int(rate_hz * duration_ms / 1000)
    t = np.arange(n) / rate_hz
    return (np.sin(2 * np.pi * 220 * t) * amplitude * 32767).astype("<i2").tobytes()


@dataclass
class FakeSynthesizer:
    """``chunks_per_sentence`` chunks of a tone, 40 ms of audio per character, envelope 0.5."""

    rate_hz: int = 16_000
    ms_per_char: float = 40.0
    chunks_per_sentence: int = 2
    delay_s: float = 0.0
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
        self.calls.append((sentence, voice.name))
        total_ms = max(40.0, len(sentence) * self.ms_per_char)
        per_ms = total_ms / self.chunks_per_sentence
        for _ in range(self.chunks_per_sentence):
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            frames = max(1, round(per_ms / 20))
            yield AudioChunk(tone(per_ms, self.rate_hz), self.rate_hz, tuple([0.5] * frames))

    def voice_for(self, language: str) -> Voice:
        return Voice(name=f"fake-{language}", engine="fake", languages=(language,))


def fake_engines(
    *,
    transcriber: FakeTranscriber | None = None,
    retriever: FakeRetriever | None = None,
    llm: FakeLanguageModel | None = None,
    synthesizer: FakeSynthesizer | None = None,
    speak: bool = True,
) -> Engines:
    synth = synthesizer or FakeSynthesizer()
    return Engines.of(
        retriever=retriever or FakeRetriever(),
        llm=llm or FakeLanguageModel(),
        transcriber=transcriber or FakeTranscriber(),
        synthesizer=synth if speak else None,
    )


def speech_utterance(duration_s: float = 1.0, end_of_speech_ms: float = 0.0) -> Utterance:
    pcm = (np.sin(np.arange(int(16_000 * duration_s)) / 5) * 8000).astype(np.int16)
    return Utterance(pcm=pcm, end_of_speech_ms=end_of_speech_ms)


def settings_for_tests(**answer: float) -> Settings:
    s = Settings()
    # no unanswered queue beside the test's working folder; tests of the queue turn it on
    s.queue.record = False
    for k, v in answer.items():
        setattr(s.answer, k, v)
    return s


Recorder = Callable[[object], None]


def event_types(events: Sequence[object]) -> list[str]:
    """The event sequence as type names, audio frames collapsed per sentence for readable pins."""
    out: list[str] = []
    for e in events:
        t = e.type  # type: ignore[attr-defined]
        if t == "state":
            t = f"state:{e.state}"  # type: ignore[attr-defined]
        if t == "audio" and out and out[-1] == "audio":
            continue
        out.append(t)
    return out
