"""The page's session cookie and its CSRF token, signed with the server's secret.

Nothing is kept in memory or in the store: the cookie ``<user>.<expires>.<nonce>.<mac>`` carries who
signed in and until when, and the MAC (HMAC-SHA256 under the server secret) covers those and the
user's credential fingerprint, so a changed password, token or role ends that user's sessions, and
a changed secret ends everyone's. The CSRF token is a second MAC of the nonce (double submit: a form
carries it, the cookie alone is refused).

The secret is ``session_secret`` from the configuration, or ``session.key`` in the data directory,
made on first start (32 random bytes, mode 0600), so sessions survive restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import time
from pathlib import Path

from runner.errors import ConveyorError
from runner.server.users import User

__all__ = ["SESSION_COOKIE", "SESSION_SECONDS", "Sessions", "load_secret", "SecretFileError"]

SESSION_COOKIE = "conveyor_session"
SESSION_SECONDS = 7 * 24 * 3600
SECRET_FILE = "session.key"


class SecretFileError(ConveyorError):
    """The data directory's session key cannot be made or is readable by others."""


def load_secret(data_dir: Path) -> bytes:
    """``<data_dir>/session.key``, made on first start; blocking (call it in a thread)."""
    path = Path(data_dir) / SECRET_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SecretFileError(f"cannot create {path}: {exc.strerror}; make the data directory writable or set "
                              "session_secret_env in the configuration") from exc
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretFileError(f"{path} is readable by others (mode {stat.filemode(mode)}): anyone who reads it "
                              f"can forge sessions; run chmod 600 {path}")
    text = path.read_text(encoding="ascii").strip()
    if len(text) < 32:
        raise SecretFileError(f"{path} holds no usable secret; delete it and restart (everyone signs in again)")
    return text.encode()


class Sessions:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, *parts: str) -> str:
        return hmac.new(self._secret, "\0".join(parts).encode(), hashlib.sha256).hexdigest()

    def new(self, user: User, now: float | None = None) -> str:
        expires = int((now or time.time()) + SESSION_SECONDS)
        nonce = secrets.token_hex(16)
        return f"{user.name}.{expires}.{nonce}.{self._mac('session', user.name, str(expires), nonce, user.fingerprint)}"

    def read(self, cookie: str, users: dict[str, User]) -> tuple[User, str] | None:
        """The user and nonce of a valid, unexpired cookie, else None."""
        parts = cookie.rsplit(".", 3)
        if len(parts) != 4:
            return None
        name, expires, nonce, mac = parts
        user = users.get(name)
        if user is None or not expires.isdigit() or int(expires) < time.time():
            return None
        expected = self._mac("session", name, expires, nonce, user.fingerprint)
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return None
        return user, nonce

    def csrf(self, nonce: str) -> str:
        return self._mac("csrf", nonce)
