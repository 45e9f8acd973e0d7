"""The `conveyor` command: one click group; each area registers its commands from its own module.

The CLI and the server call the same functions: `conveyor run` is the webhook path minus HTTP.
A command's module is imported only when that command runs, so `conveyor lint` loads the pipeline
language and click, never docker-py, GitPython, aiohttp or the store (a test checks it).
"""

from __future__ import annotations

import gc
import importlib

import click

from runner import __version__

# Each command and the module that defines it (with `register(group)`), in help order.
_COMMANDS = {
    "lint": "runner.cli.dsl_cmds", "render": "runner.cli.dsl_cmds", "plan": "runner.cli.dsl_cmds",
    "run": "runner.cli.run_cmds", "builds": "runner.cli.history_cmds", "logs": "runner.cli.history_cmds",
    "show": "runner.cli.history_cmds",
    "approve": "runner.cli.approve_cmd",
    "images": "runner.cli.image_cmds",
    "deploys": "runner.cli.deploy_cmds", "rollback": "runner.cli.deploy_cmds",
    "deploy": "runner.cli.deploy_dry_run",
    "promote": "runner.cli.promote_cmd", "environments": "runner.cli.promote_cmd",
    "serve": "runner.cli.serve_cmd", "hash-password": "runner.cli.users_cmds",
    "gc": "runner.cli.gc_cmd",
    "backup": "runner.cli.backup_cmds", "restore": "runner.cli.backup_cmds",
    "artifacts": "runner.cli.keep_cmds", "cache": "runner.cli.keep_cmds",
}


class _LazyGroup(click.Group):
    """Imports a command's module when the command is asked for (help lists import them all)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        scratch = click.Group()
        importlib.import_module(_COMMANDS[name]).register(scratch)
        return scratch.commands[name]


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="conveyor")
def cli() -> None:
    """Conveyor: run .conveyor.yml pipelines in ephemeral containers, deploy to Docker Swarm."""


def command_modules() -> dict[str, str]:
    """Command name -> module, for the test that keeps the table complete."""
    return dict(_COMMANDS)


def main() -> None:
    try:
        cli()
    finally:
        # The process ends here. Its objects need no collecting, but the interpreter's last
        # collections would walk every one of them: about 45 ms after a `conveyor run`. Frozen,
        # they are skipped; finalizers and atexit handlers still run.
        gc.freeze()
