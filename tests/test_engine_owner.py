"""runner/engine is the one owner of the Docker engine: no module outside it imports docker-py
(docs/architecture.md, "The engine"), and the engine imports nothing of the layers above it."""

from __future__ import annotations

import ast
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[1] / "runner"
ENGINE = RUNNER / "engine"
# What runner/engine may use of runner: the exception tree, the settings, and the parser of the
# targets file (plain data, no engine); never a backend, the deploy code, the executor or above.
ENGINE_MAY_IMPORT = ("runner.engine", "runner.errors", "runner.settings", "runner.deploy.config")


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (a function's lazy import counts too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def is_docker(name: str) -> bool:
    return name == "docker" or name.startswith("docker.")


def test_only_runner_engine_imports_docker_py():
    outside = [p for p in RUNNER.rglob("*.py") if ENGINE not in p.parents]
    offenders = {str(p.relative_to(RUNNER)): sorted(n for n in imports(p) if is_docker(n)) for p in outside}
    assert {k: v for k, v in offenders.items() if v} == {}, (
        "import docker-py only in runner/engine; elsewhere use runner.engine (Engine, errors, types)")


def test_the_engine_imports_nothing_above_it():
    offenders = {}
    for path in ENGINE.rglob("*.py"):
        ours = [n for n in imports(path) if n.startswith("runner")]
        bad = sorted(n for n in ours if not n.startswith(ENGINE_MAY_IMPORT) and n != "runner")
        if bad:
            offenders[path.name] = bad
    assert offenders == {}


def test_the_check_sees_an_import_of_docker(tmp_path):
    # The test above can fail: each form of importing docker-py is seen, a lazy one too.
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef f():\n    from docker.errors import NotFound\n    import docker.types\n")
    assert sorted(n for n in imports(sample) if is_docker(n)) == ["docker.errors", "docker.errors.NotFound",
                                                                  "docker.types"]
    sample.write_text("from docker import errors as derrors\n")
    assert any(is_docker(n) for n in imports(sample))
    sample.write_text("from runner.engine import errors as derrors\nimport dockerfile_parse\n")
    assert not any(is_docker(n) for n in imports(sample))
