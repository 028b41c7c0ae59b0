"""Writing the unanswered queue without a turn ever waiting on it.

``QueueWriter.record`` puts a record on a bounded in-memory queue and returns; one thread of its own
opens the SQLite file (``assistant.kb.queue.QueueStore``), writes, and deletes what is past retention
when it starts and once a day. A database that cannot be written (missing folder rights, a corrupt or
locked file, a full disk) is logged once and the records of that moment are lost: the kiosk goes on
answering, and the writer tries the file again with the next record.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from assistant.kb.queue import DAY_S, QueueStore
from assistant.stages import QueueRecord

log = logging.getLogger(__name__)

MAX_PENDING = 1_000
"""Records waiting for the thread; beyond this (a stalled disk) new ones are dropped, not queued."""
PRUNE_EVERY_S = DAY_S


class _Stop:
    pass


@dataclass(frozen=True)
class _Turn:
    time_s: float


_STOP = _Stop()


class QueueWriter:
    """Satisfies ``assistant.stages.QueueRecorder`` and ``TurnCounter``. ``retention_days``: records
    (and per-day turn totals) older than this go."""

    def __init__(
        self,
        path: Path,
        *,
        retention_days: float,
        clock: Callable[[], float] = time.time,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.path = path
        self.retention_s = retention_days * DAY_S
        self._clock = clock
        self._pending: queue.Queue[QueueRecord | _Turn | _Stop] = queue.Queue(maxsize=max_pending)
        self.written = 0
        self.dropped = 0
        """Records lost: the in-memory queue was full, or the file could not be written."""
        self.failing = False
        self._warned = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="queue-writer", daemon=True)
        self._thread.start()

    # -- the turn's side (the event loop): never blocks ----------------------------------------

    def record(self, entry: QueueRecord) -> None:
        if self._closed:
            return
        try:
            self._pending.put_nowait(entry)
        except queue.Full:
            self.dropped += 1
            self._warn(f"{MAX_PENDING} records are waiting for the disk; dropping new ones")

    def count_turn(self, time_s: float) -> None:
        if self._closed:
            return
        try:
            self._pending.put_nowait(_Turn(time_s))
        except queue.Full:  # the disk is far behind: a total a little low is no reason to say so twice
            self._warn(f"{MAX_PENDING} records are waiting for the disk; dropping new ones")

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait (blocking) until everything recorded so far is handled; False on timeout. For tests
        and shutdown, never for a turn."""
        deadline = time.monotonic() + timeout_s
        while self._pending.unfinished_tasks:
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is pending (up to ``timeout_s``) and stop the thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._pending.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)

    # -- the writer's thread ------------------------------------------------------------------

    def _run(self) -> None:
        store: QueueStore | None = None
        next_prune_s = 0.0  # at start
        while True:
            item: QueueRecord | _Turn | _Stop | None = None
            if self._clock() < next_prune_s:
                try:
                    item = self._pending.get(timeout=next_prune_s - self._clock())
                except queue.Empty:
                    pass
            try:
                if isinstance(item, _Stop):
                    break
                try:
                    store = store or QueueStore(self.path)
                    if self._clock() >= next_prune_s:
                        gone = store.prune(self._clock() - self.retention_s)
                        if gone:
                            log.info("unanswered queue: deleted %d record(s) older than the retention", gone)
                        next_prune_s = self._clock() + PRUNE_EVERY_S
                    if isinstance(item, _Turn):
                        store.count_turns([item.time_s])
                    elif item is not None:
                        self.written += store.add([item])
                    if self.failing:
                        log.info("unanswered queue: %s is written again", self.path)
                        self.failing = False
                except (sqlite3.Error, OSError) as err:
                    if isinstance(item, QueueRecord):
                        self.dropped += 1
                    self.failing = True
                    if self._clock() >= next_prune_s:  # never spin on a broken file: try again with a record
                        next_prune_s = self._clock() + PRUNE_EVERY_S
                    self._warn(f"cannot write {self.path}: {err}; turns go on without recording")
                    if store is not None:
                        store.close()
                    store = None  # open it again with the next record (the owner may have fixed it)
            finally:
                if item is not None:
                    self._pending.task_done()
        if store is not None:
            store.close()

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("unanswered queue: %s (said once)", message)
