"""`conveyor deploy --dry-run` and `conveyor plan --deploy-specs`: the Swarm specs a deploy would
write, and with a live service the diff against it. Nothing on the swarm changes.

Sources: a pipeline file (every deploy stage, or `--stage NAME`), or a Compose file directly
(`--compose FILE --stack NAME`). The target is asked for the live services and for the secret and
config versions that exist; when it cannot be reached the specs are printed without a diff.
Exit codes: 0 printed, 1 the pipeline or Compose file has errors, 2 usage.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from runner.errors import ConveyorError

__all__ = ["register", "print_deploy_specs"]


async def _open(settings, target: str | None):
    from runner.engine import open_target

    try:
        return await open_target(settings, target)
    except Exception as exc:  # noqa: BLE001 - any reason the target cannot be asked: say it, go on
        click.echo(f"note: target {target or 'default'} not asked ({exc}); no diff against live services", err=True)
        return None


def _previews(stage_spec, repo: Path, env: dict, trusted: bool, settings, params: dict | None = None):
    from runner.deploy.compose_source import stack_from_dir
    from runner.deploy.dry_run import preview_service, preview_stack

    swarm = asyncio.run(_open(settings, stage_spec.target))
    try:
        if stage_spec.stack:
            compose = stack_from_dir(repo, stage_spec.compose, stage_spec.stack, env, trusted, params)
            for warning in compose.warnings:
                click.echo(f"warning: {warning}", err=True)
            return preview_stack(swarm, compose, settings.instance)
        return preview_service(swarm, stage_spec, settings.instance)
    finally:
        if swarm is not None:
            swarm.close()


def _show(previews, as_json: bool) -> None:
    from runner.deploy.dry_run import diff_lines

    if as_json:
        click.echo(json.dumps([{"service": p.name, "spec": p.spec, "live": p.live, "diff": diff_lines(p),
                                "notes": list(p.notes)}
                               for p in previews], indent=2))
        return
    for p in previews:
        click.echo(f"# {p.name}: " + ("would be created" if p.live is None else
                                      "unchanged" if not diff_lines(p) else "would be updated"))
        for note in p.notes:
            click.echo(f"# note: {note}")
        click.echo(json.dumps(p.spec, indent=2, sort_keys=True))
        for line in diff_lines(p):
            click.echo(line)


def print_deploy_specs(plan, repo: Path, settings, stage: str | None = None, as_json: bool = False) -> None:
    """Every deploy stage of ``plan`` (or the one named ``stage``): its specs and live diff."""
    stages = [s for s in plan.stages if s.kind == "deploy" and (stage is None or s.name == stage)]
    if not stages:
        raise click.UsageError(f"no deploy stage{' named ' + stage if stage else ''} in the pipeline")
    previews = []
    for s in stages:
        previews += _previews(s.deploy, repo, {**plan.env, **s.env}, plan.trusted, settings, plan.params)
    _show(previews, as_json)


def register(group: click.Group) -> None:
    @group.command("deploy")
    @click.argument("pipeline", type=click.Path(path_type=Path), required=False)
    @click.option("--dry-run", is_flag=True, help="Print the Swarm specs and the diff to live; change nothing.")
    @click.option("--stage", help="Only this deploy stage of the pipeline.")
    @click.option("--compose", "compose", type=click.Path(path_type=Path, dir_okay=False),
                  help="A Compose file to preview directly (with --stack).")
    @click.option("--stack", help="The stack name for --compose.")
    @click.option("--target", help="A named target from targets.yml (default: DOCKER_HOST).")
    @click.option("--env", "env", multiple=True, metavar="KEY=VALUE",
                  help="With --compose: an env value the file's Jinja and ${VAR} see; repeatable.")
    @click.option("--trusted", is_flag=True, help="Treat the repository as trusted (bind mounts allowed).")
    @click.option("--json", "as_json", is_flag=True, help="Specs, live specs and diffs as JSON.")
    def deploy(pipeline, dry_run, stage, compose, stack, target, env, trusted, as_json):
        """Preview a deploy: the exact specs it would write, and the diff to what runs."""
        from runner.deploy.compose_source import stack_from_dir
        from runner.deploy.dry_run import compose_root, preview_stack
        from runner.settings import Settings

        if not dry_run:
            raise click.UsageError("deploys run as a pipeline's deploy stage (`conveyor run`); "
                                   "add --dry-run to preview one")
        settings = Settings.from_env()
        try:
            if compose is not None:
                if not stack:
                    raise click.UsageError("--compose needs --stack NAME")
                root, name = compose_root(compose)
                from runner.cli.dsl_cmds import _parse_params

                parsed = stack_from_dir(root, name, stack, _parse_params(env), trusted)
                for warning in parsed.warnings:
                    click.echo(f"warning: {warning}", err=True)

                async def ask():
                    return await _open(settings, target)

                swarm = asyncio.run(ask())
                try:
                    _show(preview_stack(swarm, parsed, settings.instance), as_json)
                finally:
                    if swarm is not None:
                        swarm.close()
                return
            plan, repo = _load_plan(pipeline or Path("."), trusted)
            print_deploy_specs(plan, repo, settings, stage, as_json)
        except ConveyorError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


def _load_plan(target: Path, trusted: bool):
    from runner.cli.dsl_cmds import _context, _files, _report
    from runner.dsl import load_pipeline

    repo, (path, *_rest) = _files(target)
    loaded = load_pipeline(repo, _context(repo, None, None, None, (), None), file=path, trusted=trusted)
    errors, _ = _report(loaded.diagnostics)
    if errors or loaded.plan is None:
        sys.exit(1)
    return loaded.plan, repo
