"""A remote OpenAI-compatible ``/v1/audio/transcriptions`` endpoint (vLLM, speaches, a Whisper server).

Each utterance is uploaded as a 16 kHz mono WAV (multipart form: ``file``, ``model``, optional
``language`` and ``prompt``, ``response_format=json``). The server's ``language`` is used when it
sends one (``verbose_json`` servers do); otherwise the language is read off the text.

Errors, wrapped once here:
  asr-unavailable  the server cannot be reached (connection refused, DNS)
  asr-timeout      no answer within ``[asr] timeout_s``
  asr-failed       an HTTP error status or a reply without ``text``
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from assistant.audio.codecs import encode_wav
from assistant.config import Settings
from assistant.engines._asr_common import PromptTerms, language_of
from assistant.stages import TranscribeError, Transcript, Utterance
from assistant.transcripts import build_prompt, clean_text

log = logging.getLogger(__name__)


class RemoteTranscriber(PromptTerms):
    def __init__(
        self,
        base_url: str,
        *,
        model: str = "whisper-1",
        language: str = "",
        api_key: str | None = None,
        timeout_s: float = 30.0,
        prompt_terms: Sequence[str] = (),
    ) -> None:
        self.url = base_url.rstrip("/") + "/audio/transcriptions"
        self.model = model
        self.language = language
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.prompt_terms: tuple[str, ...] = tuple(prompt_terms)
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteTranscriber:
        a = settings.asr
        transcriber = cls(
            a.base_url,
            model=a.model,
            language=a.language,
            api_key=os.environ.get(a.api_key_env) or None,
            timeout_s=a.timeout_s,
        )
        return transcriber

    def _http(self) -> Any:
        import httpx

        if self._client is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.AsyncClient(timeout=self.timeout_s, headers=headers)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def transcribe(self, utterance: Utterance) -> Transcript:
        import httpx

        language = utterance.language or self.language
        data: dict[str, str] = {"model": self.model, "response_format": "json"}
        if language:
            data["language"] = language
        prompt = build_prompt(self.terms_for(language), utterance.previous_text, language=language)
        if prompt:
            data["prompt"] = prompt
        files = {"file": ("utterance.wav", encode_wav(utterance.pcm, utterance.sample_rate_hz), "audio/wav")}
        try:
            response = await self._http().post(self.url, data=data, files=files)
        except httpx.TimeoutException as err:
            raise TranscribeError(
                "asr-timeout", f"the ASR server at {self.url} did not answer within {self.timeout_s:g} s"
            ) from err
        except httpx.HTTPError as err:
            raise TranscribeError("asr-unavailable", f"the ASR server at {self.url} cannot be reached: {err}") from err
        if response.status_code >= 400:
            raise TranscribeError(
                "asr-failed", f"the ASR server at {self.url} answered {response.status_code}: {response.text[:200]}"
            )
        try:
            body = response.json()
            text = str(body["text"])
        except (ValueError, KeyError, TypeError) as err:
            raise TranscribeError(
                "asr-failed", f"the ASR server at {self.url} sent no transcript: {response.text[:200]}"
            ) from err
        server_language = body.get("language") if isinstance(body, dict) else None
        detected = language or _whisper_code(server_language) or language_of(text)
        return Transcript(clean_text(text, detected), detected)


def _whisper_code(name: Any) -> str:
    """verbose_json names languages in English ("chinese"); map the two we route on."""
    if not isinstance(name, str) or not name:
        return ""
    name = name.lower()
    return {"chinese": "zh", "english": "en", "mandarin": "zh"}.get(name, name if len(name) <= 3 else "")
