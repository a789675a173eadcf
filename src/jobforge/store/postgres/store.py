"""PostgreSQL backend: many workers on many machines, one database."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from jobforge.errors import DatabaseUnavailable, ValidationError
from jobforge.jobs import Job, JobStatus
from jobforge.store.migrate import VERSION_TABLE, load_migrations
from jobforge.store.queries import load_queries
from jobforge.store.sql import Cursor, Rider, Row, SQLStore

log = logging.getLogger("jobforge.store.postgres")

CHANNEL = "jobforge_jobs"
FEED_CHANNEL = "jobforge_events"  # notified by the change-feed triggers (migration 0006)
COPY_THRESHOLD = 200  # rows; below it INSERT's fewer round trips win
MIGRATION_LOCK = 0x6A6F62666F726765  # "jobforge": serialises concurrent migrators
_COPY = re.compile(r"^COPY\s+(\w+)\s*\(([^)]*)\)", re.MULTILINE)


class PostgresStore(SQLStore):
    """A store on PostgreSQL with a psycopg 3 connection pool."""

    supports_listen = True
    unique_violation = psycopg.errors.UniqueViolation

    def __init__(self, url: str, max_connections: int = 10) -> None:
        super().__init__(url, load_queries("jobforge.store.postgres"))
        self.conninfo = url
        try:
            # Connect once directly so an unreachable server fails fast with its real reason.
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseUnavailable(f"Cannot connect to PostgreSQL: {reason}") from None
        self._copy_type_cache: dict[str, list[int]] = {}
        self.pool = ConnectionPool(
            url, min_size=1, max_size=max_connections, open=True, name="jobforge",
            kwargs={"autocommit": False},
        )  # fmt: skip

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        if self._external is not None:
            with self._external.cursor(row_factory=dict_row) as cur:
                yield cur
            return
        with (
            _values_checked(),
            self.pool.connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            yield cur

    @contextmanager
    def _autocommit(self) -> Iterator[Cursor]:
        """Statements that are each their own transaction (reads, single writes): sent in
        one round trip each instead of three (BEGIN, the statement, COMMIT)."""
        if self._external is not None:
            with self._tx() as cur:
                yield cur
            return
        with _values_checked(), self.pool.connection() as conn:
            conn.autocommit = True
            try:
                with conn.cursor(row_factory=dict_row) as cur:
                    yield cur
            finally:
                conn.autocommit = False

    def _insert_many(self, cur: Cursor, table: str, rows: list[tuple[Any, ...]]) -> None:
        if len(rows) < COPY_THRESHOLD:
            super()._insert_many(cur, table, rows)
            return
        query = self.q["copy_jobs" if table == "jobs" else "copy_edges"]
        # Binary COPY: values need no text formatting here nor parsing on the server.
        types = self._copy_types(cur, query)
        cur.adapters.register_dumper(None, JsonTextDumper)
        with cur.copy(query) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)

    def _copy_types(self, cur: Cursor, query: str) -> list[int]:
        """The types of a COPY's columns, read from the catalog once per store."""
        types = self._copy_type_cache.get(query)
        if types is None:
            table, columns = _copy_target(query)
            rows = self._run(cur, "column_types", table=table).fetchall()
            oid = {r["name"]: r["oid"] for r in rows}
            types = self._copy_type_cache[query] = [oid[c] for c in columns]
        return types

    def _lock_keys(self, cur: Cursor, keys: list[str]) -> None:
        self._run(cur, "lock_keys", keys=keys).fetchall()

    def _claim_rows(self, cur: Cursor, params: dict[str, Any]) -> list[Row]:
        with cur.connection.pipeline():
            read = self._send_claim(cur, params)
        return read()

    def _send_claim(self, cur: Cursor, params: dict[str, Any]) -> Callable[[], list[Row]]:
        """The claim, pinned to walk jobforge_jobs_ready in run order and stop at LIMIT.

        Without statistics (a table just filled by a bulk enqueue) the planner sorts every
        queued row instead: 27 ms per claim at 50,000 queued. Sorting is switched off for
        this one statement. In pipeline mode (the caller's) the three statements go in one
        round trip; the rows are read once it has synced.
        """
        with cur.connection.cursor() as setting:
            setting.execute(self.q["sort_off"])
            self._run(cur, "claim_jobs", **params)
            setting.execute(self.q["sort_on"])
        return lambda: list(cur.fetchall())

    def _with_rider(self, cur: Cursor, query: str, rider: Rider | None, **params: Any) -> list[Row]:
        """`query` and the rider's statements in one round trip (pipeline mode)."""
        if rider is None:
            return list(self._run(cur, query, **params).fetchall())
        conn = cur.connection
        with conn.cursor(row_factory=dict_row) as first:
            with conn.pipeline():
                self._run(first, query, **params)
                receive = rider()
            rows = list(first.fetchall())
        receive()
        return rows

    def _adapt(self, params: dict[str, Any]) -> dict[str, Any]:
        return params

    def _notify(self, cur: Cursor, queues: set[str]) -> None:
        # Delivered at commit, so a woken worker always finds the rows.
        for queue in queues:
            cur.execute(self.q["notify"], {"queue": queue})

    def _job(self, row: Row) -> Job:
        return Job(
            id=row["id"],
            type=row["type"],
            queue=row["queue"],
            status=JobStatus(row["status"]),
            payload=row["payload"],
            priority=row["priority"],
            scheduled_at=row["scheduled_at"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            timeout=row["timeout"],
            progress=row["progress"],
            progress_message=row["progress_message"],
            result=row["result"],
            result_url=row["result_url"],
            errors=row["errors"],
            tenant_id=row["tenant_id"],
            trace_id=row["trace_id"],
            correlation_id=row["correlation_id"],
            retry_backoff=row["retry_backoff"],
            retry_backoff_max=row["retry_backoff_max"],
            worker_id=row["worker_id"],
            lease_token=row["lease_token"],
            lease_expires_at=row["lease_expires_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            workflow_id=row["workflow_id"],
            name=row["name"],
            dependency_status=row["dependency_status"],
            pending_parents=row["pending_parents"],
            optional=row["optional"],
            reason=row["reason"],
            cancel_requested=row["cancel_requested"],
            depth=row["depth"],
            dependency_deadline=row["dependency_deadline"],
            unique_key=row["unique_key"],
        )

    # -- schema ----------------------------------------------------------------------
    def schema_version(self) -> int:
        with self._tx() as cur:
            cur.execute("SELECT to_regclass(%s) AS t", (VERSION_TABLE,))
            if cur.fetchone()["t"] is None:
                return 0
            cur.execute(f"SELECT max(version) AS v FROM {VERSION_TABLE}")
            return int(cur.fetchone()["v"] or 0)

    def migrate(self) -> int:
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute(f"SELECT max(version) AS v FROM {VERSION_TABLE}")
            current = int(cur.fetchone()["v"] or 0)
            version = current
            for mig in load_migrations("jobforge.store.postgres.migrations"):
                if mig.version <= current:
                    continue
                cur.execute(mig.sql.encode())
                cur.execute(
                    f"INSERT INTO {VERSION_TABLE} (version, name) VALUES (%s, %s)",
                    (mig.version, mig.name),
                )
                version = mig.version
        return version

    def listener(self) -> PgListener:
        return PgListener(self.conninfo)

    def feed_listener(self) -> PgListener:
        """Wakes change-feed readers: the event triggers notify this channel."""
        return PgListener(self.conninfo, FEED_CHANNEL)

    def close(self) -> None:
        self.pool.close()


@contextmanager
def _values_checked() -> Iterator[None]:
    """A value PostgreSQL cannot store (a NUL character, a number out of range) is bad input,
    refused like any other, not a driver error."""
    try:
        yield
    except psycopg.errors.DataError as exc:
        reason = exc.diag.message_primary or str(exc).splitlines()[0]
        raise ValidationError(f"Invalid value: {reason}") from None


class PgListener:
    """LISTEN on a dedicated connection; reconnects by itself after the server restarts."""

    def __init__(self, conninfo: str, channel: str = CHANNEL) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_wake: Callable[[], None]) -> None:
        self._thread = threading.Thread(
            target=self._loop, args=(on_wake,), name="jobforge-pg-listener", daemon=True
        )
        self._thread.start()

    def _loop(self, on_wake: Callable[[], None]) -> None:
        delay = 0.2
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {self._channel}")
                    delay = 0.2
                    if not first:
                        log.info("listener reconnected")
                        on_wake()  # notifications sent while we were away are lost: look now
                    first = False
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            on_wake()
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return  # the connection went away because we are stopping
                first = False
                log.warning("listener connection lost (%s); reconnecting in %.1fs", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def stop(self) -> None:
        # The thread notices within one notifies() timeout and closes its connection;
        # nobody needs to wait for that.
        self._stop.set()


class JsonTextDumper(Dumper):
    """Binary jsonb from text that is already JSON (payloads are encoded and checked once).

    Registered for no Python type: binary COPY picks it by the column's type alone.
    """

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + str(obj).encode()  # jsonb's binary format: version 1, then the text


def _copy_target(query: str) -> tuple[str, list[str]]:
    """The table and column list of a `COPY table (a, b, ...) FROM STDIN` query."""
    m = _COPY.search(query)
    if m is None:
        raise ValueError(f"not a COPY ... FROM STDIN query: {query!r}")
    return m.group(1), [c.strip() for c in m.group(2).split(",")]
