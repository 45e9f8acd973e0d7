"""Who may use the server: the ``users:`` of its configuration, their roles, and what a role allows.

Roles are cumulative, each one everything the one before it may do and more:

- ``viewer``: read the builds, logs, reports and badges of private repositories;
- ``developer``: also run, cancel and re-run builds, and run a schedule now;
- ``deployer``: also approve or reject approval stages, promote, and roll services back;
- ``admin``: everything, including the audit log.

Public repositories are readable by anyone who reaches the server. A user signs in with a password
(only its scrypt hash is in the file, see ``passwords``) or a token (read from an environment
variable the file names, never written in the file). The single ``admin_token`` of earlier versions
is the user ``admin`` with the role ``admin``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from runner.dsl.model import ROLES
from runner.errors import ConveyorError
from runner.server.passwords import PasswordFormatError, check_format

__all__ = ["ROLES", "User", "UsersConfigError", "parse_users", "rank", "may_approve", "ADMIN_NAME"]

ADMIN_NAME = "admin"  # the user the admin_token signs in as
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_@+-]{0,63}")  # no "." or ":": the session cookie splits on them
_KEYS = {"name", "roles", "token_env", "password_hash"}


class UsersConfigError(ConveyorError):
    """A ``users:`` entry is wrong; the message names the user and the key."""


def rank(role: str) -> int:
    """A role's place on the ladder (viewer 0 .. admin 3)."""
    return ROLES.index(role)


@dataclass(frozen=True)
class User:
    name: str
    roles: tuple[str, ...]
    token: str | None = None  # from the environment
    password_hash: str | None = None

    @property
    def role(self) -> str:
        """The highest role held; with cumulative roles it says everything."""
        return ROLES[max(rank(r) for r in self.roles)]

    def has(self, role: str) -> bool:
        return rank(self.role) >= rank(role)

    @property
    def fingerprint(self) -> str:
        """Changes when the user's credentials do, so a new password or token ends old sessions."""
        return hashlib.sha256(f"{self.password_hash}\0{self.token}\0{self.role}".encode()).hexdigest()[:32]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role}


def may_approve(user: User | None, approvers: tuple[str, ...]) -> bool:
    """Whether ``user`` may decide an approval stage: a deployer at least, and, when the stage names
    ``approvers``, one of them by name or by a role (cumulative: ``deployer`` lets an admin in too).
    A name never lifts a lower role: the pipeline file is written by developers, and naming yourself
    in it must not let you approve your own deploy."""
    if user is None or not user.has("deployer"):
        return False
    if not approvers:
        return True
    return user.name in approvers or any(a in ROLES and user.has(a) for a in approvers)


def _user(index: int, data: Any, environ: dict[str, str]) -> User:
    where = f"users[{index}]"
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not _NAME.fullmatch(data["name"]):
        raise UsersConfigError(f"{where}: each user needs a `name:` of letters, digits, _ @ + - (at most 64)")
    where = f"user {data['name']!r}"
    if "token" in data or "password" in data:
        raise UsersConfigError(f"{where}: secrets never go in the file: write token_env: NAME (an environment "
                               "variable holding the token) or password_hash: (from `conveyor hash-password`)")
    unknown = set(data) - _KEYS
    if unknown:
        raise UsersConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_KEYS)}")
    roles = data.get("roles")
    roles = [roles] if isinstance(roles, str) else roles
    if not roles or not isinstance(roles, list) or any(r not in ROLES for r in roles):
        raise UsersConfigError(f"{where}: roles must be a list of {', '.join(ROLES)} (each includes the ones "
                               f"before it), for example roles: [developer]")
    token = None
    if data.get("token_env"):
        token = environ.get(str(data["token_env"]))
        if not token:
            raise UsersConfigError(f"{where}: token_env names ${data['token_env']}, which is not set (or empty); "
                                   "export it before starting the server")
    password_hash = data.get("password_hash")
    if password_hash is not None:
        try:
            check_format(password_hash)
        except PasswordFormatError as exc:
            raise UsersConfigError(f"{where}: password_hash {exc}") from None
    if token is None and password_hash is None:
        raise UsersConfigError(f"{where}: give token_env (API and page) or password_hash (page), or both")
    return User(name=data["name"], roles=tuple(dict.fromkeys(roles)), token=token, password_hash=password_hash)


def parse_users(raw: Any, admin_token: str | None, environ: dict[str, str]) -> dict[str, User]:
    """The configured users by name, with the admin token's ``admin`` user when it is set."""
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise UsersConfigError("users must be a list, e.g. [{name: ana, roles: [developer], token_env: ANA_TOKEN}]")
    users: dict[str, User] = {}
    for index, item in enumerate(raw):
        user = _user(index, item, environ)
        if user.name in users:
            raise UsersConfigError(f"user {user.name!r} is configured twice; names must be unique")
        users[user.name] = user
    if admin_token:
        if ADMIN_NAME in users:
            raise UsersConfigError(f"a user is named {ADMIN_NAME!r}, the name admin_token signs in as; rename "
                                   "the user, or drop admin_token and give that user the admin role")
        users[ADMIN_NAME] = User(name=ADMIN_NAME, roles=("admin",), token=admin_token)
    tokens = [u.token for u in users.values() if u.token]
    if len(tokens) != len(set(tokens)):
        raise UsersConfigError("two users have the same token; give each user its own")
    return users
