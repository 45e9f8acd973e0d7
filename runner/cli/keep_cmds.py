"""`conveyor artifacts BUILD [--download DIR]` and `conveyor cache ls|rm` (docs/running.md): what
builds kept, read from the data directory like `conveyor show`."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from runner.cli.stored import BUILD_HELP, data_dir_option, find_build, open_or_exit, settings_of
from runner.diagnostics import printable
from runner.keep import Artifacts, Caches
from runner.server.views import size_text
from runner.store import artifacts as sql

__all__ = ["register"]


@click.command("artifacts", epilog=BUILD_HELP)
@click.argument("build_ref", metavar="[BUILD]", required=False)
@click.option("--download", "dest", type=click.Path(file_okay=False, path_type=Path),
              help="Copy the artifacts into DIR, at their workspace paths (DIR/JOB/PATH with --by-job).")
@click.option("--by-job", is_flag=True, help="With --download: one folder per job (for paths several jobs kept).")
@data_dir_option
def artifacts_command(build_ref, dest, by_job, data_dir) -> None:
    """List a build's artifacts (path, job, size), or copy them with --download."""
    settings = settings_of(data_dir)
    store = open_or_exit(settings)
    try:
        build = find_build(store, build_ref)
        rows = sql.for_build(store.read(), build.id)
        blobs = Artifacts(store, settings.artifact_limit)
        if not rows:
            click.echo(f"build {build.label} kept no artifacts")
            return
        if dest is None:
            # Paths are the job's file names, which may hold escape codes for the reader's terminal.
            width = max(len(printable(a.path)) for a in rows)
            for a in rows:
                note = " (expired)" if a.expired else f" -> {printable(a.link)}" if a.link is not None else ""
                click.echo(f"{printable(a.path).ljust(width)}  {a.job}  {size_text(a.size)}{note}")
            return
        copied = 0
        for a in rows:
            if a.expired is not None or a.link is not None:
                continue
            target = dest / (a.job.replace("/", "_") if by_job else "") / a.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(blobs.blob(build.uid, a.sha256), target)
            target.chmod(a.mode & 0o777)
            copied += 1
        expired = sum(1 for a in rows if a.expired is not None)
        click.echo(f"copied {copied} artifact(s) of build {build.label} into {dest}"
                   + (f"; {expired} expired" if expired else ""))
    finally:
        store.close()


@click.group("cache")
def cache_group() -> None:
    """The caches builds keep between them (cache: in the pipeline)."""


@cache_group.command("ls")
@click.option("--repo", help="Only this repository's caches (REPO#fork: its forks').")
@data_dir_option
def cache_ls(repo, data_dir) -> None:
    """List caches, most recently used first."""
    settings = settings_of(data_dir)
    store = open_or_exit(settings)
    try:
        rows = Caches(store, settings.cache_limit).list(repo)
    finally:
        store.close()
    if not rows:
        click.echo("no caches yet: a job with cache: saves one after it succeeds")
        return
    for r in rows:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.used))
        click.echo(f"{printable(r.namespace)}  {printable(r.key)}  {size_text(r.size)}  used {used}")
    click.echo(f"{len(rows)} cache(s), {size_text(sum(r.size for r in rows))} of {size_text(settings.cache_limit)}")


@cache_group.command("rm")
@click.argument("repo")
@click.argument("key", required=False)
@click.option("--all-keys", is_flag=True, help="Remove every cache of REPO.")
@data_dir_option
def cache_rm(repo, key, all_keys, data_dir) -> None:
    """Remove the cache KEY of REPO (REPO#fork for its forks'), or all of them with --all-keys."""
    if key is None and not all_keys:
        raise click.UsageError("name the KEY to remove (see `conveyor cache ls`), or pass --all-keys")
    settings = settings_of(data_dir)
    store = open_or_exit(settings)
    try:
        rows = Caches(store, settings.cache_limit).remove(repo, None if all_keys else key)
    finally:
        store.close()
    if not rows:
        raise click.ClickException(f"no cache {key!r} in {repo}; `conveyor cache ls --repo {repo}` lists them")
    click.echo(f"removed {len(rows)} cache(s), {size_text(sum(r.size for r in rows))}")


def register(group: click.Group) -> None:
    group.add_command(artifacts_command)
    group.add_command(cache_group)
