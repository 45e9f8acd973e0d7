"""Who may change things: the admin token, the page's session cookie, and its CSRF token.

Reading is open. A mutation (trigger, cancel, re-run, rollback) is a POST that carries either
``Authorization: Bearer <admin token>`` (API clients; browsers never attach it on their own, so it
cannot be forged cross-site) or the session cookie set by ``/login`` together with the matching CSRF
token in the form (double submit, bound to the session by an HMAC under the admin token). The
cookie is HttpOnly and SameSite=Strict. Nothing is kept in memory, so sessions survive a restart and
end when the admin token changes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

__all__ = ["SESSION_COOKIE", "Auth"]

SESSION_COOKIE = "conveyor_session"


class Auth:
    def __init__(self, admin_token: str | None) -> None:
        self.token = admin_token

    def _mac(self, purpose: str, nonce: str) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), f"{purpose}:{nonce}".encode(), hashlib.sha256).hexdigest()

    # -- the session ----------------------------------------------------------------------------

    def check_token(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(given.encode(), self.token.encode())

    def new_session(self) -> str:
        nonce = secrets.token_hex(16)
        return f"{nonce}.{self._mac('session', nonce)}"

    def session_nonce(self, request: web.Request) -> str | None:
        """The nonce of a valid session cookie, else None."""
        if not self.token:
            return None
        nonce, _, mac = request.cookies.get(SESSION_COOKIE, "").partition(".")
        if nonce and hmac.compare_digest(mac.encode(), self._mac("session", nonce).encode()):
            return nonce
        return None

    def csrf_token(self, request: web.Request) -> str | None:
        nonce = self.session_nonce(request)
        return self._mac("csrf", nonce) if nonce else None

    # -- the check every mutation makes -----------------------------------------------------------

    async def require(self, request: web.Request) -> str:
        """Return who is acting, or raise 401/403 with what to do."""
        if not self.token:
            raise web.HTTPForbidden(text="changes are disabled: set admin_token (or admin_token_env, or "
                                         "CONVEYOR_ADMIN_TOKEN) in the server configuration\n")
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, given = header.partition(" ")
            if scheme.lower() == "bearer" and self.check_token(given.strip()):
                return "admin"
            raise web.HTTPUnauthorized(text="the admin token is wrong; send Authorization: Bearer <admin token>\n",
                                       headers={"WWW-Authenticate": "Bearer"})
        expected = self.csrf_token(request)
        if expected is None:
            raise web.HTTPUnauthorized(text="log in at /login, or send Authorization: Bearer <admin token>\n",
                                       headers={"WWW-Authenticate": "Bearer"})
        given = request.headers.get("X-CSRF-Token", "")
        if not given and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            given = str((await request.post()).get("csrf", ""))
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise web.HTTPForbidden(text="the form's CSRF token is missing or stale; reload the page and try again\n")
        return "admin"
