"""Who has a data directory's store open: an advisory ``flock`` on ``conveyor.db.lock`` beside it.

Every ``Store`` (the server, ``conveyor run``, ``conveyor builds``, ...) holds it *shared* for as long
as it is open, so any number of them coexist; ``conveyor restore`` takes it *exclusive*, without
waiting, and so refuses to replace a store that a running server (or anything else) has open. The
kernel drops the lock when its process dies, so a ``kill -9`` never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from runner.errors import StoreError

__all__ = ["LOCK_NAME", "StoreLock"]

LOCK_NAME = "conveyor.db.lock"


class StoreLock:
    def __init__(self, data_dir: Path, *, exclusive: bool) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open {self.path}: {exc.strerror}; the data directory must be writable "
                             "(pass --data-dir or set CONVEYOR_DATA_DIR)") from exc
        try:
            fcntl.flock(self._fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            if exclusive:
                raise StoreError(
                    f"the store in {data_dir} is open in another process (a running `conveyor serve`, "
                    "`conveyor run` or `conveyor logs -f`); stop it, then try again") from None
            raise StoreError(f"a restore into {data_dir} is in progress; wait for `conveyor restore` to "
                             "finish, then try again") from None
        except OSError:
            # A filesystem without flock (some network mounts): run unguarded rather than not at all.
            pass

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = -1

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
