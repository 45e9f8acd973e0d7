"""`conveyor hash-password`: the ``password_hash`` of a user in the server configuration.

The password is read from a hidden prompt (asked twice) on a terminal, or as the first line of
standard input otherwise (``printf %s "$PW" | conveyor hash-password``), never from the command
line, where other users of the machine and the shell's history would see it.
"""

from __future__ import annotations

import sys

import click

__all__ = ["register"]

MIN_LENGTH = 8


@click.command("hash-password")
def hash_password_command() -> None:
    """Print the password_hash (scrypt) of a password read from a prompt or stdin."""
    from runner.server.passwords import hash_password

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_LENGTH:
        raise click.ClickException(f"the password is {len(password)} characters; use at least {MIN_LENGTH}")
    click.echo(hash_password(password))


def register(group: click.Group) -> None:
    group.add_command(hash_password_command)
