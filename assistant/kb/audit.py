"""The owner's page's audit trail (``[admin] audit_path``): one JSON line per edit, appended.

Each line says what was done (``action``: ``answer``, ``add``, ``dismiss``), when (``time_s``,
Unix time), from which address, to which queued phrasings (``questions``) and, for an edit, the
entry written. The trail is also how the page knows a group is handled: a queued question that an
edit covered is not shown again unless a visitor asks it again afterwards.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from assistant.errors import RetrieveError


@dataclass
class AuditLine:
    action: str
    time_s: float
    address: str
    questions: list[str]
    entry: str = ""
    """The entry written (``learned-3``, ``faq-7+learned``); ``""`` for a dismissal."""
    answer: str = ""
    extra: dict[str, str] = field(default_factory=dict)


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, line: AuditLine) -> None:
        """Write one line and flush it to disk; raises ``RetrieveError("kb-audit", ...)``."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(asdict(line), ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise RetrieveError("kb-audit", f"cannot append to the audit trail {self.path}: {err}") from err

    def lines(self) -> list[AuditLine]:
        """Every readable line, oldest first (a line cut by a crash is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for raw in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                body = json.loads(raw)
                out.append(
                    AuditLine(
                        str(body["action"]),
                        float(body["time_s"]),
                        str(body.get("address", "")),
                        [str(q) for q in body.get("questions", [])],
                        str(body.get("entry", "")),
                        str(body.get("answer", "")),
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue
        return out


def handled_since(lines: Sequence[AuditLine], key: Callable[[str], str]) -> dict[str, float]:
    """``key(q) -> the last time an edit covered q`` (``key``: how questions compare, e.g.
    ``assistant.kb.queue.question_key``)."""
    done: dict[str, float] = {}
    for line in lines:
        for q in line.questions:
            k = key(q)
            done[k] = max(done.get(k, 0.0), line.time_s)
    return done
