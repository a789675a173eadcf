"""GET /events: the change feed as Server-Sent Events, resumable with `Last-Event-ID`.

One listener per server process (PostgreSQL LISTEN, or SQLite's data_version) wakes every
open stream; each stream then reads the events after its own cursor, filtered in SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from jobforge.api.auth import Caller, requires
from jobforge.api.common import forge, job_of, run_of, workflow_of
from jobforge.api.errors import ApiError, responses
from jobforge.events import EventFilter, FeedCursor
from jobforge.store import events as stored
from jobforge.store.base import Listener
from jobforge.store.sql import SQLStore

router = APIRouter(tags=["events"])
KEEPALIVE = 15.0  # seconds between comment lines on a quiet stream (proxies drop idle ones)
PAGE = 500


class FeedHub:
    """Turns the store's change notifications into an asyncio wake-up for every stream."""

    def __init__(self, store: SQLStore) -> None:
        self._store = store
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: Listener | None = None
        self.closed = False
        # PostgreSQL may hold back an event while an older transaction is open; no
        # notification follows its end, so streams also look again this often.
        self.recheck = 0.5 if store.supports_listen else KEEPALIVE

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._listener = self._store.feed_listener()
        self._listener.start(self._from_thread)

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()

    def close(self) -> None:
        """End every open stream: the server is shutting down and would otherwise wait for
        them until its graceful timeout."""
        self.closed = True
        self._pulse()

    def _from_thread(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._pulse)

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        """Until the next change, or `seconds` at most."""
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), seconds)


def _kinds(caller: Caller) -> frozenset[str]:
    """What the key may see: job events need jobs:read, the others workflows:read."""
    kinds = {"job"} if caller.allows("jobs:read") else set()
    return frozenset(kinds | ({"workflow", "run"} if caller.allows("workflows:read") else set()))


async def _stream(
    request: Request,
    store: SQLStore,
    hub: FeedHub,
    cursor: FeedCursor,
    where: EventFilter,
    kinds: frozenset[str],
) -> AsyncIterator[str]:
    yield "retry: 1000\n\n"
    spoke = time.monotonic()  # when the client last heard from us
    while not hub.closed and not await request.is_disconnected():
        page = await asyncio.to_thread(stored.read, store, cursor, where, PAGE)
        for event in page.events:
            if event.kind not in kinds:
                continue
            data = json.dumps(event.to_dict(), separators=(",", ":"))
            yield f"id: {event.cursor}\nevent: {event.kind}\ndata: {data}\n\n"
            spoke = time.monotonic()
        cursor = page.cursor
        if len(page.events) == PAGE:
            continue
        # By the clock: a wake-up by someone else's change is not a quiet interval.
        if time.monotonic() - spoke >= KEEPALIVE:
            yield ": keepalive\n\n"
            spoke = time.monotonic()
        await hub.wait(hub.recheck)


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
              "description": "Server-Sent Events: `id` (resume with Last-Event-ID), `event` "
                             "(job, workflow or run), `data` (JSON)"},
        **responses(401, 403, 404, 422),
    },
)  # fmt: skip
async def events(
    request: Request,
    caller: Annotated[Caller, Depends(requires("jobs:read", "workflows:read"))],
    workflow_id: Annotated[str | None, Query(max_length=100)] = None,
    job_id: Annotated[str | None, Query(max_length=100)] = None,
    run_id: Annotated[str | None, Query(max_length=100)] = None,
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
) -> StreamingResponse:
    """Every change of a job, workflow or run (the caller's tenant only), as it commits.

    Without `Last-Event-ID` the stream starts now; with it, right after that event, so a
    client that reconnects misses nothing (events are kept for a day).
    """
    app = forge(request)
    if sum(x is not None for x in (workflow_id, job_id, run_id)) > 1:
        raise ApiError(422, "invalid", "Filter by one of workflow_id, job_id, run_id")
    where = EventFilter(tenant=caller.tenant)
    if job_id is not None:
        job = await asyncio.to_thread(job_of, app, caller, job_id)
        where = EventFilter(caller.tenant, "job", job.id)
    elif run_id is not None:
        run = await asyncio.to_thread(run_of, app, caller, run_id)
        where = EventFilter(caller.tenant, "run", run.id)
    elif workflow_id is not None:
        wf = await asyncio.to_thread(workflow_of, app, caller, workflow_id)
        where = EventFilter(caller.tenant, workflow_id=wf.id)
    if last_event_id:
        cursor = FeedCursor.parse(last_event_id)
    else:
        cursor = await asyncio.to_thread(stored.head, app.store)
    hub: FeedHub = request.app.state.feed
    return StreamingResponse(
        _stream(request, app.store, hub, cursor, where, _kinds(caller)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
