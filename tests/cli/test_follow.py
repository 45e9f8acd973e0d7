"""`conveyor logs -f` follows a build another process is running, until it ends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runner.store import builds as q
from runner.store.db import Store

ROOT = Path(__file__).resolve().parent.parent.parent


def test_logs_follow_prints_everything_and_stops_when_the_build_ends(git_repo, tmp_path, instance):
    repo = git_repo(files={".conveyor.yml": (
        "image: conveyor-test/busybox:1\n"
        "stages:\n  - name: s\n    steps:\n"
        "      - for i in 1 2 3 4 5 6; do echo line $i; sleep 0.3; done\n"
        "      - echo last\n"
    )})
    data = tmp_path / "data"
    # PYTHONPATH: `logs -f` runs in the repository, so without it the child would import whichever
    # Conveyor is installed rather than this checkout's.
    env = dict(os.environ, CONVEYOR_INSTANCE=instance, PYTHONPATH=str(ROOT))
    run = subprocess.Popen([sys.executable, "-m", "runner", "run", str(repo), "--backend", "local",
                            "--data-dir", str(data)], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        for line in run.stdout:
            if "line 1" in line:
                break
        follow = subprocess.run([sys.executable, "-m", "runner", "logs", "-f", "--job", "s", "--data-dir", str(data)],
                                capture_output=True, text=True, env=env, cwd=repo, timeout=30)
        with Store(data) as store:  # logs -f returned: the build had ended
            assert q.find_build(store.read(), "last").status == "success"
    finally:
        run.kill()
        run.wait()
    assert follow.returncode == 0, follow.stderr
    assert follow.stdout.splitlines() == [f"line {i}" for i in range(1, 7)] + ["last"]
