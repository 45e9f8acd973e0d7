"""Typed reads from a decoded webhook payload: every field a parser uses goes through ``Fields``.

A payload is whatever a sender put in the JSON, so each read says what the field must be and a
wrong value is a ``WebhookError`` naming the field (``head_commit.message must be a string``),
which the endpoint answers with a 400. What a parser gets back is safe to store and to build:

- text is a ``str`` without a NUL (no environment variable can hold one) and valid UTF-8;
- refs, branch and tag names and people's names carry no control character (a newline in a ref
  could add structure to a rendered pipeline), and refs are at most 1,024 characters;
- a sha is 40 or 64 hex digits, lower-cased;
- a number is a JSON integer (not a boolean, not a float) between 1 and 2**63 - 1, what SQLite holds.
"""

from __future__ import annotations

import re
from typing import Any

from runner.errors import WebhookError
from runner.store.db import MAX_INTEGER

__all__ = ["Fields"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # as runner/context.py refuses them
_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_MAX_REF = 1024
_MISSING = object()


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


class Fields:
    """One JSON object of a payload and its path from the root (for messages)."""

    def __init__(self, data: Any, path: str = "") -> None:
        if not isinstance(data, dict):
            raise WebhookError(f"{path or 'the payload'} must be an object, not {_kind(data)}")
        self.data, self.path = data, path

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or (value is None and required):
            if required:
                raise WebhookError(f"{self._name(key)} is missing; this is not a delivery Conveyor can build")
            return None
        return value

    def has(self, key: str) -> bool:
        return key in self.data

    def obj(self, key: str, required: bool = False) -> Fields | None:
        """A nested object; absent or null gives None unless ``required``."""
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise WebhookError(f"{self._name(key)} must be an object, not {_kind(value)}")
        return Fields(value, self._name(key))

    def objects(self, key: str) -> list[Fields]:
        """A list of objects; absent or null is an empty list."""
        value = self._get(key, False)
        if value is None:
            return []
        if not isinstance(value, list):
            raise WebhookError(f"{self._name(key)} must be a list, not {_kind(value)}")
        return [Fields(item, f"{self._name(key)}[{i}]") for i, item in enumerate(value)]

    def text(self, key: str, required: bool = False) -> str | None:
        """Free text (a commit message, a title): any string without a NUL."""
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise WebhookError(f"{self._name(key)} must be a string, not {_kind(value)}")
        if "\x00" in value:
            raise WebhookError(f"{self._name(key)} contains a NUL character, which no build can carry")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise WebhookError(f"{self._name(key)} is not valid Unicode text (a lone surrogate)") from None
        return value

    def name(self, key: str, required: bool = False) -> str | None:
        """A ref, branch, tag, repository or person's name: text without control characters."""
        value = self.text(key, required)
        if value is None:
            return None
        match = _CONTROL.search(value)
        if match:
            raise WebhookError(f"{self._name(key)} contains a control character ({match.group()!r} at "
                               f"{match.start()}); names and refs may not")
        if len(value) > _MAX_REF:
            raise WebhookError(f"{self._name(key)} is longer than {_MAX_REF} characters")
        return value

    def sha(self, key: str, required: bool = True) -> str | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise WebhookError(f"{self._name(key)} must be a string, not {_kind(value)}")
        if not _SHA.fullmatch(value):
            raise WebhookError(f"{self._name(key)} must be a commit sha (40 or 64 hex digits)")
        return value.lower()

    def number(self, key: str, required: bool = False) -> int | None:
        value = self._get(key, required)
        if value is None:
            return None
        if type(value) is not int:  # noqa: E721 - bool is an int subclass and is no number here
            raise WebhookError(f"{self._name(key)} must be a whole number, not {_kind(value)}")
        if not 1 <= value <= MAX_INTEGER:
            raise WebhookError(f"{self._name(key)} must be between 1 and {MAX_INTEGER}")
        return value

    def flag(self, key: str) -> bool:
        value = self._get(key, False)
        if value is not None and not isinstance(value, bool):
            raise WebhookError(f"{self._name(key)} must be true or false, not {_kind(value)}")
        return bool(value)

    def ident(self, key: str) -> int | str | None:
        """A forge's id of a project (GitLab sends numbers): compared, never stored."""
        value = self._get(key, False)
        if value is None:
            return None
        if type(value) is int or isinstance(value, str):  # noqa: E721
            return value
        raise WebhookError(f"{self._name(key)} must be a number, not {_kind(value)}")
