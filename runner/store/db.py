"""The SQLite store's core: one file, WAL, numbered migrations, and one writer thread.

Every write goes through ``Store.write``/``Store.awrite``: a function run by the single writer thread
inside ``BEGIN IMMEDIATE ... COMMIT``, so writers never race and a failed write rolls back whole.
``durable=True`` runs that transaction with ``synchronous=FULL`` (deploy history: a row the operator
relies on must survive a power cut); the default NORMAL is safe in WAL against a process crash.

Reads use a connection per thread (``Store.read``), or ``Store.aread`` from the event loop, which
crosses into a thread. Nothing here blocks the loop.

Migrations are ``runner/store/migrations/NNNN_name.sql``, applied in order, each in its own
transaction; ``PRAGMA user_version`` holds the last one applied. Never edit a released migration:
add a new one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import re
import sqlite3
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from runner.errors import StoreError
from runner.store.lock import StoreLock

__all__ = ["Store", "migrations", "MAX_INTEGER"]

T = TypeVar("T")
_STOP = object()
DB_NAME = "conveyor.db"
# The largest INTEGER SQLite holds; a bigger Python int raises OverflowError when bound, so every
# number from outside (an id in a URL, a pull request number in a webhook) is checked against it.
MAX_INTEGER = 2**63 - 1


def migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) of every migration shipped, in order."""
    found = []
    folder = resources.files("runner.store") / "migrations"
    for entry in folder.iterdir():
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [n for n, _, _ in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise StoreError(f"migrations are not numbered 1..N without gaps: {numbers}")
    return found


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so BEGIN IMMEDIATE is really used.
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class Store:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the data directory {self.data_dir}: {exc.strerror}; "
                "pass --data-dir or set CONVEYOR_DATA_DIR to a writable place"
            ) from exc
        self.path = self.data_dir / DB_NAME
        self._lock = StoreLock(self.data_dir, exclusive=False)  # tells `conveyor restore` we are here
        self._local = threading.local()
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        try:
            self._writer_conn = _connect(self.path)
            self._writer_conn.execute("PRAGMA journal_mode = WAL")
            self._writer_conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(self._writer_conn)
        except sqlite3.DatabaseError as exc:
            self._lock.release()
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        except BaseException:
            self._lock.release()
            raise
        self._thread = threading.Thread(target=self._writer_loop, name="conveyor-store-writer", daemon=True)
        self._thread.start()

    # -- migrations -------------------------------------------------------------------------

    def _migrate(self, conn: sqlite3.Connection) -> None:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        known = migrations()
        if current > len(known):
            raise StoreError(
                f"the store {self.path} was written by a newer Conveyor (schema {current}, this one "
                f"knows {len(known)}); upgrade Conveyor or use another --data-dir"
            )
        for number, name, sql in known[current:]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # executescript would COMMIT first; run the statements one by one instead.
                for statement in _split_sql(sql):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return self.read().execute("PRAGMA user_version").fetchone()[0]

    # -- writing ----------------------------------------------------------------------------

    def _writer_loop(self) -> None:
        conn = self._writer_conn
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            fn, durable, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                if durable:
                    conn.execute("PRAGMA synchronous = FULL")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                finally:
                    if durable:
                        conn.execute("PRAGMA synchronous = NORMAL")
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)
            else:
                future.set_result(result)
        conn.close()

    def submit(self, fn: Callable[[sqlite3.Connection], T], durable: bool = False) -> concurrent.futures.Future[T]:
        """Queue ``fn(conn)`` for the writer thread; returns at once."""
        if self._closed:
            raise StoreError("the store is closed")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((fn, durable, future))
        return future

    def write(self, fn: Callable[[sqlite3.Connection], T], durable: bool = False) -> T:
        """Run ``fn(conn)`` in one write transaction and return its result (blocks: not for the loop)."""
        return self.submit(fn, durable).result()

    async def awrite(self, fn: Callable[[sqlite3.Connection], T], durable: bool = False) -> T:
        return await asyncio.wrap_future(self.submit(fn, durable))

    # -- reading ----------------------------------------------------------------------------

    def read(self) -> sqlite3.Connection:
        """This thread's read connection (sees every committed write)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
        return conn

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return self.read().execute(sql, params).fetchall()

    async def aread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(lambda: fn(self.read()))

    # -- lifetime ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until everything queued so far is written."""
        if not self._closed:
            self.write(lambda conn: None)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split_sql(sql: str) -> list[str]:
    """Split a migration into statements (sqlite3.complete_statement knows about quotes and triggers)."""
    statements, current = [], ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
