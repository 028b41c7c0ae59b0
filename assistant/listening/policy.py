"""When to transcribe what, and when the visitor has finished: the listener's decisions, pure.

One ``Hearing`` per utterance. The runner (``assistant.listening.listener``) calls ``step(state)``
after every frame and every finished transcription, with the endpointer's ``SpeechState``: all
time here is stream time, in samples, so the decisions do not depend on how fast the machine is
(the runner measures how long transcriptions take and says so in ``busy_samples``). ``step``
returns the ``Action``s to carry out; the runner starts and cancels the tasks.

What it decides (measured in ``bench/asr.py``):

1. Partials. While the visitor talks, the part since the last commit point is transcribed every
   ``[asr] partial_interval_ms`` (or 3x as long as the last transcription took, when the machine is
   slower than that), to show and to prepare the answer.
2. Ahead at pauses. After ``[vad] pause_ms`` of silence, the audio since the last commit point is
   transcribed at once: the visitor may have finished. If they speak again after a real pause
   (>= ``COMMIT_GAP_MS``, not a dip inside a word), that text is committed and later transcriptions
   cover only the audio after it, with the committed text as context (``Utterance.previous_text``).
3. The end of the turn. At each pause the evidence (the transcript at the pause, whether the work
   ahead found it answerable, and, with a ``[turn] model``, the model's verdict, asked once per
   pause after ``[turn] ask_ms``) goes to ``assistant.listening.ending``, which says how much silence
   ends the turn: ``[vad] early_silence_ms`` for a finished sentence without a model, at once when the
   model and the transcript both say finished, up to ``[turn] wait_ms`` when neither does.
4. Optionally (``[asr] dip_cut_after_s``), speech that goes on without any pause is cut at the
   quietest dip between words and that piece transcribed while the visitor goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from assistant.audio.vad import SpeechState
from assistant.config import Settings
from assistant.listening.ending import Evidence, end_after_ms, limit_ms
from assistant.listening.ending import ends_sentence as ends_sentence  # where callers have found it
from assistant.stages import SAMPLE_RATE_HZ, Transcript
from assistant.transcripts import join_texts

MIN_COMMIT_S = 1.0
"""Pieces shorter than this are not committed on their own: Whisper does poorly on a word or two."""
MIN_PARTIAL_S = 0.5
DIP_PROBABILITY = 0.35
"""[asr] dip_cut_after_s cuts only where Silero's probability is below this (between words, not
inside a vowel)."""
COMMIT_GAP_MS = 160
"""A transcription made at a pause is committed only if the pause lasted this long: shorter dips
happen inside words, and cutting there would split a word between two pieces."""

JobKind = Literal["partial", "ahead", "piece", "tail"]
"""``partial``: while talking (a draft); ``ahead``: at a pause; ``piece``: cut at a dip between
words; ``tail``: what is left to transcribe after the end of the turn."""


@dataclass(eq=False)
class Job:
    """A transcription the policy asked for: samples ``[from_sample, to_sample)``, voiced up to
    ``last_voiced``. The runner sets ``result`` (or ``failed``) when it ends."""

    kind: JobKind
    from_sample: int
    to_sample: int
    last_voiced: int
    result: Transcript | None = None
    failed: bool = False
    answerable: bool = False
    """The work ahead said the question, as transcribed here, is answerable (``ahead`` jobs)."""
    prepared: bool = False
    """The work ahead was started on this job's transcript."""

    @property
    def done(self) -> bool:
        return self.result is not None or self.failed


@dataclass(eq=False)
class Judgement:
    """The turn model asked at one pause: on samples ``[from_sample, to_sample)``, the utterance so
    far, whose voice ended at ``last_voiced``. The runner sets ``probability`` (or ``failed``)."""

    from_sample: int
    to_sample: int
    last_voiced: int
    probability: float | None = None
    failed: bool = False


@dataclass(frozen=True)
class Transcribe:
    """Start transcribing ``job`` (with the committed text as context)."""

    job: Job


@dataclass(frozen=True)
class Drop:
    """Cancel ``job`` if it is still waiting for the model; one already running finishes."""

    job: Job


@dataclass(frozen=True)
class Prepare:
    """Hand ``transcript`` (the question so far) to the work ahead. ``job``: the pause's job, which
    the work may mark answerable; None: a partial transcript."""

    transcript: Transcript
    job: Job | None


@dataclass(frozen=True)
class StopPreparing:
    """Cancel the work ahead started for ``job`` (None: for the latest partial)."""

    job: Job | None


@dataclass(frozen=True)
class ShowPartial:
    """A partial transcript of the utterance so far, to show."""

    transcript: Transcript


@dataclass(frozen=True)
class Judge:
    """Ask the turn model whether the visitor has finished (``judgement``'s samples)."""

    judgement: Judgement


@dataclass(frozen=True)
class EndTurn:
    """The visitor has finished: end the utterance now. ``endpoint``: ``early`` when the evidence
    said finished, ``silence`` when the silence reached the longest wait."""

    endpoint: Literal["early", "silence"] = "early"


Action = Transcribe | Drop | Prepare | StopPreparing | ShowPartial | Judge | EndTurn

Quietest = Callable[[int, int], "tuple[int, float] | None"]
"""``(start_sample, end_sample) -> (sample, speech probability)`` of the least speech-like window."""


@dataclass
class Hearing:
    """The transcription state of one utterance, and the decisions on it."""

    settings: Settings
    commit_sample: int
    """Where the audio not yet committed starts (an absolute stream sample)."""
    language: str = ""
    start_sample: int = -1
    """Where the utterance starts (the first commit_sample)."""
    committed: list[str] = field(default_factory=list)
    spec: Job | None = None
    """The transcription at the latest pause: maybe the whole rest of the question."""
    partial: Job | None = None
    piece: Job | None = None
    """A transcription of [commit_sample, a dip between two words], committed when done."""
    last_partial_sample: int = 0
    busy_samples: int = 0
    """How long the last transcription took, in samples of stream time: partials are spaced at least
    3x that apart, so that on a loaded machine the model is mostly free when a pause comes and the
    transcription that matters does not queue behind a partial."""
    ended: bool = False
    judged: bool = False
    """A turn model listens (``[turn] model``, loaded): each pause is judged (``Judge``)."""
    judgement: Judgement | None = None
    """The turn model's judgement of the latest pause."""

    def __post_init__(self) -> None:
        if self.start_sample < 0:
            self.start_sample = self.commit_sample

    # -- reading --------------------------------------------------------------------------------

    @property
    def previous_text(self) -> str:
        """The committed text: the context a transcription of what follows gets."""
        return join_texts(self.committed)

    @property
    def committed_s(self) -> float:
        return (self.commit_sample - self.start_sample) / SAMPLE_RATE_HZ

    def so_far(self, result: Transcript) -> Transcript:
        """The question so far: the committed text, then ``result`` (a transcription after it)."""
        return Transcript(join_texts([*self.committed, result.text]), self.language or result.language)

    # -- deciding -------------------------------------------------------------------------------

    def stop(self) -> list[Action]:
        """The utterance was dropped (the microphone gated): stop the work ahead."""
        self.ended = True
        return [StopPreparing(self.spec), StopPreparing(None)] if self.spec is not None else [StopPreparing(None)]

    def step(self, state: SpeechState, *, holder: Job | None = None, quietest: Quietest | None = None) -> list[Action]:
        """What to do now. ``holder``: the job the model is working on (it cannot be dropped);
        ``quietest``: the endpointer's ``quietest_window``, for ``[asr] dip_cut_after_s``."""
        if self.ended or not state.started:
            return []
        s = self.settings
        out: list[Action] = []
        self._commit_spec(state, out)
        self._commit_piece()
        if self.spec is None and state.silence_ms >= s.vad.pause_ms and state.last_voiced_sample > self.commit_sample:
            self._at_pause(state, holder, out)
        self._cut_at_dip(state, quietest, out)
        spec = self.spec
        if spec is not None and spec.result is not None and not spec.prepared:
            if spec.result.text and spec.last_voiced == state.last_voiced_sample:
                spec.prepared = True
                out += [StopPreparing(None), Prepare(self.so_far(spec.result), spec)]
        self._judge(state, out)
        if state.silence_ms > 0:
            evidence = self.evidence(state)
            end_ms = end_after_ms(evidence, s)
            if state.silence_ms >= end_ms:
                self.ended = True
                return [*out, EndTurn("silence" if end_ms >= limit_ms(s, judged=evidence.judged) else "early")]
        self._partials(state, out)
        return out

    def evidence(self, state: SpeechState) -> Evidence:
        """What is known about the pause in progress (``assistant.listening.ending``)."""
        lv = state.last_voiced_sample
        spec = self.spec if self.spec is not None and self.spec.last_voiced == lv else None
        result = spec.result if spec is not None else None
        judgement = self.judgement if self.judgement is not None and self.judgement.last_voiced == lv else None
        return Evidence(
            transcript=result.text if result is not None else None,
            answerable=spec is not None and spec.answerable,
            # a model that failed at this pause leaves it to the silence rule
            judged=self.judged and not (judgement is not None and judgement.failed),
            probability=judgement.probability if judgement is not None else None,
        )

    def _judge(self, state: SpeechState, out: list[Action]) -> None:
        """Once per pause, after ``[turn] ask_ms`` of silence: ask the turn model."""
        if not self.judged or state.silence_ms < self.settings.turn.ask_ms:
            return
        if self.judgement is not None and self.judgement.last_voiced == state.last_voiced_sample:
            return
        self.judgement = Judgement(state.start_sample, state.now_sample, state.last_voiced_sample)
        out.append(Judge(self.judgement))

    def _commit_spec(self, state: SpeechState, out: list[Action]) -> None:
        """Voice came back after the pause's transcription: if the pause was a real one (not a dip
        inside a word), commit it; the next transcription starts after it."""
        spec = self.spec
        if spec is None or state.last_voiced_sample <= spec.last_voiced or not spec.done:
            return
        result = spec.result
        if (
            result is not None
            and result.text
            and state.last_gap_samples >= COMMIT_GAP_MS * SAMPLE_RATE_HZ // 1000
            and spec.to_sample - spec.from_sample >= MIN_COMMIT_S * SAMPLE_RATE_HZ
        ):
            self._commit(result, spec.to_sample)
        out.append(StopPreparing(spec))  # that transcript was not the whole question
        self.spec = None

    def _commit_piece(self) -> None:
        piece = self.piece
        if piece is None or not piece.done:
            return
        self.commit_piece(piece)
        self.piece = None

    def _commit(self, result: Transcript, to_sample: int) -> None:
        self.committed.append(result.text)
        self.commit_sample = to_sample
        self.language = self.language or result.language

    def _at_pause(self, state: SpeechState, holder: Job | None, out: list[Action]) -> None:
        """A pause: transcribe what is pending now; jobs still waiting for the model give way."""
        if self.partial is not None and self.partial is not holder and not self.partial.done:
            out.append(Drop(self.partial))
            self.partial = None
        if self.piece is not None and self.piece is not holder and not self.piece.done:
            out.append(Drop(self.piece))
            self.piece = None
        if self.piece is None:  # a piece already running moves commit_sample first
            self.spec = Job("ahead", self.commit_sample, state.now_sample, state.last_voiced_sample)
            out.append(Transcribe(self.spec))

    def _cut_at_dip(self, state: SpeechState, quietest: Quietest | None, out: list[Action]) -> None:
        """Long speech without a pause: cut at the quietest dip between words, so that at the end
        only the audio after it is left to transcribe."""
        after_s = self.settings.asr.dip_cut_after_s
        if (
            quietest is None
            or not after_s
            or self.piece is not None
            or self.spec is not None
            or state.silence_ms != 0
            or state.now_sample - self.commit_sample < after_s * SAMPLE_RATE_HZ
        ):
            return
        dip = quietest(self.commit_sample + int(MIN_COMMIT_S * SAMPLE_RATE_HZ), state.now_sample - SAMPLE_RATE_HZ // 2)
        if dip is not None and dip[1] < DIP_PROBABILITY:
            self.piece = Job("piece", self.commit_sample, dip[0], dip[0])
            out.append(Transcribe(self.piece))

    def _partials(self, state: SpeechState, out: list[Action]) -> None:
        partial = self.partial
        if partial is not None and partial.done:
            result = partial.result
            if result is not None and partial.from_sample == self.commit_sample and result.text:
                so_far = self.so_far(result)
                out.append(ShowPartial(so_far))
                if self.spec is None:
                    out += [StopPreparing(None), Prepare(so_far, None)]
            self.partial = partial = None
        interval = self.settings.asr.partial_interval_ms * SAMPLE_RATE_HZ // 1000
        if (
            partial is None
            and self.spec is None
            and self.piece is None
            and state.silence_ms == 0
            and state.now_sample - self.last_partial_sample >= max(interval, self.busy_samples * 3)
            and state.now_sample - self.commit_sample >= MIN_PARTIAL_S * SAMPLE_RATE_HZ
        ):
            self.last_partial_sample = state.now_sample
            self.partial = Job("partial", self.commit_sample, state.now_sample, state.last_voiced_sample)
            out.append(Transcribe(self.partial))

    # -- the end --------------------------------------------------------------------------------

    def final_job(self, eos_sample: int) -> Job | None:
        """At the end of the utterance (voiced up to ``eos_sample``): the pause's job when it covers
        every voiced sample after the last commit (its transcript is the rest of the question),
        else None: the tail since ``commit_sample`` must be transcribed."""
        spec = self.spec
        if spec is None or spec.from_sample != self.commit_sample or spec.last_voiced < eos_sample:
            return None  # none, or it started before a commit (it would repeat committed words)
        return spec

    def commit_piece(self, piece: Job) -> None:
        """A piece cut at a dip finished (now, or after the end of the utterance): commit it if it
        follows on from what is committed."""
        if piece.result is not None and piece.result.text and piece.from_sample == self.commit_sample:
            # Cut mid-sentence: Whisper's full stop at the cut is not the speaker's.
            self._commit(Transcript(piece.result.text.rstrip(".。"), piece.result.language), piece.to_sample)
