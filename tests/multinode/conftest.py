"""The multi-node test bed as a session fixture: 3 nodes (1 manager, 2 workers, node labels
``bed=n1..n3``), images loaded on each, torn down on every path: the fixture's finalizer, an
``atexit`` hook (an interrupted session), and ``up`` itself, which first clears what a crashed
earlier run left.

The bed needs root and iproute2. When it cannot come up the tests *fail* with the reason: CI runs
as root, and a skip there would hide that multi-node deploys were never shown.
"""

from __future__ import annotations

import atexit
import os
import shutil

import pytest
from bed import Bed


@pytest.fixture(scope="session")
def bed():
    missing = [tool for tool in ("ip", "nsenter", "unshare", "dockerd") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        pytest.fail(f"the multi-node bed needs root and {', '.join(missing) or 'its tools'} "
                    "(iproute2, util-linux, dockerd); run as root, e.g. through .ci/run")
    b = Bed()
    atexit.register(_down, b)
    try:
        b.up()
    except Exception as exc:  # noqa: BLE001 - whatever failed: say it, clean up, fail the tests
        _down(b)
        pytest.fail(f"the multi-node bed did not come up: {exc}")
    print(f"\nbed up in {b.timings['up']:.1f}s ({', '.join(f'{k} {v:.1f}s' for k, v in b.timings.items())})")
    yield b
    _down(b)
    print(f"\nbed down in {b.timings['down']:.1f}s")


def _down(b: Bed) -> None:
    if b.holds_lock:  # once released, the names may already be another session's bed
        b.down()
        b.release()
