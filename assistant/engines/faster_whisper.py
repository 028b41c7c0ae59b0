"""faster-whisper (CTranslate2): the embedded default transcriber, Whisper base int8 on 2 CPU threads.

Two decoding paths:
  fit   (default for utterances <= 28 s) encodes only the audio plus 1 s of silence instead of
        Whisper's fixed 30 s window, and decodes greedily with timestamps on (the end timestamp is
        what stops Whisper from looping on a window it believes is longer). The encoder dominates
        the cost, so a 3 s utterance takes ~1/5 of the full path here. If the output looks
        degenerate (hits the token cap or compresses like a loop), the utterance is redone on the
        full path.
  full  faster-whisper's own ``transcribe()`` (30 s windows, seeks through long files).

One CTranslate2 model per (folder, compute type, threads, device) is shared by every instance and
every session; calls run in a worker thread under a lock (CTranslate2 could run two at once, but
on 2 cores that only makes both late).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assistant.config import Settings
from assistant.engines._asr_common import LocalWhisper, pick_language
from assistant.stages import SAMPLE_RATE_HZ, ModelMissingError, TranscribeError, Transcript
from assistant.transcripts import build_prompt, clean_text, collapse_repeats, compression_ratio, hotwords, join_texts

log = logging.getLogger(__name__)

FIT_MAX_S = 28.0
_FIT_PAD_S = 1.0
_TOKENS_PER_S = {"en": 10, "": 16}
"""Token cap per second of audio on the fit path, by language (fast speech is ~8 tokens/s): a
loop is cut off early instead of running to Whisper's own limit at ~10 ms a token, and a real
transcript cut by the cap is redone on the full window. English is kept close to the speech rate,
Chinese wider (its loops alternate, and a tight cap cut them before they could be recognised);
docs/measurements.md ("Whisper's token cap") has the figures."""
_TOKEN_CAP_BASE = {"en": 6, "": 10}
"""Tokens the cap allows on top of ``_TOKENS_PER_S`` (timestamps, a short word), by language."""


def token_cap(duration_s: float, language: str) -> int:
    """The fit path's decoding cap for ``duration_s`` of audio in ``language``."""
    key = language if language in _TOKENS_PER_S else ""
    return _TOKEN_CAP_BASE[key] + math.ceil(duration_s * _TOKENS_PER_S[key])


_MAX_COMPRESSION = 2.4
_NO_SPEECH = 0.6
_LOW_LOGPROB = -1.0


@dataclass(frozen=True)
class Repairs:
    """The engine's text repairs around Whisper base's loops, each switchable so that
    ``bench/asr_repairs.py`` can measure what it buys (all on: the daemon).

    ``token_cap``: the fit path's ``token_cap`` (off: Whisper's own 448-token limit);
    ``collapse``: ``collapse_repeats`` on each decode; ``redo``: a degenerate fit-window decode is
    redone on the full 30 s window (off: kept as decoded; a draft is left empty either way).
    """

    token_cap: bool = True
    collapse: bool = True
    redo: bool = True


@dataclass(frozen=True)
class Decoding:
    """faster-whisper's own decoder options, on both paths (the defaults: one greedy pass).

    ``temperatures`` with the three thresholds is Whisper's fallback ladder (a decode that
    compresses like a loop or scores too low is sampled again, hotter); ``repetition_penalty`` and
    ``no_repeat_ngram_size`` are CTranslate2's; ``hotwords``: the terms as a bare list (faster-whisper's
    ``hotwords``) instead of ``build_prompt``'s sentence.
    """

    temperatures: tuple[float, ...] = (0.0,)
    compression_ratio_threshold: float | None = None
    log_prob_threshold: float | None = None
    no_speech_threshold: float | None = None
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    hotwords: bool = False


_models: dict[tuple[str, str, int, str], tuple[Any, threading.Lock]] = {}
_models_lock = threading.Lock()


def _load(path: Path, compute_type: str, threads: int, device: str) -> tuple[Any, threading.Lock]:
    key = (str(path), compute_type, threads, device)
    with _models_lock:
        if key not in _models:
            from faster_whisper import WhisperModel

            try:
                model = WhisperModel(str(path), device=device, compute_type=compute_type, cpu_threads=threads)
            except Exception as err:  # ctranslate2 raises RuntimeError/ValueError for bad folders
                raise TranscribeError("asr-model", f"cannot load the Whisper model in {path}: {err}") from err
            _models[key] = (model, threading.Lock())
        return _models[key]


@dataclass(frozen=True)
class _Decoded:
    text: str
    language: str
    degenerate: bool


class FasterWhisperTranscriber(LocalWhisper):
    """A Transcriber over a CTranslate2 Whisper folder (``model.bin``, ``config.json``, tokenizer).

    An utterance's ``previous_text`` (what was said just before, the committed part of a long
    question) is prompt context.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        language: str = "",
        languages: Sequence[str] = ("zh", "en"),
        compute_type: str = "int8",
        threads: int = 2,
        beam_size: int = 1,
        device: str = "cpu",
        encoder_window: str = "fit",
        prompt_terms: Sequence[str] = (),
        max_new_tokens: int | None = None,
        repairs: Repairs = Repairs(),
        decoding: Decoding = Decoding(),
    ) -> None:
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "model.bin").is_file():
            raise ModelMissingError(self.model_dir.name, self.model_dir)
        self.language = language
        self.languages = tuple(languages)
        self.compute_type = compute_type
        self.threads = threads
        self.beam_size = beam_size
        self.device = device
        self.encoder_window = encoder_window
        self.prompt_terms: tuple[str, ...] = tuple(prompt_terms)
        self.max_new_tokens = max_new_tokens
        """Caps every decode (tests pass a small number: random weights never stop by themselves)."""
        self.repairs = repairs
        self.decoding = decoding
        self.redos = 0
        """Fit-window decodes redone on the full window so far (``bench/asr_repairs.py`` counts them)."""
        self._model, self._lock = _load(self.model_dir, compute_type, threads, device)

    @classmethod
    def from_settings(cls, settings: Settings) -> FasterWhisperTranscriber:
        a = settings.asr
        if a.model_path:
            path = settings.path(a.model_path)
        else:
            try:
                from assistant.models import model_dir
            except ImportError:  # the model registry is not there: fall back to models/<name>
                path = settings.models_dir / a.model
            else:
                path = model_dir(settings, a.model)
        device = "cpu" if a.device in ("auto", "cpu") else a.device
        transcriber = cls(
            path,
            language=a.language,
            languages=a.languages,
            compute_type=a.compute_type,
            threads=a.threads,
            beam_size=a.beam_size,
            device=device,
            encoder_window=a.encoder_window,
        )
        return transcriber

    # -- Transcriber ---------------------------------------------------------------------------

    def transcribe_sync(
        self, audio: np.ndarray, *, language: str = "", previous_text: str = "", draft: bool = False
    ) -> Transcript:
        """Blocking: float32 16 kHz mono -> Transcript. Errors come out as TranscribeError.

        ``draft`` (``Utterance.draft``): a degenerate fit-window decode gives an empty transcript
        instead of the full-window redo, which would keep the model from the pause's transcription."""
        if audio.size == 0:
            return Transcript("", language)
        try:
            with self._lock:
                decoded: _Decoded | None = None
                if self.encoder_window == "fit" and audio.size <= FIT_MAX_S * SAMPLE_RATE_HZ:
                    decoded = self._fit(audio, language, previous_text)
                    if decoded.degenerate and draft:
                        log.debug("draft: fit-window output looked degenerate (%r); left empty", decoded.text[:80])
                        decoded = _Decoded("", decoded.language, False)
                    elif decoded.degenerate and self.repairs.redo:
                        log.debug(
                            "fit-window output looked degenerate (%r); redoing on the full window", decoded.text[:80]
                        )
                        self.redos += 1
                        decoded = None
                if decoded is None:
                    decoded = self._full(audio, language, previous_text)
        except TranscribeError:
            raise
        except Exception as err:  # ctranslate2/tokenizers errors: wrap once, here
            raise TranscribeError("asr-failed", f"faster-whisper failed: {err}") from err
        return Transcript(clean_text(decoded.text, decoded.language), decoded.language)

    # -- the two paths -------------------------------------------------------------------------

    def _tokenizer(self, language: str) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        multilingual = self._model.model.is_multilingual
        return Tokenizer(
            self._model.hf_tokenizer, multilingual, task="transcribe", language=language if multilingual else "en"
        )

    def _prompt(self, tokenizer: Any, language: str, previous_text: str) -> list[int]:
        """The decoder's prompt: ``<|startofprev|>`` with the terms and ``previous_text``, then the task."""
        model = self._model
        terms = self.terms_for(language)
        if self.decoding.hotwords:
            prompt_text = " ".join(p for p in (hotwords(terms, language), previous_text.strip()) if p)
        else:
            prompt_text = build_prompt(terms, previous_text, language=language)
        prompt: list[int] = []
        if prompt_text:
            prompt = [tokenizer.sot_prev, *tokenizer.encode(" " + prompt_text)[-(model.max_length // 2 - 1) :]]
        prompt.extend(tokenizer.sot_sequence)
        return prompt

    def _fit(self, audio: np.ndarray, language: str, previous_text: str) -> _Decoded:
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self._model
        duration_s = audio.size / SAMPLE_RATE_HZ
        padded = np.concatenate([audio, np.zeros(int(_FIT_PAD_S * SAMPLE_RATE_HZ), dtype=np.float32)])
        features = model.feature_extractor(padded)
        frames = features.shape[-1] - features.shape[-1] % 2
        encoder_output = model.encode(np.ascontiguousarray(features[:, :frames]))
        if not language:
            if model.model.is_multilingual:
                language = pick_language(model.model.detect_language(encoder_output)[0], self.languages)
            else:
                language = "en"
        tokenizer = self._tokenizer(language)
        prompt = self._prompt(tokenizer, language, previous_text)
        if self.max_new_tokens:
            cap = self.max_new_tokens
        elif self.repairs.token_cap:
            cap = token_cap(duration_s, language)
        else:
            cap = model.max_length
        cap = min(cap, model.max_length - len(prompt))
        # faster-whisper's own decode loop: one greedy pass by default, its fallback ladder when
        # ``decoding`` asks for it
        result, avg_logprob, _, _ = model.generate_with_fallback(
            encoder_output, prompt, tokenizer, self._options(list(get_suppressed_tokens(tokenizer, (-1,))), cap)
        )
        tokens = result.sequences_ids[0]
        raw = _segments_text(tokens, tokenizer, duration_s)
        cut_by_cap = len(tokens) >= cap
        text = collapse_repeats(raw, cut_by_cap=cut_by_cap) if self.repairs.collapse else raw
        if result.no_speech_prob > _NO_SPEECH and avg_logprob < _LOW_LOGPROB:
            # Whisper's own rule: probably no speech, and what it wrote is a guess ("Thank you.").
            return _Decoded("", language, False)
        # A loop that collapse_repeats could undo is fixed; one it could not is redone on the full window.
        degenerate = self.max_new_tokens is None and (
            compression_ratio(text) > _MAX_COMPRESSION or (cut_by_cap and text == raw.rstrip("\ufffd"))
        )
        return _Decoded(text, language, degenerate)

    def _options(self, suppress_tokens: list[int], max_new_tokens: int) -> Any:
        """``decoding`` as faster-whisper's ``TranscriptionOptions`` for one fit-window decode."""
        from faster_whisper.transcribe import TranscriptionOptions

        d = self.decoding
        return TranscriptionOptions(
            beam_size=self.beam_size,
            best_of=5,
            patience=1,
            length_penalty=1,
            repetition_penalty=d.repetition_penalty,
            no_repeat_ngram_size=d.no_repeat_ngram_size,
            log_prob_threshold=d.log_prob_threshold,
            no_speech_threshold=d.no_speech_threshold,
            compression_ratio_threshold=d.compression_ratio_threshold,
            condition_on_previous_text=False,
            prompt_reset_on_temperature=0.5,
            temperatures=list(d.temperatures),
            initial_prompt=None,
            prefix=None,
            suppress_blank=True,
            suppress_tokens=suppress_tokens,
            without_timestamps=False,
            max_initial_timestamp=1.0,
            word_timestamps=False,
            prepend_punctuations="",
            append_punctuations="",
            multilingual=False,
            max_new_tokens=max_new_tokens,
            clip_timestamps="0",
            hallucination_silence_threshold=None,
            hotwords=None,
        )

    def _full(self, audio: np.ndarray, language: str, previous_text: str) -> _Decoded:
        model = self._model
        if not language and self.prompt_terms and model.model.is_multilingual:
            # the prompt depends on the language (build_prompt): detect it first
            _, _, probabilities = model.detect_language(audio)
            language = pick_language(probabilities, self.languages)
        d = self.decoding
        options: dict[str, Any] = {}
        if d.hotwords:
            options.update(hotwords=hotwords(self.terms_for(language), language) or None)
            options.update(initial_prompt=previous_text.strip() or None)
        else:
            options.update(
                initial_prompt=build_prompt(self.terms_for(language), previous_text, language=language) or None
            )
        if self.max_new_tokens is not None:
            options["max_new_tokens"] = self.max_new_tokens
        if audio.size <= FIT_MAX_S * SAMPLE_RATE_HZ:
            # A live utterance (or a fit-window redo): one greedy pass unless ``decoding`` asks for
            # the fallback ladder, which on a loaded machine can take tens of seconds for a few words.
            options["temperature"] = list(d.temperatures) if len(d.temperatures) > 1 else d.temperatures[0]
        for name in ("compression_ratio_threshold", "log_prob_threshold", "no_speech_threshold"):
            if getattr(d, name) is not None:  # else faster-whisper's own (2.4, -1.0, 0.6)
                options[name] = getattr(d, name)
        if audio.size <= FIT_MAX_S * SAMPLE_RATE_HZ:
            if self.repairs.token_cap:
                options.setdefault("max_new_tokens", token_cap(audio.size / SAMPLE_RATE_HZ, language))
        options.update(
            beam_size=self.beam_size,
            condition_on_previous_text=False,
            repetition_penalty=d.repetition_penalty,
            no_repeat_ngram_size=d.no_repeat_ngram_size,
        )
        # transcribe() detects the language eagerly (its segments are lazy), reusing that encoder
        # pass for the first window; only a language outside [asr] languages costs a second start.
        segments, info = model.transcribe(audio, language=language or None, vad_filter=False, **options)
        if not language and model.model.is_multilingual and self.languages and info.language not in self.languages:
            language = pick_language(info.all_language_probs or [], self.languages)
            segments, info = model.transcribe(audio, language=language, vad_filter=False, **options)
        text = "".join(segment.text for segment in segments)
        if self.repairs.collapse:
            text = collapse_repeats(text)
        return _Decoded(text, language or info.language, False)


def _segments_text(tokens: Sequence[int], tokenizer: Any, duration_s: float) -> str:
    """The text of the timestamped segments that lie within the audio.

    On the fit window Whisper sometimes starts a new segment after the end of the real audio (in
    the padding) and repeats itself there; such segments, and any segment repeating an earlier
    one word for word, are dropped.
    """
    begin = tokenizer.timestamp_begin
    segments: list[tuple[float, list[int]]] = []
    start: float | None = None
    current: list[int] = []
    for token in tokens:
        if token >= begin:
            if current:
                segments.append((start if start is not None else 0.0, current))
                current = []
                start = None
            else:
                start = (token - begin) * 0.02
        elif token < tokenizer.eot:
            if start is None and not current:
                start = segments[-1][0] if segments else 0.0
            current.append(token)
    if current:
        segments.append((start if start is not None else 0.0, current))
    kept: list[str] = []
    seen: set[str] = set()
    for seg_start, seg_tokens in segments:
        text = tokenizer.decode(seg_tokens).strip()
        key = "".join(ch for ch in text.lower() if ch.isalnum())
        if seg_start >= duration_s - 0.1 or (key and key in seen):
            break
        seen.add(key)
        kept.append(text)
    return join_texts(kept)
