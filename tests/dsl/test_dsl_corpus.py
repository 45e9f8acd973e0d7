"""The corpus of wrong pipeline files: each states its exact diagnostics in `# expect:` lines.

Every file under tests/dsl/bad/ is loaded as if it were the repo's pipeline (its folder is the repo,
so `.conveyor/broken.j2` is importable) and must produce exactly the listed diagnostics, in order:
file, line, column, severity and message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.context import Context
from runner.dsl import load_pipeline

BAD = Path(__file__).parent / "bad"
FILES = sorted(BAD.glob("*.yml"))
CTX = Context.build(sha="a" * 40, branch="main", build_number=1)


def expected(path: Path) -> list[str]:
    return [line[len("# expect: "):] for line in path.read_text().splitlines() if line.startswith("# expect: ")]


def test_the_corpus_is_large_and_every_file_states_what_it_expects():
    assert len(FILES) >= 40
    assert all(expected(f) for f in FILES)


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_wrong_file_gives_exact_diagnostics(path):
    loaded = load_pipeline(BAD, CTX, file=path)
    assert [str(d) for d in loaded.diagnostics] == expected(path)
    errors = [d for d in loaded.diagnostics if d.severity == "error"]
    assert loaded.ok is (not errors)
    if errors:
        assert loaded.plan is None


def test_diagnostics_carry_code_and_field_path():
    loaded = load_pipeline(BAD, CTX, file=BAD / "bad_retry_type.yml")
    (d,) = loaded.diagnostics
    assert (d.code, d.path, d.line, d.col) == ("type", ".stages[0].steps[0].retry", 6, 16)
    assert d.to_dict()["message"].startswith("'retry' in step 1")


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    text = (
        "image: busybox\n"  # warning: no tag
        "stages:\n"
        "  - name: a\n"
        "    stpes: [echo]\n"  # unknown key
        "  - name: b\n"
        "    jobs:\n"
        "      - name: j\n"
        "        timeout: soon\n"  # bad duration
        "        steps: [echo]\n"
        "  - name: a\n"  # duplicate name
        "    steps: [echo]\n"
    )
    loaded = load_pipeline(tmp_path, CTX, text=text)
    assert [(d.line, d.col, d.severity, d.code) for d in loaded.diagnostics] == [
        (1, 8, "warning", "untagged-image"),
        (4, 5, "error", "unknown-key"),
        (8, 18, "error", "duration"),
        (10, 11, "error", "duplicate-name"),
    ]


def test_trusted_repo_may_ask_for_privileged_mode_and_the_socket():
    for name in ("security_privileged.yml", "security_docker_socket.yml", "security_host_volume.yml",
                 "security_named_volume.yml"):
        loaded = load_pipeline(BAD, CTX, file=BAD / name, trusted=True)
        assert loaded.ok, loaded.diagnostics
        assert loaded.plan.trusted
    job = load_pipeline(BAD, CTX, file=BAD / "security_privileged.yml", trusted=True).plan.stages[0].jobs[0]
    assert job.privileged is True


def test_relative_repo_dir_and_file(monkeypatch):
    monkeypatch.chdir(BAD.parent)
    found = load_pipeline(Path("bad"), CTX, file=None)  # no .conveyor.yml there: says what to add
    assert [d.code for d in found.diagnostics] == ["no-pipeline"]
    named = load_pipeline(Path("bad"), CTX, file="untagged_image.yml")
    assert named.ok and named.path == Path("bad/untagged_image.yml")
