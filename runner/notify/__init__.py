"""Notifications: tell the team how a build ended (docs/plugins.md, docs/server.md).

A repository's ``notify:`` entries become ``NotifyRule``s when the server's configuration is read;
each names a notifier type that a plugin provides through the ``conveyor_notifiers`` hook (the
first-party ones are ``plugins/notify_webhook.py``, ``notify_email.py`` and ``notify_slack.py``).
When a build ends, ``Notifications`` works out what it means (``failure``, ``fixed``, ``success``)
and sends it to the rules that want it, in the background, retried a bounded number of times: a
notifier never fails, delays or slows a build.
"""

from runner.notify.deliver import Notifications
from runner.notify.notice import Notice, kind_of
from runner.notify.options import NotifyConfigError, Options
from runner.notify.rules import KINDS, NotifyRule, parse_rules

__all__ = ["Notifications", "Notice", "kind_of", "NotifyConfigError", "Options", "KINDS", "NotifyRule",
           "parse_rules"]
