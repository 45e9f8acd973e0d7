"""`conveyor run`: run a pipeline here and now, and keep its history (read by runner/cli/history_cmds.py).

`conveyor run` is the server's path minus HTTP: ``create_build`` then ``run_build``. Exit codes:
0 success (or skipped: the file's `on:` excludes the event), 1 any other outcome, 2 a configuration
or usage error, 130 after Ctrl-C (once every container, volume and network of the build is gone).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import click

from runner.build_request import BuildRequest
from runner.cli.progress import format_duration
from runner.cli.source import check_data_dir, export_head, repo_root
from runner.cli.stored import data_dir_option, open_or_exit, settings_of
from runner.errors import ConveyorError, ContextError, SourceError
from runner.store import builds as q

__all__ = ["register"]


def _params(values: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value (e.g. --param target=staging)",
                                     param_hint="--param")
        params[key] = value
    return params


def _secrets(names: tuple[str, ...]) -> dict[str, str]:
    secrets = {}
    for name in names:
        value = os.environ.get(name)
        if value is None:
            raise click.BadParameter(
                f"the secret {name} is not set in the environment; export {name}=... before `conveyor run`",
                param_hint="--secret",
            )
        secrets[name] = value
    return secrets


def _pipeline(directory: Path, pipeline_file: Path | None) -> str | None:
    """The pipeline file relative to the checkout, or None for the one and only default. The render
    child starts now if the file has template code (runner.dsl.warm_up), beside the engine's import."""
    from runner.dsl import find_pipeline_files, warm_up

    if pipeline_file is not None:
        path = pipeline_file if pipeline_file.is_absolute() else directory / pipeline_file
        try:
            relative = str(path.resolve().relative_to(directory))
        except ValueError:
            raise click.UsageError(f"--file {pipeline_file} is not inside {directory}; pass a path within it")
        warm_up([path])
        return relative
    found = find_pipeline_files(directory)
    if len(found) > 1:  # several pipelines (.conveyor/*.yml): running one at random would surprise
        names = ", ".join(str(p.relative_to(directory)) for p in found)
        raise click.UsageError(f"{directory} has {len(found)} pipelines ({names}); choose one with --file")
    warm_up(found)
    return None


@click.command("run")
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--commit", "at_commit", is_flag=True, help="Run exactly HEAD, not the working tree.")
@click.option("--branch", help="The branch the pipeline sees (default: git's current branch).")
@click.option("--tag", help="Run as a tag build for this tag.")
@click.option("--event", type=click.Choice(["push", "tag", "pull_request", "manual", "cron"]),
              help="The event the pipeline sees (default push, or tag with --tag).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="A pipeline parameter; repeatable.")
@click.option("--file", "pipeline_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The pipeline file (default .conveyor.yml), relative to DIRECTORY.")
@click.option("--backend", "backend_name", type=click.Choice(["docker", "swarm", "local"]), default="docker",
              show_default=True, help="Where jobs run: ephemeral containers, one-shot services on the swarm whose "
              "manager DOCKER_HOST names, or host processes (explicit opt-in).")
@click.option("--secret", "secret_names", multiple=True, metavar="NAME",
              help="Pass the environment variable NAME to steps as a secret, masked in every log; repeatable.")
@click.option("--changes-from", "changes_from", metavar="REF",
              help="when.changes compares with this commit (default: the working tree against HEAD).")
@click.option("--trusted", is_flag=True, help="Allow privileged jobs and host volumes (your own repository only).")
@click.option("-q", "--quiet", is_flag=True, help="Show the step lines only, not the steps' output.")
@click.option("--approve", "approve", multiple=True, metavar="STAGE",
              help="Approve this approval stage in advance (needed without a terminal to ask on); repeatable.")
@data_dir_option
def run_command(directory: Path, at_commit: bool, branch, tag, event, params, pipeline_file, backend_name,
                secret_names, changes_from, trusted, quiet, approve, data_dir) -> None:
    """Run the pipeline of the repository in DIRECTORY (default: here), live, and keep its history.

    The working tree is used as it is, uncommitted changes included, with the git context of HEAD;
    --commit runs exactly HEAD. An approval stage asks on the terminal (or takes --approve STAGE).
    Exit status: 0 success (or not run: the file's `on:` excludes
    the event), 1 failure, 2 configuration error, 130 after Ctrl-C.
    """
    directory = directory.resolve()
    settings = settings_of(data_dir)
    parsed, secrets = _params(params), _secrets(secret_names)
    root = repo_root(directory)
    try:
        check_data_dir(settings.data_dir, root or directory)
        from runner.scm.worktree import context_from_worktree

        from runner.context import Changes
        from runner.scm.changes import worktree_changes

        ctx = context_from_worktree(directory, branch=branch, tag=tag, event=event, params=parsed)
        changes = (Changes(None, f"a {ctx.event} run") if ctx.event in ("manual", "cron") and not changes_from
                   else worktree_changes(directory, changes_from, at_commit))
    except (SourceError, ContextError) as exc:
        raise click.UsageError(str(exc)) from exc
    pipeline = _pipeline(directory, pipeline_file)

    request = BuildRequest(
        repo=ctx.repo_name, event=ctx.event, ref=ctx.git.ref, branch=ctx.git.branch, tag=ctx.git.tag,
        sha=ctx.git.sha, message=ctx.git.message, author=ctx.git.author, params=dict(ctx.params),
        trigger="cli", pipeline=pipeline, repo_url=ctx.repo_url, before=changes_from,
    )
    exported = None
    try:
        if at_commit:
            if root is None:
                raise click.UsageError(f"{directory} is not in a git repository; drop --commit")
            exported = export_head(root)
            source = Path(exported.name) / directory.relative_to(root)
        else:
            source = directory
        from runner.cli.approve_cmd import local_ask

        ask = local_ask(tuple(approve), sys.stdin.isatty())
        code = _run(settings, request, source, backend_name, secrets, trusted, quiet, ask, changes)
    except SourceError as exc:
        raise click.UsageError(str(exc)) from exc
    finally:
        if exported is not None:
            exported.cleanup()
    sys.exit(code)


def _run(settings, request, source, backend_name, secrets, trusted, quiet, ask, changes) -> int:
    from runner.backends import get_backend
    from runner.build import create_build

    store = open_or_exit(settings, recover=False)  # recovery runs next to the build (see _drive)
    backend = None
    try:
        try:
            backend = get_backend(backend_name, settings)
        except ConveyorError as exc:
            raise click.ClickException(str(exc)) from exc
        build_id = create_build(store, request, settings.instance)
        build = q.get_build(store.read(), build_id)
        where = f"{build.short_sha} on {build.branch}" if build.branch else (build.short_sha or "no commit yet")
        click.echo(f"build {build.label} (id {build.id}): {source} at {where}", err=True)
        interrupted, status = asyncio.run(_drive(store, settings, build_id, source, backend, secrets, trusted, quiet,
                                                 ask, changes))
        finished = q.get_build(store.read(), build_id)
    finally:
        store.close()
        if backend is not None and hasattr(backend, "close"):
            backend.close()  # its kept-alive engine connections
    if finished.diagnostics and finished.status == "config_error":
        for d in finished.diagnostics:
            click.echo(f"{d['file']}:{d['line']}:{d['col']}: {d['severity']}: {d['message']}", err=True)
    elif status == "skipped":  # the file's `on:` does not start a build for this event
        click.echo(f"not run: {finished.reason}; pass --event/--branch/--tag to run it as another event", err=True)
    elif finished.reason and status != "success":
        click.echo(f"reason: {finished.reason}", err=True)
    for warning in finished.warnings:
        click.echo(f"warning: {warning}", err=True)
    warned = " with warnings" if status == "success" and finished.warnings else ""
    colour = {"success": "yellow" if warned else "green", "config_error": "red", "failure": "red"}.get(status, "yellow")
    click.echo(click.style(f"build {finished.label} {status}{warned} in {format_duration(finished.duration)}",
                           fg=colour, bold=True) + f"  (conveyor show {finished.label})", err=True)
    if interrupted:
        return 130
    return {"success": 0, "skipped": 0, "config_error": 2}.get(status, 1)


async def _drive(store, settings, build_id, source, backend, secrets, trusted, quiet, ask,
                 changes) -> tuple[bool, str]:
    """Run the build; the first Ctrl-C (or SIGTERM) cancels it cleanly, a second one stops waiting."""
    loop = asyncio.get_running_loop()
    cancel = asyncio.Event()
    task = asyncio.current_task()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            click.echo("\ncancelling: stopping the build's containers (Ctrl-C again to stop waiting)", err=True)
            cancel.set()
        else:
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    from runner.build import run_build
    from runner.cli.housekeeping import FirstStep, settle_earlier_runs
    from runner.cli.progress import ProgressSink

    # The engine's handshake (client, API version, the engine's info) goes on while the plugins
    # load and the pipeline is read; the executor's own check waits for it, or reports its failure.
    probe = asyncio.ensure_future(backend.available())
    probe.add_done_callback(lambda done: done.cancelled() or done.exception())
    first_step = FirstStep()
    # What earlier runs left (their builds, deploys, expired resources) is settled next to this
    # build, once its first step has started: none of it is needed before that.
    settling = asyncio.create_task(settle_earlier_runs(store, settings, backend, first_step))
    try:
        status = await run_build(store, settings, build_id, source, backend=backend,
                                 sinks=[ProgressSink(output=not quiet), first_step], secrets=secrets,
                                 trusted=trusted, cancel=cancel, ask=ask, changes=changes)
    except asyncio.CancelledError:
        status = "cancelled"
    finally:
        first_step.seen.set()
        try:
            await settling
        except asyncio.CancelledError:  # a second Ctrl-C: stop waiting; the next command settles
            settling.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return signals > 0, status


def register(group: click.Group) -> None:
    group.add_command(run_command)
