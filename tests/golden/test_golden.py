"""Golden tests pin the compiler: every tests/golden/NAME.yml compiles to exactly NAME.plan.json.

After an intended change to the compiler, regenerate with
``CONVEYOR_REGEN_GOLDEN=1 python -m pytest tests/golden`` and review the diff like code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runner.context import Context
from runner.dsl import load_pipeline
from runner.plan import Plan

HERE = Path(__file__).parent
CASES = sorted(HERE.glob("*.yml"))
CTX = Context.build(sha="0123456789abcdef0123456789abcdef01234567", branch="main", message="golden commit",
                    author="Golden <golden@example.invalid>", repo_name="golden", build_number=42)
REGEN = os.environ.get("CONVEYOR_REGEN_GOLDEN") == "1"


def test_there_are_golden_cases():
    assert len(CASES) >= 3


@pytest.mark.parametrize("source", CASES, ids=[c.stem for c in CASES])
def test_plan_matches_golden(source):
    loaded = load_pipeline(HERE, CTX, file=source)
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    golden = source.with_suffix(".plan.json")
    actual = loaded.plan.to_json() + "\n"
    if REGEN:
        golden.write_text(actual)
    assert golden.exists(), f"no {golden.name}: run CONVEYOR_REGEN_GOLDEN=1 python -m pytest tests/golden"
    assert json.loads(actual) == json.loads(golden.read_text())
    assert Plan.from_json(golden.read_text()) == loaded.plan
