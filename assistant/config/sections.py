"""The settings' shape: one dataclass per ``assistant.toml`` section, field names are the TOML keys
(units in the name), defaults are the shipped values. Reading and checking a file is
:mod:`assistant.config.loading` and :mod:`assistant.config.checks`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass
class General:
    language: str = "zh"
    """The interface language (avatar page text, fallback lines when a question's language is unknown)."""
    models_dir: str = "models"
    cache_dir: str = "cache"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass
class KB:
    paths: list[str] = field(default_factory=lambda: ["kb"])
    """Files and folders ingested by `assistant kb build` when no path is given."""
    index_dir: str = "index"
    embedder: str = "use-multilingual"
    """``use-multilingual`` (embedded default) or ``sentence-transformers``."""
    embedder_path: str = ""
    """A local sentence-transformers model folder (for ``embedder = "sentence-transformers"``)."""
    english_view: str = "all-minilm-l6-v2"
    """A second, English-only encoder (a model pack) that the FAQ entry classifier reads beside the
    embedder, for English phrasings (assistant.kb.views); ``""`` for none. Applies at `kb build`."""
    synthesize: bool = True
    """At `kb build`, the ``[llm]`` model writes questions a visitor could ask about every FAQ entry
    and document chunk (kept beside the index; only new or changed records are written again), and
    the index calibrates its scores on them (assistant.kb.selfcal). ``false`` (or `kb build
    --no-synthesis`): the index keeps the prior calibration fitted across many knowledge bases."""
    synthetic_keys: bool = True
    """With ``synthesize``: the first synthetic question of each record in each language is also
    indexed as an extra phrasing of it (a Chinese-only entry gets an English key, and the reverse).
    Measured on knowledge bases nobody tuned for (bench/kb_transfer.py): recall@1 up on every one."""
    top_k: int = 5
    chunk_chars: int = 400
    chunk_overlap_chars: int = 80
    watch: bool = True
    """The running daemon rebuilds the index (incrementally, in the background) and swaps it in
    between turns when a file under ``paths`` changes (assistant.reload); ``false``: only when asked
    (the owner's page, ``Daemon.reload_kb``)."""
    watch_interval_s: float = 2.0
    """How often ``paths`` are checked for changes (modification times and sizes)."""
    watch_quiet_s: float = 1.0
    """A change is built once the files have stayed unchanged this long: a burst of saves is one build."""


@dataclass
class Answer:
    faq_threshold: float = 0.80
    """An FAQ match scoring at least this is answered with its stored answer, verbatim (route ``faq``)."""
    relevance_threshold: float = 0.45
    """Passages scoring below this are not relevant; none left means route ``fallback``. ``"auto"``
    in the file (or the key left out): the value measured for the embedded model pack ``[llm]
    model`` names (assistant.tuning), else this default."""
    max_passages: int = 3
    """How many relevant passages the LLM sees."""
    max_tokens: int = 160
    history_turns: int = 4
    """How many earlier question/answer pairs the LLM sees (and query rewriting uses)."""
    check_numbers: bool = True
    """Withhold a generated piece that states a number its passages do not hold (assistant.grounding)."""
    verify_faq_below: float = 0.0
    """An FAQ match scoring under this is first put to the LLM ("does this entry answer the
    question?", assistant.prompts.verify_messages) and declined (route ``fallback``) when it says no;
    0 = off. Only for a model that can judge: Qwen2.5 1.5B could (0.98 with it, bench/faithfulness.py),
    0.5B answers no to everything. Costs one short LLM call on those FAQ turns. ``"auto"`` (or
    left out): the model pack's measured value, like ``relevance_threshold``."""


TUNED_KEYS = ("relevance_threshold", "verify_faq_below")
"""``[answer]`` keys whose best value depends on the LLM: ``"auto"`` takes the model pack's."""


@dataclass
class LLM:
    engine: Literal["llamacpp", "transformers", "openai"] = "llamacpp"
    model: str = "qwen2.5-0.5b"
    """A model pack name (`assistant models list`) or, for ``transformers``, a folder under models/."""
    model_path: str = ""
    """An explicit model file or folder; overrides ``model``."""
    context_tokens: int = 4096
    threads: int = 2
    temperature: float = 0.0
    """Sampling temperature of the answers; 0 decodes greedily, so the same question over the same
    knowledge base gets the same answer (sampled at 0.2, "Which floor is Human Resources on?" was
    answered "4F", "5F" and "F3" across repeats)."""
    device: str = "auto"
    """transformers: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``."""
    dtype: str = "auto"
    """transformers: ``auto``, ``float16``, ``bfloat16``, ``float32``."""
    trust_remote_code: bool = False
    """transformers: allow a model folder's own code (ChatGLM3 needs it). Off unless you trust the folder."""
    base_url: str = "http://127.0.0.1:8000/v1"
    """openai: the server's ``/v1`` URL (vLLM, llama.cpp server, Ollama)."""
    api_key_env: str = "OPENAI_API_KEY"
    """openai: the environment variable holding the API key (may be unset for local servers)."""
    timeout_s: float = 30.0
    retries: int = 2
    prompt_cache_mib: int = 2048
    """llamacpp: RAM for processed prompt states (llama.cpp's prompt cache); each request starts
    from the cached state sharing the longest beginning with it (a question in the other language
    still finds its system message processed). With ``[ahead] warm_prompts`` it also holds the start of
    every first-turn prompt, one per knowledge-base passage (~2.3 MB each for Qwen2.5 0.5B, ~2.3x
    for 1.5B); the oldest state goes when it is full. 0 = none."""


@dataclass
class ASR:
    engine: Literal["faster-whisper", "openai-whisper", "openai"] = "faster-whisper"
    model: str = "whisper-base"
    model_path: str = ""
    language: str = ""
    """``""`` detects the language per utterance; ``zh`` or ``en`` fixes it."""
    compute_type: str = "int8"
    threads: int = 2
    beam_size: int = 1
    device: str = "auto"
    partials: bool = True
    """Transcribe the growing utterance while the visitor is still talking."""
    partial_interval_ms: int = 700
    prompt_from_kb: bool = True
    """Offer the knowledge base's own vocabulary to Whisper as a prompt."""
    prompt_languages: list[str] = field(default_factory=lambda: ["zh"])
    """Speech in these languages gets that prompt. Not English by default: with it, Whisper base
    repeats a short English question until its token cap (1.5x the time, no fewer errors)."""
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 30.0
    languages: list[str] = field(default_factory=lambda: ["zh", "en"])
    """When detecting (``language = ""``), the languages to choose among; empty: any Whisper knows."""
    dip_cut_after_s: float = 0.0
    """With partials: after this many seconds of speech without a pause, cut at the quietest dip
    between words and transcribe that part while the visitor goes on, so less is left at the end.
    0 turns it off (the default: in bench/asr.py it did not lower the median latency of 3-6 s
    questions, and cutting mid-sentence raised LibriVox WER from ~4% to ~10%)."""
    encoder_window: Literal["fit", "full"] = "fit"
    """faster-whisper, utterances up to 28 s: ``fit`` encodes only the audio (+1 s), ~5x faster than
    ``full`` (Whisper's fixed 30 s window), at a small accuracy cost; falls back to ``full`` when the
    output looks degenerate. Files longer than 28 s always use ``full``."""


@dataclass
class VAD:
    threshold: float = 0.5
    silence_ms: int = 500
    """Silence after speech that ends a turn."""
    min_speech_ms: int = 250
    max_utterance_s: float = 20.0
    pre_roll_ms: int = 300
    pause_ms: int = 64
    """With partials: a pause this long starts transcribing ahead (the visitor may have finished)."""
    early_silence_ms: int = 250
    """With partials: end the turn after only this much silence when the transcript so far ends a
    sentence (. ? ! 。？！); otherwise ``silence_ms`` applies. 0 turns early ends off."""


@dataclass
class Turn:
    """The semantic end of turn (``assistant.listening.ending``, with ``[asr] partials``): at a
    pause, a model that hears how the visitor spoke (smart-turn v3.2) and the transcript so far
    decide how long the silence must last before the turn ends."""

    model: str = "smart-turn-v3.2"
    """The end-of-turn model pack (``assistant models fetch smart-turn-v3.2``); ``""``: none, the
    ``[vad]`` silence rule alone (also what happens, logged once, when the pack is missing)."""
    ask_ms: int = 150
    """Silence after which the model is asked, once per pause."""
    complete_above: float = 0.95
    """The model's probability above which it says the visitor has finished."""
    unsure_ms: int = 300
    """Silence that ends the turn when only one of the model and the transcript says finished."""
    wait_ms: int = 3000
    """Silence that ends the turn when neither does: the limit, which always ends it."""


@dataclass
class Ahead:
    """Work done ahead of time so that a reply starts sooner (assistant.ahead). All of it is
    speculative or idle-time work: it never delays a turn, and a wrong guess only costs idle CPU."""

    prefill: Literal["off", "pause", "speech"] = "speech"
    """Process the grounded prompt before the question ends, so the reply's first token comes sooner
    (engines that can: llamacpp): ``speech`` on each partial transcript while the visitor talks and
    at each pause; ``pause`` only on the transcript at a pause; ``off`` only after the question."""
    prefill_guess: float = 0.0
    """With ``prefill = "speech"``: a partial transcript that no passage is relevant to yet (the
    question half said) still has its best passage prefilled when that scores at least this. 0 = off,
    the default: a right guess saved 150-460 ms, a wrong one cost up to 400 ms (docs/configuration.md)."""
    early_faq: bool = True
    """With ``[asr] partials``: end the turn after ``[vad] early_silence_ms`` also when the transcript
    so far is answered by an FAQ entry (route ``faq``), punctuated or not."""
    warm_prompts: bool = True
    """With an LLM prompt cache (``[llm] prompt_cache_mib``): in idle time after start (never while a
    visitor speaks or a turn runs), process each passage's prompt beginning once, so a question's
    prompt starts at its question. Progress in /healthz (``prompt_cache``)."""
    faq_audio: bool = True
    """Render the FAQ answers' audio once per voice, in idle time after start, and play it instantly."""


@dataclass
class Audio:
    input: Literal["auto", "on", "off"] = "auto"
    """Local microphone: ``auto`` uses it when a device exists, ``off`` never."""
    output: Literal["auto", "on", "off"] = "auto"
    input_device: str = ""
    output_device: str = ""
    sample_rate_hz: int = 16_000
    jitter_buffer_ms: int = 60


@dataclass
class TTS:
    enabled: bool = True
    voices_dir: str = "voices"
    voice: str = "joe"
    """The voice for English (and any language without its own voice)."""
    voice_zh: str = "zh-default"
    """The voice for Chinese sentences."""
    base_url: str = "http://127.0.0.1:8000/v1"
    """Voices with ``engine = "openai"``: the speech server's ``/v1`` URL (a voice's ``[options] base_url`` wins)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Voices with ``engine = "openai"``: the environment variable holding the API key (may be unset)."""
    timeout_s: float = 30.0
    """Voices with ``engine = "openai"``: how long to wait for the server."""
    threads: int = 2
    """CPU threads for Piper's ONNX Runtime (no busy-waiting, so idle threads leave the CPU to the LLM)."""
    device: str = "auto"
    """Coqui (XTTS-v2, VITS): ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``."""


@dataclass
class Queue:
    """The unanswered queue (assistant.kb.queue): the turns that need an owner's eye, as text only
    (the question, its language, route, best matches and scores, what was said, when), never audio."""

    record: bool = True
    """``false``: nothing is recorded (existing records still go after ``retention_days``)."""
    path: str = "queue.sqlite"
    """The SQLite file (WAL), beside the default index folder; relative to this file's folder."""
    retention_days: int = 90
    """Records older than this are deleted, at start and once a day."""
    interrupted_within_s: float = 5.0
    """A reply the visitor cut short within this many seconds of hearing it start is recorded."""


@dataclass
class Admin:
    """The owner's page (``/admin`` on ``[server]``'s port): the unanswered queue grouped by meaning,
    and the edits that answer it (docs/configuration.md, "The owner's page")."""

    token: str = ""
    """The owner's own token, separate from ``[server] token`` and required even on loopback;
    ``""``: the page only says how to set one, and nothing of the queue is exposed."""
    learned_path: str = "kb/learned.csv"
    """The FAQ file the page writes (new entries, added phrasings); the project's own, never the
    owner's files. Keep it under a ``[kb] paths`` folder so builds read it."""
    audit_path: str = "admin-audit.jsonl"
    """One JSON line per edit: what, when, from which address."""
    group_similarity: float = 0.75
    """Queued questions whose embeddings' cosine reaches this join one group."""


@dataclass
class Server:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str = ""
    """Required by clients when ``host`` is not a loopback address (``?token=...``)."""
    allowed_origins: list[str] = field(default_factory=list)
    """Origins allowed to open the WebSocket besides the page's own; empty: same origin and local tools."""
    max_message_bytes: int = 262_144
    max_clients: int = 400


@dataclass
class Wyoming:
    """Home Assistant's Wyoming protocol on its own port (asr, tts and handle on the shared engines)."""

    enabled: bool = False
    uri: str = "tcp://127.0.0.1:10700"
    """Where to listen: ``tcp://HOST:PORT`` or ``unix:///path/to/socket``. Wyoming has no
    authentication: bind a non-loopback address only on a network you trust."""
    max_audio_s: float = 60.0
    """The longest audio one ``transcribe`` may send; more is refused with an ``error`` event."""
    max_event_bytes: int = 4_194_304
    """The largest event (header data plus payload) a client may send; a larger one closes the connection."""


@dataclass
class OpenAI:
    """OpenAI-compatible HTTP endpoints (``/v1/...``) on their own port, behind ``[server]``'s token,
    Host and Origin rules (docs/deployment.md, "OpenAI-compatible clients")."""

    enabled: bool = False
    uri: str = "http://127.0.0.1:8766"
    """Where to listen: ``http://HOST:PORT`` (port 0 picks a free one). A non-loopback host needs
    ``[server] token``, which clients send as their API key."""
    max_upload_bytes: int = 26_214_400
    """The largest ``/v1/audio/transcriptions`` upload (the whole multipart body); larger gets 413."""
    max_body_bytes: int = 1_048_576
    """The largest JSON body (``/v1/chat/completions``, ``/v1/audio/speech``); larger gets 413."""
    max_audio_s: float = 600.0
    """The longest audio one transcription may hold; longer gets 400."""
    max_input_chars: int = 4_096
    """The longest ``input`` one ``/v1/audio/speech`` may speak (OpenAI's own limit); longer gets 400."""


@dataclass
class Settings:
    general: General = field(default_factory=General)
    kb: KB = field(default_factory=KB)
    answer: Answer = field(default_factory=Answer)
    llm: LLM = field(default_factory=LLM)
    asr: ASR = field(default_factory=ASR)
    vad: VAD = field(default_factory=VAD)
    turn: Turn = field(default_factory=Turn)
    audio: Audio = field(default_factory=Audio)
    tts: TTS = field(default_factory=TTS)
    ahead: Ahead = field(default_factory=Ahead)
    queue: Queue = field(default_factory=Queue)
    server: Server = field(default_factory=Server)
    admin: Admin = field(default_factory=Admin)
    wyoming: Wyoming = field(default_factory=Wyoming)
    openai: OpenAI = field(default_factory=OpenAI)
    root: Path = field(default_factory=Path.cwd)
    """The folder relative paths are resolved against (the config file's folder)."""
    auto: frozenset[str] = frozenset()
    """The ``TUNED_KEYS`` the config left ``"auto"`` (or out): assistant.tuning.tune sets them for
    the LLM, again after a program swaps the model."""
    moved: tuple[str, ...] = ()
    """Keys found where an older version kept them, each as "[old] key is now [new] key" (they
    still apply; ``assistant run`` and ``doctor`` say so)."""

    def path(self, value: str) -> Path:
        """Resolve a path setting: ``~`` expanded, relative to ``root``."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def models_dir(self) -> Path:
        return self.path(self.general.models_dir)
