"""The OpenAI-compatible engine against a real server process: llama.cpp's own HTTP server (through
xllamacpp, ``python -m assistant.engines.llamacpp_server``) with the embedded 0.5B GGUF on 127.0.0.1.

The failure modes a real server will not produce on demand (a dead port, a server that never answers,
a stream cut mid-reply, a 503 while loading) use tiny raw asyncio servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from assistant.config import LLM, Settings
from assistant.engines.openai_compat import OpenAICompatModel
from assistant.stages import GenerateError, LanguageModel, Message

ROOT = Path(__file__).resolve().parent.parent
GGUF = ROOT / "models" / "qwen2.5-0.5b" / "model.gguf"
LONG = [Message("user", "Write a very long story about a cat named Tom, with many chapters.")]


async def collect(stream: AsyncIterator[str]) -> list[str]:
    return [d async for d in stream]


# --------------------------------------------------------------------------------------------
# A real llama.cpp server
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    if not GGUF.exists():
        pytest.skip("run `assistant models fetch qwen2.5-0.5b` first")
    cmd = [sys.executable, "-m", "assistant.engines.llamacpp_server", str(GGUF), "--port", "0", "--metrics",
           "--context-tokens", "1024"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the model is loaded
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, f"the server did not start: {line!r} (exit {proc.poll()})"
        yield match.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def metrics(url: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(f"{url}/metrics")).text


async def predicted_tokens(url: str) -> int:
    text = await metrics(url)
    match = re.search(r"^llamacpp:tokens_predicted_total (\d+)", text, re.MULTILINE)
    assert match, text[:300]
    return int(match.group(1))


async def wait_idle(url: str) -> None:
    for _ in range(100):
        text = await metrics(url)
        if re.search(r"^llamacpp:requests_processing 0", text, re.MULTILINE):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the server never went idle")


@pytest.mark.embedded
@pytest.mark.slow
class TestRealServer:
    async def test_streams_from_llama_cpp_server(self, server_url: str) -> None:
        settings = Settings(llm=LLM(engine="openai", base_url=f"{server_url}/v1", temperature=0.0, api_key_env=""))
        model = OpenAICompatModel.from_settings(settings)
        assert isinstance(model, LanguageModel)
        messages = [Message("system", "You are terse."), Message("user", "Count from 1 to 5, separated by commas.")]
        deltas = await collect(model.stream(messages, max_tokens=24))
        assert len(deltas) > 1 and all(isinstance(d, str) and d for d in deltas)  # streamed, not one block
        assert re.search(r"1,\s*2,\s*3,\s*4,\s*5", "".join(deltas))
        await model.aclose()

    async def test_a_temperature_given_to_stream_overrides_the_configured_one(self, server_url: str) -> None:
        # A prompt with one clear answer: greedy decoding gives it, temperature 5 gives noise. (Two
        # greedy runs of an open question may differ on a near-tie: the server's prompt cache
        # changes the float arithmetic of the second run.)
        messages = [Message("system", "You are terse."), Message("user", "Count from 1 to 5, separated by commas.")]
        hot = OpenAICompatModel(f"{server_url}/v1", temperature=5.0)
        got = ["".join(await collect(hot.stream(messages, max_tokens=24, temperature=0.0))) for _ in range(2)]
        assert all(re.search(r"1,\s*2,\s*3,\s*4,\s*5", text) for text in got), got
        await hot.aclose()

    async def test_closing_the_stream_stops_the_server(self, server_url: str) -> None:
        model = OpenAICompatModel(f"{server_url}/v1", temperature=0.0)
        await wait_idle(server_url)
        before = await predicted_tokens(server_url)
        stream = model.stream(LONG, max_tokens=400)
        got = [await anext(stream) for _ in range(3)]
        await stream.aclose()
        await wait_idle(server_url)
        assert got
        # 400 tokens were allowed; the server aborted the request when the connection closed.
        assert await predicted_tokens(server_url) - before <= 8
        await model.aclose()

    async def test_concurrent_streams(self, server_url: str) -> None:
        model = OpenAICompatModel(f"{server_url}/v1", temperature=0.0)
        a = [Message("user", "Reply with one word: the capital of France.")]
        b = [Message("user", "Reply with one number: 2 + 2.")]
        results = await asyncio.gather(collect(model.stream(a, max_tokens=4)), collect(model.stream(b, max_tokens=4)))
        assert "Paris" in "".join(results[0]) and "4" in "".join(results[1])
        await model.aclose()


# --------------------------------------------------------------------------------------------
# Failure modes
# --------------------------------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def raw_server(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1"


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
    await reader.readexactly(length)


def sse(*contents: str) -> bytes:
    events = b"".join(
        b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % c.encode() for c in contents
    )
    return events


async def test_server_down_is_llm_unreachable_after_retries() -> None:
    server, url = await raw_server(lambda r, w: asyncio.sleep(0))
    server.close()
    await server.wait_closed()  # nothing listens on that port any more
    model = OpenAICompatModel(url, retries=2, timeout_s=5)
    started = time.monotonic()
    with pytest.raises(GenerateError) as info:
        await collect(model.stream([Message("user", "hi")], max_tokens=8))
    assert info.value.code == "llm-unreachable"
    assert url in info.value.message and "tried 3 times" in info.value.message
    assert time.monotonic() - started >= 0.25 + 0.5  # it backed off between the tries


async def test_silent_server_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    server, url = await raw_server(silent)
    async with server:
        model = OpenAICompatModel(url, timeout_s=0.5)
        with pytest.raises(GenerateError) as info:
            await collect(model.stream([Message("user", "hi")], max_tokens=8))
        assert info.value.code == "llm-timeout"
        await model.aclose()


async def test_no_retry_once_the_reply_has_started() -> None:
    connections = 0

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        body = sse("Hello", " there")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 10000\r\n\r\n" + body)
        await writer.drain()
        writer.close()  # cut mid-reply

    server, url = await raw_server(cut)
    async with server:
        model = OpenAICompatModel(url, retries=3)
        got: list[str] = []
        with pytest.raises(GenerateError) as info:
            async for delta in model.stream([Message("user", "hi")], max_tokens=8):
                got.append(delta)
        assert got == ["Hello", " there"]  # not repeated
        assert info.value.code == "llm-failed" and "broke off" in info.value.message
        assert connections == 1
        await model.aclose()


async def test_503_while_loading_is_retried_then_streams() -> None:
    connections = 0

    async def loading_then_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        if connections == 1:
            body = b'{"error":{"message":"Loading model","code":503}}'
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        else:
            body = sse("Hi", "!") + b"data: [DONE]\n\n"
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server, url = await raw_server(loading_then_ok)
    async with server:
        model = OpenAICompatModel(url, retries=2)
        assert await collect(model.stream([Message("user", "hi")], max_tokens=8)) == ["Hi", "!"]
        assert connections == 2
        await model.aclose()


@pytest.mark.parametrize("status, code", [(401, "llm-auth"), (400, "llm-failed")])
async def test_http_errors_carry_the_server_message(status: int, code: str) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        body = b'{"error":{"message":"nope: bad thing","type":"x"}}'
        writer.write(b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body))
        await writer.drain()
        writer.close()

    server, url = await raw_server(refuse)
    async with server:
        model = OpenAICompatModel(url, api_key="secret")
        with pytest.raises(GenerateError) as info:
            await collect(model.stream([Message("user", "hi")], max_tokens=8))
        assert info.value.code == code
        assert "nope: bad thing" in info.value.message and str(status) in info.value.message
        await model.aclose()
