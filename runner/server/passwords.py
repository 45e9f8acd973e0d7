"""Password hashes for the server configuration's ``users:``: made by ``conveyor hash-password``,
checked at ``/login``. Only the hash is ever in the file.

The format is one string, ``scrypt$<log2 N>$<r>$<p>$<salt>$<key>``, salt and key in unpadded
URL-safe base64: scrypt (``hashlib.scrypt``, memory-hard, in the standard library) with its
parameters written into the hash, so stronger settings later still verify the hashes made today.
Today's are N=2^15, r=8, p=1 (32 MiB and about a tenth of a second per check, the cost an attacker
pays per guess), a 16-byte random salt and a 32-byte key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["hash_password", "verify_password", "check_format", "PasswordFormatError"]

_LOG_N, _R, _P = 15, 8, 1
_MAX_LOG_N = 20  # 1 GiB with r=8: a typo in the file must not take the server's memory
_KEY_BYTES = 32


class PasswordFormatError(ValueError):
    """A ``password_hash`` that is not ``scrypt$...`` as ``conveyor hash-password`` writes it."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=2**log_n, r=r, p=p, dklen=_KEY_BYTES,
                          maxmem=2 * 128 * r * 2**log_n + 2**20)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, _LOG_N, _R, _P)
    return f"scrypt${_LOG_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


def check_format(text: str) -> tuple[int, int, int, bytes, bytes]:
    """The parts of a hash, or ``PasswordFormatError`` saying what to do."""
    parts = text.split("$") if isinstance(text, str) else []
    try:
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError
        log_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
        if not (1 <= log_n <= _MAX_LOG_N and 1 <= r <= 32 and 1 <= p <= 16 and salt and len(key) == _KEY_BYTES):
            raise ValueError
    except ValueError:
        raise PasswordFormatError("is not a hash made by `conveyor hash-password` (scrypt$15$8$1$<salt>$<key>); "
                                  "run it and paste its output") from None
    return log_n, r, p, salt, key


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches; slow on purpose (run it in a thread)."""
    log_n, r, p, salt, key = check_format(stored)
    return hmac.compare_digest(_scrypt(password, salt, log_n, r, p), key)
