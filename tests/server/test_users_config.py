"""The ``users:`` configuration, password hashes, the session key and the sign-in limit: wrong input
is refused with what to write instead; the limit holds against a real server on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from runner.server.config import ServerConfigError, load_config
from runner.server.login import FAILURES
from runner.server.passwords import PasswordFormatError, hash_password, verify_password
from runner.server.sessions import SecretFileError, load_secret
from tests.server.people import ENV, PASSWORD, USERS, bearer

HASH = USERS[0]["password_hash"]


def config_of(tmp_path, env=None, **top):
    path = tmp_path / "conveyor.yml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), **top}))
    return load_config(path, environ=env or {})


@pytest.mark.parametrize("users, env, message", [
    ([{"name": "ana", "roles": ["developer"], "token": "x"}], {}, "secrets never go in the file"),
    ([{"name": "ana", "roles": ["developer"], "password": "x"}], {}, "conveyor hash-password"),
    ([{"name": "ana", "roles": ["developer"], "password_hash": "md5$abc"}], {}, "is not a hash made by"),
    ([{"name": "ana", "roles": ["developer"], "token_env": "ANA"}], {}, "$ANA, which is not set"),
    ([{"name": "ana", "roles": ["owner"], "token_env": "ANA"}], {"ANA": "t"}, "roles must be a list of viewer"),
    ([{"name": "ana", "roles": ["viewer"]}], {}, "give token_env"),
    ([{"name": "a.b", "roles": ["viewer"], "token_env": "ANA"}], {"ANA": "t"}, "needs a `name:`"),
    ([{"name": "ana", "roles": ["viewer"], "token_env": "A"}, {"name": "ana", "roles": ["viewer"], "token_env": "A"}],
     {"A": "t"}, "configured twice"),
    ([{"name": "ana", "roles": ["viewer"], "token_env": "A"}, {"name": "bo", "roles": ["viewer"], "token_env": "A"}],
     {"A": "t"}, "the same token"),
    ([{"name": "admin", "roles": ["admin"], "token_env": "A"}], {"A": "t", "CONVEYOR_ADMIN_TOKEN": "u"},
     "the name admin_token signs in as"),
])
def test_a_wrong_user_is_refused_with_what_to_write(tmp_path, users, env, message):
    with pytest.raises(ServerConfigError) as caught:
        config_of(tmp_path, env, users=users)
    assert message in str(caught.value)


def test_users_and_visibility_are_read(tmp_path):
    config = config_of(tmp_path, {"ANA": "ana-token", "CONVEYOR_ADMIN_TOKEN": "root"}, visibility="private",
                       users=[{"name": "ana", "roles": ["deployer", "viewer"], "token_env": "ANA"},
                              {"name": "bo", "roles": "developer", "password_hash": HASH}],
                       repos=[{"name": "a", "path": str(tmp_path)},
                              {"name": "b", "path": str(tmp_path), "visibility": "public"}])
    assert {n: (u.role, u.token) for n, u in config.users.items()} == {
        "ana": ("deployer", "ana-token"), "bo": ("developer", None), "admin": ("admin", "root")}
    assert [config.visibility_of(r) for r in ("a", "b", "elsewhere")] == ["private", "public", "private"]
    with pytest.raises(ServerConfigError, match="visibility must be public"):
        config_of(tmp_path, visibility="secret")


def test_password_hashes_verify_and_say_their_format():
    made = hash_password("a long password")
    assert made.startswith("scrypt$15$8$1$") and made != hash_password("a long password")  # salted
    assert verify_password("a long password", made) and not verify_password("a long passwore", made)
    with pytest.raises(PasswordFormatError, match="scrypt"):
        verify_password("x", "scrypt$40$8$1$AAAA$BBBB")


def test_hash_password_reads_stdin_and_refuses_a_short_one():
    made = subprocess.run([sys.executable, "-m", "runner", "hash-password"], input="correct horse\n",
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert verify_password("correct horse", made.stdout.strip())
    short = subprocess.run([sys.executable, "-m", "runner", "hash-password"], input="short\n",
                           capture_output=True, text=True, timeout=60)
    assert short.returncode == 1 and "at least 8" in short.stderr


def test_the_session_key_is_made_once_private_and_refused_when_others_may_read_it(tmp_path):
    first = load_secret(tmp_path / "d")
    assert load_secret(tmp_path / "d") == first and len(first) == 64
    key = tmp_path / "d" / "session.key"
    assert key.stat().st_mode & 0o777 == 0o600
    key.chmod(0o644)
    with pytest.raises(SecretFileError, match="chmod 600"):
        load_secret(tmp_path / "d")


async def test_sign_in_failures_are_limited_per_address_and_audited(server):
    client = await server([], users=USERS, env=ENV)
    for _ in range(FAILURES):
        wrong = await client.post("/login", data={"name": "admin-user", "password": "guess"})
        assert wrong.status == 401 and "does not match a user" in await wrong.text()
    # Even the right password waits now: the limit is on the address, not the guess.
    limited = await client.post("/login", data={"name": "admin-user", "password": PASSWORD}, allow_redirects=False)
    assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
    assert "Too many failed attempts" in await limited.text()
    # A token still works for the API: the limit is on the sign-in form.
    entries = (await (await client.get("/api/audit", headers=bearer("admin"))).json())["entries"]
    assert [(e["action"], e["actor"], e["detail"]) for e in entries] == \
        [("login_failed", None, {"name": "admin-user"})] * FAILURES


async def test_a_token_signs_in_on_the_page_too(server):
    client = await server([], users=USERS, env=ENV)
    signed = await client.post("/login", data={"token": ENV["DEPLOYER_TOKEN"]}, allow_redirects=False)
    assert signed.status == 303 and "conveyor_session" in signed.cookies
    cookie = signed.cookies["conveyor_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    page = await (await client.get("/")).text()
    assert "deployer-user" in page and "Log out" in page and 'href="/audit"' not in page


async def test_wrong_bearer_tokens_are_limited_per_address_like_sign_ins(server):
    # Guessing a token through the API had no limit while the sign-in form had one.
    client = await server([], users=USERS, env=ENV)
    for _ in range(FAILURES):
        wrong = await client.get("/api/builds", headers={"Authorization": "Bearer guess"})
        assert wrong.status == 401
    limited = await client.get("/api/builds", headers=bearer("viewer"))  # even the right token waits:
    assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0  # else guessing would go on
    assert "too many wrong tokens" in await limited.text()
    # The sign-in form counts its own failures: a person can still sign in from there.
    signed = await client.post("/login", data={"name": "admin-user", "password": PASSWORD}, allow_redirects=False)
    assert signed.status == 303
