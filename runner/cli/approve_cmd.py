"""`conveyor approve`, and how `conveyor run` answers approval stages (its terminal, or --approve).

`conveyor approve` writes the decision to the store itself, so it answers a build of `conveyor run`
waiting in another shell as well as a server's build, even while that server is down (the restarted
server finds the answer when it resumes the build).
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
import time
from pathlib import Path

import click

from runner.approval import Answer, Ask
from runner.cli.source import repo_root
from runner.errors import BuildNotFound, NotWaiting, StoreError
from runner.settings import Settings
from runner.store import approvals
from runner.store import builds as q
from runner.store.recovery import open_store

__all__ = ["register", "local_ask", "user_name"]


def user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's uid)
        return f"uid {os.getuid()}"


def local_ask(approved: tuple[str, ...], terminal: bool) -> Ask:
    """How `conveyor run` answers: stages named by --approve at once; others on the terminal; with
    neither, the stage fails with a hint (nobody would ever see a question asked into a pipe)."""
    user = user_name()

    async def ask(stage, approval) -> Answer | None:
        if stage.name in approved:
            return Answer("approved", f"{user} (--approve)")
        if not terminal:
            return Answer("not_asked", "conveyor run",
                          f"approval needed and there is no terminal to ask on: pass --approve {stage.name} "
                          f"to `conveyor run`, or approve it from another shell with `conveyor approve "
                          f"id:{approval.build_id}`")
        message = approval.message or f"continue after stage {stage.name!r}?"
        answer = await _read_line(f"\n{message}\napprove? [y/N] ")
        if answer.strip().lower() in ("y", "yes"):
            return Answer("approved", f"{user} (terminal)")
        return Answer("rejected", f"{user} (terminal)", None if answer else "no answer (end of input)")

    return ask


async def _read_line(prompt: str) -> str:
    """One line from the terminal without blocking the loop, so the build keeps running its other
    work and a decision from elsewhere (`conveyor approve`, a cancel) can end the question."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()
    fd = sys.stdin.fileno()
    got = bytearray()

    def readable() -> None:
        data = os.read(fd, 1024)
        got.extend(data)
        if (not data or b"\n" in got) and not done.done():
            done.set_result(got.split(b"\n", 1)[0].decode(errors="replace"))

    sys.stderr.write(prompt)
    sys.stderr.flush()
    loop.add_reader(fd, readable)
    try:
        return await done
    finally:
        loop.remove_reader(fd)


@click.command("approve", epilog="BUILD is a number of the current repo (42), repo#number (web#42), id:ID, "
                                 "or last (the default).")
@click.argument("build_ref", metavar="[BUILD]", required=False)
@click.option("--reject", is_flag=True, help="Reject instead: the approval stage fails.")
@click.option("--comment", "-m", default=None, help="Why; stored and shown with the decision.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where builds are stored (default $CONVEYOR_DATA_DIR, else $XDG_DATA_HOME/conveyor).")
def approve_command(build_ref, reject, comment, data_dir) -> None:
    """Approve (or --reject) the approval stage a build is waiting at."""
    decision = "rejected" if reject else "approved"
    try:
        store = open_store(Settings.from_env(data_dir=data_dir))
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        root = repo_root(Path.cwd())
        build = q.find_build(store.read(), build_ref, root.name if root else None)
        who = user_name()
        row = store.write(lambda c: approvals.decide(c, build.id, decision, who, comment, time.time()))
    except BuildNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    except NotWaiting as exc:
        raise click.ClickException(f"build {build.label}: {exc}") from exc
    finally:
        store.close()
    said = f": {row.comment}" if row.comment else ""
    click.echo(f"build {build.label}: stage {row.stage} {decision} by {row.decided_by}{said}")


def register(group: click.Group) -> None:
    group.add_command(approve_command)
