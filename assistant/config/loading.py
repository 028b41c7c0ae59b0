"""Reading settings: the TOML file, then ``ASSISTANT__SECTION__KEY`` overrides, each value checked
against its field's type; keys an older version kept elsewhere are moved, "auto" tuned keys noted."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from assistant.config.checks import validate
from assistant.config.sections import TUNED_KEYS, Settings
from assistant.errors import ConfigError

DEFAULT_CONFIG = "assistant.toml"
ENV_PREFIX = "ASSISTANT__"


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
    validate(settings, str(cfg_path))
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
