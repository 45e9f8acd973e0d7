"""The compiler: when-filters, defaults, env layering, shorthands, post, deploy specs, triggers."""

from __future__ import annotations

import pytest

from runner.context import Context
from runner.dsl import load_pipeline
from runner.dsl.compile import glob_match, matches
from runner.plan import Plan

HEAD = "image: conveyor-test/busybox:1\n"


def plan_of(tmp_path, text: str, **ctx) -> Plan:
    context = Context.build(sha=ctx.pop("sha", "d" * 40), **ctx)
    loaded = load_pipeline(tmp_path, context, text=text)
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    assert Plan.from_json(loaded.plan.to_json()) == loaded.plan
    return loaded.plan


@pytest.mark.parametrize("pattern, text, result", [
    ("main", "main", True), ("release/*", "release/1.0", True), ("release/*", "release/1/x", False),
    ("release/**", "release/1/x", True), ("v?", "v1", True), ("v?", "v10", False), ("*", "a/b", False),
])
def test_glob(pattern, text, result):
    assert glob_match(pattern, text) is result


def test_a_pathological_pattern_cannot_stall_the_compiler():
    import time

    start = time.perf_counter()
    assert not glob_match("*a" * 60 + "b", "a" * 250)
    assert glob_match("**a" * 60, "a" * 250)
    assert time.perf_counter() - start < 0.5  # a backtracking regex takes longer than the universe


def test_exclusions_and_missing_refs():
    assert matches(["*", "!wip-*"], "main") and not matches(["*", "!wip-*"], "wip-x")
    assert matches(["!docs"], "main") and not matches(["main"], None)


STAGES = HEAD + """stages:
  - name: always-runs
    steps: [echo]
  - name: main-only
    when: {branch: [main, "release/*"]}
    steps: [echo]
  - name: tags-only
    when: {tag: "v*"}
    steps: [echo]
  - name: manual-only
    when: {event: manual}
    steps: [echo]
  - name: on-failure
    when: {status: failure}
    steps: [echo]
  - name: every-time
    when: {status: [always]}
    steps: [echo]
"""


def test_branch_tag_event_filters_are_decided_at_compile_time(tmp_path):
    p = plan_of(tmp_path, STAGES, branch="release/2")
    skips = {s.name: s.skip_reason for s in p.stages}
    assert skips == {
        "always-runs": None,
        "main-only": None,
        "tags-only": "the build has no tag and does not match when.tag (v*)",
        "manual-only": "event push is not in when.event (manual)",
        "on-failure": None,
        "every-time": None,
    }
    p = plan_of(tmp_path, STAGES, tag="v1.2")
    skips = {s.name: s.skip_reason for s in p.stages}
    assert skips["tags-only"] is None
    assert skips["main-only"] == "the build is not on a branch and does not match when.branch (main, release/*)"
    p = plan_of(tmp_path, STAGES, branch="feature", event="manual")
    skips = {s.name: s.skip_reason for s in p.stages}
    assert skips["manual-only"] is None
    assert skips["main-only"] == "branch 'feature' does not match when.branch (main, release/*)"


def test_status_conditions_are_left_for_run_time(tmp_path):
    p = plan_of(tmp_path, STAGES, branch="main")
    assert [s.when.status for s in p.stages] == [("success",)] * 4 + [("failure",), ("always",)]


def test_env_layers_and_ci_variables(tmp_path):
    text = HEAD + """env: {A: top, B: top}
stages:
  - name: test
    env: {B: stage, C: stage}
    jobs:
      - name: unit
        env: {C: job, PORT: 8080, DEBUG: true}
        workdir: /src
        steps:
          - run: echo
            env: {D: step}
"""
    p = plan_of(tmp_path, text, branch="main", message="msg", build_number=9, repo_name="shop")
    job = p.stages[0].jobs[0]
    assert p.env["A"] == "top" and p.env["CI_COMMIT_BRANCH"] == "main"
    assert {k: job.env[k] for k in ("A", "B", "C", "PORT", "DEBUG")} == {
        "A": "top", "B": "stage", "C": "job", "PORT": "8080", "DEBUG": "true"}
    assert {k: job.env[k] for k in ("CI", "CI_COMMIT_SHA", "CI_COMMIT_MESSAGE", "CI_BUILD_NUMBER", "CI_REPO_NAME",
                                     "CI_PIPELINE_EVENT", "CI_STAGE_NAME", "CI_JOB_NAME", "CI_WORKSPACE")} == {
        "CI": "true", "CI_COMMIT_SHA": "d" * 40, "CI_COMMIT_MESSAGE": "msg", "CI_BUILD_NUMBER": "9",
        "CI_REPO_NAME": "shop", "CI_PIPELINE_EVENT": "push", "CI_STAGE_NAME": "test", "CI_JOB_NAME": "unit",
        "CI_WORKSPACE": "/src"}
    assert job.workdir == "/src" and job.steps[0].env == {"D": "step"}


def test_steps_shorthand_is_one_job_named_after_the_stage_with_unique_step_names(tmp_path):
    text = HEAD + "timeout: 1h30m\nstages:\n  - name: package\n    timeout: 90s\n    image: conveyor-test/python:3.11\n" \
                  "    steps: [\"echo a\", \"echo a\", {name: second, run: \"ls\", timeout: 5m, retry: 2}]\n"
    p = plan_of(tmp_path, text)
    (job,) = p.stages[0].jobs
    assert (job.name, job.image, job.timeout, p.timeout) == ("package", "conveyor-test/python:3.11", 90.0, 5400.0)
    assert [(s.name, s.timeout, s.retry) for s in job.steps] == [
        ("echo a", None, 0), ("echo a (2)", None, 0), ("second", 300.0, 2)]


def test_post_blocks_become_jobs_with_the_default_image(tmp_path):
    text = HEAD + "stages:\n  - name: t\n    steps: [echo]\npost:\n  always: [\"echo done\"]\n" \
                  "  failure: {image: conveyor-test/python:3.11, steps: [\"echo failed\"]}\n"
    post = plan_of(tmp_path, text).post
    assert [(j.name, j.image, j.env["CI_STAGE_NAME"]) for j in post.always] == [
        ("always", "conveyor-test/busybox:1", "post:always")]
    assert post.success == ()
    assert [(j.name, j.image, j.steps[0].run) for j in post.failure] == [
        ("failure", "conveyor-test/python:3.11", "echo failed")]


DEPLOY = HEAD + """stages:
  - name: image
    build: {tag: "web:{{ git.short_sha }}", args: {VERSION: 1}}
  - name: ship
    deploy:
      service: web
      image: "web:{{ git.short_sha }}"
      replicas: 2
      command: "python -m http.server 8080"
      ports: ["18080:8080", {published: 18443, target: 8443, protocol: udp, mode: ingress}]
      healthcheck: {cmd: "wget -q -O- http://127.0.0.1:8080/", interval: 2s, retries: 4, start_period: 1s}
      resources: {cpus: 0.5, memory: 256M}
      update: {order: start-first, parallelism: 1, delay: 1s}
      rollback: {parallelism: 2}
      verify: {command: "wget -q -O- http://web:8080/", within: 1m}
  - name: back
    when: {status: failure}
    rollback: {service: web, to: 3}
"""


def test_build_deploy_and_rollback_specs(tmp_path):
    p = plan_of(tmp_path, DEPLOY, sha="1234567890abcdef1234567890abcdef12345678")
    build, ship, back = p.stages
    assert (build.kind, build.build.tag, build.build.args) == ("build", "web:12345678", {"VERSION": "1"})
    d = ship.deploy
    assert (d.service, d.image, d.replicas, d.command) == ("web", "web:12345678", 2,
                                                           ("python", "-m", "http.server", "8080"))
    assert [(x.published, x.target, x.protocol, x.mode) for x in d.ports] == [
        (18080, 8080, "tcp", "host"), (18443, 8443, "udp", "ingress")]
    assert (d.healthcheck.interval, d.healthcheck.retries, d.healthcheck.start_period) == (2.0, 4, 1.0)
    assert (d.cpus, d.memory) == (0.5, 256 * 1024**2)
    # No monitor given: long enough to see the healthcheck fail (1 + 4 * (2 + the default 3s timeout))
    # plus one interval.
    assert (d.update.order, d.update.delay, d.update.monitor, d.update.failure_action) == ("start-first", 1.0, 23.0, "rollback")
    assert (d.rollback.parallelism, d.rollback.failure_action) == (2, "pause")
    assert (d.verify.command, d.verify.image, d.verify.within, d.verify.http) == (
        "wget -q -O- http://web:8080/", "conveyor-test/busybox:1", 60.0, None)
    assert (back.kind, back.rollback.service, back.rollback.to, back.when.status) == ("rollback", "web", 3, ("failure",))


@pytest.mark.parametrize("on, ctx, reason", [
    (None, {"branch": "x"}, None),
    (None, {"branch": "x", "event": "cron"}, "the pipeline has no 'on:' and cron events need one"),
    ("on: {push: {branches: [main]}}", {"branch": "main"}, None),
    ("on: {push: {branches: [main]}}", {"branch": "dev"}, "push of 'dev' does not match on.push (main)"),
    ("on: {tag: [\"v*\"]}", {"tag": "v2"}, None),
    ("on: {tag: [\"v*\"]}", {"branch": "main"}, "'on:' does not list push events"),
    ("on: [push, manual]", {"branch": "main", "event": "manual"}, None),
    ("on:\n  pull_request:", {"branch": "main", "event": "pull_request"}, None),
])
def test_on_decides_whether_an_event_starts_a_build(tmp_path, on, ctx, reason):
    text = (on + "\n" if on else "") + HEAD + "stages:\n  - name: t\n    steps: [echo]\n"
    loaded = load_pipeline(tmp_path, Context.build(**ctx), text=text)
    assert loaded.ok and loaded.skip_reason == reason
    assert loaded.triggered is (reason is None)


PARAMS = """params:
  target: {default: staging, choices: [staging, production]}
  note: hello
""" + HEAD + "stages:\n  - name: t\n    steps: [\"echo {{ params.target }} {{ params.note }}\"]\n"


def test_params_defaults_reach_jinja_and_given_values_win(tmp_path):
    assert plan_of(tmp_path, PARAMS).stages[0].jobs[0].steps[0].run == "echo staging hello"
    p = plan_of(tmp_path, PARAMS, params={"target": "production"})
    assert p.stages[0].jobs[0].steps[0].run == "echo production hello"


def test_params_outside_choices_or_undeclared_are_errors(tmp_path):
    loaded = load_pipeline(tmp_path, Context.build(params={"target": "qa", "extra": "1"}), text=PARAMS)
    assert [str(d) for d in loaded.diagnostics] == [
        ".conveyor.yml:1:1: error: param 'extra' was given but 'params:' does not declare it (declared: target, note) "
        "(rendered line; see `conveyor render .conveyor.yml`)",
        ".conveyor.yml:2:11: error: param 'target' is 'qa', not one of its choices (staging, production) "
        "(rendered line; see `conveyor render .conveyor.yml`)",
    ]


def test_absent_values_render_empty_not_none(tmp_path):
    text = HEAD + "stages:\n  - name: t\n    steps: [\"echo tag={{ git.tag }}\"]\n"
    assert plan_of(tmp_path, text, branch="main").stages[0].jobs[0].steps[0].run == "echo tag="


PLACED = HEAD + """stages:
  - name: ship
    deploy:
      service: web
      image: web:1
      placement:
        constraints: ["node.labels.zone == a", "node.role!=manager"]
        preferences: [{spread: node.labels.rack}, {spread: node.labels.bed}]
        max_replicas_per_node: 1
"""


def test_deploy_placement_compiles_and_defaults_to_anywhere(tmp_path):
    placed = plan_of(tmp_path, PLACED).stages[0].deploy.placement
    assert placed.constraints == ("node.labels.zone==a", "node.role!=manager")
    assert placed.preferences == ("node.labels.rack", "node.labels.bed")
    assert placed.max_replicas_per_node == 1
    plain = plan_of(tmp_path, PLACED.split("      placement:")[0]).stages[0].deploy.placement
    assert (plain.constraints, plain.preferences, plain.max_replicas_per_node) == ((), (), 0)


def test_a_constraint_that_is_not_an_expression_says_how_to_write_one(tmp_path):
    loaded = load_pipeline(tmp_path, Context.build(sha="d" * 40), text=PLACED.replace("node.role!=manager", "worker"))
    errors = [str(d) for d in loaded.diagnostics if d.severity == "error"]
    assert len(errors) == 1 and "'worker'" in errors[0] and "node.labels.zone==a" in errors[0], errors
