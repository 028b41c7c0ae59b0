"""Static checks of the owner's page that need no browser: its texts exist in both languages, every
text and error code it uses is translated, and everything it loads is served."""

from __future__ import annotations

import re
from pathlib import Path

WEB = Path(__file__).resolve().parent.parent / "assistant" / "web"


def _tables() -> dict[str, set[str]]:
    source = (WEB / "admin-i18n.js").read_text(encoding="utf-8")
    tables: dict[str, set[str]] = {}
    for lang in ("en", "zh"):
        body = re.search(rf"\n  {lang}: {{\n(.*?)\n  }},", source, re.S)
        assert body, f"no '{lang}' table in admin-i18n.js"
        tables[lang] = set(re.findall(r'^\s+"?([\w-]+)"?:', body.group(1), re.M))
    return tables


def test_both_languages_have_the_same_texts() -> None:
    tables = _tables()
    assert len(tables["en"]) > 30 and tables["en"] == tables["zh"], tables["en"] ^ tables["zh"]


def test_every_text_and_owner_error_the_page_shows_is_translated() -> None:
    known = _tables()["en"]
    html = (WEB / "admin.html").read_text(encoding="utf-8")
    used = set(re.findall(r'data-i18n="(\w+)"', html))
    used |= set(re.findall(r'\bt\("(\w+)"', (WEB / "admin.js").read_text(encoding="utf-8")))
    used |= {f"conn_{s}" for s in ("connecting", "open", "waiting")}
    used |= {"dayLabel", "rateUnknown", "metaOnce"}
    used |= {f"done_{a}" for a in ("answer", "add", "dismiss")}
    codes = ("owner-disabled", "owner-token", "forbidden", "stale-group", "kb-duplicate", "empty-answer", "unknown-entry")
    used |= {f"err_{c}" for c in codes}
    assert used - known == set()


def test_every_module_the_page_loads_is_there() -> None:
    html = (WEB / "admin.html").read_text(encoding="utf-8")
    refs = set(re.findall(r'(?:src|href)="([\w./-]+\.(?:js|css))"', html))
    for name in ("admin.js", "admin-i18n.js"):
        refs |= {m.removeprefix("./") for m in re.findall(r'from "(\./[\w.-]+\.js)"', (WEB / name).read_text(encoding="utf-8"))}
    assert {"admin.js", "admin-i18n.js", "i18n.js", "connection.js", "style.css", "admin.css"} <= refs
    assert [r for r in refs if not (WEB / r).is_file()] == []
