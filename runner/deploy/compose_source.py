"""Where a stack's Compose file comes from: the build's workspace (a deploy stage) or a file on
disk (``conveyor deploy --dry-run FILE``), rendered by the same sandboxed Jinja as the pipeline
file, then parsed with ``env_file`` and secret/config files read beside it."""

from __future__ import annotations

from pathlib import Path

from runner.deploy.compose import ComposeStack, parse_compose
from runner.deploy.workspace import read_text
from runner.engine import Engine
from runner.errors import DeployError
from runner.executor.actions import ActionContext
from runner.plan import DeploySpec

__all__ = ["render_compose", "stack_from_workspace", "stack_from_dir"]


def render_compose(text: str, env: dict[str, str], number: int | None, commit: str | None, repo: Path,
                   name: str, params: dict[str, str] | None = None) -> str:
    """Blocking: the Compose file through the pipeline's sandboxed Jinja (``git``, ``build``, ``env``
    and ``params``; ``env`` is the pipeline's env with the deploy stage's own on top)."""
    from runner.dsl.template import render, template_roots

    sha = env.get("CI_COMMIT_SHA") or commit or ""
    variables = {"git": {"sha": sha, "short_sha": env.get("CI_COMMIT_SHORT_SHA") or sha[:8],
                         "branch": env.get("CI_COMMIT_BRANCH"), "tag": env.get("CI_COMMIT_TAG"),
                         "ref": env.get("CI_COMMIT_REF")},
                 "build": {"number": number}, "env": dict(env), "params": dict(params or {})}
    out = render(text, variables, template_roots(repo), name=name)
    if out.text is None:
        raise DeployError(f"{out.file or name}:{out.line or '?'}: {out.error}")
    return out.text


def stack_from_workspace(swarm: Engine, ctx: ActionContext, spec: DeploySpec, source: Path, volume: str | None,
                         labels: dict[str, str], stage_env: dict[str, str] | None = None) -> ComposeStack:
    """Blocking: the stack of a deploy stage, read from the build's workspace as its backend named it
    (``source`` a directory, or ``volume``); ``labels`` go on the helper that copies files out of it.
    ``stage_env`` (the stage's own ``env:``) overrides the pipeline's for Jinja and ``${VAR}``."""
    if not spec.compose:
        raise DeployError("a stack deploy needs `compose: FILE` (the Compose file in the workspace)")

    def read(rel: str) -> str:
        return read_text(swarm.client, source, volume, rel, labels)

    env = {**ctx.plan.env, **(stage_env or {})}
    text = render_compose(read(spec.compose), env, ctx.number, ctx.commit, source, spec.compose, ctx.plan.params)
    return parse_compose(text, spec.stack, spec.compose, read=read, env=env, trusted=ctx.plan.trusted)


def stack_from_dir(root: Path, compose: str, stack: str, env: dict[str, str], trusted: bool,
                   params: dict[str, str] | None = None) -> ComposeStack:
    """The stack of a Compose file in a checkout on this machine (``conveyor deploy --dry-run``)."""

    def read(rel: str) -> str:
        return read_text(None, root, None, rel)

    text = render_compose(read(compose), env, None, None, root, compose, params)
    return parse_compose(text, stack, compose, read=read, env=env, trusted=trusted)
