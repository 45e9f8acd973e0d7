"""One user per role, with tokens from the environment, for the tests of users and roles."""

from __future__ import annotations

from runner.server.passwords import hash_password

ROLE_NAMES = ("viewer", "developer", "deployer", "admin")
TOKENS = {role: f"{role}-token-0123456789" for role in ROLE_NAMES}
ENV = {f"{role.upper()}_TOKEN": token for role, token in TOKENS.items()}
PASSWORD = "correct horse battery"
_HASH = hash_password(PASSWORD)  # once: scrypt is slow on purpose
USERS = [{"name": f"{role}-user", "roles": [role], "token_env": f"{role.upper()}_TOKEN", "password_hash": _HASH}
         for role in ROLE_NAMES]


def bearer(role: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
