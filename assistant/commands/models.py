"""``assistant models fetch|list``: assemble model packs into models/ and show what is there."""

from __future__ import annotations

import argparse
import json
import sys

from assistant import models
from assistant.config import Settings
from assistant.tuning import MEASURED

_STATE_TEXT = {
    "present": "present",
    "missing": "missing",
    "failed": "FAILED verification",
    "unpinned": "present (no official hash)",
}


def fetch(args: argparse.Namespace, settings: Settings) -> int:
    names = list(args.names or [])
    online = [n for n in names if n in models.PACKS and models.PACKS[n].online_only]
    for name in online:
        p = models.PACKS[name]
        print(f"assistant: {name} is online-only: downloading from the internet. License: {p.license}.", file=sys.stderr)
    results = models.fetch(settings, names or None, progress=True)
    for r in results:
        verb = {"skipped": "already present and verified", "assembled": "assembled and verified", "downloaded": "downloaded"}
        print(f"{r.name}: {verb[r.action]} ({models.human_size(r.size_bytes)}) in {r.path}", file=sys.stderr)
    return 0


def list_models(args: argparse.Namespace, settings: Settings) -> int:
    statuses = [models.status(settings, name) for name in models.PACKS]
    if args.json:
        out = {
            "models": [
                {
                    "name": s.name,
                    "role": s.role,
                    "state": s.state,
                    "default": s.name in models.EMBEDDED_DEFAULTS,
                    "online_only": s.online_only,
                    "description": s.description,
                    "answer": dict(MEASURED.get(s.name, {})),
                    "path": str(s.path),
                    "size_bytes": s.size_bytes,
                    "expected_size_bytes": s.expected_size_bytes,
                    "files": [
                        {
                            "name": f.name,
                            "state": f.state,
                            "size_bytes": f.size_bytes,
                            "expected_size_bytes": f.expected_size_bytes,
                        }
                        for f in s.files
                    ],
                }
                for s in statuses
            ]
        }
        print(json.dumps(out, ensure_ascii=False))
        return 0
    width = max(len(s.name) for s in statuses)
    for s in statuses:
        size = models.human_size(s.size_bytes if s.state != "missing" else s.expected_size_bytes)
        flags = " [default]" if s.name in models.EMBEDDED_DEFAULTS else ""
        flags += " [online only]" if s.online_only else ""
        print(f"{s.name:<{width}}  {_STATE_TEXT[s.state]:<26} {size:>9}  {s.description}{flags}")
        if s.name in MEASURED:
            tuned = ", ".join(f"{k} {v:g}" for k, v in MEASURED[s.name].items())
            print(f"{'':<{width}}    [answer] \"auto\" with it: {tuned}")
        for f in s.files:
            if f.state != s.state or s.state == "failed":
                print(f"{'':<{width}}    {f.name}: {_STATE_TEXT[f.state]} ({models.human_size(f.size_bytes)})")
    missing = [s.name for s in statuses if s.state in ("missing", "failed") and not s.online_only]
    if missing:
        print(f"\nfetch with: assistant models fetch {' '.join(missing)}", file=sys.stderr)
    return 0
