"""`environment:` on a deploy and `push:` on a build: schema, compile, and the approval gate of an
environment with approvers (an error with line:col when no approval stage comes before its deploy)."""

from __future__ import annotations

from pathlib import Path

from runner.context import Context
from runner.dsl import LintOptions, load_pipeline

CTX = Context.build(sha="a" * 40, branch="main", repo_name="web")
ENVS = LintOptions(environments=(("production", ("admin",)), ("staging", ())))

PIPELINE = """\
stages:
  - name: image
    build: {tag: "web:1", push: false}
  - name: staging
    deploy: {service: web, image: "web:1", environment: staging}
%s  - name: production
    deploy: {service: web, image: "web:1", environment: production}
"""
GATE = """\
  - name: sign-off
    approval: {message: ship it?}
"""


def _load(text: str, **kw):
    return load_pipeline(Path("/nonexistent"), CTX, text=text, **kw)


def _errors(loaded):
    return [(d.code, d.line, d.col, d.message) for d in loaded.diagnostics if d.severity == "error"]


def test_environment_and_push_compile_into_the_plan():
    loaded = _load(PIPELINE % GATE, options=ENVS)
    assert loaded.ok, loaded.diagnostics
    build, staging, _, production = loaded.plan.stages
    assert build.build.push is False
    assert (staging.deploy.environment, production.deploy.environment) == ("staging", "production")


def test_a_deploy_to_an_environment_with_approvers_needs_an_approval_stage_before_it():
    loaded = _load(PIPELINE % "", options=ENVS)
    assert not loaded.ok
    [(code, line, col, message)] = _errors(loaded)
    assert code == "needs-approval" and (line, col) == (7, 57)  # the value of its `environment`
    assert "stage 'production' deploys to 'production'" in message and "approvers: admin" in message
    assert "add a stage with `approval:` before it" in message


def test_an_approval_after_the_deploy_does_not_count():
    text = PIPELINE % "" + GATE
    assert [e[0] for e in _errors(_load(text, options=ENVS))] == ["needs-approval"]


def test_an_unknown_environment_is_an_error_with_a_suggestion_only_when_the_environments_are_known():
    text = "stages:\n  - name: d\n    deploy: {service: web, image: 'web:1', environment: prodution}\n"
    [(code, line, col, message)] = _errors(_load(text, options=ENVS))
    assert code == "unknown-environment" and line == 3
    assert "did you mean 'production'" in message and "known: production, staging" in message
    assert _load(text).ok  # `conveyor lint` without a targets file cannot know: checked when it runs


def test_environment_names_are_checked_by_the_schema():
    text = "stages:\n  - name: d\n    deploy: {service: web, image: 'web:1', environment: 'Prod Env'}\n"
    assert any("environment names are lower-case" in e[3] for e in _errors(_load(text)))


def test_a_rollback_names_the_environment_its_deploy_went_to():
    loaded = _load(PIPELINE % GATE + "  - name: undo\n    when: {status: failure}\n"
                   "    rollback: {service: web, environment: production}\n", options=ENVS)
    assert loaded.ok, loaded.diagnostics
    undo = loaded.plan.stages[-1]
    assert (undo.rollback.service, undo.rollback.environment) == ("web", "production")
