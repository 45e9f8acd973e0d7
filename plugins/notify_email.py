"""First-party plugin: e-mail over SMTP, ``notify: [{type: email, host, to, from, ...}]``.

```yaml
- type: email
  host: smtp.example.com
  port: 587                  # the submission port; STARTTLS upgrades the connection
  from: ci@example.com
  to: [team@example.com]
  username: ci@example.com   # optional; then password_env names the variable with the password
  password_env: SMTP_PASSWORD
  starttls: true             # default; false only for a relay on the same host, and never with a password
  ca_file: /etc/conveyor/smtp-ca.pem   # optional: trust this CA (a private or self-signed server)
```

smtplib is blocking, so each mail is sent from a worker thread; the socket times out with the
entry's ``timeout``, so a mail server that hangs holds that thread no longer than one attempt.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from runner.hookspecs import hookimpl
from runner.notify import Notice, Options

if TYPE_CHECKING:
    from email.message import EmailMessage

__all__ = ["EmailNotifier", "email_message"]


def email_message(notice: Notice, sender: str, to: list[str]) -> EmailMessage:
    from email.message import EmailMessage  # here: every build loads this plugin, few send mail

    message = EmailMessage()
    message["Subject"] = f"[conveyor] {notice.title}"
    message["From"], message["To"] = sender, ", ".join(to)
    lines = [notice.title, "", notice.url, ""]
    facts = [("Branch", notice.branch or notice.tag), ("Commit", notice.sha), ("Author", notice.author),
             ("Pipeline", notice.pipeline), ("Trigger", notice.trigger),
             ("Duration", f"{notice.duration:.0f}s" if notice.duration is not None else None),
             ("Why", notice.reason if notice.kind == "failure" else None)]
    lines += [f"{name}: {value}" for name, value in facts if value]
    if notice.message:
        lines += ["", notice.message]
    message.set_content("\n".join(lines) + "\n")
    return message


class EmailNotifier:
    def __init__(self, *, host: str, port: int, sender: str, to: list[str], username: str | None,
                 password: str | None, starttls: bool, ca_file: str | None, timeout: float) -> None:
        self.host, self.port, self.sender, self.to = host, port, sender, to
        self.username, self.password, self.starttls = username, password, starttls
        self.ca_file, self.timeout = ca_file, timeout

    @classmethod
    def from_config(cls, options: Options) -> EmailNotifier:
        username = options.text("username", None)
        password = options.secret("password", required=username is not None)
        starttls = options.flag("starttls", True)
        if password and not starttls:
            raise options.error("a password needs starttls: true; without it the password would cross the "
                                "network in clear text")
        ca_file = options.text("ca_file", None)
        if ca_file is not None and not Path(ca_file).is_file():
            raise options.error(f"ca_file {ca_file} is not a file; give the PEM file of the mail server's CA")
        return cls(host=options.text("host"), port=int(options.number("port", 587, low=1, high=65535)),
                   sender=options.text("from"), to=options.texts("to"), username=username, password=password,
                   starttls=starttls, ca_file=ca_file, timeout=options.timeout)

    async def send(self, notice: Notice) -> None:
        await asyncio.to_thread(self._send, email_message(notice, self.sender, self.to))

    def _send(self, message: EmailMessage) -> None:
        import smtplib
        import ssl

        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=self.ca_file))
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)


@hookimpl
def conveyor_notifiers():
    return {"email": EmailNotifier}
