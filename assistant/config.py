"""``assistant.toml`` -> validated, typed settings.

Every section is a dataclass; its field names are the TOML keys (units in the name). Loading checks
every key and type and says, in one paragraph, which key, what was expected and what was found.
Environment overrides: ``ASSISTANT__SECTION__KEY=value`` (the value is read as TOML when it parses,
else as a string), e.g. ``ASSISTANT__SERVER__PORT=9000``.

Relative paths in the file are relative to the file's own folder.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from assistant.errors import ConfigError

DEFAULT_CONFIG = "assistant.toml"
ENV_PREFIX = "ASSISTANT__"



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


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _check(where: str, tp: Any, value: Any) -> Any:
    origin = get_origin(tp)
    ok: bool
    if origin is Literal:
        ok = value in get_args(tp)
    elif origin is list:
        if not isinstance(value, list):
            ok = False
        else:
            return [_check(f"{where}[{i}]", get_args(tp)[0], v) for i, v in enumerate(value)]
    elif origin in (types.UnionType, typing.Union):
        for arg in get_args(tp):
            try:
                return _check(where, arg, value)
            except ConfigError:
                continue
        ok = False
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is str:
        ok = isinstance(value, str)
    elif tp is type(None):
        ok = value is None
    else:
        ok = True
    if not ok:
        raise ConfigError(f"{where}: expected {_type_name(tp)}, found {_describe(value)}")
    return value


def _build_section(name: str, cls: type, table: Any, source: str, from_env: frozenset[str] = frozenset()) -> Any:
    """One section's dataclass; a bad value is reported where it came from (the file, or the
    ``ASSISTANT__SECTION__KEY`` variable for keys in ``from_env``)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{name}] must be a table, found {_describe(table)}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in table.items():
        if key not in known:
            close = ", ".join(sorted(known))
            raise ConfigError(f"{source}: unknown key '{key}' in [{name}]; the keys of [{name}] are: {close}")
        kwargs[key] = _check(_where(name, key, source, from_env), hints[key], value)
    return cls(**kwargs)


def _where(section: str, key: str, source: str, from_env: frozenset[str]) -> str:
    """Where a value came from, for an error message: its environment variable or the file."""
    if key in from_env:
        return f"environment variable {ENV_PREFIX}{section.upper()}__{key.upper()} ([{section}] {key})"
    return f"{source}: [{section}] {key}"


def _env_overrides(environ: typing.Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2:
            raise ConfigError(f"environment variable {name}: expected {ENV_PREFIX}SECTION__KEY")
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out.setdefault(parts[0], {})[parts[1]] = value
    return out


def load(path: str | Path | None = None, *, environ: typing.Mapping[str, str] | None = None) -> Settings:
    """Load settings from ``path`` (default: ``./assistant.toml`` if present, else built-in defaults).

    Raises ConfigError with a one-paragraph message on any problem.
    """
    environ = os.environ if environ is None else environ
    explicit = path is not None or "ASSISTANT_CONFIG" in environ
    cfg_path = Path(path or environ.get("ASSISTANT_CONFIG", DEFAULT_CONFIG)).expanduser()
    data: dict[str, Any] = {}
    if cfg_path.exists():
        try:
            data = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{cfg_path}: not valid TOML: {err}") from err
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{cfg_path}: cannot be read: {err}") from err
        root = cfg_path.resolve().parent
    elif explicit:
        raise ConfigError(f"config file {cfg_path} does not exist")
    else:
        root = Path.cwd()
    # Keys an older version kept elsewhere move first, in the file and in the environment apart, so
    # that an old-named variable still overrides the file as any variable does.
    moved = _move_keys(data, str(cfg_path))
    overrides = _env_overrides(environ)
    moved += _move_keys(overrides, "the environment")
    for section, values in overrides.items():
        data.setdefault(section, {})
        if isinstance(data[section], dict):
            data[section].update(values)
    auto = _take_auto(data, str(cfg_path), frozenset(overrides.get("answer", {})))
    hints = typing.get_type_hints(Settings)
    sections = {f.name for f in dataclasses.fields(Settings)} - {"root", "auto", "moved"}
    kwargs: dict[str, Any] = {}
    for name, table in data.items():
        if name not in sections:
            raise ConfigError(
                f"{cfg_path}: unknown section [{name}]; the sections are: {', '.join(sorted(sections))}"
            )
        from_env = frozenset(overrides.get(name, {}))
        kwargs[name] = _build_section(name, hints[name], table, str(cfg_path), from_env)
    settings = Settings(**kwargs, root=root, auto=auto, moved=moved)
    _validate(settings, str(cfg_path))
    return settings


MOVED_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("llm", "prefill"): ("ahead", "prefill"),
    ("llm", "prefill_guess"): ("ahead", "prefill_guess"),
    ("llm", "warm_passages"): ("ahead", "warm_prompts"),
    ("vad", "early_faq"): ("ahead", "early_faq"),
    ("tts", "faq_cache"): ("ahead", "faq_audio"),
}
"""Keys an older version kept elsewhere: (section, key) -> where they are now. Everything done ahead
of time came together in ``[ahead]``; an old file keeps working."""


def _move_keys(data: dict[str, Any], source: str) -> tuple[str, ...]:
    """Move ``MOVED_KEYS`` found in ``data`` (one source: the file, or the environment) to their new
    place; returns a note for each. The same source setting both names to different values is an
    error that says so."""
    notes = []
    for (section, key), (new_section, new_key) in MOVED_KEYS.items():
        table = data.get(section)
        if not isinstance(table, dict) or key not in table:
            continue
        value = table.pop(key)
        if not table:
            del data[section]
        target = data.setdefault(new_section, {})
        if isinstance(target, dict):
            if new_key in target and target[new_key] != value:
                raise ConfigError(
                    f"{source}: [{section}] {key} = {value!r} and [{new_section}] {new_key} = {target[new_key]!r} "
                    f"name one setting (it moved to [{new_section}] {new_key}); keep only the new one"
                )
            target[new_key] = value
        notes.append(f"[{section}] {key} is now [{new_section}] {new_key}")
    return tuple(notes)


def _take_auto(data: dict[str, Any], source: str, from_env: frozenset[str]) -> frozenset[str]:
    """Remove the ``"auto"`` values of ``TUNED_KEYS`` from ``data["answer"]``; those keys and the
    ones left out are returned, to be set per model. Any other string is an error that says so."""
    table = data.get("answer", {})
    if not isinstance(table, dict):
        return frozenset()  # reported by _build_section
    auto = {key for key in TUNED_KEYS if key not in table}
    for key in TUNED_KEYS:
        value = table.get(key)
        if value == "auto":
            auto.add(key)
            del table[key]
        elif isinstance(value, str):
            where = _where("answer", key, source, from_env)
            raise ConfigError(f'{where}: expected a number or "auto", found {_describe(value)}')
    return frozenset(auto)


RANGES: dict[tuple[str, str], tuple[float | None, float | None]] = {
    # (section, key): (lowest, highest), None: unbounded. Values outside cannot work: llama.cpp
    # aborts the process on 0 threads, 0 clients or a 0-byte message limit locks everyone out.
    ("kb", "top_k"): (1, None),
    ("kb", "chunk_chars"): (50, None),
    ("kb", "chunk_overlap_chars"): (0, None),
    ("kb", "watch_interval_s"): (0.05, 3_600.0),
    ("kb", "watch_quiet_s"): (0.0, 600.0),
    ("answer", "max_passages"): (1, 20),
    ("answer", "max_tokens"): (8, None),
    ("answer", "history_turns"): (0, 50),
    ("llm", "context_tokens"): (512, None),
    ("llm", "threads"): (1, 256),
    ("llm", "temperature"): (0.0, 2.0),
    ("llm", "timeout_s"): (0.1, None),
    ("llm", "retries"): (0, 10),
    ("llm", "prompt_cache_mib"): (0, None),
    ("asr", "threads"): (1, 256),
    ("asr", "beam_size"): (1, 20),
    ("asr", "partial_interval_ms"): (100, None),
    ("asr", "timeout_s"): (0.1, None),
    ("asr", "dip_cut_after_s"): (0.0, None),
    ("vad", "silence_ms"): (100, 10_000),
    ("vad", "min_speech_ms"): (0, 10_000),
    ("vad", "max_utterance_s"): (1.0, 120.0),
    ("vad", "pre_roll_ms"): (0, 5_000),
    ("vad", "pause_ms"): (0, 10_000),
    ("vad", "early_silence_ms"): (0, 10_000),
    ("turn", "ask_ms"): (32, 5_000),
    ("turn", "unsure_ms"): (32, 10_000),
    ("turn", "wait_ms"): (100, 10_000),
    ("audio", "sample_rate_hz"): (8_000, 48_000),
    ("audio", "jitter_buffer_ms"): (0, 2_000),
    ("tts", "threads"): (1, 256),
    ("tts", "timeout_s"): (0.1, None),
    ("queue", "retention_days"): (1, 36_500),
    ("queue", "interrupted_within_s"): (0.0, 600.0),
    ("admin", "group_similarity"): (0.0, 1.0),
    ("server", "port"): (1, 65_535),
    ("server", "max_message_bytes"): (4_096, 64 * 1024 * 1024),
    ("server", "max_clients"): (1, 100_000),
    ("wyoming", "max_audio_s"): (1.0, 600.0),
    ("wyoming", "max_event_bytes"): (65_536, 64 * 1024 * 1024),
    ("openai", "max_upload_bytes"): (65_536, 512 * 1024 * 1024),
    ("openai", "max_body_bytes"): (4_096, 64 * 1024 * 1024),
    ("openai", "max_audio_s"): (1.0, 3_600.0),
    ("openai", "max_input_chars"): (16, 100_000),
}
"""The range of every number whose type alone allows values that cannot work (checked at load)."""


def _range_problem(s: Settings, section: str, key: str, lo: float | None, hi: float | None) -> str | None:
    value = getattr(getattr(s, section), key)
    if (lo is None or value >= lo) and (hi is None or value <= hi):
        return None
    if hi is None:
        expected = f"at least {lo:g}"
    elif lo is None:
        expected = f"at most {hi:g}"
    else:
        expected = f"within {lo:g}..{hi:g}"
    return f"[{section}] {key} must be {expected}, found {value!r}"


def validate(s: Settings, source: str) -> None:
    """Check ranges again after a program changed settings (``run --port``); raises ConfigError
    naming ``source`` (where the values came from)."""
    _validate(s, source)


def _validate(s: Settings, source: str) -> None:
    """Cross-field and range checks the types alone cannot express."""
    for (section, key), (lo, hi) in RANGES.items():
        problem = _range_problem(s, section, key, lo, hi)
        if problem:
            raise ConfigError(f"{source}: {problem}")
    checks: list[tuple[bool, str]] = [
        (
            not s.admin.token or s.admin.token != s.server.token,
            "[admin] token must differ from [server] token: the kiosk's token must not open the owner's page",
        ),
        (0.0 <= s.answer.relevance_threshold <= 1.0, "[answer] relevance_threshold must be within 0..1"),
        (0.0 <= s.answer.faq_threshold <= 1.0, "[answer] faq_threshold must be within 0..1"),
        (0.0 <= s.answer.verify_faq_below <= 1.0, "[answer] verify_faq_below must be within 0..1"),
        (0.0 <= s.ahead.prefill_guess <= 1.0, "[ahead] prefill_guess must be within 0..1"),
        (
            # an "auto" value is known only for a model (assistant.tuning checks it then)
            "relevance_threshold" in s.auto or s.answer.relevance_threshold <= s.answer.faq_threshold,
            f"[answer] relevance_threshold must not be above faq_threshold "
            f"({s.answer.relevance_threshold:g} > {s.answer.faq_threshold:g})",
        ),
        (s.kb.chunk_overlap_chars < s.kb.chunk_chars, "[kb] chunk_overlap_chars must be below chunk_chars"),
        (0.0 < s.vad.threshold < 1.0, "[vad] threshold must be within 0..1 (exclusive)"),
        (0.0 < s.turn.complete_above < 1.0, "[turn] complete_above must be within 0..1 (exclusive)"),
        (
            s.turn.ask_ms <= s.turn.unsure_ms <= s.turn.wait_ms,
            f"[turn] needs ask_ms <= unsure_ms <= wait_ms (found {s.turn.ask_ms}, {s.turn.unsure_ms}, "
            f"{s.turn.wait_ms}): the more the evidence says finished, the sooner the turn ends",
        ),
        (
            wyoming_uri_problem(s.wyoming.uri) is None,
            f"[wyoming] uri: {wyoming_uri_problem(s.wyoming.uri)}",
        ),
        (
            openai_uri_problem(s.openai.uri) is None,
            f"[openai] uri: {openai_uri_problem(s.openai.uri)}",
        ),
        (
            s.answer.max_tokens + 256 <= s.llm.context_tokens,
            f"[llm] context_tokens must leave room for the prompt (256 tokens at least) besides [answer] "
            f"max_tokens ({s.llm.context_tokens} - {s.answer.max_tokens} < 256)",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{source}: {message}")


def wyoming_uri_problem(uri: str) -> str | None:
    """What is wrong with a Wyoming listening address (``tcp://HOST:PORT``, ``unix:///path``), or None."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as err:
        return f"{uri!r} is not an address ({err})"
    if parts.scheme == "tcp" and parts.hostname and port:
        return None
    if parts.scheme == "unix" and parts.path:
        return None
    return f"expected tcp://HOST:PORT or unix:///path/to/socket, found {uri!r}"


def openai_uri_problem(uri: str) -> str | None:
    """What is wrong with the OpenAI-compatible endpoints' listening address (``http://HOST:PORT``), or None."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as err:
        return f"{uri!r} is not an address ({err})"
    if parts.scheme == "http" and parts.hostname and port is not None and parts.path in ("", "/"):
        return None
    return f"expected http://HOST:PORT (HTTPS belongs to a proxy in front), found {uri!r}"
