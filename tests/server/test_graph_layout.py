"""The pipeline graph's layout (runner/server/graph.py) over plans from the real compiler and typed
store rows: what the page draws before jobs start, without a plan, for post jobs, for a need within
one stage, and for an approval a person has not answered yet."""

from __future__ import annotations

import time

from runner.context import Context
from runner.dsl import load_pipeline
from runner.server import graph as g
from runner.store.approvals import Approval
from runner.store.rows import BuildDetail, BuildRow, JobRow, StageRow

PIPELINE = """\
image: conveyor-test/busybox:1
stages:
  - name: test
    jobs:
      - name: a
        steps: ["true"]
      - name: b
        needs: [a]
        steps: ["true"]
      - name: unit
        matrix: {py: ["3.11", "3.12"]}
        steps: ["true"]
  - name: gate
    approval: {message: "go?"}
  - name: deploy
    jobs:
      - name: c
        needs: [unit, b]
        steps: ["true"]
post:
  always: ["echo done"]
"""


def detail(tmp_path, jobs=(), stages=(), status="running", approvals=(), plan=True) -> BuildDetail:
    loaded = load_pipeline(tmp_path, Context.build(sha="d" * 40), text=PIPELINE)
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    build = BuildRow(id=1, repo="acme/web", number=1, uid="u", instance="i", event="manual", status=status,
                     created=time.time(), plan=loaded.plan.to_json() if plan else None)
    job_rows = tuple(JobRow(i, stage, name, st, None, 1.0, 2.0, allowed) for i, (stage, name, st, allowed)
                     in enumerate(jobs))
    stage_rows = tuple(StageRow(i, i, name, "jobs", st, None, 1.0, None) for i, (name, st) in enumerate(stages))
    return BuildDetail(build, stage_rows, job_rows, tuple(approvals))


def test_every_planned_job_is_drawn_before_it_starts_and_needs_become_edges(tmp_path):
    graph = g.pipeline_graph(detail(tmp_path, jobs=[("test", "a", "running", False)], stages=[("test", "running")]))
    assert [c.name for c in graph.columns] == ["test", "gate", "deploy"]
    test, gate, deploy = graph.columns
    assert [(b.name, b.status, b.group) for b in test.boxes] == [
        ("a", "running", False), ("b", "queued", False), ("unit", "queued", True)]
    assert [m.name for m in test.boxes[2].members] == ["unit [py=3.11]", "unit [py=3.12]"]
    assert [b.name for b in gate.boxes] == ["approval"] and gate.status == "queued"
    assert {(e.source, e.target) for e in graph.edges} == {("a", "b"), ("unit", "c"), ("b", "c")}
    # a -> b sit in one column: the edge loops out to the left of both boxes.
    same = next(e for e in graph.edges if e.source == "a")
    assert same.path.startswith("M0,") and f" 0,{test.boxes[1].y + g.BOX_HEIGHT // 2}" in same.path
    # unit -> c goes from the right side of column 0 to the left side of column 2.
    across = next(e for e in graph.edges if e.source == "unit")
    assert across.path.startswith(f"M{g.COLUMN_WIDTH},") and across.path.endswith(
        f" {2 * (g.COLUMN_WIDTH + g.COLUMN_GAP)},{deploy.boxes[0].y + g.BOX_HEIGHT // 2}")
    # Room below for the matrix's open list, which drops down over what is under it.
    assert graph.height >= test.boxes[2].y + g.BOX_HEIGHT + 2 * g.MEMBER_HEIGHT


def test_post_jobs_get_their_own_column_and_an_allowed_failure_is_a_warning(tmp_path):
    jobs = [("test", "a", "success", False), ("test", "unit [py=3.11]", "success", False),
            ("test", "unit [py=3.12]", "failure", True), ("test", "b", "failure", True),
            ("post:always", "post:always", "success", False)]
    graph = g.pipeline_graph(detail(tmp_path, jobs=jobs, status="success"))
    assert graph.columns[-1].name == "post:always" and graph.columns[-1].boxes[0].status == "success"
    # The build is over: what never started is drawn as skipped, not as waiting.
    assert graph.columns[2].status == "skipped" and graph.columns[2].boxes[0].status == "skipped"
    _a, b, unit = graph.columns[0].boxes
    assert b.allowed and b.label == "failed, allowed"
    assert unit.status == "success" and unit.allowed and unit.label == "1 failed, allowed"
    # While a combination still waits, the matrix says so, not yet a warning.
    waiting = g.Box("unit", [g.Member("x", "failure", True), g.Member("y")], group=True)
    assert (waiting.status, waiting.allowed, waiting.label) == ("queued", False, "queued")


def test_without_a_plan_the_rows_are_drawn_without_edges(tmp_path):
    graph = g.pipeline_graph(detail(tmp_path, jobs=[("test", "a", "failure", False)],
                                    stages=[("test", "failure")], plan=False))
    assert [(c.name, [b.name for b in c.boxes]) for c in graph.columns] == [("test", ["a"])]
    assert graph.edges == [] and graph.columns[0].boxes[0].label == "failure"


def test_an_unanswered_approval_says_waiting(tmp_path):
    asked = Approval(1, 1, "gate", "go?", (), time.time(), None, None, None, None, None)
    graph = g.pipeline_graph(detail(tmp_path, jobs=[("gate", "approval", "running", False)],
                                    stages=[("test", "success"), ("gate", "running")], status="waiting",
                                    approvals=[asked]))
    gate = graph.columns[1]
    assert gate.status == "waiting" and gate.boxes[0].status == "waiting"
