"""The notifiers against real receivers on 127.0.0.1: a signed webhook, a Slack-compatible webhook
and an SMTP server with STARTTLS (aiosmtpd). Retries, giving up and a hanging receiver included."""

from __future__ import annotations

import asyncio
import email
import hashlib
import hmac
import json
import logging
import time

import pytest

from runner import plugins
from runner.notify import Notifications, Notice, NotifyConfigError, kind_of, parse_rules
from tests.plugins.receivers import start_receiver, start_smtp

SECRET = "s3cret-notify"


def notice(kind="failure", status="failure", **kw) -> Notice:
    values = dict(kind=kind, repo="acme/web", number=7, build_id=42, status=status,
                  url="http://127.0.0.1:8080/builds/42", branch="main", sha="a" * 40, message="Fix <the> & bug\nmore",
                  author="Ada", trigger="push", reason="step 'test' exited with 1", duration=12.5)
    values.update(kw)
    return Notice(**values)


def rules(*entries, environ=None):
    return parse_rules("acme/web", list(entries), plugins.notifier_types(), environ or {"HOOK_SECRET": SECRET})


def deliveries() -> Notifications:
    return Notifications(store=None, public_url="http://127.0.0.1:8080")


def test_kinds_follow_jenkins():
    assert kind_of("failure", None) == "failure"
    assert kind_of("timed_out", "success") == "failure"
    assert kind_of("config_error", "failure") == "failure"
    assert kind_of("success", "failure") == "fixed"
    assert kind_of("success", "config_error") == "fixed"
    assert kind_of("success", "success") == "success"
    assert kind_of("success", None) == "success"
    assert kind_of("cancelled", "failure") is None
    assert kind_of("skipped", None) is None
    (rule,) = rules({"type": "webhook", "url": "http://x/", "secret_env": "HOOK_SECRET", "on": ["success"]})
    assert rule.wants("fixed") and rule.wants("success") and not rule.wants("failure")
    (rule,) = rules({"type": "webhook", "url": "http://x/", "secret_env": "HOOK_SECRET"})
    assert rule.on == ("failure", "fixed") and not rule.wants("success")


async def test_webhook_is_signed_over_the_body():
    receiver = await start_receiver()
    try:
        (rule,) = rules({"type": "webhook", "url": receiver.url, "secret_env": "HOOK_SECRET"})
        assert await deliveries().deliver(rule, notice())
        (got,) = receiver.got
        expected = "sha256=" + hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
        assert got.headers["X-Conveyor-Signature-256"] == expected
        wrong = "sha256=" + hmac.new(b"another secret", got.body, hashlib.sha256).hexdigest()
        assert not hmac.compare_digest(got.headers["X-Conveyor-Signature-256"], wrong)
        assert got.headers["X-Conveyor-Event"] == "build.failure"
        body = json.loads(got.body)
        assert body["event"] == "build.failure" and body["repo"] == "acme/web" and body["number"] == 7
        assert body["url"] == "http://127.0.0.1:8080/builds/42" and body["reason"] == "step 'test' exited with 1"
    finally:
        await receiver.close()


async def test_a_failing_receiver_is_retried_then_given_up(caplog):
    caplog.set_level(logging.INFO, "conveyor.notify")
    receiver = await start_receiver(then=500)
    try:
        (rule,) = rules({"type": "webhook", "url": receiver.url, "secret_env": "HOOK_SECRET", "retries": 2,
                         "backoff": 0.05})
        assert not await deliveries().deliver(rule, notice())
        assert len(receiver.got) == 3  # the first attempt and two retries, no more
        assert len({r.headers["X-Conveyor-Delivery"] for r in receiver.got}) == 1  # one notice, retried
        gaps = [b.at - a.at for a, b in zip(receiver.got, receiver.got[1:])]
        assert gaps[0] >= 0.05 and gaps[1] >= 0.1  # the pause doubles
        assert "given up after 3 attempt(s)" in caplog.text and "answered 500" in caplog.text
    finally:
        await receiver.close()


async def test_a_receiver_that_recovers_gets_the_notice(caplog):
    caplog.set_level(logging.INFO, "conveyor.notify")
    receiver = await start_receiver(answers=[503, 502])
    try:
        (rule,) = rules({"type": "webhook", "url": receiver.url, "secret_env": "HOOK_SECRET", "retries": 3,
                         "backoff": 0.01})
        assert await deliveries().deliver(rule, notice())
        assert len(receiver.got) == 3 and "(attempt 3)" in caplog.text
    finally:
        await receiver.close()


async def test_a_hanging_receiver_is_timed_out_per_attempt(caplog):
    receiver = await start_receiver(then="hang")
    try:
        (rule,) = rules({"type": "webhook", "url": receiver.url, "secret_env": "HOOK_SECRET", "retries": 1,
                         "backoff": 0.01, "timeout": 0.3})
        started = time.monotonic()
        assert not await deliveries().deliver(rule, notice())
        assert len(receiver.got) == 2 and time.monotonic() - started < 5
        assert "no answer in 0.3s" in caplog.text
    finally:
        await receiver.close()


async def test_slack_message():
    receiver = await start_receiver()
    try:
        (rule,) = rules({"type": "slack", "url_env": "SLACK_URL", "channel": "#ci", "on": ["failure", "success"]},
                        environ={"SLACK_URL": receiver.url})
        assert await deliveries().deliver(rule, notice())
        body = json.loads(receiver.got[0].body)
        assert body["text"] == "<http://127.0.0.1:8080/builds/42|acme/web #7 failed on main>"
        (attachment,) = body["attachments"]
        assert attachment["color"] == "#c62828" and attachment["text"] == "Fix &lt;the&gt; &amp; bug"
        assert {"title": "Why", "value": "step 'test' exited with 1", "short": False} in attachment["fields"]
        assert body["channel"] == "#ci"
    finally:
        await receiver.close()


async def test_email_over_starttls_with_login(tmp_path):
    controller, box, port, ca = start_smtp(tmp_path, {"ci": "mail-pass"})
    try:
        entry = {"type": "email", "host": "127.0.0.1", "port": port, "from": "ci@example.com",
                 "to": ["team@example.com", "ada@example.com"], "username": "ci", "password_env": "SMTP_PASS",
                 "ca_file": str(ca), "on": ["failure", "fixed"]}
        (rule,) = rules(entry, environ={"SMTP_PASS": "mail-pass"})
        assert await deliveries().deliver(rule, notice(kind="fixed", status="success"))
        (mail,) = box.messages
        assert mail["tls"] and mail["login"] == "ci"
        assert mail["to"] == ["team@example.com", "ada@example.com"]
        message = email.message_from_string(mail["data"])
        assert message["Subject"] == "[conveyor] acme/web #7 is fixed on main"
        assert "http://127.0.0.1:8080/builds/42" in message.get_payload()
        assert "Why:" not in message.get_payload()  # the reason is for failures only

        (wrong,) = rules({**entry, "retries": 1, "backoff": 0.01}, environ={"SMTP_PASS": "not it"})
        assert not await deliveries().deliver(wrong, notice())
        assert len(box.messages) == 1

        # A client that does not trust the server's certificate does not send (nor log in).
        (untrusted,) = rules({**entry, "ca_file": None, "retries": 0}, environ={"SMTP_PASS": "mail-pass"})
        assert not await deliveries().deliver(untrusted, notice())
        assert len(box.messages) == 1
    finally:
        controller.stop()


@pytest.mark.parametrize("entry, message", [
    ({"type": "pager"}, "no notifier of type 'pager'; known: email, slack, webhook"),
    ({"type": "webhook", "url": "http://x/", "secret": "inline"}, "write `secret_env: NAME`"),
    ({"type": "webhook", "url": "http://x/", "secret_env": "NOPE"}, "secret_env names $NOPE, which is not set"),
    ({"type": "webhook", "url": "ftp://x/", "secret_env": "HOOK_SECRET"}, "url must be an http:// or https:// URL"),
    ({"type": "webhook", "url": "http://x/", "secret_env": "HOOK_SECRET", "ur": 1}, "unknown key(s) ['ur']"),
    ({"type": "webhook", "url": "http://x/", "secret_env": "HOOK_SECRET", "on": ["broken"]},
     "on must list some of failure, fixed, success"),
    ({"type": "webhook", "url": "http://x/", "secret_env": "HOOK_SECRET", "retries": 100}, "retries must be"),
    ({"type": "email", "host": "h", "from": "a@b", "to": "c@d", "username": "u", "password_env": "HOOK_SECRET",
      "starttls": False}, "a password needs starttls: true"),
    ({"type": "email", "host": "h", "from": "a@b", "to": []}, "to must be a string or a non-empty list"),
])
def test_config_errors_name_the_entry_and_the_fix(entry, message):
    with pytest.raises(NotifyConfigError) as err:
        rules(entry)
    assert message in str(err.value)
    assert str(err.value).startswith("repo 'acme/web' notify[0]")


async def test_a_hung_delivery_is_dropped_when_the_server_stops(caplog):
    receiver = await start_receiver(then="hang")
    try:
        (rule,) = rules({"type": "webhook", "url": receiver.url, "secret_env": "HOOK_SECRET", "timeout": 60})
        notes = deliveries()
        notes._spawn(notes.deliver(rule, notice()), "test")
        await asyncio.wait_for(receiver.arrived.wait(), 10)
        await asyncio.wait_for(notes.close(), 5)
        assert "dropped: the server is stopping" in caplog.text
    finally:
        await receiver.close()
