"""``assistant.toml`` -> validated, typed settings.

Every section is a dataclass; its field names are the TOML keys (units in the name). Loading checks
every key and type and says, in one paragraph, which key, what was expected and what was found.
Environment overrides: ``ASSISTANT__SECTION__KEY=value`` (the value is read as TOML when it parses,
else as a string), e.g. ``ASSISTANT__SERVER__PORT=9000``.

Relative paths in the file are relative to the file's own folder.
"""

from assistant.config.checks import openai_uri_problem, validate, wyoming_uri_problem
from assistant.config.loading import DEFAULT_CONFIG, ENV_PREFIX, load
from assistant.config.sections import (
    ASR,
    KB,
    LLM,
    TTS,
    TUNED_KEYS,
    VAD,
    Admin,
    Ahead,
    Answer,
    Audio,
    General,
    OpenAI,
    Queue,
    Server,
    Settings,
    Turn,
    Wyoming,
)
from assistant.errors import ConfigError

__all__ = [
    "ASR",
    "DEFAULT_CONFIG",
    "ENV_PREFIX",
    "KB",
    "LLM",
    "TTS",
    "TUNED_KEYS",
    "VAD",
    "Admin",
    "Ahead",
    "Answer",
    "Audio",
    "ConfigError",
    "General",
    "OpenAI",
    "Queue",
    "Server",
    "Settings",
    "Turn",
    "Wyoming",
    "load",
    "openai_uri_problem",
    "validate",
    "wyoming_uri_problem",
]
