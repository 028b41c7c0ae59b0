"""Coqui TTS (``coqui-tts``, the maintained successor of ``TTS``): XTTS-v2 voice cloning, and any other
Coqui model folder (VITS, YourTTS, ...) through the library's public ``TTS`` API.

XTTS-v2 (``engine = "xtts"``):
- weights: ``[options] model_dir`` in voice.toml (a local folder with config.json, model.pth,
  vocab.json), else the ``xtts-v2`` model folder (``assistant models fetch xtts-v2`` on an online
  machine; nothing is downloaded at run time);
- cloning: the speaker conditioning (``gpt_cond_latent``, ``speaker_embedding``) is computed from the
  voice's reference clips once and cached in memory and on disk under
  ``<cache_dir>/xtts-latents/``, keyed by the model's identity, the clips' sha256 and the
  conditioning parameters, so a restart does not recompute it and a changed clip does;
- streaming: ``inference_stream`` hands out audio every ``stream_chunk_size`` GPT tokens (options,
  default 20), so the first audio comes long before the sentence is done;
- languages: ``zh`` is spoken as ``zh-cn``, ``en`` as ``en`` (XTTS's language tags).

Other Coqui models (``engine = "coqui"``, ``[options] model_dir``): loaded with
``TTS(model_path=..., config_path=...)``; a multi-speaker model takes ``[options] speaker``, a
cloning model (YourTTS) takes the voice's first reference clip as ``speaker_wav``; whole sentences.

One model instance per folder, shared by all sessions and used under a lock (torch modules keep
per-call state such as the GPT's KV cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.audio.envelope import EnvelopeFollower
from assistant.audio.pcm import chunks_from_pcm, float_to_int16, iterate_in_thread
from assistant.config import Settings
from assistant.language import detect_language
from assistant.stages import AudioChunk, ModelMissingError, SynthesizeError, Voice
from assistant.tts.voices import file_sha256

log = logging.getLogger(__name__)

XTTS_LANGUAGES = {"zh": "zh-cn", "en": "en"}
_CONDITIONING_KEYS = ("gpt_cond_len", "gpt_cond_chunk_len", "max_ref_length", "sound_norm_refs")
_STREAM_KEYS = ("temperature", "top_k", "top_p", "repetition_penalty", "length_penalty")


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


@dataclass
class _Loaded:
    kind: str
    """``xtts`` (streaming, cloning) or ``api`` (any other Coqui model, whole sentences)."""
    model: Any
    sample_rate_hz: int
    identity: str
    lock: threading.Lock = field(default_factory=threading.Lock)


class CoquiSynthesizer:
    """Satisfies ``Synthesizer`` for ``engine = "xtts"`` and ``engine = "coqui"`` voices."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = settings.tts.device
        self._models: dict[str, _Loaded] = {}
        self._latents: dict[str, tuple[Any, Any]] = {}
        self._load_lock = threading.Lock()
        self.latent_cache_dir = settings.path(settings.general.cache_dir) / "xtts-latents"
        self.latent_computations = 0
        """How many times conditioning was computed from clips (not found in a cache): for tests and logs."""

    @classmethod
    def from_settings(cls, settings: Settings) -> CoquiSynthesizer:
        return cls(settings)

    @property
    def version(self) -> str:
        return f"coqui-tts {_version('coqui-tts')}; torch {_version('torch')}"

    # --- models ------------------------------------------------------------------------------

    def model_folder(self, voice: Voice) -> Path:
        configured = voice.options.get("model_dir")
        if configured:
            folder = Path(str(configured)).expanduser()
            if not (folder / "config.json").is_file():
                raise ModelMissingError(voice.name, folder, f"put a Coqui model folder (config.json + checkpoint) at {folder}")
            return folder
        if voice.engine == "coqui":
            raise SynthesizeError("tts-voice-invalid", f"voice '{voice.name}': engine coqui needs [options] model_dir")
        from assistant.models import model_dir

        return model_dir(self.settings, "xtts-v2")

    def load(self, voice: Voice) -> _Loaded:
        folder = self.model_folder(voice)
        key = str(folder.resolve())
        with self._load_lock:
            if key not in self._models:
                try:
                    self._models[key] = self._load(folder)
                except (SynthesizeError, ModelMissingError):
                    raise
                except Exception as err:
                    raise SynthesizeError("tts-load-failed", f"cannot load the Coqui model in {folder}: {err}") from err
                log.info("loaded Coqui model %s (%s)", folder, self._models[key].kind)
            return self._models[key]

    @staticmethod
    def _checkpoint(folder: Path) -> Path:
        for name in ("model.pth", "model_file.pth", "best_model.pth", "checkpoint.pth"):
            if (folder / name).is_file():
                return folder / name
        candidates = sorted(folder.glob("*.pth"))
        candidates = [c for c in candidates if "speaker" not in c.name and "dvae" not in c.name]
        if not candidates:
            raise ModelMissingError(folder.name, folder / "model.pth", f"put the model checkpoint into {folder}")
        return candidates[0]

    def _load(self, folder: Path) -> _Loaded:
        import json

        config_data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        checkpoint = self._checkpoint(folder)
        stat = checkpoint.stat()
        identity = hashlib.sha256(f"{checkpoint.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        if config_data.get("model") == "xtts":
            from TTS.tts.configs.xtts_config import XttsConfig
            from TTS.tts.models.xtts import Xtts

            config = XttsConfig()
            config.load_json(str(folder / "config.json"))
            model = Xtts(config)
            model.load_checkpoint(config, checkpoint_dir=str(folder), checkpoint_path=str(checkpoint), eval=True)
            model.to(self._torch_device())
            model.eval()
            return _Loaded("xtts", model, int(config.model_args.output_sample_rate), identity)
        from TTS.api import TTS

        api = TTS(model_path=str(checkpoint), config_path=str(folder / "config.json"), progress_bar=False)
        api.to(self._torch_device())
        return _Loaded("api", api, int(api.synthesizer.output_sample_rate), identity)

    def _torch_device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    # --- cloning -------------------------------------------------------------------------------

    def prepare_voice(self, voice: Voice) -> Path:
        """``assistant.stages.VoicePreparing``: compute a cloned voice's speaker conditioning now
        (kept on disk), so its first reply does not wait for it; returns where it is kept."""
        self.conditioning(self.load(voice), voice)
        return self.latent_cache_dir

    def conditioning(self, loaded: _Loaded, voice: Voice) -> tuple[Any, Any]:
        """(gpt_cond_latent, speaker_embedding) for a voice: memory, then disk, then computed once."""
        import torch

        if not voice.reference_clips:
            raise SynthesizeError(
                "tts-voice-invalid", f"voice '{voice.name}' has no reference clips; XTTS clones from them"
            )
        params = {k: voice.options[k] for k in _CONDITIONING_KEYS if k in voice.options}
        digest = hashlib.sha256()
        digest.update(loaded.identity.encode())
        digest.update(repr(sorted(params.items())).encode())
        for clip in voice.reference_clips:
            digest.update(file_sha256(clip).encode())
        key = digest.hexdigest()[:32]
        if key in self._latents:
            return self._latents[key]
        path = self.latent_cache_dir / f"{key}.pt"
        if path.is_file():
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
                self._latents[key] = (saved["gpt_cond_latent"], saved["speaker_embedding"])
                return self._latents[key]
            except Exception as err:  # a torn or foreign file: recompute and overwrite
                log.warning("ignoring unreadable latent cache %s: %s", path, err)
        gpt_cond_latent, speaker_embedding = loaded.model.get_conditioning_latents(
            audio_path=[str(c) for c in voice.reference_clips], **params
        )
        self.latent_computations += 1
        self.latent_cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".pt.tmp")
        # Stored on the CPU: the cache stays readable on a machine without the GPU it was made on.
        torch.save({"gpt_cond_latent": gpt_cond_latent.cpu(), "speaker_embedding": speaker_embedding.cpu()}, tmp)
        tmp.replace(path)
        self._latents[key] = (gpt_cond_latent, speaker_embedding)
        return self._latents[key]

    # --- speaking ------------------------------------------------------------------------------

    async def synthesize(self, sentence: str, *, voice: Voice) -> AsyncIterator[AudioChunk]:
        text = sentence.strip()
        if not text:
            return
        loaded = await asyncio.to_thread(self.load, voice)  # seconds on first use: not on the event loop
        generate = self._xtts_stream if loaded.kind == "xtts" else self._api_sentence
        follower = EnvelopeFollower()
        try:
            async with contextlib.aclosing(iterate_in_thread(lambda: generate(loaded, text, voice), lock=loaded.lock)) as pieces:
                async for pcm in pieces:
                    for chunk in chunks_from_pcm(pcm, loaded.sample_rate_hz, follower=follower):
                        yield chunk
        except (SynthesizeError, ModelMissingError):
            raise
        except Exception as err:
            raise SynthesizeError("tts-failed", f"Coqui ({loaded.kind}) failed on {text[:40]!r}: {err}") from err

    def _xtts_stream(self, loaded: _Loaded, text: str, voice: Voice) -> Iterator[np.ndarray]:
        import torch

        gpt_cond_latent, speaker_embedding = self.conditioning(loaded, voice)
        language = XTTS_LANGUAGES.get(detect_language(text), "en")
        options: dict[str, Any] = {k: voice.options[k] for k in _STREAM_KEYS if k in voice.options}
        for key in ("max_new_tokens", "min_new_tokens"):  # generation bounds, passed to transformers
            if key in voice.options:
                options[key] = int(str(voice.options[key]))
        with torch.inference_mode():
            for wav in loaded.model.inference_stream(
                text,
                language,
                gpt_cond_latent,
                speaker_embedding,
                stream_chunk_size=int(voice.options.get("stream_chunk_size", 20)),  # type: ignore[call-overload]
                speed=voice.speed,
                enable_text_splitting=False,
                **options,
            ):
                yield float_to_int16(wav.detach().cpu().numpy())

    def _api_sentence(self, loaded: _Loaded, text: str, voice: Voice) -> Iterator[np.ndarray]:
        kwargs: dict[str, Any] = {}
        api = loaded.model
        if voice.options.get("speaker"):
            kwargs["speaker"] = str(voice.options["speaker"])
        elif getattr(api, "is_multi_speaker", False) and voice.reference_clips:
            kwargs["speaker_wav"] = str(voice.reference_clips[0])
        if getattr(api, "is_multi_lingual", False):
            kwargs["language"] = str(voice.options.get("language") or voice.languages[0])
        wav = api.tts(text=text, **kwargs)
        yield float_to_int16(np.asarray(wav, dtype=np.float32))
