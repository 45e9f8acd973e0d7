"""Pipeline depth in the compiler: matrix combinations, needs expansion, when.changes decisions,
job-level when, and the lint options (runner labels, configured approvers)."""

from __future__ import annotations

from pathlib import Path

from runner.context import Changes, Context
from runner.dsl import LintOptions, load_pipeline

CTX = Context.build(sha="a" * 40, branch="main", build_number=1)


def _load(text: str, ctx: Context = CTX, **kw):
    return load_pipeline(Path("."), ctx, text="image: conveyor-test/busybox:1\n" + text, **kw)


def _jobs(plan):
    return {j.name: j for s in plan.stages for j in s.jobs}


def test_matrix_makes_one_job_per_combination_with_axes_as_env_and_needs_waiting_for_all():
    loaded = _load("""
stages:
  - name: test
    jobs:
      - name: unit
        image: "conveyor-test/python:${py}"
        matrix: {py: ["3.11", "3.12"], db: [pg, sqlite], exclude: [{py: "3.11", db: sqlite}],
                 include: [{py: "3.13", db: pg, extra: "yes"}]}
        max_parallel: 1
        env: {py: overridden}
        steps: [echo]
  - name: after
    jobs:
      - name: report
        needs: [unit]
        steps: [echo]
""")
    assert loaded.ok, loaded.diagnostics
    jobs = _jobs(loaded.plan)
    unit = [j for j in jobs.values() if j.matrix]
    assert [j.name for j in unit] == ["unit [py=3.11, db=pg]", "unit [py=3.12, db=pg]", "unit [py=3.12, db=sqlite]",
                                      "unit [py=3.13, db=pg, extra=yes]"]
    assert unit[1].image == "conveyor-test/python:3.12" and unit[1].env["py"] == "3.12"
    assert unit[3].env["extra"] == "yes" and unit[0].matrix.fail_fast and unit[0].matrix.max_parallel == 1
    assert jobs["report"].needs == tuple(j.name for j in unit)


def test_256_combinations_are_fine_and_257_are_an_error_that_counts_them():
    axis = lambda n: "[" + ", ".join(f'"{i}"' for i in range(n)) + "]"  # noqa: E731
    ok = _load(f"stages:\n  - name: t\n    jobs:\n      - name: m\n        matrix: {{a: {axis(16)}, b: {axis(16)}}}\n"
               "        steps: [echo]\n")
    assert ok.ok and len(ok.plan.stages[0].jobs) == 256
    bad = _load(f"stages:\n  - name: t\n    jobs:\n      - name: m\n        matrix: {{a: {axis(257)}}}\n"
                "        steps: [echo]\n")
    assert [d.message for d in bad.diagnostics] == [
        "'matrix' in job 'm' makes 257 combinations; at most 256 (split the job, or remove combinations with exclude)"]


CHANGES = """
stages:
  - name: test
    jobs:
      - name: backend
        when: {changes: ["src/**", "!src/**/*.md"]}
        steps: [echo]
      - name: always
        steps: [echo]
  - name: docs
    when: {changes: "docs/**"}
    steps: [echo]
"""


def test_when_changes_records_the_files_that_matched_or_why_it_skipped():
    ctx = Context.build(sha="a" * 40, branch="main", changes=Changes(("src/a.py", "src/b.md", "README"), "push 1..2"))
    plan = _load(CHANGES, ctx).plan
    jobs = _jobs(plan)
    assert jobs["backend"].skip_reason is None
    assert jobs["backend"].decision == "when.changes matched src/a.py (push 1..2)"
    assert jobs["always"].decision is None
    assert plan.stages[1].skip_reason == "no changed file matches when.changes (docs/**); push 1..2 changed 3 file(s)"
    only_md = Context.build(sha="a" * 40, branch="main", changes=Changes(("src/b.md",), "push 1..2"))
    assert _jobs(_load(CHANGES, only_md).plan)["backend"].skip_reason.startswith("no changed file matches")


def test_when_changes_runs_when_every_file_counts():
    ctx = Context.build(sha="a" * 40, event="manual", changes=Changes(None, "a manual run"))
    plan = _load(CHANGES, ctx).plan
    assert plan.stages[1].skip_reason is None
    assert _jobs(plan)["backend"].decision == "when.changes: a manual run, so every file counts as changed"


def test_job_when_joins_the_stage_when():
    plan = _load("""
stages:
  - name: test
    when: {event: [push]}
    jobs:
      - name: main-only
        when: {branch: main, status: [failure]}
        steps: [echo]
      - name: release-only
        when: {branch: "release/*"}
        steps: [echo]
""").plan
    jobs = _jobs(plan)
    assert jobs["main-only"].skip_reason is None and jobs["main-only"].when.status == ("failure",)
    assert jobs["release-only"].skip_reason == "branch 'main' does not match when.branch (release/*)"
    assert jobs["release-only"].when is None


RUNS_ON = "stages:\n  - name: t\n    jobs:\n      - name: j\n        runs_on: [gpu]\n        steps: [echo]\n"


def test_runs_on_passes_when_the_runner_declares_the_label_or_the_backend_is_swarm():
    assert not _load(RUNS_ON).ok
    assert _load(RUNS_ON, options=LintOptions(runner_labels=frozenset({"gpu"}))).ok
    plan = _load(RUNS_ON, options=LintOptions(backend="swarm")).plan
    assert plan.stages[0].jobs[0].runs_on == ("gpu",)


def test_configured_users_may_approve():
    text = "stages:\n  - name: gate\n    approval: {approvers: [alice, admin]}\n"
    assert not _load(text).ok
    loaded = _load(text, options=LintOptions(users=frozenset({"alice"})))
    assert loaded.ok and loaded.plan.stages[0].approval.approvers == ("alice", "admin")


def test_a_skippable_need_is_fine_when_the_needing_job_is_skippable_too():
    loaded = _load("""
stages:
  - name: a
    jobs:
      - {name: docs, when: {changes: "docs/**"}, steps: [echo]}
      - {name: publish, needs: [docs], when: {branch: main}, steps: [echo]}
""")
    assert loaded.ok, loaded.diagnostics


def test_the_longest_chain_of_needs_allowed_is_checked_and_its_cycle_named():
    # 500 jobs (the most a pipeline may have), each needing the one before.
    jobs = "".join(f"      - {{name: j{i}, needs: [j{i - 1}], steps: [echo]}}\n" for i in range(1, 500))
    loaded = _load("stages:\n  - name: s\n    jobs:\n      - {name: j0, steps: [echo]}\n" + jobs)
    assert loaded.ok, loaded.diagnostics[:3]
    cyclic = _load("stages:\n  - name: s\n    jobs:\n      - {name: j0, needs: [j499], steps: [echo]}\n" + jobs)
    [cycle] = [d for d in cyclic.diagnostics if d.code == "needs-cycle"]
    assert cycle.message.startswith("needs make a cycle: j0 -> j499 -> j498") and cycle.message.endswith("-> j1 -> j0")
    assert "-> j481 -> ... (461 more) -> j19 ->" in cycle.message  # a long ring is shown by its ends


def test_a_cycle_through_stage_order_takes_the_direct_way_back():
    # `last` waits for every earlier stage, `first`'s among them: the cycle goes straight back to it.
    loaded = _load("""
stages:
  - name: one
    jobs: [{name: first, needs: [last], steps: [echo]}]
  - name: two
    jobs: [{name: middle, steps: [echo]}, {name: aside, needs: [], steps: [echo]}]
  - name: three
    jobs: [{name: last, steps: [echo]}]
""")
    [cycle] = [d for d in loaded.diagnostics if d.code == "needs-cycle"]
    assert cycle.message == ("needs make a cycle: first -> last -> first; a job without needs "
                             "waits for every earlier stage")


def test_a_cycle_closed_on_a_stage_marker_is_told_as_jobs():
    from runner.dsl.graph import _Before, _jobs_only, _Node

    x, y, marker = _Node("x", 1, ".x"), _Node("y", 2, ".y"), _Before(2)
    assert _jobs_only([(marker, True), (x, True), (y, False), (marker, True)]) == [(x, True), (y, False), (x, True)]
