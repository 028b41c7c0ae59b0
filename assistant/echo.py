"""Echo: the kiosk hearing its own voice through its microphone, and the two guards against it.

"Echo" in this codebase means only this (a reply that says the question back is ``said back``,
``assistant.grounding``; Whisper writing its prompt out again ``repeats_prompt``,
``assistant.transcripts``). On a kiosk with a local speaker and microphone:

- half-duplex gating: microphone frames are not endpointed while the reply plays, nor for
  ``ECHO_TAIL_MS`` after (``EchoGuard.gated``);
- the echo filter (``EchoGuard.is_echo``): a transcript is our own voice only when the speech it
  came from was heard *while the speaker was sounding* (or within ``ECHO_REVERB_MS`` after), and
  its words are a fragment of what was being played then (or it is too short to be a question at
  all, ``FRAGMENT_CHARS``). Never by the words alone: a visitor's
  short question shares words with a long answer by chance ("How often does the shuttle run?"
  after the shuttle answer scored 0.80 on the words alone and was dropped), but it is asked after
  the answer, when nothing sounds.

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
ECHO_REVERB_MS = 600
"""After local playback stops, what the microphone hears may still be our own voice this long (the
reverberation, the device's latency): speech heard later is a visitor's, whatever its words."""
ECHO_OVERLAP = 0.5
"""Speech is judged against the reply only when at least this share of it was heard while the speaker
sounded (``ECHO_REVERB_MS`` included): an echo lies inside the playback, a visitor who answers right
after it only touches its end."""
ECHO_LEAD_S = 5.0
"""A reply's sentence is said (``said``) shortly before its audio sounds: the texts said from this
long before a sounding span began belong to what it played."""
ECHO_MEMORY_S = 30.0
"""Sounding spans and texts are kept this long."""
ECHO_SIMILARITY = 0.6
"""A transcript this similar (0..1) to what was playing while it was heard is our own voice."""
FRAGMENT_CHARS = 12
"""A transcript this short (letters) heard inside our own playback is no question: the residue of our
voice ("the I.") or Whisper's guess on it ("Sorry."), or a "stop" that barge-in has already obeyed."""
MIN_BLOCK_CHARS = 3
"""Only runs of at least this many characters in common count as shared words (single letters of a
short question are found in any long answer)."""

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def _normalise(text: str) -> str:
    return _NON_WORD.sub("", text.lower())


def echo_similarity(heard: str, said: str) -> float:
    """How much of ``heard`` is contained in ``said`` (0..1), in runs of ``MIN_BLOCK_CHARS`` or more:
    Whisper re-transcribing our own reply yields a fragment of it, so containment, not whole-string
    equality, is the test."""
    h, s = _normalise(heard), _normalise(said)
    if not h or not s:
        return 0.0
    if h in s:
        return 1.0
    match = difflib.SequenceMatcher(None, h, s, autojunk=False)
    matched = sum(block.size for block in match.get_matching_blocks() if block.size >= MIN_BLOCK_CHARS)
    return matched / len(h)


class EchoGuard:
    """What the kiosk said, and when its speaker sounded; ``clock`` gives seconds (monotonic), the
    session's clock: every time given to or kept by the guard is on it."""

    def __init__(
        self,
        *,
        memory_s: float = ECHO_MEMORY_S,
        threshold: float = ECHO_SIMILARITY,
        tail_ms: float = ECHO_TAIL_MS,
        reverb_ms: float = ECHO_REVERB_MS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.memory_s = memory_s
        self.threshold = threshold
        self.tail_ms = tail_ms
        self.reverb_ms = reverb_ms
        self._clock = clock
        self._said: deque[tuple[float, str]] = deque(maxlen=64)
        self._spans: deque[list[float]] = deque(maxlen=64)
        """[start, end] of each stretch the speaker sounded (seconds), oldest first."""
        self._sounding = False

    # -- half duplex ---------------------------------------------------------------------------

    def gated(self, sounding: bool) -> bool:
        """Record whether the speaker is ``sounding`` now (called for every microphone frame) and
        say whether microphone frames must be ignored: it sounds, or stopped less than ``tail_ms`` ago."""
        now = self._clock()
        if sounding:
            if self._sounding and self._spans:
                self._spans[-1][1] = now
            else:
                self._spans.append([now, now])
            self._sounding = True
            return True
        self._sounding = False
        return bool(self._spans) and (now - self._spans[-1][1]) * 1000.0 < self.tail_ms

    # -- the filter ----------------------------------------------------------------------------

    def said(self, text: str) -> None:
        """``text`` is being (or was) said by the kiosk."""
        if text.strip():
            self._said.append((self._clock(), text))

    def overlap(self, start_s: float, end_s: float) -> tuple[float, float | None]:
        """The share (0..1) of ``start_s..end_s`` heard while the speaker sounded (reverberation
        included), and when the first sounding span it overlaps began (None: none)."""
        reverb_s = self.reverb_ms / 1000.0
        length = max(end_s - start_s, 1e-3)
        covered = 0.0
        began: float | None = None
        moment = end_s - start_s < 1e-3  # a partial's "now": inside a span or not
        for span_start, span_end in self._spans:
            lo, hi = max(start_s, span_start), min(end_s, span_end + reverb_s)
            if hi > lo or (moment and span_start <= start_s <= span_end + reverb_s):
                covered += max(0.0, hi - lo)
                began = span_start if began is None else began
        if moment:
            return (1.0 if began is not None else 0.0), began
        return min(1.0, covered / length), began

    def is_echo(self, heard: str, *, start_s: float | None = None, end_s: float | None = None) -> bool:
        """Whether a transcript is the kiosk's own voice come back. ``start_s``..``end_s``: when the
        speech it came from was heard (the guard's clock); by default, a moment now (a partial
        transcript of speech still going on)."""
        now = self._clock()
        end = now if end_s is None else end_s
        start = end if start_s is None else min(start_s, end)
        self._forget(now)
        letters = len(_normalise(heard))
        share, began = self.overlap(start, end)
        if began is None or share < ECHO_OVERLAP:
            return False  # nothing of ours was sounding: a visitor's words, even if they match ours
        if letters <= FRAGMENT_CHARS:
            return letters > 0
        playing = [text for t, text in self._said if began - ECHO_LEAD_S <= t <= end]
        return any(echo_similarity(heard, text) >= self.threshold for text in playing)

    def _forget(self, now: float) -> None:
        while self._said and now - self._said[0][0] > self.memory_s:
            self._said.popleft()
        while len(self._spans) > 1 and now - self._spans[0][1] > self.memory_s:
            self._spans.popleft()
