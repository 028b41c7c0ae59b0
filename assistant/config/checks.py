"""What types alone cannot say: the working range of every number, and rules between fields.
Checked at load and again after a program changes settings (``run --port``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from assistant.config.sections import Settings
from assistant.errors import ConfigError

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
    """The range and cross-field checks the types alone cannot express; raises ConfigError naming
    ``source`` (where the values came from). ``load`` runs it, and a program that changed settings
    afterwards (``run --port``) runs it again."""
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
