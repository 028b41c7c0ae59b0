"""Static checks of the avatar page that need no browser: every text the page shows exists in both
languages, and every module the page loads is in the folder the daemon serves."""

from __future__ import annotations

import re
from pathlib import Path

WEB = Path(__file__).resolve().parent.parent / "assistant" / "web"


def _tables() -> dict[str, set[str]]:
    source = (WEB / "i18n.js").read_text(encoding="utf-8")
    tables: dict[str, set[str]] = {}
    for lang in ("en", "zh"):
        body = re.search(rf"\n  {lang}: {{\n(.*?)\n  }},", source, re.S)
        assert body, f"no '{lang}' table in i18n.js"
        tables[lang] = set(re.findall(r"^\s+(\w+):", body.group(1), re.M))
    return tables


def test_both_languages_have_the_same_texts() -> None:
    tables = _tables()
    assert tables["en"] and tables["en"] == tables["zh"], tables["en"] ^ tables["zh"]


def test_every_text_the_page_uses_is_translated() -> None:
    known = _tables()["en"]
    html = (WEB / "index.html").read_text(encoding="utf-8")
    used = set(re.findall(r'data-i18n(?:-placeholder)?="(\w+)"', html))
    for name in ("app.js", "captions.js"):
        used |= set(re.findall(r'\bt\("(\w+)"', (WEB / name).read_text(encoding="utf-8")))
    # keys built from a state or a connection status
    used |= {f"state_{s}" for s in ("idle", "listening", "transcribing", "thinking", "speaking", "offline")}
    used |= {f"conn_{s}" for s in ("connecting", "open", "waiting")}
    assert used - known == set()


def test_every_module_and_asset_the_page_loads_is_there() -> None:
    html = (WEB / "index.html").read_text(encoding="utf-8")
    refs = set(re.findall(r'(?:src|href)="([\w./-]+\.(?:js|css))"', html))
    for js in WEB.glob("*.js"):
        refs |= {m.removeprefix("./") for m in re.findall(r'from "(\./[\w.-]+\.js)"', js.read_text(encoding="utf-8"))}
        refs |= {
            m.removeprefix("./") for m in re.findall(r'new URL\("(\./[\w.-]+\.js)"', js.read_text(encoding="utf-8"))
        }
    assert {"app.js", "style.css", "mic-worklet.js", "protocol.js"} <= refs
    missing = [r for r in refs if not (WEB / r).is_file()]
    assert missing == []
