"""First-party plugin: a signed JSON webhook, ``notify: [{type: webhook, url, secret_env}]``.

The body is the notice as JSON (``Notice.to_json``: ``event`` is ``build.failure``, ``build.fixed``
or ``build.success``). Like a forge's webhook, it is signed: ``X-Conveyor-Signature-256:
sha256=<hex>`` is HMAC-SHA256 of the raw body under the shared secret, so a receiver can tell it
came from this server. ``X-Conveyor-Delivery`` is the same for every retry of one notice, so a
receiver can drop a repeat. Any 2xx answer is a delivery; anything else is retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from runner.hookspecs import hookimpl
from runner.notify import Notice, Options
from runner.notify.http import check_url, post

__all__ = ["WebhookNotifier", "sign", "SIGNATURE_HEADER"]

SIGNATURE_HEADER = "X-Conveyor-Signature-256"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookNotifier:
    def __init__(self, url: str, secret: str, timeout: float) -> None:
        self.url, self.secret, self.timeout = url, secret, timeout

    @classmethod
    def from_config(cls, options: Options) -> WebhookNotifier:
        return cls(check_url(options, "url", options.text("url")), options.secret("secret"), options.timeout)

    async def send(self, notice: Notice) -> None:
        body = json.dumps(notice.to_json(), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "conveyor-notify",
                   "X-Conveyor-Event": f"build.{notice.kind}", SIGNATURE_HEADER: sign(self.secret, body),
                   "X-Conveyor-Delivery": hashlib.sha256(body).hexdigest()[:32]}
        await post(self.url, body, headers, self.timeout)


@hookimpl
def conveyor_notifiers():
    return {"webhook": WebhookNotifier}
