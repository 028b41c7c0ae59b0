"""The owner's page (/admin) in real headless Chromium against the real daemon and server with fake
engines: a wrong token is refused on the page, the right one shows the queue grouped by meaning, and
an answer written with the keyboard alone becomes an entry in learned.csv with its audit line.
Screenshots go to test-artifacts/web/admin-*.png."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from daemon_support import running_daemon
from fakes import settings_for_tests
from kb_support import HashEmbedder
from test_web import CHROMIUM, LANDSCAPE, ConsoleWatch, chromium, shot

from assistant.kb.queue import QueueStore
from assistant.kb.tables import read_faq
from assistant.owner import OwnerDesk
from assistant.stages import QueueCandidate, QueueRecord

pytestmark = [pytest.mark.browser, pytest.mark.slow]
if not CHROMIUM.exists():
    pytestmark.append(pytest.mark.skip(reason=f"no Chromium at {CHROMIUM}"))

OWNER = "owner-browser-token"


def desk_for(tmp_path: Path) -> OwnerDesk:
    pets = QueueCandidate("zh-travel-policy", "请问商旅的出差制度", "faq", 0.12)
    now = time.time()
    store = QueueStore(tmp_path / "queue.sqlite")
    store.add(
        [
            QueueRecord("fallback", "Can I bring my dog to the office?", "en", "fallback",
                        "Sorry, my documents don't cover that.", (pets,), now - 3 * 86_400, "t1"),
            QueueRecord("declined", "can i bring my dog to the office", "en", "generated",
                        "Sorry, my documents don't cover that.", (), now - 86_400, "t2"),
            QueueRecord("not-helpful", "bring my dog to the office", "en", "generated", "Please ask the front desk.",
                        (), now - 2, "t3"),
            QueueRecord("fallback", "where is the canteen", "en", "fallback", "Sorry.", (), now - 1, "t4"),
        ]
    )
    store.count_turns([now - 3, now - 2, now - 1, now - 0.5])  # four turns today, two unanswered
    store.close()
    return OwnerDesk(
        queue_path=tmp_path / "queue.sqlite",
        learned_path=tmp_path / "kb" / "learned.csv",
        audit_path=tmp_path / "audit.jsonl",
        embedder=lambda: HashEmbedder(dims=256),
        similarity=0.6,
    )


async def test_the_owner_logs_in_sees_a_group_and_writes_an_answer_with_the_keyboard(tmp_path: Path) -> None:
    settings = settings_for_tests()
    settings.admin.token = OWNER
    settings.general.language = "en"
    async with running_daemon(settings=settings, desk=desk_for(tmp_path)) as d, chromium() as browser:
        page = await browser.new_page(viewport=LANDSCAPE)
        watch = ConsoleWatch(page)
        await page.goto(d.http_url + "/admin")
        await page.wait_for_function("document.body.dataset.conn === 'open'", timeout=10_000)
        assert await page.locator("h1").text_content() == "Owner's page"
        assert await page.locator("#board").is_hidden()

        await page.focus("#token")
        await page.keyboard.type("not-the-token")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#notice:not([hidden])")
        assert "not the owner's token" in (await page.locator("#notice").text_content() or "")
        assert await page.locator("#board").is_hidden()

        await page.focus("#token")
        await page.keyboard.type(OWNER)
        await page.keyboard.press("Enter")
        await page.wait_for_selector(".admin-group")
        await shot(page, "admin-queue")
        groups = page.locator(".admin-group")
        assert await groups.count() == 2
        first = groups.nth(0)
        assert await first.locator(".group-question").text_content() == "can i bring my dog to the office"  # the newest phrasing
        meta = await first.locator(".group-meta").text_content() or ""
        assert meta.startswith("Asked 3 times") and "en" in meta
        assert await first.locator(".group-phrasings li").count() == 2
        assert await first.locator("select option").count() == 1  # the one FAQ entry retrieval offered
        days = page.locator("#days li")
        assert await days.count() == 14
        assert (await days.nth(13).get_attribute("aria-label") or "").endswith(": 2 unanswered of 4 turns (50%)")
        assert await days.nth(13).locator(".rate").text_content() == "50%"
        assert await days.nth(12).locator(".rate").text_content() == "–"  # no total kept that day

        # keyboard only: the answer field, then Tab to its button, then Enter
        await first.locator("textarea").focus()
        await page.keyboard.type("No pets, sorry; service dogs are welcome.")
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.textContent") == "Save as a new entry"
        await page.keyboard.press("Enter")
        await page.wait_for_function("document.querySelectorAll('.admin-group').length === 1", timeout=10_000)
        status = await page.locator("#applied").text_content() or ""
        assert "Saved as entry learned-1" in status and "kb build" in status
        await shot(page, "admin-answered")

        await page.click("#lang")
        assert await page.locator("h1").text_content() == "管理页"
        assert (await page.locator(".admin-group .group-meta").text_content() or "").startswith("被问 1 次")
        assert (await page.locator("#applied").text_content() or "").startswith("已保存为条目 learned-1")
        await shot(page, "admin-zh")
        assert watch.errors == []

    (entry,) = read_faq(tmp_path / "kb" / "learned.csv", "learned.csv").records
    assert entry.answer == "No pets, sorry; service dogs are welcome."
    assert entry.keys == ["can i bring my dog to the office", "bring my dog to the office"]
    audit = json.loads((tmp_path / "audit.jsonl").read_text(encoding="utf-8"))
    assert audit["action"] == "answer" and audit["address"] == "127.0.0.1"
