"""Store verbs for the change feed: read the events after a cursor, find the head.

A cursor is `(txid, id)`. SQLite commits one writer at a time, so its ids are in commit
order and `txid` is always 0. On PostgreSQL a reader takes only events of transactions
older than every one still in progress (the snapshot's xmin): after a read, nothing can
commit behind the cursor, so a client that resumes from it misses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobforge.events import Event, EventFilter, FeedCursor
from jobforge.jobs import as_uuid

if TYPE_CHECKING:
    from jobforge.store.sql import Row, SQLStore


@dataclass(frozen=True, slots=True)
class Page:
    events: list[Event]
    cursor: FeedCursor  # where the next read starts: past every event this read could see


def head(store: SQLStore) -> FeedCursor:
    """The cursor of a reader that wants only what happens from now on."""
    rows = store._select("events_head")
    return FeedCursor(int(rows[0]["txid"]), int(rows[0]["id"]))


def read(store: SQLStore, after: FeedCursor, where: EventFilter, limit: int = 500) -> Page:
    """The events after `after` that match `where`, oldest first, at most `limit`."""
    with store._autocommit() as cur:
        horizon = store._run(cur, "events_head").fetchone()
        rows = store._run(
            cur, "events_after", after_txid=after.txid, after_id=after.id,
            horizon_txid=horizon["txid"], horizon_id=horizon["id"],
            tenant=where.tenant, kind=where.kind, object_id=where.object_id,
            workflow_id=where.workflow_id, limit=limit,
        ).fetchall()  # fmt: skip
    events = [_event(store, r) for r in rows]
    if len(rows) == limit:
        last = rows[-1]
        return Page(events, FeedCursor(int(last["txid"]), int(last["id"])))
    # Every event below the horizon has been seen (matching or not): skip to it.
    return Page(events, max(after, FeedCursor(int(horizon["txid"]), int(horizon["id"]))))


def _event(store: SQLStore, r: Row) -> Event:
    workflow = r["workflow_id"]
    return Event(
        cursor=FeedCursor(int(r["txid"]), int(r["id"])),
        kind=r["kind"],
        object_id=as_uuid(r["object_id"]),
        workflow_id=None if workflow is None else as_uuid(workflow),
        tenant_id=r["tenant_id"],
        status=r["status"],
        progress=r["progress"],
        at=store._time(r["at"]),  # type: ignore[arg-type]
    )
