"""An event loop on virtual time, for tests of code that decides on a stream clock.

``asyncio.sleep`` and every timer complete as soon as nothing else is ready: when the loop would
wait, its clock jumps to the next timer instead. A recording replayed "in real time" by
``ArraySource`` (which paces on the loop's clock) then takes milliseconds, and the listener sees the
same stream it would see live. Only for code that waits on timers alone: a thread or a socket
working meanwhile would see time jump past it, so tests that use real sockets or worker threads
keep the real loop.

Use it in a test module with ``pytestmark = pytest.mark.usefixtures("virtual_time")`` or by
requesting the ``virtual_time`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


class _JumpingSelector(selectors.DefaultSelector):  # type: ignore[misc, valid-type]
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)  # I/O already waiting (the loop's own wake-up pipe) comes first
        if ready or timeout is None:
            return ready if ready or timeout is not None else super().select(None)
        self._loop.now += max(0.0, timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


class VirtualTimePolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return VirtualTimeLoop()
