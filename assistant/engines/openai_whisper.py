"""openai-whisper (PyTorch): any Whisper checkpoint file, on CUDA when present.

The GPU deployment's path: large-v3 / turbo weights placed in ``models/`` (``[asr] model_path =
"models/large-v3.pt"``, or ``model = "large-v3"`` for ``models/large-v3.pt`` /
``models/large-v3/*.pt``). Nothing is downloaded: a missing file is a ModelMissingError.

Install note: ``openai-whisper==20250625`` declares ``triton`` (~1 GB, useless on CPU), so it is
installed with ``--no-deps`` plus its light dependencies (tiktoken, numba, more-itertools); torch
comes from the ``heavy`` extra.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant.config import Settings
from assistant.engines._asr_common import LocalWhisper, pick_language
from assistant.stages import ModelMissingError, TranscribeError, Transcript
from assistant.transcripts import build_prompt, clean_text

log = logging.getLogger(__name__)


def find_checkpoint(settings: Settings) -> Path:
    """The checkpoint ``[asr]`` names; raises ModelMissingError saying where to put it."""
    a = settings.asr
    if a.model_path:
        path = settings.path(a.model_path)
        if path.is_file():
            return path
        if path.is_dir():
            found = sorted(path.glob("*.pt"))
            if found:
                return found[0]
        raise ModelMissingError(a.model, path, f"place an openai-whisper checkpoint (.pt) at {path}")
    candidates = [settings.models_dir / f"{a.model}.pt", *sorted((settings.models_dir / a.model).glob("*.pt"))]
    for path in candidates:
        if path.is_file():
            return path
    target = settings.models_dir / f"{a.model}.pt"
    raise ModelMissingError(a.model, target, f"place the openai-whisper checkpoint for '{a.model}' at {target}")


class OpenAIWhisperTranscriber(LocalWhisper):
    """A Transcriber over ``whisper.load_model(checkpoint)``; one model, calls serialised by a lock."""

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        language: str = "",
        languages: Sequence[str] = ("zh", "en"),
        device: str = "auto",
        beam_size: int = 1,
        prompt_terms: Sequence[str] = (),
        sample_len: int | None = None,
    ) -> None:
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_file():
            raise ModelMissingError(self.checkpoint.stem, self.checkpoint)
        try:
            import torch
            import whisper
        except ImportError as err:
            raise TranscribeError(
                "asr-engine",
                "the openai-whisper engine needs torch and openai-whisper "
                f"(`pip install --no-deps openai-whisper==20250625 tiktoken numba more-itertools`): {err}",
            ) from err
        self._whisper = whisper
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.language = language
        self.languages = tuple(languages)
        self.beam_size = beam_size
        self.prompt_terms: tuple[str, ...] = tuple(prompt_terms)
        self.sample_len = sample_len
        """Caps the tokens per window (tests: random weights never stop by themselves)."""
        try:
            self._model = whisper.load_model(str(self.checkpoint), device=device)
        except Exception as err:  # torch.load / state-dict mismatch
            raise TranscribeError("asr-model", f"cannot load the Whisper checkpoint {self.checkpoint}: {err}") from err
        self._lock = threading.Lock()
        log.info("openai-whisper %s on %s", self.checkpoint.name, device)

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIWhisperTranscriber:
        a = settings.asr
        transcriber = cls(
            find_checkpoint(settings),
            language=a.language,
            languages=a.languages,
            device=a.device,
            beam_size=a.beam_size,
        )
        return transcriber

    def transcribe_sync(
        self, audio: np.ndarray, *, language: str = "", previous_text: str = "", draft: bool = False
    ) -> Transcript:
        # ``draft`` changes nothing here: one greedy pass is all this engine does anyway.
        if audio.size == 0:
            return Transcript("", language)
        whisper = self._whisper
        fp16 = self.device.startswith("cuda")
        try:
            with self._lock:
                model: Any = self._model
                if not language:
                    if model.is_multilingual:
                        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), n_mels=model.dims.n_mels).to(
                            model.device
                        )
                        _, probs = model.detect_language(mel)
                        language = pick_language(list(probs.items()), self.languages)
                    else:
                        language = "en"
                prompt = build_prompt(self.terms_for(language), previous_text, language=language)
                options: dict[str, Any] = {}
                if self.sample_len is not None:
                    options["sample_len"] = self.sample_len
                if self.beam_size > 1:
                    options["beam_size"] = self.beam_size
                result = whisper.transcribe(
                    model,
                    audio.astype(np.float32),
                    language=language,
                    initial_prompt=prompt or None,
                    condition_on_previous_text=False,
                    temperature=0.0,
                    fp16=fp16,
                    verbose=None,
                    **options,
                )
        except Exception as err:  # torch / tokenizer errors, wrapped once
            raise TranscribeError("asr-failed", f"openai-whisper failed: {err}") from err
        return Transcript(clean_text(str(result.get("text", "")), language), language)
