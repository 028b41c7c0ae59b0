"""RemoteTranscriber against a tiny OpenAI-compatible server started by the test."""

from __future__ import annotations

import email.parser
import io
import json
import threading
import time
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from assistant.engines.remote_asr import RemoteTranscriber
from assistant.stages import TranscribeError, Utterance


class _Server:
    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.reply: tuple[int, bytes] = (200, b'{"text": "ok"}')
        self.delay_s = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                msg = email.parser.BytesParser().parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
                )
                fields: dict[str, object] = {"path": self.path, "auth": self.headers.get("Authorization")}
                for part in msg.get_payload():
                    name = part.get_param("name", header="content-disposition")
                    fields[name] = part.get_payload(decode=True)
                outer.requests.append(fields)
                time.sleep(outer.delay_s)
                status, payload = outer.reply
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


def _speech() -> np.ndarray:
    return (np.sin(np.arange(8000) / 7) * 8000).astype(np.int16)


async def test_upload_and_simplified_chinese(server: _Server) -> None:
    server.reply = (200, json.dumps({"text": " 請問報銷流程是什麼？"}).encode())
    t = RemoteTranscriber(server.url, model="whisper-large-v3", api_key="k", prompt_terms=["商旅", "报销"])
    result = await t.transcribe(Utterance(_speech(), previous_text="你好"))
    await t.aclose()
    assert result.text == "请问报销流程是什么？" and result.language == "zh"
    request = server.requests[0]
    assert request["path"] == "/v1/audio/transcriptions" and request["auth"] == "Bearer k"
    assert request["model"] == b"whisper-large-v3" and "language" not in request
    # the language is not known before the server answers: Chinese terms are not offered (build_prompt)
    assert "商旅" not in request.get("prompt", b"").decode()  # type: ignore[union-attr]
    with wave.open(io.BytesIO(request["file"])) as w:  # type: ignore[arg-type]
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16_000, 1, 2)
        np.testing.assert_array_equal(np.frombuffer(w.readframes(w.getnframes()), "<i2"), _speech())


async def test_fixed_language_and_verbose_json(server: _Server) -> None:
    server.reply = (200, json.dumps({"text": "Where is the exit?", "language": "english"}).encode())
    t = RemoteTranscriber(server.url)
    detected = await t.transcribe(Utterance(_speech()))
    assert detected.language == "en"
    fixed = await t.transcribe(Utterance(_speech(), language="en"))
    assert server.requests[-1]["language"] == b"en" and fixed.text == "Where is the exit?"
    await t.aclose()


async def test_errors_have_stable_codes(server: _Server) -> None:
    t = RemoteTranscriber(server.url, timeout_s=0.3)
    server.reply = (503, b'{"error": "overloaded"}')
    with pytest.raises(TranscribeError) as err:
        await t.transcribe(Utterance(_speech()))
    assert err.value.code == "asr-failed" and "503" in err.value.message
    server.reply = (200, b"<html>not json</html>")
    with pytest.raises(TranscribeError) as err:
        await t.transcribe(Utterance(_speech()))
    assert err.value.code == "asr-failed"
    server.reply, server.delay_s = (200, b'{"text": "late"}'), 1.0
    with pytest.raises(TranscribeError) as err:
        await t.transcribe(Utterance(_speech()))
    assert err.value.code == "asr-timeout"
    await t.aclose()


async def test_a_server_that_is_down(server: _Server) -> None:
    url = server.url
    server.close()
    t = RemoteTranscriber(url, timeout_s=2)
    with pytest.raises(TranscribeError) as err:
        await t.transcribe(Utterance(_speech()))
    assert err.value.code == "asr-unavailable" and url in err.value.message
    await t.aclose()
