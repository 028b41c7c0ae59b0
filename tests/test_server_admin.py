"""The owner's page on the daemon's port: /admin served with the right headers, its own token on the
WebSocket (never the kiosk's, required on loopback too), owner-only messages refused to everyone
else, malformed ones answered with errors, and an edit made end to end."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_support import hello, open_client, running_daemon
from fakes import settings_for_tests
from kb_support import HashEmbedder
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from assistant.config import Settings
from assistant.kb.queue import QueueStore
from assistant.owner import OwnerDesk
from assistant.stages import QueueRecord

OWNER = "owner-s3cret-token"


async def until(ws: ClientConnection, kind: str, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """The next frame of type ``kind`` (the kiosk's own events in between are skipped)."""

    async def run() -> dict[str, Any]:
        while True:
            frame = await ws.recv()
            if isinstance(frame, str) and (event := json.loads(frame))["type"] == kind:
                return event  # type: ignore[no-any-return]

    return await asyncio.wait_for(run(), timeout_s)


def desk_for(tmp_path: Path) -> OwnerDesk:
    store = QueueStore(tmp_path / "queue.sqlite")
    store.add(
        [
            QueueRecord("fallback", "can i bring my dog to the office", "en", "fallback", "Sorry.", time_s=1_000.0, turn_id="a"),
            QueueRecord("fallback", "bring my dog to the office?", "en", "fallback", "Sorry.", time_s=2_000.0, turn_id="b"),
        ]
    )
    store.close()
    return OwnerDesk(
        queue_path=tmp_path / "queue.sqlite",
        learned_path=tmp_path / "kb" / "learned.csv",
        audit_path=tmp_path / "audit.jsonl",
        embedder=lambda: HashEmbedder(dims=256),
        similarity=0.6,
    )


def owner_settings(token: str = OWNER) -> Settings:
    settings = settings_for_tests()
    settings.admin.token = token
    return settings


async def test_the_page_is_served_at_admin_with_its_headers_and_the_host_check(tmp_path: Path) -> None:
    async with running_daemon() as d, httpx.AsyncClient(base_url=d.http_url) as http:
        for path in ("/admin", "/admin/"):
            page = await http.get(path)
            assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
            assert 'src="admin.js"' in page.text and "Owner's page" in page.text
            assert page.headers["content-security-policy"] == "frame-ancestors 'none'"
            assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
        for asset in ("/admin.js", "/admin-i18n.js", "/admin.css"):
            assert (await http.get(asset)).status_code == 200, asset
        assert OWNER not in page.text
        rebound = await http.get("/admin", headers={"Host": "evil.example"})
        assert rebound.status_code == 421


async def test_without_an_owners_token_nothing_is_exposed(tmp_path: Path) -> None:
    async with running_daemon(desk=desk_for(tmp_path)) as d, await open_client(d.ws_url) as ws:
        await hello(ws)
        for token in ("", "anything"):
            await ws.send(json.dumps({"type": "owner-hello", "token": token}))
            error = await until(ws, "error")
            assert error["code"] == "owner-disabled" and "[admin] token" in error["message"]
        await ws.send(json.dumps({"type": "owner-queue"}))
        assert (await until(ws, "error"))["code"] == "forbidden"


async def test_wrong_missing_or_the_kiosks_token_is_refused(tmp_path: Path) -> None:
    settings = owner_settings()
    settings.server.token = "kiosk-token"
    async with running_daemon(settings=settings, desk=desk_for(tmp_path)) as d:
        async with await open_client(d.ws_url + "?token=kiosk-token") as ws:
            await hello(ws)
            for body, code in (
                ({"type": "owner-hello", "token": "kiosk-token"}, "owner-token"),
                ({"type": "owner-hello", "token": OWNER[:-1]}, "owner-token"),
                ({"type": "owner-hello"}, "bad-message"),
                ({"type": "owner-hello", "token": 12}, "bad-message"),
                ({"type": "owner-dismiss", "group": "g-1"}, "forbidden"),
            ):
                await ws.send(json.dumps(body))
                assert (await until(ws, "error"))["code"] == code, body
            await ws.send(json.dumps({"type": "owner-hello", "token": OWNER}))
            assert (await until(ws, "owner-ready"))["reloadable"] is False
            queue = await until(ws, "owner-queue")
            assert queue["groups"][0]["count"] == 2


async def test_a_long_token_matches_only_whole(tmp_path: Path) -> None:
    long = "k" * 500
    async with running_daemon(settings=owner_settings(long), desk=desk_for(tmp_path)) as d, await open_client(d.ws_url) as ws:
        await hello(ws)
        await ws.send(json.dumps({"type": "owner-hello", "token": long[:200]}))
        assert (await until(ws, "error"))["code"] == "owner-token"
        await ws.send(json.dumps({"type": "owner-hello", "token": long}))
        await until(ws, "owner-ready")


async def test_guessing_the_token_closes_the_connection(tmp_path: Path) -> None:
    async with running_daemon(settings=owner_settings(), desk=desk_for(tmp_path)) as d, await open_client(d.ws_url) as ws:
        await hello(ws)
        with pytest.raises(ConnectionClosed) as closed:
            for n in range(30):
                await ws.send(json.dumps({"type": "owner-hello", "token": f"guess-{n}"}))
                await until(ws, "error")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_kiosk_client_cannot_edit_and_the_owner_can(tmp_path: Path) -> None:
    async with running_daemon(settings=owner_settings(), desk=desk_for(tmp_path)) as d:
        async with await open_client(d.ws_url + "?role=visitor") as visitor, await open_client(d.ws_url) as owner:
            await hello(visitor)
            await hello(owner)
            await owner.send(json.dumps({"type": "owner-hello", "token": OWNER}))
            await until(owner, "owner-ready")
            group = (await until(owner, "owner-queue"))["groups"][0]
            for body in (
                {"type": "owner-answer", "group": group["id"], "answer": "No pets."},
                {"type": "owner-add", "group": group["id"], "entry": "faq-1"},
                {"type": "owner-dismiss", "group": group["id"]},
                {"type": "owner-queue"},
            ):
                await visitor.send(json.dumps(body))
                assert (await until(visitor, "error"))["code"] == "forbidden"
            for body, code in (
                ({"type": "owner-answer", "group": group["id"], "answer": "   "}, "empty-answer"),
                ({"type": "owner-answer", "group": group["id"]}, "bad-message"),
                ({"type": "owner-answer", "group": "", "answer": "x"}, "bad-message"),
                ({"type": "owner-answer", "group": group["id"], "answer": "x" * 5000}, "too-long"),
                ({"type": "owner-add", "group": group["id"], "entry": ["faq-1"]}, "bad-message"),
                ({"type": "owner-dismiss", "group": "g-gone"}, "stale-group"),
                ({"type": "owner-add", "group": group["id"], "entry": "faq-1"}, "unknown-entry"),
            ):
                await owner.send(json.dumps(body))
                assert (await until(owner, "error"))["code"] == code, body
            assert not (tmp_path / "kb" / "learned.csv").exists()
            await owner.send(json.dumps({"type": "owner-answer", "group": group["id"], "answer": "No pets, sorry."}))
            done = await until(owner, "owner-done")
            assert (done["action"], done["entry"], done["applied"]) == ("answer", "learned-1", "pending")
            assert (await until(owner, "owner-queue"))["groups"] == []
            # the visitor's conversation still works after all that
            await visitor.send(json.dumps({"type": "text", "text": "请问商旅的出差制度"}))
            await until(visitor, "reply-end")
    csv_text = (tmp_path / "kb" / "learned.csv").read_text(encoding="utf-8")
    assert "No pets, sorry." in csv_text and "bring my dog to the office?" in csv_text
    (line,) = (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    audit = json.loads(line)
    assert audit["action"] == "answer" and audit["address"] == "127.0.0.1" and audit["entry"] == "learned-1"
