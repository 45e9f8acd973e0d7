"""`conveyor lint`, `conveyor render`, `conveyor plan`: the pipeline language from the command line.

Inside a git repository the context is its HEAD (branch, sha); flags override it. Diagnostics go
to stderr, compiler style; `lint` exits 1 on any error, 0 otherwise (warnings do not fail it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from runner.context import EVENTS
from runner.errors import ContextError

__all__ = ["register"]


def _repo_dir(file: Path) -> Path:
    """The repository a pipeline file belongs to: the parent of `.conveyor/`, else its folder."""
    parent = file.resolve().parent
    return parent.parent if parent.name == ".conveyor" else parent


def _files(target: Path) -> tuple[Path, list[Path]]:
    """The repository and its pipeline files; the render child starts now if they have template code
    (runner.dsl.warm_up), beside the rest of the command's start."""
    from runner.dsl import PIPELINE_FILE, find_pipeline_files, warm_up

    if target.is_dir():
        found = find_pipeline_files(target)
        if not found:
            raise click.UsageError(f"no {PIPELINE_FILE} or .conveyor/*.yml in {target}; pass a pipeline file")
        repo, files = target.resolve(), [f.resolve() for f in found]
    elif not target.exists():
        raise click.UsageError(f"{target} does not exist; pass a pipeline file or a repository folder")
    else:
        repo, files = _repo_dir(target), [target.resolve()]
    warm_up(files)
    return repo, files


def _parse_params(values: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value (e.g. --param target=staging)", param_hint="--param")
        params[key] = value
    return params


def _context(repo: Path, branch, tag, event, params, build_number):
    from runner.scm.worktree import context_from_worktree

    try:
        return context_from_worktree(repo, branch=branch, tag=tag, event=event, params=_parse_params(params),
                                     build_number=build_number)
    except ContextError as exc:
        raise click.UsageError(str(exc)) from exc


def _report(diagnostics) -> tuple[int, int]:
    errors = warnings = 0
    for d in diagnostics:
        click.echo(str(d), err=True)
        errors += d.severity == "error"
        warnings += d.severity == "warning"
    return errors, warnings


def _context_options(fn):
    for option in reversed((
        click.option("--branch", help="Branch to plan for (default: the checkout's HEAD)."),
        click.option("--tag", help="Tag to plan for; implies --event tag."),
        click.option("--event", type=click.Choice(EVENTS), help="What triggered the build (default: push)."),
        click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="A pipeline parameter; repeatable."),
        click.option("--build-number", type=int, help="The build number templates and CI_BUILD_NUMBER see."),
        click.option("--trusted", is_flag=True, help="Treat the repository as trusted (privileged jobs, host volumes)."),
    )):
        fn = option(fn)
    return fn


def _lint_options():
    """The environments of the targets file (the data dir's, or CONVEYOR_TARGETS_FILE), when there is
    one, so `environment:` and its approval gate are checked as `conveyor run` will check them."""
    from runner.dsl import LintOptions
    from runner.settings import Settings

    settings = Settings.from_env()
    if not settings.has_deploy_config():  # then there are no environments: skip importing their reader
        return LintOptions()
    from runner.deploy.config import lint_environments, read_targets_file
    from runner.errors import DeployError

    try:
        if not read_targets_file(settings)[1]:
            return LintOptions()
        return LintOptions(environments=lint_environments(settings))
    except DeployError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.argument("target", type=click.Path(path_type=Path), default=".", required=False)
@_context_options
@click.option("--json", "as_json", is_flag=True, help="Print the diagnostics as a JSON list on stdout (for editors).")
def lint(target, branch, tag, event, params, build_number, trusted, as_json):
    """Check the pipeline FILE, or every pipeline of the repository DIR (default: here)."""
    from runner.dsl import load_pipeline

    repo, files = _files(target)
    ctx = _context(repo, branch, tag, event, params, build_number)
    options = _lint_options()
    found = []
    for file in files:
        found.extend(load_pipeline(repo, ctx, file=file, trusted=trusted, options=options).diagnostics)
    errors = sum(d.severity == "error" for d in found)
    if as_json:
        import json

        click.echo(json.dumps([d.to_dict() for d in found], indent=2))
    else:
        _report(found)
        click.echo(f"{len(files)} file(s): {errors} error(s), {len(found) - errors} warning(s)", err=True)
    sys.exit(1 if errors else 0)


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@_context_options
def render(file, branch, tag, event, params, build_number, trusted):
    """Print the pipeline FILE after Jinja, with line numbers (the lines diagnostics point at)."""
    from runner.diagnostics import Diagnostics
    from runner.dsl import render_pipeline

    repo, (path, *_rest) = _files(file)
    ctx = _context(repo, branch, tag, event, params, build_number)
    name = str(path.relative_to(repo)) if path.is_relative_to(repo) else path.name
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"cannot read {path}: {exc}") from exc
    out = render_pipeline(repo, ctx, source, name)
    if out.text is None:
        diags = Diagnostics(out.file or name)
        diags.error("template", out.error or "rendering failed", out.line or 1, out.col)
        _report(diags.items)
        sys.exit(1)
    lines = out.text.splitlines()
    width = len(str(len(lines)))
    for i, line in enumerate(lines, 1):
        click.echo(f"{i:>{width}} | {line}".rstrip())


@click.command()
@click.argument("file", type=click.Path(path_type=Path), default=".", required=False)
@_context_options
@click.option("--deploy-specs", is_flag=True, help="Print the Swarm specs its deploy stages would write instead "
              "(as `conveyor deploy --dry-run`).")
def plan(file, branch, tag, event, params, build_number, trusted, deploy_specs):
    """Print the plan of the pipeline FILE (or the repository DIR's pipeline) as JSON."""
    from runner.dsl import load_pipeline

    repo, (path, *_rest) = _files(file)
    ctx = _context(repo, branch, tag, event, params, build_number)
    loaded = load_pipeline(repo, ctx, file=path, trusted=trusted)
    errors, _ = _report(loaded.diagnostics)
    if errors or loaded.plan is None:
        sys.exit(1)
    if loaded.skip_reason:
        click.echo(f"note: this event would not start a build: {loaded.skip_reason}", err=True)
    if deploy_specs:
        from runner.cli.deploy_dry_run import print_deploy_specs
        from runner.errors import ConveyorError
        from runner.settings import Settings

        try:
            print_deploy_specs(loaded.plan, repo, Settings.from_env())
        except ConveyorError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        return
    click.echo(loaded.plan.to_json())


def register(group: click.Group) -> None:
    group.add_command(lint)
    group.add_command(render)
    group.add_command(plan)
