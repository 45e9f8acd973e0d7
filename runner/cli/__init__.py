"""The `conveyor` command: one click group; each area registers its commands from its own module.

The CLI and the server call the same functions: `conveyor run` is the webhook path minus HTTP.
"""

from __future__ import annotations

import importlib

import click

from runner import __version__

# Modules that add commands to the group, in help order. Each defines `register(group)`.
_COMMAND_MODULES = (
    "runner.cli.dsl_cmds",  # lint, render, plan
    "runner.cli.run_cmds",  # run, builds, logs, show
    "runner.cli.approve_cmd",  # approve
    "runner.cli.image_cmds",  # images bootstrap
    "runner.cli.deploy_cmds",  # deploys, rollback
    "runner.cli.promote_cmd",  # promote, environments
    "runner.cli.serve_cmd",  # serve
    "runner.cli.gc_cmd",  # gc
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="conveyor")
def cli() -> None:
    """Conveyor: run .conveyor.yml pipelines in ephemeral containers, deploy to Docker Swarm."""


for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(cli)


def main() -> None:
    cli()
