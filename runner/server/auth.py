"""Who is asking, and whether they may: the one check every route makes.

A request is from a user when it carries ``Authorization: Bearer <token>`` (API clients; browsers
never attach it on their own, so it cannot be forged cross-site) or the session cookie ``/login``
sets (``sessions``). A change also needs, with the cookie, the matching CSRF token in the form or in
``X-CSRF-Token``. Then the user's role must reach the route's (``users`` draws the ladder).

Wiring a route is one line:

- a change: ``user = await request.app[AUTH].require(request, "developer")`` (401 without a user,
  403 with a lower role or a stale CSRF token);
- a read of something of a repository: ``request.app[AUTH].check_read(request, repo, "no such build")``
  (a private repository's things are a 404 with the text a missing thing gets, so an anonymous reader
  cannot tell that they exist), or ``can_read`` to filter a list.

A wrong bearer token is a 401 everywhere it is looked at, never a silent anonymous read.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from runner.server.config import ServerConfig
from runner.server.limiter import LoginLimiter
from runner.server.sessions import SESSION_COOKIE, Sessions
from runner.server.users import ROLES, User

__all__ = ["SESSION_COOKIE", "Auth"]

# Who asked, (user, session nonce or None), looked up once per request.
_SEEN = web.RequestKey("conveyor_auth", tuple)
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Auth:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.users = config.users
        self.sessions: Sessions | None = None  # set at start-up, once the secret is read
        self._tokens = [(_digest(u.token), u) for u in self.users.values() if u.token]
        self.limiter = LoginLimiter()  # wrong bearer tokens, per address (/login counts its own)

    @property
    def enabled(self) -> bool:
        return bool(self.users)

    def start(self, secret: bytes) -> None:
        self.sessions = Sessions(secret)

    # -- who is asking ----------------------------------------------------------------------------

    def user_for_token(self, token: str) -> User | None:
        """Constant time in the token: every user's is compared, digest against digest."""
        given, found = _digest(token), None
        for digest, user in self._tokens:
            if hmac.compare_digest(given, digest):
                found = user
        return found

    def bearer_user(self, request: web.Request, token: str) -> User | None:
        """``user_for_token`` for a bearer token a request sent, with guesses limited per address as
        on ``/login``: past the limit, 429 (even for the right token: else guessing would go on)
        until the oldest failure is old enough."""
        address = request.remote or "-"
        wait = self.limiter.wait(address)
        if wait:
            seconds = str(int(wait) + 1)
            raise web.HTTPTooManyRequests(text=f"too many wrong tokens from {address}; try again in {seconds} "
                                               "seconds\n", headers={"Retry-After": seconds})
        user = self.user_for_token(token)
        if user is None:
            self.limiter.failed(address)
        return user

    def identify(self, request: web.Request) -> User | None:
        """The user asking (None: anonymous); a wrong bearer token raises 401."""
        if _SEEN not in request:
            request[_SEEN] = self._identify(request)
        return request[_SEEN][0]

    def _identify(self, request: web.Request) -> tuple[User | None, str | None]:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, given = header.partition(" ")
            user = self.bearer_user(request, given.strip()) if scheme.lower() == "bearer" else None
            if user is None:
                raise web.HTTPUnauthorized(text="that token belongs to no user; send Authorization: Bearer <your "
                                                "token> (the variable your user's token_env names)\n",
                                           headers={"WWW-Authenticate": "Bearer"})
            return user, None
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie and self.sessions is not None:
            found = self.sessions.read(cookie, self.users)
            if found is not None:
                return found
        return None, None

    def page_user(self, request: web.Request) -> User | None:
        """For pages: who is signed in, never an error."""
        try:
            return self.identify(request)
        except web.HTTPUnauthorized:
            return None

    def csrf_token(self, request: web.Request) -> str | None:
        """The CSRF token of the request's session, for the page's forms; None without a session."""
        if self.page_user(request) is None or request[_SEEN][1] is None:
            return None
        return self.sessions.csrf(request[_SEEN][1])

    # -- the checks routes make -------------------------------------------------------------------

    async def require(self, request: web.Request, role: str) -> User:
        """The user asking, when their role reaches ``role``; else 401/403 saying what to do."""
        assert role in ROLES, role
        if not self.enabled:
            raise web.HTTPForbidden(text="changes are disabled: configure users: (or admin_token_env, or "
                                         "CONVEYOR_ADMIN_TOKEN) in the server configuration\n")
        user = self.identify(request)
        if user is None:
            raise web.HTTPUnauthorized(text="sign in at /login, or send Authorization: Bearer <your token>\n",
                                       headers={"WWW-Authenticate": "Bearer"})
        nonce = request[_SEEN][1]
        if nonce is not None and request.method not in ("GET", "HEAD"):  # a read changes nothing to forge
            given = request.headers.get("X-CSRF-Token", "")
            if not given and request.content_type in _FORMS:
                given = str((await request.post()).get("csrf", ""))
            if not hmac.compare_digest(given.encode(), self.sessions.csrf(nonce).encode()):
                raise web.HTTPForbidden(text="the form's CSRF token is missing or stale; reload the page and try again\n")
        if not user.has(role):
            raise web.HTTPForbidden(text=f"{user.name} is a {user.role}; this needs the {role} role or higher "
                                         "(ask an admin to change your roles in the server configuration)\n")
        return user

    def can_read(self, request: web.Request, repo: str | None) -> bool:
        """Whether the asker may read builds of ``repo`` (a private one needs a signed-in viewer).
        What belongs to no repository (a deploy from the command line) has the server's visibility:
        on a private server it is not shown to everyone."""
        if (self.config.visibility if repo is None else self.config.visibility_of(repo)) == "public":
            return True
        user = self.identify(request)
        return user is not None and user.has("viewer")

    def check_read(self, request: web.Request, repo: str | None, not_found: str) -> None:
        """404 with ``not_found`` (what a missing thing says) when the asker may not read ``repo``."""
        if not self.can_read(request, repo):
            raise web.HTTPNotFound(text=not_found.rstrip("\n") + "\n")

    def list_filter(self, request: web.Request) -> dict[str, list[str]]:
        """What ``store.builds.list_builds`` must leave out for this asker (nothing for a viewer)."""
        user = self.identify(request)
        if user is not None and user.has("viewer"):
            return {}
        repos = self.config.repos.values()
        if self.config.visibility == "public":
            return {"except_repos": sorted(r.name for r in repos if r.visibility == "private")}
        return {"only_repos": sorted(r.name for r in repos if r.visibility == "public")}
