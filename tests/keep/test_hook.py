"""The executor's files hook with the scripted backend: artifacts follow `when`, report files reach
`on_reports` also after a failure, a failed job saves no cache, needed artifacts arrive first."""

from __future__ import annotations

import asyncio

from runner.backends.fake import FakeBackend, FakeStep
from runner.build import BuildRequest, create_build, run_build
from runner.settings import Settings
from runner.store import artifacts as sql
from runner.store import builds as q
from runner.store.db import Store

PIPELINE = """\
image: conveyor-test/busybox:1
stages:
  - name: test
    jobs:
      - name: unit
        steps: ["run tests"]
        artifacts: {paths: [reports/], when: on_failure}
        reports: {junit: ["reports/*.xml"]}
        cache: {key: k, paths: [.cache]}
      - name: docs
        steps: ["make docs"]
        artifacts: {paths: [site/]}
"""


def _write(files: dict[str, str], code: int) -> FakeStep:
    def output(run):
        run.workspace.update(files)
        return [b"ran\n"]

    return FakeStep(output=output, exit=code)


async def _run(tmp_path, backend: FakeBackend, check) -> None:
    """Run PIPELINE with ``backend``, then ``check(store, build_id, status, reports)`` while the store
    is open; ``reports`` are what reached ``on_reports``."""
    source = tmp_path / "src"
    source.mkdir()
    (source / ".conveyor.yml").write_text(PIPELINE)
    got = []
    settings = Settings(data_dir=tmp_path / "data", instance="t-hook")
    with Store(settings.data_dir) as store:
        request = BuildRequest(repo="app", event="push", branch="main", sha="a" * 40)
        build_id = await asyncio.to_thread(create_build, store, request, "t-hook")
        status = await run_build(store, settings, build_id, source, backend=backend,
                                 on_reports=lambda *args: got.append(args))
        check(store, build_id, status, got)


async def test_reports_and_artifacts_of_a_failed_job_are_kept_by_when(tmp_path):
    backend = FakeBackend(script={
        "run tests": _write({"reports/unit.xml": "<testsuite/>", ".cache/x": "c"}, 1),
        "make docs": _write({"site/index.html": "<h1>docs</h1>"}, 0),
    })

    def check(store, build_id, status, got):
        assert status == "failure"
        kept = {(a.job, a.path) for a in sql.for_build(store.read(), build_id)}
        assert kept == {("unit", "reports/unit.xml"), ("docs", "site/index.html")}
        assert got == [(build_id, "unit", {"reports/unit.xml": b"<testsuite/>"})]
        assert store.read().execute("SELECT COUNT(*) FROM caches").fetchone()[0] == 0  # not after a failure
        build = q.get_build(store.read(), build_id)
        assert build.reason.startswith("stage 'test': job 'unit'")

    await _run(tmp_path, backend, check)


async def test_more_report_files_than_a_job_may_have_read_are_a_warning_not_a_flood(tmp_path):
    # Each report file is parsed and each problem listed: 100,000 empty ones made a 308 MB database.
    many = {f"reports/r{i}.xml": "" for i in range(1001)}
    backend = FakeBackend(script={"run tests": _write(many, 0), "make docs": _write({}, 0)})

    def check(store, build_id, status, got):
        assert status == "success" and got == []
        build = q.get_build(store.read(), build_id)
        assert any("test reports not read" in w and "more than 1,000 files are selected" in w
                   and "at most 1,000 files" in w for w in build.warnings), build.warnings

    await _run(tmp_path, backend, check)
