"""SQLite backend: the embedded default. One file, WAL, one writer at a time."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobforge.errors import DatabaseUnavailable
from jobforge.jobs import Job, JobStatus, NewJob
from jobforge.store.migrate import VERSION_TABLE, load_migrations
from jobforge.store.queries import load_queries
from jobforge.store.sql import Cursor, Row, SQLStore

BUSY_TIMEOUT_MS = 30_000
CACHE_KIB = 16 * 1024
POLL_INTERVAL = 0.02


def _enable_wal(conn: sqlite3.Connection) -> None:
    """`PRAGMA journal_mode=WAL`, retried: on a brand-new file that several processes open
    at once, SQLite answers "database is locked" at once, without calling the busy handler."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SQLiteStore(SQLStore):
    """A store on one SQLite file, shared safely by many threads and processes."""

    unique_violation = sqlite3.IntegrityError

    def __init__(self, url: str, path: str, synchronous: str = "FULL") -> None:
        super().__init__(url, load_queries("jobforge.store.sqlite"))
        self.path = path
        self.synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        parent = Path(path).resolve().parent
        if not parent.is_dir():
            raise DatabaseUnavailable(
                f"Cannot open SQLite database {path}: directory {parent} does not exist"
            )

    def connect(self) -> sqlite3.Connection:
        """A new connection with the settings every jobforge connection needs."""
        conn: sqlite3.Connection | None = None
        try:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a transaction
            # takes the write lock up front instead of failing to upgrade mid-way.
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.row_factory = sqlite3.Row
            # WAL lets readers run beside the single writer; busy_timeout makes writers
            # queue for the lock instead of failing with "database is locked".
            _enable_wal(conn)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # FULL syncs the WAL on every commit: an enqueue that returned survives power loss.
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            # 16 MiB of page cache (SQLite's default is 2): the B-trees a large insert
            # touches stay in memory instead of spilling to the WAL mid-transaction.
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise DatabaseUnavailable(f"Cannot open SQLite database {self.path}: {exc}") from None
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        if self._external is not None:
            cur = self._external.cursor()
            cur.row_factory = sqlite3.Row
            yield cur
            return
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn.cursor()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _autocommit(self) -> Iterator[Cursor]:
        """Statements that are each their own (implicit) transaction: reads, single writes."""
        if self._external is not None:
            with self._tx() as cur:
                yield cur
            return
        yield self._conn().cursor()

    def _adapt(self, params: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in params.items():
            if isinstance(value, datetime):
                value = value.timestamp()
            elif isinstance(value, uuid.UUID):
                value = str(value)
            elif isinstance(value, list):
                value = json.dumps(value, default=str)
            elif isinstance(value, bool):
                value = int(value)
            out[key] = value
        return out

    _id_value = staticmethod(str)
    _time_value = staticmethod(datetime.timestamp)

    def _decode_json(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    def _time(self, value: Any) -> datetime | None:
        return _from_ts(value)

    def _job(self, row: Row) -> Job:
        # sqlite3.Row looks names up by linear, case-blind search: one dict is cheaper.
        r = dict(zip(row.keys(), row, strict=True))
        ts = _from_ts
        return Job(
            id=uuid.UUID(r["id"]),
            type=r["type"],
            queue=r["queue"],
            status=JobStatus(r["status"]),
            payload=json.loads(r["payload"]),
            priority=r["priority"],
            scheduled_at=ts(r["scheduled_at"]),  # type: ignore[arg-type]
            attempts=r["attempts"],
            max_attempts=r["max_attempts"],
            timeout=r["timeout"],
            progress=r["progress"],
            progress_message=r["progress_message"],
            result=None if r["result"] is None else json.loads(r["result"]),
            result_url=r["result_url"],
            errors=json.loads(r["errors"]) if r["errors"] != "[]" else [],
            tenant_id=r["tenant_id"],
            trace_id=r["trace_id"],
            correlation_id=r["correlation_id"],
            retry_backoff=r["retry_backoff"],
            retry_backoff_max=r["retry_backoff_max"],
            worker_id=r["worker_id"],
            lease_token=r["lease_token"],
            lease_expires_at=ts(r["lease_expires_at"]),
            created_at=ts(r["created_at"]),  # type: ignore[arg-type]
            updated_at=ts(r["updated_at"]),  # type: ignore[arg-type]
            started_at=ts(r["started_at"]),
            completed_at=ts(r["completed_at"]),
            workflow_id=None if r["workflow_id"] is None else uuid.UUID(r["workflow_id"]),
            name=r["name"],
            dependency_status=r["dependency_status"],
            pending_parents=r["pending_parents"],
            optional=bool(r["optional"]),
            reason=r["reason"],
            cancel_requested=bool(r["cancel_requested"]),
            depth=r["depth"],
            dependency_deadline=ts(r["dependency_deadline"]),
            unique_key=r["unique_key"],
        )

    # -- schema ----------------------------------------------------------------------
    def schema_version(self) -> int:
        conn = self._conn()
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)
        ).fetchone()
        if not exists:
            return 0
        row = conn.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> int:
        """Apply pending migrations under the write lock, so concurrent starters agree."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            current = conn.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchone()[0] or 0
            version = current
            for mig in load_migrations("jobforge.store.sqlite.migrations"):
                if mig.version <= current:
                    continue
                for statement in iter_statements(mig.sql):
                    conn.execute(statement)
                conn.execute(
                    f"INSERT INTO {VERSION_TABLE} VALUES (?, ?, ?)",
                    (mig.version, mig.name, time.time()),
                )
                version = mig.version
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return int(version)

    def _announce_jobs(self, cur: Cursor, jobs: Sequence[NewJob]) -> None:
        # The insert gave the jobs consecutive rowids ending at the last one (we hold the
        # write lock): one range read, where looking each id up costs a fifth of the insert.
        last = self._run(cur, "last_rowid").fetchone()[0]
        self._run(cur, "job_created_events", last=last, n=len(jobs))

    def listener(self) -> DataVersionListener:
        return DataVersionListener(self)

    def feed_listener(self) -> DataVersionListener:
        """Wakes change-feed readers whenever another connection commits."""
        return DataVersionListener(self)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


class DataVersionListener:
    """SQLite's change feed: `PRAGMA data_version` moves whenever another connection commits.

    Reading it touches only the WAL index in shared memory, so checking it every 20 ms
    costs next to nothing and wakes workers without waiting for a claim poll.
    """

    def __init__(self, store: SQLiteStore, interval: float = POLL_INTERVAL) -> None:
        self._store = store
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_wake: Callable[[], None]) -> None:
        self._thread = threading.Thread(
            target=self._loop, args=(on_wake,), name="jobforge-sqlite-listener", daemon=True
        )
        self._thread.start()

    def _loop(self, on_wake: Callable[[], None]) -> None:
        conn = self._store.connect()
        try:
            last = conn.execute("PRAGMA data_version").fetchone()[0]
            while not self._stop.wait(self._interval):
                current = conn.execute("PRAGMA data_version").fetchone()[0]
                if current != last:
                    last = current
                    on_wake()
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


def _from_ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def iter_statements(script: str) -> Iterator[str]:
    """Split a migration script into statements; a trigger's body stays whole."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in pending.splitlines()
    ):
        raise RuntimeError(f"incomplete statement at the end of a migration: {pending[:80]!r}")
