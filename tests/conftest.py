"""Shared test set-up: tests run offline, from the repository root, with no sound card."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def models_dir() -> Path:
    return ROOT / "models"


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    """Tests marked ``virtual_time`` run on a loop whose clock jumps to the next timer when idle
    (tests/virtual_time.py): recordings replay at once. Every other test gets a plain loop."""
    import asyncio

    from virtual_time import VirtualTimeLoop

    if item.get_closest_marker("virtual_time") is not None:
        return {"virtual-time": VirtualTimeLoop}
    return {"real-time": asyncio.new_event_loop}
