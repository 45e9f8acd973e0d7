"""First-party plugin: a Slack incoming webhook, ``notify: [{type: slack, url_env: NAME}]``.

The URL of an incoming webhook is itself the credential, so it comes from the environment. The
message is Slack's ``text`` plus one coloured attachment, which Mattermost, Rocket.Chat and
Discord's ``/slack`` endpoints understand too. ``channel`` and ``username`` are passed through for
the services that still honour them.
"""

from __future__ import annotations

import json

from runner.hookspecs import hookimpl
from runner.notify import Notice, Options
from runner.notify.http import check_url, post

__all__ = ["SlackNotifier", "slack_message"]

_COLOURS = {"failure": "#c62828", "fixed": "#2e7d32", "success": "#2e7d32"}


def _escape(text: str) -> str:
    """Slack's three control characters; everything else is shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(notice: Notice) -> dict:
    fields = [{"title": "Commit", "value": _escape((notice.sha or "")[:12]), "short": True}]
    if notice.author:
        fields.append({"title": "Author", "value": _escape(notice.author), "short": True})
    if notice.reason and notice.kind == "failure":
        fields.append({"title": "Why", "value": _escape(notice.reason[:500]), "short": False})
    first_line = (notice.message or "").splitlines()[0] if notice.message else ""
    return {
        "text": f"<{notice.url}|{_escape(notice.title)}>",
        "attachments": [{"color": _COLOURS[notice.kind], "fallback": _escape(notice.title),
                         "text": _escape(first_line), "fields": fields}],
    }


class SlackNotifier:
    def __init__(self, url: str, timeout: float, channel: str | None, username: str | None) -> None:
        self.url, self.timeout, self.channel, self.username = url, timeout, channel, username

    @classmethod
    def from_config(cls, options: Options) -> SlackNotifier:
        url = check_url(options, "the value of url_env", options.secret("url"))
        return cls(url, options.timeout, options.text("channel", None), options.text("username", None))

    async def send(self, notice: Notice) -> None:
        message = slack_message(notice)
        if self.channel:
            message["channel"] = self.channel
        if self.username:
            message["username"] = self.username
        body = json.dumps(message).encode()
        await post(self.url, body, {"Content-Type": "application/json"}, self.timeout)


@hookimpl
def conveyor_notifiers():
    return {"slack": SlackNotifier}
