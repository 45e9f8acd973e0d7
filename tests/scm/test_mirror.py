"""The server's mirror: a commit has a pipeline exactly when `conveyor run` would find one in it."""

from __future__ import annotations

import subprocess

import pytest

from runner.dsl import find_pipeline_files
from runner.scm.mirror import Mirror

PIPELINE = "stages: [{name: a, steps: ['true']}]\n"


@pytest.mark.parametrize("files", [
    {".conveyor.yml": PIPELINE},
    {".conveyor.yaml": PIPELINE},
    {".conveyor/one.yml": PIPELINE},
    {".conveyor/two.yaml": PIPELINE},
    {"README.md": "none\n"},
    {".conveyor/macros.j2": "{% macro x() %}{% endmacro %}\n"},
])
def test_the_mirror_finds_a_pipeline_where_conveyor_run_does(git_repo, tmp_path, files):
    repo = git_repo(files)
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    mirror = Mirror(tmp_path / "data", "acme/web", str(repo))
    mirror.fetch_sync(sha)
    assert mirror.has_pipeline_sync(sha) == bool(find_pipeline_files(repo))
