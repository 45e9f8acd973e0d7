"""`conveyor gc [--dry-run] [--networks]`: remove builds past their retention (docs/running.md), as
the server does daily: the same ``runner.retention.collect``; with ``--networks``, the idle build
networks the engine keeps (runner/engine/netpool.py)."""

from __future__ import annotations

import time
from pathlib import Path

import click

__all__ = ["register"]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Print what would be removed; remove nothing.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The store to prune (default: the configuration's, else $CONVEYOR_DATA_DIR).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The server configuration: its data_dir and its retention (per repository too).")
@click.option("--days", type=float, default=None, help="Keep builds younger than this, for every repository.")
@click.option("--keep-last", type=click.IntRange(min=0), default=None,
              help="Keep at least this many builds per branch, for every repository.")
@click.option("--networks", is_flag=True,
              help="Also remove the idle build networks kept on the engine for the next builds.")
def gc(dry_run: bool, data_dir: Path | None, config_file: Path | None, days: float | None,
       keep_last: int | None, networks: bool) -> None:
    """Remove finished builds past their retention: by default older than 90 days and not among the
    last 20 of their branch; never the last successful build of a branch or a live deploy's build."""
    from runner.errors import ConveyorError
    from runner.retention import Retention, collect
    from runner.server.config import load_config
    from runner.store.db import Store

    try:
        config = load_config(config_file, data_dir=data_dir)
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from exc
    if networks:
        _drain_networks(config.settings, dry_run)
    policy_for = config.retention_for
    if days is not None or keep_last is not None:
        if days is not None and days <= 0:
            raise click.BadParameter("give a number of days above 0", param_hint="--days")
        base = config.retention
        given = Retention(days=days if days is not None else base.days,
                          keep_last=keep_last if keep_last is not None else base.keep_last)
        policy_for = lambda repo: given  # noqa: E731 - the flags win for every repository
    verb = "would remove" if dry_run else "removed"

    def show(removal) -> None:
        b = removal.build
        click.echo(f"{verb} {b.label} ({b.branch or 'no branch'}, {b.status}, ended {_when(b.ended)}, "
                   f"{_size(removal.size)})")

    try:
        with Store(config.settings.data_dir) as store:
            report = collect(store, policy_for, time.time(), dry_run=dry_run, on_removed=show)
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from exc
    stored = sum(r.stored_bytes for r in report.removed)
    files = sum(r.dir_bytes for r in report.removed)
    if report.expired:
        click.echo(f"{'would expire' if dry_run else 'expired'} {report.expired} artifact file(s) past their "
                   f"expire_in ({_size(report.expired_bytes)})")
    if not report.removed:
        click.echo(f"nothing to remove in {config.settings.data_dir}")
        return
    click.echo(f"{verb} {len(report.removed)} build(s): {'would free' if dry_run else 'freed'} "
               f"{_size(report.freed)} ({_size(stored)} of logs and pipeline text in the store, "
               f"{_size(files)} of artifact and report files)")
    if not dry_run and stored:
        click.echo("the database file keeps its size: SQLite reuses the freed pages for new builds")


def _drain_networks(settings, dry_run: bool) -> None:
    """The idle pooled build networks (docs/backends.md, "The build network pool")."""
    from runner.engine import netpool
    from runner.engine.engine import default_engine
    from runner.engine.labels import labels_for
    from runner.errors import ConveyorError
    from runner.settings import new_build_id

    engine = default_engine(settings)
    try:
        if dry_run:
            names = [n["Name"] for n in engine.api.networks(filters={"label": netpool.POOL_LABEL})]
            click.echo(f"would remove the idle ones of {len(names)} pooled build network(s)")
            return
        # The leases it takes expire in a minute: one a crash leaves is swept like a build's.
        removed = netpool.drain(engine, labels_for(f"gc{new_build_id()}", settings.instance, 60))
        click.echo(f"removed {removed} idle build network(s)")
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - the engine away or refusing: say so, as a command error
        raise click.ClickException(f"could not reach the Docker engine to remove build networks: {exc}") from exc
    finally:
        engine.close()


def register(group: click.Group) -> None:
    group.add_command(gc)
