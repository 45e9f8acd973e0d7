"""A repository's ``notify:`` list: each entry names a notifier type, which news it wants (``on:``)
and how hard to try; the rest of the entry is the notifier's own (see ``Options``)."""

from __future__ import annotations

from typing import Any, Protocol

from runner.notify.notice import Notice
from runner.notify.options import NotifyConfigError, Options
from runner.values import Value, frozen

__all__ = ["KINDS", "NotifyRule", "Notifier", "parse_rules"]

KINDS = ("failure", "fixed", "success")
_DEFAULT_ON = ("failure", "fixed")  # what Jenkins' mailer sends: broken, and back to normal
_COMMON = ("type", "on", "retries", "backoff", "timeout")


class Notifier(Protocol):
    """What a plugin's notifier class looks like (the ``conveyor_notifiers`` hook returns them)."""

    @classmethod
    def from_config(cls, options: Options) -> Notifier: ...

    async def send(self, notice: Notice) -> None:
        """Deliver ``notice`` or raise; the caller times it out, logs the error and retries."""


@frozen
class NotifyRule(Value):
    type: str
    notifier: Any  # a Notifier
    on: tuple[str, ...] = _DEFAULT_ON
    retries: int = 3  # attempts after the first
    backoff: float = 2.0  # seconds before the first retry; doubled before each next one
    timeout: float = 10.0  # seconds one attempt may take

    def wants(self, kind: str | None) -> bool:
        # A fixed build is also a success: `on: [success]` hears about every green build.
        return kind is not None and (kind in self.on or (kind == "fixed" and "success" in self.on))

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...)."""
        return self.backoff * 2 ** (attempt - 1)


def _rule(where: str, data: Any, types: dict[str, type], environ: dict[str, str]) -> NotifyRule:
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise NotifyConfigError(f"{where}: each entry is a mapping with a `type:` ({', '.join(sorted(types))})")
    kind = data["type"]
    where = f"{where} ({kind})"
    if kind not in types:
        raise NotifyConfigError(f"{where}: no notifier of type {kind!r}; known: {', '.join(sorted(types))} "
                                "(a plugin adds more through conveyor_notifiers)")
    on = data.get("on", list(_DEFAULT_ON))
    on = [on] if isinstance(on, str) else on
    if not isinstance(on, list) or not on or any(k not in KINDS for k in on):
        raise NotifyConfigError(f"{where}: on must list some of {', '.join(KINDS)}, not {data.get('on')!r}")
    common = Options(where, {k: data[k] for k in _COMMON[2:] if k in data}, environ)
    retries = common.number("retries", 3, high=20)
    if retries != int(retries):
        raise common.error("retries must be a whole number")
    backoff = common.number("backoff", 2.0, high=3600)
    timeout = common.number("timeout", 10.0, low=0.1, high=600)
    options = Options(where, {k: v for k, v in data.items() if k not in _COMMON}, environ, float(timeout))
    try:
        notifier = types[kind].from_config(options)
    except NotifyConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's own error still names the entry
        raise NotifyConfigError(f"{where}: {exc}") from exc
    options.finish()
    return NotifyRule(kind, notifier, tuple(dict.fromkeys(on)), int(retries), float(backoff), float(timeout))


def parse_rules(repo: str, data: Any, types: dict[str, type], environ: dict[str, str]) -> tuple[NotifyRule, ...]:
    """The ``notify:`` list of repository ``repo``; ``types`` maps a type to its notifier class."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise NotifyConfigError(f"repo {repo!r}: notify must be a list of entries like "
                                "{type: webhook, url: ..., on: [failure, fixed]}")
    return tuple(_rule(f"repo {repo!r} notify[{i}]", item, types, environ) for i, item in enumerate(data))
