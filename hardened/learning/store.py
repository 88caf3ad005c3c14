"""The record store: every call's outcome, appended to SQLite off the hot path.

A call appends one tuple to an in-memory queue (a ``deque.append``: about 100 ns, no lock, no
I/O); a background writer thread wakes every ``flush_interval`` seconds and writes what queued up
in one transaction (``executemany``). The database runs in WAL mode with ``synchronous=NORMAL``:
a process killed with SIGKILL loses at most the rows still queued (the last batch), and what was
committed stays intact, because SQLite's WAL is crash-safe for process death. The queue is
bounded (rows beyond it are counted as dropped, never block a call); the table is bounded by
``max_rows`` (oldest rows deleted first) and by ``retention`` seconds.

``":memory:"`` (or None) keeps the records in memory, for tests and for processes that must not
write files.
"""

from __future__ import annotations

import atexit
import math
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

__all__ = ["RecordStore", "StoreError"]

log = structlog.get_logger("hardened.learning")

STORE_SCHEMA_VERSION = 1
_MEMORY = ":memory:"


class StoreError(ValueError):
    """The record store cannot be opened or used; the message names the path and the reason."""


class _Flush:
    """A marker in the queue: the writer commits everything before it, then sets the event."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


_STOP = object()
_open_stores: weakref.WeakSet[RecordStore] = weakref.WeakSet()


class RecordStore:
    """An append-only table of rows with fixed ``columns``, written in batches by one thread.

    Args:
        path: the SQLite file (its folder is created), or ``":memory:"``/None for memory only.
        columns: column names, in the order of the tuples passed to ``append``; each column is
            declared without a type (SQLite stores what it gets: numbers, text, NULL).
        max_rows: most rows kept; the oldest are deleted after each batch beyond it.
        retention: seconds a row is kept (by its ``ts`` column), checked every ``prune_every`` s.
        flush_interval: seconds between writer wake-ups (what a SIGKILL can lose at most).
        max_queue: rows waiting for the writer before new ones are dropped (and counted).
        clock: wall-clock seconds, injectable for tests of retention.
    """

    def __init__(
        self,
        path: str | Path | None,
        columns: Sequence[str],
        *,
        max_rows: int = 500_000,
        retention: float = 7 * 86_400.0,
        flush_interval: float = 0.25,
        max_queue: int = 100_000,
        batch_max: int = 5_000,
        prune_every: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if "ts" not in columns:
            raise StoreError("a record store needs a 'ts' column (retention is by time)")
        # refused here: flush_interval 0 made the writer spin a core, max_rows 0 kept nothing,
        # max_queue 0 dropped every row, a retention of 0 or less deleted every row written
        for name, value in (("max_rows", max_rows), ("max_queue", max_queue), ("batch_max", batch_max)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 1:
                raise StoreError(f"record store {name} must be a number of at least 1, got {value!r}")
        for name, number in (("retention", retention), ("flush_interval", flush_interval)):
            if isinstance(number, bool) or not (isinstance(number, int | float) and number > 0):
                raise StoreError(f"record store {name} must be a number of seconds above 0, got {number!r}")
        self.path = _MEMORY if path is None or str(path) == _MEMORY else str(Path(path).expanduser())
        self.columns = tuple(columns)
        self.max_rows = int(max_rows)
        self.retention = float(retention)
        self.flush_interval = float(flush_interval)
        self.max_queue = int(max_queue)
        self.batch_max = int(batch_max)
        self.prune_every = float(prune_every)
        self.clock = clock
        self.dropped = 0  # rows refused because the queue was full
        # Called before every read, so a reader sees rows its owner still holds back (set by the
        # learner, which prepares rows on its own thread).
        self.before_read: Callable[[], Any] | None = None
        self.written = 0
        self.deleted = 0
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._db_lock = threading.Lock()  # the writer's connection (shared by readers in memory mode)
        self._last_prune = 0.0
        self._last_drop_log = 0.0
        self._last_fail_log = -math.inf  # the first failure is always said
        self._failed_rows = 0  # rows lost to failed writes since that was last said
        self._conn = self._open()
        self._rows = self._conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        self._insert = (
            f"INSERT INTO calls ({', '.join(_quote(c) for c in self.columns)}) "
            f"VALUES ({', '.join('?' for _ in self.columns)})"
        )
        self._ts_index = self.columns.index("ts")
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="hardened-record-store", daemon=True)
        self._thread.start()
        _open_stores.add(self)

    # --- opening --------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self.path != _MEMORY:
            if Path(self.path).is_dir():  # sqlite3 says only "unable to open database file"
                raise StoreError(
                    f"record store {self.path} is a directory: give a file path for the store "
                    f"(e.g. {Path(self.path) / 'learning.db'})"
                )
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder of record store {self.path}: {exc}") from exc
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
            _check_ours(conn, self.path)
            if self.path != _MEMORY:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"record store {self.path}: WAL mode refused (got {mode})")
                conn.execute("PRAGMA synchronous=NORMAL")
            cols = ", ".join(f"{_quote(c)}" for c in self.columns if c != "id")
            # One write transaction, taken before the columns are read: two processes opening an
            # old store at once both added the missing columns, and the second failed to start
            # ("duplicate column name").
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY, {cols})")
                conn.execute("CREATE INDEX IF NOT EXISTS calls_ts ON calls(ts)")
                conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
                conn.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(STORE_SCHEMA_VERSION),)
                )
                found = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
                missing = [c for c in self.columns if c not in found]
                for column in missing:
                    # A store written by an earlier hardened (a feature added since, e.g. "room"):
                    # the new column is added and the rows already there read NULL (unknown) in
                    # it, so an upgrade neither refuses to start nor throws away what was learned.
                    conn.execute(f"ALTER TABLE calls ADD COLUMN {_quote(column)}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot open record store {self.path}: {exc}") from exc
        if missing:
            log.warning(
                "record_store_upgraded",
                path=str(self.path),
                added_columns=missing,
                note="rows recorded before read these columns as unknown",
            )
        return conn

    # --- the hot path ---------------------------------------------------------------------

    def append(self, row: tuple[Any, ...]) -> None:
        """Queue one row (a tuple in ``columns`` order); never blocks, never touches the disk."""
        queue = self._queue
        if len(queue) < self.max_queue and not self._closed:
            queue.append(row)
        else:
            self._drop()

    def _drop(self) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self._last_drop_log > 60.0:
            self._last_drop_log = now
            if self._closed:  # the writer is gone: a row queued now would never be written
                log.warning("record_store_closed", path=self.path, dropped=self.dropped)
            else:
                log.warning("record_store_full", path=self.path, dropped=self.dropped, queue=self.max_queue)

    # --- the writer -----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                if self._drain():
                    return
            except Exception as exc:  # the writer must outlive any batch: a dead one loses every row after
                log.error("record_store_writer_failed", path=self.path, error=type(exc).__name__)

    def _drain(self) -> bool:
        """Write what is queued, batch by batch; True when the stop marker was reached."""
        queue = self._queue
        while queue:
            batch: list[tuple[Any, ...]] = []
            markers: list[_Flush] = []
            stop = False
            while queue and len(batch) < self.batch_max:
                item = queue.popleft()
                if isinstance(item, tuple):
                    batch.append(item)
                elif item is _STOP:
                    stop = True
                    break
                else:
                    markers.append(item)
                    break  # commit what came before the marker, then tell the flusher
            if batch:
                self._write(batch)
            for marker in markers:
                marker.event.set()
            if stop:
                return True
        return False

    def _write(self, batch: list[tuple[Any, ...]]) -> None:
        """Commit ``batch`` and apply the bounds; a row SQLite cannot store (a value of a type
        or size it refuses) is dropped and counted alone, not with the batch around it."""
        try:
            self._commit(batch)
        except sqlite3.OperationalError as exc:  # a full disk, a locked file: count, say so, keep going
            self._failed(batch, exc)
        except (sqlite3.Error, OverflowError, TypeError, ValueError):
            self._rollback()
            good = self._bindable(batch)
            bad = len(batch) - len(good)
            self.dropped += bad
            if bad:  # the values are not logged: a row may hold a bot's own context
                log.error("record_store_rows_refused", path=self.path, rows=bad)
            if good:
                try:
                    self._commit(good)
                except (sqlite3.Error, OverflowError, TypeError, ValueError) as exc:
                    self._failed(good, exc)

    def _bindable(self, batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The rows of ``batch`` SQLite can store, found in a scratch database in memory (no lock
        on the store, so a busy or full store is never mistaken for a bad row)."""
        scratch = sqlite3.connect(":memory:")
        try:
            scratch.execute(f"CREATE TABLE calls ({', '.join(_quote(c) for c in self.columns)})")
            good = []
            for row in batch:
                try:
                    scratch.execute(self._insert, row)
                except (sqlite3.Error, OverflowError, TypeError, ValueError):
                    continue
                good.append(row)
            return good
        finally:
            scratch.close()

    def _commit(self, batch: list[tuple[Any, ...]]) -> None:
        """One transaction: insert ``batch``, keep at most ``max_rows`` rows, apply the retention.

        The row bound is read from the ids (assigned in increasing order; min/max are index
        look-ups): a count kept in this process misses the rows other processes write to the
        same file, and the table grew past ``max_rows`` by as many times as there were writers."""
        with self._db_lock:
            conn = self._conn
            conn.execute("BEGIN")
            try:
                conn.executemany(self._insert, batch)
                gone_rows = 0
                lo, hi = conn.execute(
                    "SELECT (SELECT min(id) FROM calls), (SELECT max(id) FROM calls)"
                ).fetchone()
                if hi is not None and hi - lo + 1 > self.max_rows:
                    gone_rows = conn.execute(
                        "DELETE FROM calls WHERE id <= ?", (hi - self.max_rows,)
                    ).rowcount
                now = self.clock()
                prune = now - self._last_prune >= self.prune_every
                if prune:
                    gone_rows += conn.execute(
                        "DELETE FROM calls WHERE ts < ?", (now - self.retention,)
                    ).rowcount
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if prune:
                self._last_prune = now
            self._rows += len(batch) - gone_rows
            self.deleted += gone_rows
        self.written += len(batch)

    def _failed(self, batch: list[tuple[Any, ...]], exc: BaseException) -> None:
        """Count a batch that could not be written; say so at most once a minute (a full disk
        fails every batch, four a second, and logged each one)."""
        self.dropped += len(batch)
        self._failed_rows += len(batch)
        now = time.monotonic()
        if now - self._last_fail_log >= 60.0:
            self._last_fail_log = now
            log.error("record_store_write_failed", path=self.path, rows=self._failed_rows, error=str(exc))
            self._failed_rows = 0

    def _rollback(self) -> None:
        try:
            with self._db_lock:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # nothing to undo

    # --- control --------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every row queued before this call is committed; False on timeout."""
        if self._closed:
            return True
        marker = _Flush()
        self._queue.append(marker)
        self._wake.set()
        return marker.event.wait(timeout)

    def prune(self) -> None:
        """Apply the retention now (normally done at most every ``prune_every`` seconds)."""
        self.flush()
        now = self.clock()
        with self._db_lock:
            gone = self._conn.execute("DELETE FROM calls WHERE ts < ?", (now - self.retention,)).rowcount
            self._rows -= gone
            self.deleted += gone
            self._last_prune = now

    def close(self) -> None:
        """Write what is queued and stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.append(_STOP)
        self._wake.set()
        self._thread.join(timeout=30.0)
        with self._db_lock:
            self._conn.close()
        _open_stores.discard(self)

    # --- reading --------------------------------------------------------------------------

    def _reader(self) -> tuple[sqlite3.Connection, bool]:
        """A connection to read with: a fresh one for files (WAL readers do not block the writer),
        the writer's own under its lock for memory."""
        if self.path == _MEMORY:
            return self._conn, True
        conn = sqlite3.connect(self.path, timeout=10.0)
        return conn, False

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query against the table ``calls`` (after a flush)."""
        if self.before_read is not None:
            self.before_read()  # rows still being prepared elsewhere (the learner's deferred outcomes)
        self.flush()
        conn, shared = self._reader()
        try:
            if shared:
                with self._db_lock:
                    return conn.execute(sql, params).fetchall()
            return conn.execute(sql, params).fetchall()
        finally:
            if not shared:
                conn.close()

    def rows(self, since: float | None = None, limit: int | None = None) -> list[tuple[Any, ...]]:
        """Rows in ``columns`` order, oldest first; ``limit`` keeps the most recent ones."""
        cols = ", ".join(_quote(c) for c in self.columns)
        where = "WHERE ts >= ?" if since is not None else ""
        params: list[Any] = [since] if since is not None else []
        if limit is not None:
            sql = f"SELECT * FROM (SELECT id, {cols} FROM calls {where} ORDER BY id DESC LIMIT ?) ORDER BY id"
            params.append(int(limit))
            return [row[1:] for row in self.query(sql, params)]
        return self.query(f"SELECT {cols} FROM calls {where} ORDER BY id", params)

    def count(self) -> int:
        """Rows held (after a flush)."""
        return int(self.query("SELECT count(*) FROM calls")[0][0])

    def stats(self) -> dict[str, Any]:
        """Path, rows held, written, deleted by bounds, dropped, queued now."""
        return {
            "path": self.path,
            "rows": self._rows,
            "written": self.written,
            "deleted": self.deleted,
            "dropped": self.dropped,
            "queued": len(self._queue),
            "max_rows": self.max_rows,
            "retention_s": self.retention,
        }


def _check_ours(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a database that holds tables but is no record store: another application's file
    given as the store was changed (our tables added to it, switched to WAL) before this."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return  # a new file
    ours = "calls" in tables and any(row[1] == "ts" for row in conn.execute("PRAGMA table_info(calls)"))
    if ours and "meta" in tables:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is not None and str(version[0]).isdigit() and int(version[0]) > STORE_SCHEMA_VERSION:
            conn.close()
            raise StoreError(
                f"record store {path} was written by a newer hardened (store schema {version[0]}, "
                f"this one reads {STORE_SCHEMA_VERSION}): upgrade hardened or use another store"
            )
    if not ours:
        conn.close()
        names = ", ".join(sorted(tables)[:5])
        raise StoreError(
            f"{path} is an SQLite database but not a hardened record store (it holds: {names}); "
            "left untouched: give the store a file of its own"
        )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@atexit.register
def _close_all() -> None:
    """Write what is queued when the interpreter exits normally."""
    for store in list(_open_stores):
        try:
            store.close()
        except Exception:  # exiting anyway: a store that cannot close must not hide the others
            continue
