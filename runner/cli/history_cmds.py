"""`conveyor builds`, `show`, `logs`: read the stored history (drawn by ``runner.cli.history``)."""

from __future__ import annotations

import sys
import time

import click

from runner.cli.history import builds_table, log_lines, show_lines, tests_lines
from runner.cli.stored import BUILD_HELP, data_dir_option, find_build, open_or_exit, settings_of
from runner.plan import STATUSES
from runner.store import builds as q
from runner.store import reports as tests

__all__ = ["register"]

SHOWN_FAILURES = 10  # `conveyor show` lists the first failed tests; the page and the API have them all


@click.command("builds")
@click.option("--repo", help="Only this repository's builds.")
@click.option("--status", type=click.Choice(STATUSES), help="Only builds with this status.")
@click.option("-n", "--limit", default=20, show_default=True, help="How many builds, newest first.")
@data_dir_option
def builds_command(repo, status, limit, data_dir) -> None:
    """List recent builds, newest first."""
    store = open_or_exit(settings_of(data_dir))
    try:
        rows = q.list_builds(store.read(), repo=repo, status=status, limit=limit)
    finally:
        store.close()
    if not rows and (repo or status):
        of = f" of {repo}" if repo else ""
        click.echo(f"no {status + ' ' if status else ''}builds{of}; `conveyor builds` lists every build")
        return
    click.echo(builds_table(rows, color=sys.stdout.isatty()))


@click.command("show", epilog=BUILD_HELP)
@click.argument("build_ref", metavar="[BUILD]", required=False)
@data_dir_option
def show_command(build_ref, data_dir) -> None:
    """Show a build: its stages, jobs and steps with statuses and durations, and its test results."""
    store = open_or_exit(settings_of(data_dir))
    try:
        build = find_build(store, build_ref)
        detail = q.get_detail(store.read(), build.id)
        conn = store.read()
        totals, reports = tests.build_totals(conn, build.id), tests.list_reports(conn, build.id)
        failures = [c for c in tests.list_cases(conn, build.id, limit=SHOWN_FAILURES) if c.status in ("failed", "error")]
    finally:
        store.close()
    color = sys.stdout.isatty()
    for line in show_lines(detail, color=color):
        click.echo(line)
    for line in tests_lines(build, totals, reports, failures, color=color):
        click.echo(line)


@click.command("logs", epilog=BUILD_HELP)
@click.argument("build_ref", metavar="[BUILD]", required=False)
@click.option("--job", help="Only this job's output, without the [job] prefix.")
@click.option("--stage", help="Only this stage's output.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the build ends.")
@data_dir_option
def logs_command(build_ref, job, stage, follow, data_dir) -> None:
    """Print the stored output of a build (or of one of its jobs)."""
    store = open_or_exit(settings_of(data_dir))
    try:
        build = find_build(store, build_ref)
        if job is not None and not follow:
            names = {j.name for j in q.get_detail(store.read(), build.id).jobs}
            if job not in names:
                raise click.ClickException(
                    f"build {build.label} has no job {job!r}; its jobs: {', '.join(sorted(names)) or 'none'}")
        _print_logs(store, build.id, job, stage, follow)
    finally:
        store.close()


def _print_logs(store, build_id: int, job, stage, follow: bool) -> None:
    seen = 0
    while True:
        # Read the status first: output written before the build ended is then surely printed.
        done = q.get_build(store.read(), build_id).status in q.FINISHED
        for chunk in q.build_logs(store.read(), build_id, job=job, stage=stage, after=seen):
            for text in log_lines([chunk], prefix=job is None):
                sys.stdout.write(text)
            seen = chunk.seq
        sys.stdout.flush()
        if not follow or done:
            return
        time.sleep(0.3)


def register(group: click.Group) -> None:
    for command in (builds_command, logs_command, show_command):
        group.add_command(command)
