"""Reading the change feed in tests once it has caught up with what was committed."""

from __future__ import annotations

import time

import psycopg

from jobforge.events import EventFilter, FeedCursor
from jobforge.store import events as feed
from jobforge.store.sql import SQLStore

CAUGHT_UP = "SELECT pg_snapshot_xmin(s) = pg_snapshot_xmax(s) FROM pg_current_snapshot() s"


def settled_read(
    store: SQLStore, after: FeedCursor, where: EventFilter, limit: int = 500
) -> feed.Page:
    """`feed.read` once every transaction committed so far is below the feed's horizon.

    On PostgreSQL any transaction with an id holds the horizon back while it runs (by
    design: nothing may commit behind a reader's cursor); in tests that can be autovacuum
    analysing another test's database, for a moment.
    """
    if store.url.startswith("postgres"):
        deadline = time.monotonic() + 10
        with psycopg.connect(store.url, autocommit=True) as conn:
            while not conn.execute(CAUGHT_UP).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, "a transaction stayed open for 10 s"
                time.sleep(0.01)
    return feed.read(store, after, where, limit)
