"""The reply gate: what of a generated reply may be shown and said, decided as it is written.

Pure and incremental, like ``SentenceSplitter`` (which it uses): text deltas in, ``Release``s out.
No I/O, no clock; the turn feeds it the model's deltas and acts on what comes out.

Two checks from ``assistant.grounding`` apply, each optional:

- ``numbers`` (``NumberCheck``, ``[answer] check_numbers``): a piece stating a number its passages do
  not hold is never shown nor said, and generation stops there (``stopped``). Pieces are then
  released whole, once checked.
- ``said_back`` (``SaidBackCheck``): pieces at the start of the reply that only say the question
  back are dropped. Until the first piece is judged nothing streams, since it may turn out to be
  the question said back.

When the checks leave nothing to say, the reply is ``decline`` (the prompt's own "the documents do
not say" line), so the visitor always hears an honest answer, never silence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from assistant.grounding import NumberCheck, SaidBackCheck
from assistant.sentences import SentenceSplitter


@dataclass(frozen=True)
class Release:
    """What a delta (or the end) lets out: ``shown`` is new reply text for the screen (possibly
    empty), ``sentences`` are new whole pieces to speak, in order."""

    shown: str = ""
    sentences: tuple[str, ...] = ()


@dataclass
class ReplyGate:
    numbers: NumberCheck | None = None
    said_back: SaidBackCheck | None = None
    decline: str = ""
    """Said instead when the checks leave nothing of the reply."""
    withheld: list[str] = field(default_factory=list)
    """The numbers of the piece that stopped the reply (empty: none did)."""
    dropped: list[str] = field(default_factory=list)
    """Pieces dropped as the question said back."""

    def __post_init__(self) -> None:
        self._splitter = SentenceSplitter()
        self._text = ""
        """Everything the model wrote (or, after a decline, the decline line)."""
        self._hidden = 0
        """``_text[:_hidden]``: pieces dropped as said back, never shown nor said."""
        self._released = 0
        """How much of ``_text`` went out (or was hidden)."""
        self._finished = False

    @property
    def stopped(self) -> bool:
        """A piece was withheld: the caller stops generation (nothing after it is said)."""
        return bool(self.withheld)

    @property
    def reply(self) -> str:
        """The reply as shown so far (the whole of it after ``finish``)."""
        return self._text[self._hidden : self._released].strip()

    def feed(self, delta: str) -> Release:
        if self.stopped or self._finished or not delta:
            return Release()
        self._text += delta
        pieces = self._drop_said_back(self._splitter.feed(delta))
        if self._withhold(pieces):
            return Release()
        # Text streams as written unless a check has to see whole pieces first.
        streaming = self.numbers is None and (self.said_back is None or self._released > self._hidden)
        if not (streaming or pieces):
            return Release()
        upto = len(self._text) if streaming else len(self._text) - len(self._splitter.pending)
        return Release(self._release(upto), tuple(pieces))

    def finish(self) -> Release:
        """The model is done (or was stopped): the rest, or the decline line when nothing is left."""
        if self._finished:
            return Release()
        self._finished = True
        shown = ""
        sentences: tuple[str, ...] = ()
        if not self.stopped:
            pieces = self._drop_said_back([s for s in self._splitter.flush() if s])
            if not self._withhold(pieces) and pieces:
                shown, sentences = self._release(len(self._text)), tuple(pieces)
        if (self.stopped or self._hidden) and not self._text[self._hidden : self._released].strip():
            self._text, self._hidden, self._released = self.decline, 0, 0
            return Release(shown + self._release(len(self._text)), (*sentences, self.decline))
        return Release(shown, sentences)

    def _release(self, upto: int) -> str:
        if upto <= self._released:
            return ""
        out, self._released = self._text[self._released : upto], upto
        return out

    def _withhold(self, pieces: list[str]) -> bool:
        if self.numbers is not None:
            self.withheld = [n for p in pieces for n in self.numbers.ungrounded(p)]
        return self.stopped

    def _drop_said_back(self, pieces: list[str]) -> list[str]:
        """Drop the pieces at the start of the reply that only say the question back."""
        while self.said_back is not None and pieces and self._released == self._hidden and self.said_back.said_back(pieces[0]):
            start = self._text.find(pieces[0], self._hidden)
            self._hidden = self._released = (start if start >= 0 else self._hidden) + len(pieces[0])
            self.dropped.append(pieces[0])
            pieces = pieces[1:]
        return pieces
