"""The caption rules of the avatar page (assistant/web/captions.js) without a browser: its pure
``separator`` run under Node, and the wiring of the "not helpful" control checked in the source.
The same behaviour is seen in real Chromium by tests/test_web.py (marked ``browser``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parent.parent / "assistant" / "web"
NODE = shutil.which("node")


def separators(pairs: list[tuple[str, str]]) -> list[str]:
    script = (
        f"const m = await import({json.dumps((WEB / 'captions.js').as_uri())});"
        f"console.log(JSON.stringify({json.dumps(pairs)}.map(([a, b]) => m.separator(a, b))));"
    )
    done = subprocess.run(
        [NODE or "node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(NODE is None, reason="no node to run the page's module")
def test_sentences_join_as_written_text_in_both_languages() -> None:
    pairs = [
        # issue 24: "Sorry, my documents don't cover that.Please ask the front desk staff." on a Chinese page
        ("Sorry, my documents don't cover that.", "Please ask the front desk staff."),
        ("抱歉，我的资料里没有这个问题的答案，", "请咨询前台工作人员。"),
        ("出差需提前三个工作日申请。", "Please ask HR."),
        ("The network is Acme-Guest.", "密码在前台。"),
        ("Visitors get a badge at reception, ", "and the Wi-Fi is Acme-Guest."),
        ("", "First."),
        ("A question?", "Yes!"),
    ]
    assert separators(pairs) == [" ", "", "", "", "", "", " "]


def test_the_page_sends_not_helpful_through_the_protocol_module() -> None:
    protocol = (WEB / "protocol.js").read_text(encoding="utf-8")
    assert 'return { type: "not-helpful", turn };' in protocol
    app = (WEB / "app.js").read_text(encoding="utf-8")
    assert "proto.notHelpfulMessage(turn)" in app and "captions.sources(ev.turn," in app
    # captions are joined by their own text, not by the page's language
    captions = (WEB / "captions.js").read_text(encoding="utf-8")
    assert 'language !== "zh"' not in captions and "separator(before, text)" in captions
