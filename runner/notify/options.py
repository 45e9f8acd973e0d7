"""A notifier's part of one ``notify:`` entry, read with clear errors (what a plugin's
``from_config`` receives). Secrets are only ever named from the environment."""

from __future__ import annotations

from typing import Any

from runner.errors import ConveyorError

__all__ = ["Options", "NotifyConfigError"]

_REQUIRED = object()


class NotifyConfigError(ConveyorError):
    """A ``notify:`` entry is wrong; the message names the repository, the entry and the key."""


class Options:
    """The keys of one entry that belong to its notifier. Read each with ``text``, ``texts``,
    ``number``, ``flag`` or ``secret``; the server calls ``finish()`` after ``from_config``, which
    refuses keys nobody read (a typo would otherwise silently send nothing)."""

    def __init__(self, where: str, data: dict[str, Any], environ: dict[str, str], timeout: float = 10.0) -> None:
        self.where, self._data, self._environ = where, dict(data), environ
        self.timeout = timeout  # seconds one attempt may take (the entry's `timeout:`)
        self._read: set[str] = set()

    def error(self, message: str) -> NotifyConfigError:
        return NotifyConfigError(f"{self.where}: {message}")

    def _get(self, key: str, default: Any) -> Any:
        self._read.add(key)
        if key not in self._data or self._data[key] is None:
            if default is _REQUIRED:
                raise self.error(f"`{key}:` is missing")
            return default
        return self._data[key]

    def text(self, key: str, default: Any = _REQUIRED) -> str | None:
        value = self._get(key, default)
        if value is not default and (not isinstance(value, str) or not value):
            raise self.error(f"{key} must be a non-empty string, not {value!r}")
        return value

    def texts(self, key: str, default: Any = _REQUIRED) -> list[str]:
        """A list of strings; one string is a list of one."""
        value = self._get(key, default)
        if value is default:
            return value
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise self.error(f"{key} must be a string or a non-empty list of strings")
        return value

    def number(self, key: str, default: Any = _REQUIRED, *, low: float = 0, high: float = 1e9) -> float:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise self.error(f"{key} must be a number from {low:g} to {high:g}, not {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{key} must be true or false, not {value!r}")
        return value

    def secret(self, key: str, *, required: bool = True) -> str | None:
        """``KEY_env: NAME``: the value of $NAME. ``KEY:`` itself is refused, so the file stays free
        of secrets and can be committed."""
        self._read.update((key, f"{key}_env"))
        if key in self._data:
            raise self.error(f"write `{key}_env: NAME` and export NAME; a {key} is never written in the file")
        name = self._data.get(f"{key}_env")
        if name is None:
            if required:
                raise self.error(f"`{key}_env:` is missing: name the environment variable that holds the {key}")
            return None
        if not isinstance(name, str) or name not in self._environ:
            raise self.error(f"{key}_env names ${name}, which is not set; export it before starting the server")
        return self._environ[name]

    def finish(self) -> None:
        unknown = set(self._data) - self._read
        if unknown:
            raise self.error(f"unknown key(s) {sorted(unknown)}; known: {sorted(self._read)}")
