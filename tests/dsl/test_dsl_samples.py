"""Every sample repository's pipeline lints clean, on a branch build and on a tag build."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.context import Context
from runner.dsl import find_pipeline_files, load_pipeline

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted(p for p in (ROOT / "sample-repos").iterdir() if find_pipeline_files(p))


def test_there_are_samples():
    assert "hello" in [p.name for p in SAMPLES]


@pytest.mark.parametrize("repo", SAMPLES, ids=[p.name for p in SAMPLES])
@pytest.mark.parametrize("ctx", [Context.build(sha="f" * 40, branch="main", build_number=1),
                                 Context.build(sha="f" * 40, tag="v1.0.0", build_number=2)], ids=["main", "tag"])
def test_sample_pipeline_is_clean(repo, ctx):
    for file in find_pipeline_files(repo):
        loaded = load_pipeline(repo, ctx, file=file)
        assert loaded.ok and loaded.diagnostics == [], [str(d) for d in loaded.diagnostics]


def test_hello_uses_stages_parallel_jobs_when_post_and_the_macros():
    source = (ROOT / "sample-repos" / "hello" / ".conveyor.yml").read_text()
    assert '{% import "jobs.j2"' in source and '{% import "checks.j2"' in source
    plan = load_pipeline(ROOT / "sample-repos" / "hello", Context.build(sha="f" * 40, branch="main")).plan
    assert max(len(s.jobs) for s in plan.stages) >= 3
    assert {s.name: s.skip_reason is None for s in plan.stages} == {
        "greet": True, "check": True, "publish": True, "release": False}
    assert plan.post.always and plan.post.failure
    assert {j.image for j in plan.jobs()} == {"conveyor-test/busybox:1"}
