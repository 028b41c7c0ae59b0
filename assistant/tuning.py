"""Measured per-model values, as plain data, and how ``"auto"`` settings take them.

Some ``[answer]`` settings have no right value in general, only per language model: how weak a
passage the model may be shown (``relevance_threshold``: a model that declines well can see weaker
ones) and whether it can judge an FAQ match before it is read out (``verify_faq_below``). Left
``"auto"`` in assistant.toml (or left out), they take the values measured for the embedded model
pack ``[llm] model`` names: by ``bench/faithfulness.py`` (docs/configuration.md, "Thresholds by
model", and bench/results/faithfulness-combined.json); qwen2.5-0.5b's ``relevance_threshold`` again,
once each index calibrated itself, leave one knowledge base out on public ones
(``bench/kb_threshold.py``, bench/results/kb_threshold.json). A model
nobody measured (another engine, an explicit ``model_path``, a folder) gets the built-in defaults,
which suit a model of unknown judgement: only strong passages, no FAQ check.

The composition root applies this (``assistant.registry.load_settings``), not the config parser:
the config knows nothing of model packs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from assistant.config import TUNED_KEYS, Answer, ConfigError, Settings

MEASURED: Mapping[str, Mapping[str, float]] = {
    "qwen2.5-0.5b": {"relevance_threshold": 0.15, "verify_faq_below": 0.0},
    "qwen2.5-1.5b": {"relevance_threshold": 0.15, "verify_faq_below": 0.98},
}
"""``[answer]`` values per embedded LLM pack name, for the ``TUNED_KEYS`` a config leaves ``"auto"``."""


def measured_model(settings: Settings) -> str | None:
    """The embedded LLM pack ``[llm]`` runs, when values were measured for it; else None."""
    llm = settings.llm
    embedded = llm.engine == "llamacpp" and not llm.model_path
    return llm.model if embedded and llm.model in MEASURED else None


def tune(settings: Settings) -> Settings:
    """``settings`` with the ``[answer]`` keys its config left ``"auto"`` (``settings.auto``) set for
    its LLM, then checked against ``faq_threshold``. Call it again after swapping the model."""
    if settings.auto:
        defaults = Answer()
        values = {key: getattr(defaults, key) for key in settings.auto}
        model = measured_model(settings)
        if model is not None:
            values.update((k, v) for k, v in MEASURED[model].items() if k in settings.auto)
        settings = dataclasses.replace(settings, answer=dataclasses.replace(settings.answer, **values))
    answer = settings.answer
    if answer.relevance_threshold > answer.faq_threshold:
        why = (
            f'; relevance_threshold is "auto": the value for {settings.llm.model})'
            if "relevance_threshold" in settings.auto
            else ")"
        )
        raise ConfigError(
            f"[answer] relevance_threshold must not be above faq_threshold "
            f"({answer.relevance_threshold:g} > {answer.faq_threshold:g}{why}"
        )
    return settings


def describe(settings: Settings) -> str:
    """The ``[answer]`` values that depend on the LLM and where each came from, in words (doctor,
    the daemon's start log)."""
    model = measured_model(settings)
    source = f"measured for {model}" if model is not None else "auto: the defaults for a model not measured"
    return ", ".join(
        f"{key} {getattr(settings.answer, key):g} ({source if key in settings.auto else 'set explicitly'})"
        for key in TUNED_KEYS
    )
