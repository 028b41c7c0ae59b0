"""LLMs through Hugging Face transformers: GLM-4 (native ``glm`` / ``glm4`` classes), Qwen2.x and any
other natively supported causal LM from a local folder; ChatGLM3 (and the original, non ``-hf``
GLM-4 checkpoints) only when ``[llm] trust_remote_code = true``, because they run the folder's own
Python code.

Device and dtype come from ``[llm]``: ``device = "auto"`` is CUDA when torch sees a GPU, else the
CPU; ``dtype = "auto"`` is bfloat16 on GPUs that support it (float16 on older ones) and float32 on
the CPU (half precision on CPU is slow and unsupported by some kernels).

Streaming: ``generate`` runs in one dedicated worker thread (``assistant.engines._worker``: one
request at a time, in arrival order, so sessions share the weights without sharing a KV cache). A ``TextIteratorStreamer`` subclass hands
each finished piece of text straight to the event loop instead of parking a second thread on its
blocking queue. Stopping: a ``StoppingCriteria`` watches a ``threading.Event`` that is set when the
consumer closes the iterator or its task is cancelled, so ``generate`` returns after the token it is
computing: no compute is wasted after barge-in.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from assistant.config import Settings
from assistant.engines._worker import ModelWorker, Put
from assistant.stages import GenerateError, Message, ModelMissingError

log = logging.getLogger(__name__)
REMOTE_CODE_TYPES = {"chatglm"}
"""``model_type`` values that only load with the folder's own code (ChatGLM2/3, original GLM-4)."""


def pick_device(setting: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; anything else is used as given."""
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise GenerateError("llm-device", f"[llm] device = {setting!r} but torch sees no CUDA device")
    return setting


def pick_dtype(setting: str, device: str) -> Any:
    import torch

    if setting == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        dtype = getattr(torch, setting)
    except AttributeError:
        dtype = None
    if not isinstance(dtype, torch.dtype):
        raise GenerateError("llm-dtype", f"[llm] dtype = {setting!r} is not a torch dtype (float16, bfloat16, float32)")
    return dtype


def resolve_folder(settings: Settings) -> Path:
    """``[llm] model_path`` if set, else ``models/<model>``. Raises ModelMissingError."""
    from assistant.models import model_dir

    if settings.llm.model_path:
        path = settings.path(settings.llm.model_path)
        if not (path / "config.json").is_file():
            raise ModelMissingError(path.name, path, fetch_hint=f"place a transformers model folder at {path}")
        return path
    return model_dir(settings, settings.llm.model)


class TransformersModel:
    """A ``LanguageModel`` over a transformers causal LM folder, loaded once and shared."""

    def __init__(
        self,
        folder: Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        temperature: float = 0.2,
        generate_options: dict[str, Any] | None = None,
    ) -> None:
        """``generate_options`` are extra keyword arguments for ``generate`` (tuning, tests)."""
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise ModelMissingError(folder.name, folder, fetch_hint=f"place a transformers model folder at {folder}")
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise GenerateError("llm-load", f"{config_file} is not readable JSON: {err}") from err
        model_type = str(config.get("model_type", ""))
        if (model_type in REMOTE_CODE_TYPES or "auto_map" in config) and not trust_remote_code:
            raise GenerateError(
                "llm-untrusted-code",
                f"{folder} ({model_type or 'custom'} model) runs its own Python code to load. If you trust that "
                "folder, set [llm] trust_remote_code = true in assistant.toml; for GLM-4, the '-hf' checkpoints "
                "(e.g. glm-4-9b-chat-hf) load natively without it.",
            )
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.temperature = temperature
        self.folder = folder
        self.model_type = model_type
        self._generate_options = dict(generate_options or {})
        self.generated_tokens = 0
        """Tokens generated so far by this instance (all requests): how tests see that a stop stops."""
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
            model: Any = AutoModelForCausalLM.from_pretrained(
                folder, dtype=self.dtype, trust_remote_code=trust_remote_code
            )
            self.model = model.to(self.device)
        except (OSError, ValueError, RuntimeError) as err:
            raise GenerateError("llm-load", f"transformers could not load {folder}: {err}") from err
        self.model.eval()
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise GenerateError("llm-load", f"{folder}: the tokenizer has no chat template (not a chat model?)")
        self._torch = torch
        self._worker = ModelWorker(
            "transformers-lm",
            wrap=lambda err: GenerateError(
                "llm-failed", f"transformers generation failed: {type(err).__name__}: {err}"
            ),
        )
        log.info("transformers loaded %s (%s) on %s as %s", folder, model_type, self.device, self.dtype)

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformersModel:
        llm = settings.llm
        return cls(
            resolve_folder(settings),
            device=llm.device,
            dtype=llm.dtype,
            trust_remote_code=llm.trust_remote_code,
            temperature=llm.temperature,
        )

    def render(self, messages: list[Message]) -> str:
        """The prompt text the chat template makes of ``messages`` (what the model is fed)."""
        chat = [{"role": m.role, "content": m.content} for m in messages]
        return str(self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))

    async def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float | None = None
    ) -> AsyncIterator[str]:
        """Text deltas of the reply. Closing the iterator, or cancelling the task consuming it,
        stops generation after the token being computed."""
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        torch = self._torch
        owner = self
        sample_at = self.temperature if temperature is None else temperature

        def job(put: Put, stop: threading.Event) -> None:
            class LoopStreamer(TextIteratorStreamer):
                def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                    if text:
                        put(text)

            class StopOnEvent(StoppingCriteria):
                # Called once per generated token, before the next forward pass.
                def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                    owner.generated_tokens += 1
                    return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

            chat = [{"role": m.role, "content": m.content} for m in messages]
            encoded: Any = self.tokenizer.apply_chat_template(
                chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            inputs = encoded.to(self.device)
            streamer = LoopStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
            options: dict[str, Any] = {
                "max_new_tokens": max_tokens,
                "do_sample": sample_at > 0,
                "streamer": streamer,
                "stopping_criteria": StoppingCriteriaList([StopOnEvent()]),
                "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            }
            if sample_at > 0:
                options["temperature"] = sample_at
            options.update(self._generate_options)
            with torch.inference_mode():
                self.model.generate(**inputs, **options)

        async for delta in self._worker.stream(job):
            yield delta

    async def idle(self) -> None:
        """Wait until every request queued so far has finished (the worker is FIFO)."""
        await self._worker.idle()

    def close(self) -> None:
        self._worker.close()
