"""Echo: the kiosk hearing its own voice through its microphone, and the two guards against it.

"Echo" in this codebase means only this (a reply that says the question back is ``said back``,
``assistant.grounding``; Whisper writing its prompt out again ``repeats_prompt``,
``assistant.transcripts``). On a kiosk with a local speaker and microphone:

- half-duplex gating: microphone frames are not endpointed while the reply plays, nor for
  ``ECHO_TAIL_MS`` after (``EchoGuard.gated``);
- the echo filter: a transcript that matches what was just said is dropped (``EchoGuard.is_echo``).

Browser sessions rely on the browser's echo cancellation and keep voice barge-in.
"""

from __future__ import annotations

import difflib
import re
import time
from collections import deque
from collections.abc import Callable

ECHO_TAIL_MS = 400
"""After local playback stops, the microphone stays gated this long (room reverberation, device latency)."""
ECHO_MEMORY_S = 30.0
"""Replies spoken within this window are compared with new transcripts (the echo filter)."""
ECHO_SIMILARITY = 0.6
"""A transcript this similar (0..1) to something just said is our own voice, not a visitor."""
MIN_CHARS = 4
"""Short transcripts ("yes", "好") match by chance: only ones with at least this many letters are judged."""

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def _normalise(text: str) -> str:
    return _NON_WORD.sub("", text.lower())


def echo_similarity(heard: str, said: str) -> float:
    """How much of ``heard`` is contained in ``said`` (0..1): Whisper re-transcribing our own reply
    yields a fragment of it, so containment, not whole-string equality, is the test."""
    h, s = _normalise(heard), _normalise(said)
    if not h or not s:
        return 0.0
    if h in s:
        return 1.0
    match = difflib.SequenceMatcher(None, h, s, autojunk=False)
    matched = sum(block.size for block in match.get_matching_blocks())
    return matched / len(h)


class EchoGuard:
    """What the kiosk said and when its speaker sounded; ``clock`` gives seconds (monotonic)."""

    def __init__(
        self,
        *,
        memory_s: float = ECHO_MEMORY_S,
        threshold: float = ECHO_SIMILARITY,
        tail_ms: float = ECHO_TAIL_MS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.memory_s = memory_s
        self.threshold = threshold
        self.tail_ms = tail_ms
        self._clock = clock
        self._said: deque[tuple[float, str]] = deque(maxlen=32)
        self._sounding_until = float("-inf")

    # -- half duplex ---------------------------------------------------------------------------

    def gated(self, sounding: bool) -> bool:
        """Whether microphone frames must be ignored now: the speaker is ``sounding``, or stopped
        less than ``tail_ms`` ago."""
        now = self._clock()
        if sounding:
            self._sounding_until = now
            return True
        return (now - self._sounding_until) * 1000.0 < self.tail_ms

    # -- the filter ----------------------------------------------------------------------------

    def said(self, text: str) -> None:
        """``text`` is being (or was) said by the kiosk."""
        if text.strip():
            self._said.append((self._clock(), text))

    def is_echo(self, heard: str) -> bool:
        """Whether a transcript is the kiosk's own recent words come back."""
        now = self._clock()
        if len(_normalise(heard)) < MIN_CHARS:
            return False
        return any(
            now - t <= self.memory_s and echo_similarity(heard, text) >= self.threshold for t, text in self._said
        )
