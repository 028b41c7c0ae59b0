"""Who may talk to the daemon over HTTP: the Host, Origin and token rules, pure (issue 23).

Both listening ports that speak HTTP (the avatar page and WebSocket in ``app.py``, the
OpenAI-compatible endpoints in ``openai_api.py``) ask these functions, so the rules cannot drift
apart. docs/deployment.md section 4 says why each rule exists.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(authority: str) -> str:
    """The host of a ``Host`` header or an origin's authority, without the port, lower-case
    (``[::1]:8765`` -> ``::1``, ``LocalHost:80`` -> ``localhost``)."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def host_ok(bound_host: str, host: str | None, allowed_origins: Sequence[str]) -> bool:
    """Bound to loopback, only loopback names reach the daemon (``localhost``, ``127.0.0.1``,
    ``[::1]``), or a host named in ``allowed_origins``: a page from another name that resolves to
    127.0.0.1 (DNS rebinding) would otherwise drive the kiosk. Bound to a network address, the token
    guards instead. No ``Host`` (a local tool speaking HTTP/1.0) passes."""
    if not is_loopback(bound_host) or host is None:
        return True
    name = host_name(host)
    return is_loopback(name) or name in {host_name(urlsplit(o).netloc) for o in allowed_origins if "://" in o}


def origin_ok(bound_host: str, origin: str | None, host: str | None, allowed_origins: Sequence[str]) -> bool:
    """No Origin (a local tool), the page's own origin, or one in ``allowed_origins``. The page's
    own origin is trusted only for a ``Host`` that ``host_ok`` accepted."""
    if origin is None or origin in allowed_origins:
        return True
    host = host or ""
    return bool(host) and host_ok(bound_host, host, allowed_origins) and origin in (f"http://{host}", f"https://{host}")


def token_ok(token: str, *, query_token: str, authorization: str | None) -> bool:
    """No token configured, or the client presents it: ``Authorization: Bearer …`` (what the OpenAI
    SDKs send as their API key) or ``?token=…``. Compared in constant time."""
    if not token:
        return True
    given = query_token
    auth = authorization or ""
    if auth.startswith("Bearer "):
        given = auth[len("Bearer ") :]
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())
