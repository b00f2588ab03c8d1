"""The review server's guard: it shows PHI, so every request is checked before a route sees it.

* **Host**: only the address it is bound to (``127.0.0.1:PORT`` or ``localhost:PORT``); any other Host header is
  refused with 400, so a page of another site cannot reach it by DNS rebinding.
* **Who**: a random one-time token, printed once in the start URL, is exchanged (compared in constant time) for
  a session cookie (HttpOnly, SameSite=Strict, path /) and a redirect that removes it from the address bar; the
  token then no longer works. Clients of the JSON API send ``Authorization: Bearer NAME:SECRET`` of a users file
  (``veil users``). Anything else gets 401.
* **State changes** are POST only, with the session's CSRF token in an ``X-CSRF-Token`` header and an Origin
  header naming this server (403 otherwise); bearer clients send no cookie, so they need neither.
* **Every response**: a strict Content-Security-Policy (scripts and styles from this server only, nothing inline),
  ``Cache-Control: no-store``, no referrer, no framing.

Nothing here logs a token, a cookie or a value; denials are logged by :func:`veil.access.authorize`.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from veil.access import Role, Users
from veil.access.roles import actions_of
from veil.access.users import AuthenticationFailed, authenticate_bearer

__all__ = ["COOKIE", "CSP", "Guard", "Session", "SECURITY_HEADERS"]

log = logging.getLogger(__name__)

COOKIE = "veil_review"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Session:
    """Who a request comes from: a name and roles (a :class:`veil.access.Subject`), and for a browser session
    its CSRF token. ``via`` is "cookie" or "bearer"."""

    name: str
    roles: frozenset[Role]
    csrf: str = field(default="", repr=False)
    via: str = "cookie"

    def can(self, action: Any) -> bool:
        return action in actions_of(self.roles)


class Guard:
    """The one-time start token, the browser sessions and the users file of one server start."""

    def __init__(self, operator: str, roles: Iterable[Role], users: Users | None = None,
                 hosts: Iterable[str] = ()) -> None:
        self.operator = operator
        self.roles = frozenset(roles)
        self.users = users
        self.hosts = {h.lower() for h in hosts}
        self.token: str | None = secrets.token_urlsafe(32)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def allow_host(self, host: str) -> None:
        self.hosts.add(host.lower())

    def exchange(self, offered: str) -> str | None:
        """A new session cookie value for the start token (once), else None."""
        with self._lock:
            token = self.token
            if token is None or not hmac.compare_digest(offered.encode(), token.encode()):
                return None
            self.token = None  # one time
            cookie = secrets.token_urlsafe(32)
            self._sessions[cookie] = Session(self.operator, self.roles, secrets.token_urlsafe(24), "cookie")
            return cookie

    def session_of(self, headers: dict[bytes, bytes]) -> Session | None:
        cookie = _cookie(headers.get(b"cookie", b"").decode("latin-1"), COOKIE)
        if cookie:
            with self._lock:
                for value, session in self._sessions.items():
                    if hmac.compare_digest(value.encode(), cookie.encode()):
                        return session
            return None
        authorization = headers.get(b"authorization")
        if authorization is not None and self.users is not None:
            try:
                user = authenticate_bearer(self.users, authorization.decode("latin-1"))
            except AuthenticationFailed:
                return None
            return Session(user.name, frozenset(user.roles), "", "bearer")
        return None


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


class GuardMiddleware:
    """ASGI middleware applying :class:`Guard` (see the module docstring) before the app sees a request."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in dict(SECURITY_HEADERS)]
                message["headers"] = headers + list(SECURITY_HEADERS)
            await send(message)

        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if host not in self.guard.hosts:
            await _plain(secured, 400, "bad Host header: this server answers on its own loopback address only")
            return
        path = scope.get("path", "")
        if path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        if path == "/login":
            await self.app(scope, receive, secured)
            return
        session = self.guard.session_of(headers)
        if session is None:
            await _plain(secured, 401, "not signed in: open the address veil review printed when it started")
            return
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            if session.via == "cookie":
                offered = headers.get(b"x-csrf-token", b"").decode("latin-1")
                origin = headers.get(b"origin", b"").decode("latin-1").lower()
                if not offered or not hmac.compare_digest(offered.encode(), session.csrf.encode()):
                    await _plain(secured, 403, "missing or wrong CSRF token")
                    return
                if origin != f"http://{host}":
                    await _plain(secured, 403, "cross-origin request refused")
                    return
        scope.setdefault("state", {})["session"] = session
        await self.app(scope, receive, secured)


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
