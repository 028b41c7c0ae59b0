"""Which turns need an owner's eye, and what of them is kept: pure rules over a ``TurnResult``.

A finished turn is queued when it ended in the fallback line or declined (``unanswered``: what
``/metrics`` counts), or matched only weakly (its best candidate under ``[answer] faq_threshold`` on
the generated route). A reply the visitor cut short soon after it began (``interrupted_early``) or
marked "not helpful" is queued when that happens. The session applies these rules and hands the
``QueueRecord`` to a ``QueueRecorder``; nothing here does I/O.
"""

from __future__ import annotations

from assistant.config import Settings
from assistant.stages import QueueCandidate, QueueReason, QueueRecord
from assistant.turn import TurnResult

MAX_CANDIDATES = 5
"""The best passages kept per record."""


def unanswered(result: TurnResult) -> bool:
    """The visitor got no answer: the fallback line, or a generated reply that declined."""
    return result.error is None and (result.route == "fallback" or result.declined)


def finished_reason(result: TurnResult, settings: Settings) -> QueueReason | None:
    """Why a finished turn is queued, or None. A failed turn is not (its error is the log's)."""
    if result.error is not None or result.route is None or not result.question:
        return None
    if result.route == "fallback":
        return "fallback"
    if result.declined:
        return "declined"
    best = max((p.score for p in result.candidates), default=0.0)
    if result.route == "generated" and best < settings.answer.faq_threshold:
        return "weak"
    return None


def interrupted_early(result: TurnResult, heard_ms: float | None, settings: Settings) -> bool:
    """The visitor cut the reply within ``[queue] interrupted_within_s`` of it starting. ``heard_ms``:
    how much of it was heard (the playback position), else the time since ``reply-start``."""
    if result.reply_started_ms is None or not result.question or heard_ms is None:
        return False
    return heard_ms <= settings.queue.interrupted_within_s * 1000.0


def queue_record(result: TurnResult, reason: QueueReason, *, time_s: float, turn_id: str = "") -> QueueRecord:
    """What the queue keeps of a turn: text only."""
    return QueueRecord(
        reason=reason,
        question=result.question,
        language=result.language,
        route=result.route or "",
        reply=result.reply,
        candidates=tuple(
            QueueCandidate(
                id=p.id,
                title=p.title or (p.text if p.kind == "faq" else p.source),
                kind=p.kind,
                score=round(float(p.score), 4),
            )
            for p in result.candidates[:MAX_CANDIDATES]
        ),
        time_s=time_s,
        turn_id=turn_id,
    )
