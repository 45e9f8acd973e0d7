"""How commands reach the stored builds: the --data-dir option, the store (recovered on opening),
and a build named on the command line (``BUILD_HELP``)."""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.source import repo_root
from runner.errors import StoreError
from runner.settings import Settings
from runner.store import builds as q
from runner.store.recovery import open_store

__all__ = ["BUILD_HELP", "data_dir_option", "settings_of", "open_or_exit", "find_build"]

BUILD_HELP = "BUILD is a number of the current repo (42), repo#number (web#42), id:ID, or last (the default)."
data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where builds are stored (default $CONVEYOR_DATA_DIR, else $XDG_DATA_HOME/conveyor).",
)


def settings_of(data_dir: Path | None) -> Settings:
    return Settings.from_env(data_dir=data_dir)


def open_or_exit(settings: Settings, *, recover: bool = True):
    """The store, or a clear error and exit status 1 when it cannot be opened."""
    try:
        return open_store(settings, recover=recover)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc


def _current_repo() -> str | None:
    root = repo_root(Path.cwd())
    return root.name if root else None


def find_build(store, build_ref: str | None):
    """The build ``build_ref`` names (``BUILD_HELP``), or a clear error saying what exists."""
    try:
        return q.find_build(store.read(), build_ref, _current_repo())
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
