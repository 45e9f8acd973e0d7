"""`conveyor deploys [SERVICE] [--drift]` and `conveyor rollback SERVICE [--to ID] [--stack]`.

`rollback` is the rollback stage by hand: the same function, the same history row, the same wait
for convergence. Exit codes: 0 converged, 1 the rollback did not converge, 2 nothing to roll back
to or a usage error (nothing was changed).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
import time
from pathlib import Path

import click

from runner.build import settle_crashed_deploys
from runner.errors import ConveyorError, NoDeployToRollBackTo
from runner.settings import Settings
from runner.store.db import Store

__all__ = ["register", "deploys_table"]

data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                               help="Where the history is stored (default $CONVEYOR_DATA_DIR).")


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def deploys_table(rows: list[dict]) -> list[str]:
    """The history as aligned text lines, newest first."""
    head = ("ID", "SERVICE", "KIND", "STATUS", "IMAGE", "BUILD", "COMMIT", "STARTED", "TOOK", "BY")
    table = [head]
    for r in rows:
        took = f"{r['finished'] - r['started']:.1f}s" if r["finished"] else "-"
        kind = r["kind"] + (f" to #{r['rollback_of']}" if r["rollback_of"] else "")
        build = f"{r['repo'] or ''}#{r['build_number']}" if r["build_number"] is not None else "-"
        table.append((str(r["id"]), r["service"] + (f" ({r['target']})" if r["target"] != "default" else ""), kind,
                      r["status"], r["image"] or "-", build, (r["commit_sha"] or "-")[:8], _when(r["started"]),
                      took, r["trigger"] or "-"))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    for r in rows:
        if r["reason"]:
            lines.append(f"#{r['id']}: {r['reason']}")
    return lines


def register(group: click.Group) -> None:
    @group.command("deploys")
    @click.argument("service", required=False)
    @click.option("--limit", default=30, show_default=True, help="How many rows, newest first.")
    @click.option("--json", "as_json", is_flag=True, help="Rows as JSON (specs included).")
    @click.option("--drift", is_flag=True, help="Compare each service's live spec with its last recorded deploy "
                                                "and name what differs (exit 1 when something drifted).")
    @click.option("--target", default=None, help="With --drift: only this target (default: every target).")
    @data_dir_option
    def deploys(service: str | None, limit: int, as_json: bool, drift: bool, target: str | None,
                data_dir: Path | None) -> None:
        """Show the deploy history (of SERVICE or of a stack, when given)."""
        from runner.deploy.history import list_deploys

        settings = Settings.from_env(data_dir=data_dir)
        with Store(settings.data_dir) as store:
            asyncio.run(settle_crashed_deploys(store, settings))  # a crashed deploy shows as `unknown`
            if drift:
                _drift(settings, store, service, target, as_json)
                return
            rows = list_deploys(store, service, limit)
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            click.echo(f"no deploys of {service} recorded" if service else "no deploys recorded")
            return
        for line in deploys_table(rows):
            click.echo(line)

    @group.command("rollback")
    @click.argument("service")
    @click.option("--to", "to", type=int, default=None,
                  help="A deploy id from `conveyor deploys` (default: the last good deploy before the current).")
    @click.option("--stack", is_flag=True, help="SERVICE names a stack: roll every service of it back together.")
    @click.option("--target", default=None, help="A named deploy target (default: DOCKER_HOST).")
    @click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for convergence.")
    @data_dir_option
    def rollback(service: str, to: int | None, stack: bool, target: str | None, timeout: float,
                 data_dir: Path | None) -> None:
        """Re-apply a recorded spec of SERVICE and wait until it converged."""
        settings = Settings.from_env(data_dir=data_dir)
        try:
            with Store(settings.data_dir) as store:
                asyncio.run(settle_crashed_deploys(store, settings))
                ok = asyncio.run(_rollback(settings, store, service, to, stack, target, timeout))
        except NoDeployToRollBackTo as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except ConveyorError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        sys.exit(0 if ok else 1)


async def _rollback(settings: Settings, store: Store, name: str, to: int | None, stack: bool,
                    target: str | None, timeout: float) -> bool:
    from runner.engine import open_target
    from runner.deploy.rollback import rollback_service
    from runner.deploy.service import Provenance
    from runner.deploy.stack import rollback_stack

    prov = Provenance(trigger=f"cli:{getpass.getuser()}", instance=settings.instance)
    swarm = await open_target(settings, target)
    try:
        if stack:
            outcomes = await rollback_stack(swarm, store, name, click.echo, prov, to, timeout)
        else:
            outcomes = [await rollback_service(swarm, store, name, click.echo, prov, to, timeout)]
    finally:
        swarm.close()
    return all(o.ok for o in outcomes)


def _drift(settings: Settings, store: Store, service: str | None, target: str | None, as_json: bool) -> None:
    from runner.deploy.drift import drift_report

    try:
        found = asyncio.run(drift_report(settings, store, service, target))
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps([d.to_json() for d in found], indent=2))
    for d in [] if as_json else found:
        where = d.service + (f" ({d.target})" if d.target != "default" else "")
        if not d.drifted:
            click.echo(f"{where}: as recorded (deploy #{d.deploy_id})")
            continue
        click.echo(f"{where}: DRIFTED from deploy #{d.deploy_id}" + (f": {d.note}" if d.note else ""))
        for line in d.differences:
            click.echo(f"  {line}")
    sys.exit(1 if any(d.drifted for d in found) else 0)
