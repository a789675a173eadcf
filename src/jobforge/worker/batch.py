"""Sync handlers run back to back in one pool thread: one hop there and one back per batch.

Handing each sync job to a thread and its outcome back to the event loop costs two wake-ups
and GIL hand-offs per job, which the handler threads, the loop and the database thread
fight over. A batch of claimed jobs pays them once. The loop still enforces every job's
timeout and drops a job whose lease was lost; the thread checks between jobs whether to go
on. A job that overruns its timeout, or is lost while it runs, is abandoned (a thread cannot
be killed): the thread starts nothing more, and the jobs it never started go back to the
worker. A job that runs past `patience` (far longer than the batch was sized for) keeps its
thread, but the jobs waiting behind it go back to the worker for the other slots.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from jobforge.context import JobContext
from jobforge.jobs import Job
from jobforge.store.base import Outcome
from jobforge.tasks import JobDefinition
from jobforge.worker.executor import run_sync, timed_out

Item = tuple[JobDefinition[Any, Any], JobContext]


class Backlog(asyncio.Queue[Job]):
    """Claimed jobs waiting for a slot, in run order. `peek` lets a batch stop before a job
    that does not fit rather than take it out and put it back behind the others."""

    def _init(self, maxsize: int) -> None:
        self._jobs: deque[Job] = deque()

    def _put(self, item: Job) -> None:
        self._jobs.append(item)

    def _get(self) -> Job:
        return self._jobs.popleft()

    def qsize(self) -> int:
        return len(self._jobs)

    def empty(self) -> bool:
        return not self._jobs

    def peek(self) -> Job:
        """The next job, left in place."""
        return self._jobs[0]

    def put_back(self, jobs: list[Job]) -> None:
        """Return jobs a batch never started to the front, in their order: they were next."""
        for job in jobs:
            self.put_nowait(job)  # wakes a waiting slot
        self._jobs.rotate(len(jobs))


@dataclass(eq=False)
class SyncBatch:
    """Sync jobs for one worker slot; `run()` it on the loop, then read what became of each."""

    items: list[Item]
    stopping: Callable[[], bool]  # read from the thread: once true, start nothing more
    patience: float  # seconds a job may run before the jobs behind it are handed back
    outcomes: dict[uuid.UUID, Outcome] = field(default_factory=dict)
    lost: set[uuid.UUID] = field(default_factory=set)  # dropped: their lease moved on
    # Resolved when the thread is done with the batch, or the loop abandons it.
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    # (type, seconds) of every job started: an abandoned one counts until it was abandoned.
    timings: list[tuple[str, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _current: int = -1  # index of the running job, -1 between jobs
    _started: float = 0.0  # its start, time.monotonic()
    _next: int = 0  # index of the first job the thread has not taken
    _end: int = -1  # the thread takes no job from this index on (set in __post_init__)
    _closed: bool = False  # set by the loop: the thread starts nothing more
    handed_back: set[uuid.UUID] = field(default_factory=set)  # see `run`'s hand_back

    def __post_init__(self) -> None:
        self._end = len(self.items)

    def unstarted(self) -> list[Job]:
        """Jobs the thread never took nor handed back (read after `run()`: it is closed)."""
        return [ctx.job for _, ctx in self.items[self._next : self._end]]

    async def run(self, pool: Executor, hand_back: Callable[[list[Job]], None]) -> None:
        """Run the jobs in `pool` until all ran, one is abandoned, or the worker stops.

        Jobs held up behind one that runs past `patience` go to `hand_back` at once.
        """
        future = asyncio.get_running_loop().run_in_executor(pool, self._run)
        future.add_done_callback(self._thread_done)
        try:
            while not self.done.done():
                await asyncio.wait([self.done], timeout=self._next_check())
                self._expire()
                if late := self._shed():
                    hand_back(late)
        finally:
            with self._lock:
                self._closed = True
        if future.done():
            future.result()  # a bug in `_run` itself surfaces here

    def drop(self, job_id: uuid.UUID) -> None:
        """The job's lease is lost: skip it, or abandon the batch if it is running."""
        with self._lock:
            self.lost.add(job_id)
            if self._current >= 0 and self.items[self._current][1].job.id == job_id:
                self._abandon()

    # -- in the pool thread ----------------------------------------------------------------
    def _run(self) -> None:
        for i, (definition, ctx) in enumerate(self.items):
            with self._lock:
                if self._closed or self.stopping() or i >= self._end:
                    return
                self._next = i + 1
                if ctx.job.id in self.lost:
                    continue
                self._current, self._started = i, time.monotonic()
            outcome = run_sync(definition, ctx)
            with self._lock:
                if self._closed:
                    return  # abandoned while it ran: the loop has settled this job
                self.outcomes[ctx.job.id] = outcome
                self._timed()

    def _timed(self) -> None:
        """The running job is over or abandoned: note how long it ran (under the lock)."""
        job = self.items[self._current][1].job
        self.timings.append((job.type, time.monotonic() - self._started))
        self._current = -1

    # -- on the loop -----------------------------------------------------------------------
    def _resolve(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def _thread_done(self, future: asyncio.Future[None]) -> None:
        self._resolve()
        if not future.cancelled():
            future.exception()  # an abandoned thread's failure is seen, not logged as lost

    def _abandon(self) -> None:
        self._closed = True
        if self._current >= 0:
            self._timed()
        self._resolve()

    def _next_check(self) -> float | None:
        """Seconds until a job could overrun its timeout; None if none has one."""
        with self._lock:
            later = (c.job.timeout for _, c in self.items[self._next : self._end])
            waits = [t for t in later if t is not None]
            limit = self.items[self._current][1].job.timeout if self._current >= 0 else None
            if limit is not None:
                waits.append(self._started + limit - time.monotonic())
            # Jobs wait behind the running one (or behind the first, not started yet).
            if self._current >= 0 and self._next < self._end:
                waits.append(self._started + self.patience - time.monotonic())
            elif self._next + 1 < self._end:
                waits.append(self.patience)
        return max(0.0, min(waits)) if waits else None

    def _expire(self) -> None:
        """Fail the running job if it overran its timeout, and abandon the batch."""
        with self._lock:
            if self._current < 0:
                return
            job = self.items[self._current][1].job
            if job.timeout is not None and time.monotonic() - self._started >= job.timeout:
                self.outcomes[job.id] = timed_out(job)
                self._abandon()

    def _shed(self) -> list[Job]:
        """If the running job has run past `patience`, take back the jobs behind it."""
        with self._lock:
            if self._current < 0 or self._next >= self._end:
                return []
            if time.monotonic() - self._started < self.patience:
                return []
            behind = [ctx.job for _, ctx in self.items[self._next : self._end]]
            self._end = self._next
        # A lost job stays with the batch: the worker forgets it when the batch ends.
        late = [job for job in behind if job.id not in self.lost]
        self.handed_back.update(job.id for job in late)
        return late
