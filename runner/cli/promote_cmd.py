"""`conveyor promote SERVICE --from ENV --to ENV` (`--stack`: NAME is a stack) and `conveyor environments`.

`promote` is the API's and the page's promotion from a shell: the same function, the same history
row (with `cli:<user>` as who promoted). Exit codes: 0 converged, 1 it did not, 2 nothing was
changed (unknown environment, nothing live there, not pinned, a branch the destination refuses).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from pathlib import Path

import click

from runner.build import settle_crashed_deploys
from runner.cli.deploy_cmds import data_dir_option
from runner.errors import ConveyorError
from runner.settings import Settings
from runner.store.db import Store

__all__ = ["register"]


def register(group: click.Group) -> None:
    @group.command("promote")
    @click.argument("service")
    @click.option("--from", "source", required=True, help="The environment whose live digest is promoted.")
    @click.option("--to", "dest", required=True, help="The environment to deploy it to.")
    @click.option("--stack", "is_stack", is_flag=True, help="SERVICE names a stack: promote all its services.")
    @click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for convergence.")
    @data_dir_option
    def promote(service: str, source: str, dest: str, is_stack: bool, timeout: float, data_dir: Path | None) -> None:
        """Deploy exactly the image digest(s) live in one environment to another (no rebuild)."""
        from runner.deploy.promote import plan_promotion, promote as run_promotion
        from runner.deploy.stack_promote import plan_stack_promotion, promote_stack

        settings = Settings.from_env(data_dir=data_dir)
        planner, runner = (plan_stack_promotion, promote_stack) if is_stack else (plan_promotion, run_promotion)
        with Store(settings.data_dir) as store:
            asyncio.run(settle_crashed_deploys(store, settings))
            try:
                plan = asyncio.run(planner(settings, store, service, source, dest))
            except ConveyorError as exc:
                click.echo(f"error: {exc}", err=True)
                sys.exit(2)
            try:
                outcome = asyncio.run(runner(settings, store, plan, click.echo, f"cli:{getpass.getuser()}", timeout))
            except ConveyorError as exc:
                click.echo(f"error: {exc}", err=True)
                sys.exit(1)
        ok = all(o.ok for o in outcome) if is_stack else outcome.ok
        sys.exit(0 if ok else 1)

    @group.command("environments")
    @click.option("--json", "as_json", is_flag=True, help="As JSON (what GET /api/environments answers).")
    @data_dir_option
    def environments(as_json: bool, data_dir: Path | None) -> None:
        """What is live in each environment: digest, build, commit, when and by whom."""
        from runner.deploy.config import load_deploy_config
        from runner.deploy.environments import overview

        settings = Settings.from_env(data_dir=data_dir)
        try:
            config = load_deploy_config(settings)
        except ConveyorError as exc:
            raise click.ClickException(str(exc)) from None
        with Store(settings.data_dir) as store:
            rows = asyncio.run(overview(store, config.environments))
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        if not config.environments:
            click.echo(f"no environments are configured (add `environments:` to {config.source})")
            return
        for entry in rows:
            click.echo(entry["service"])
            for name in config.environments:
                cell = entry["environments"].get(name)
                live = cell and cell["live"]
                what = (f"{live['digest'] or live['image']}  build #{live['build_number']}  "
                        f"{(live['commit_sha'] or '-')[:8]}  by {live['trigger']}  (deploy #{live['id']})"
                        if live else "nothing live")
                click.echo(f"  {name:<12} {what}")
