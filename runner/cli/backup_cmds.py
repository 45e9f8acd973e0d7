"""`conveyor backup` and `conveyor restore`: the store (and optionally its files) to a file and back.

The work is in ``runner/store/backup.py``; see docs/running.md, "Backups and recovery".
"""

from __future__ import annotations

from pathlib import Path

import click

from runner.errors import StoreError
from runner.settings import Settings

__all__ = ["register"]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The data directory to back up (default $CONVEYOR_DATA_DIR, else $XDG_DATA_HOME/conveyor).")
@click.option("--with-artifacts", is_flag=True,
              help="Also write FILE.tar with artifacts/, caches/, badges/ and targets.yml of the data directory.")
def backup_command(file: Path, data_dir: Path | None, with_artifacts: bool) -> None:
    """Copy the store to FILE, consistently, while the server keeps running."""
    from runner.store.backup import backup

    settings = Settings.from_env(data_dir=data_dir)
    try:
        info = backup(settings.data_dir, file, with_files=with_artifacts)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"backed up {settings.data_dir} to {info.path}: {info.builds} builds, {_size(info.bytes)}, "
               f"schema {info.schema}")
    if with_artifacts:
        click.echo(f"files: {info.files}" if info.files else "files: none of artifacts/, caches/, badges/, "
                   "targets.yml exist; no tar written")


@click.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The data directory to restore into (empty, or --force).")
@click.option("--force", is_flag=True, help="Replace the store of a non-empty data directory.")
def restore_command(file: Path, data_dir: Path, force: bool) -> None:
    """Make the backup FILE the store of a data directory (never one a running server has open)."""
    from runner.store.backup import restore

    try:
        info = restore(file, data_dir, force=force)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"restored {info.builds} builds (schema {info.schema}) into {data_dir}"
               + (f", with the files of {info.files}" if info.files else ""))
    click.echo(f"start the server on it: conveyor serve --data-dir {data_dir}")


def register(group: click.Group) -> None:
    group.add_command(backup_command)
    group.add_command(restore_command)
