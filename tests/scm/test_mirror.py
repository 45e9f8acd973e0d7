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


def test_a_source_that_cannot_be_fetched_says_what_to_check(tmp_path):
    from runner.errors import SourceError

    mirror = Mirror(tmp_path / "data", "acme/web", str(tmp_path / "no-such-repo"))
    # A push names a sha; a manual build names a branch: both fetch and both say what to check.
    for attempt in (lambda: mirror.fetch_sync("a" * 40), lambda: mirror.resolve_sync("refs/heads/main")):
        with pytest.raises(SourceError) as caught:
            attempt()
        assert "cannot fetch" in str(caught.value) and "check the repository's url/path" in str(caught.value)
