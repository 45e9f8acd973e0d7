"""``/login`` and ``/logout``: a user signs in on the page with a name and password, or a token, and
gets a session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS; see ``sessions``).

Failed attempts are limited per client address (``runner.server.limiter``; wrong bearer tokens sent
to the API have a count of their own, so failed sign-ins never lock a script's token out): after
``FAILURES`` in ``WINDOW`` seconds the address is answered 429 until the oldest failure leaves the
window, so guessing a password costs hours, while a person who mistyped gets on at once. Every
failure is in the audit log.
Password checks (scrypt) run in a thread; an unknown name is checked against a dummy hash so the
answer takes as long as for a known one.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from runner.server import audit
from runner.server.keys import AUTH
from runner.server.limiter import FAILURES, WINDOW, LoginLimiter
from runner.server.pages import render
from runner.server.passwords import hash_password, verify_password
from runner.server.sessions import SESSION_COOKIE, SESSION_SECONDS
from runner.server.users import User

__all__ = ["add_routes", "LoginLimiter", "FAILURES", "WINDOW"]

_LIMITER = web.AppKey("login_limiter", object)

_DUMMY = hash_password("not anyone's password")


async def _check(request: web.Request, form) -> User | None:
    auth = request.app[AUTH]
    token = str(form.get("token", "")).strip()
    if token:
        return auth.user_for_token(token)  # counted by login(), which answers 429 itself
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    user = auth.users.get(name)
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY
    matches = await asyncio.to_thread(verify_password, password, stored)
    return user if matches and stored is not _DUMMY else None


async def login_form(request: web.Request) -> web.Response:
    return render(request, "login.html", error=None)


async def login(request: web.Request) -> web.Response:
    limiter: LoginLimiter = request.app[_LIMITER]
    address = request.remote or "-"
    wait = limiter.wait(address)
    if wait:
        return render(request, "login.html", http_status=429, error=f"Too many failed attempts from {address}; "
                      f"try again in {int(wait) + 1} seconds.", headers={"Retry-After": str(int(wait) + 1)})
    form = await request.post()
    user = await _check(request, form)
    if user is None:
        limiter.failed(address)
        await audit.record(request, None, "login_failed", detail={"name": str(form.get("name", ""))[:64]})
        return render(request, "login.html", http_status=401,
                      error="That name and password, or that token, does not match a user.")
    response = web.HTTPSeeOther("/")
    response.set_cookie(SESSION_COOKIE, request.app[AUTH].sessions.new(user), httponly=True, samesite="Strict",
                        path="/", secure=request.secure, max_age=SESSION_SECONDS)
    raise response


async def logout(request: web.Request) -> web.Response:
    # Any signed-in user; the CSRF token keeps another site from signing people out.
    await request.app[AUTH].require(request, "viewer")
    response = web.HTTPSeeOther("/")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


def add_routes(app: web.Application) -> None:
    app[_LIMITER] = LoginLimiter()
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
