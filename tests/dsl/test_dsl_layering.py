"""runner/dsl never imports the executing side, and its render child imports nothing of runner."""

from __future__ import annotations

import ast
from pathlib import Path

DSL = Path(__file__).resolve().parents[2] / "runner" / "dsl"
FORBIDDEN = ("runner.executor", "runner.backends", "runner.store", "runner.server", "runner.cli", "runner.deploy")


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_dsl_does_not_import_the_executing_side():
    offenders = {p.name: sorted(n for n in imports(p) if n.startswith(FORBIDDEN)) for p in DSL.glob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_render_child_is_standalone():
    assert not [n for n in imports(DSL / "_render_child.py") if n.startswith("runner")]
