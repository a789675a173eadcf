"""The worker: claim in batches, run with bounded concurrency, record outcomes in batches."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from jobforge.context import JobContext
from jobforge.jobs import Job, JobStatus, utcnow
from jobforge.store import retention
from jobforge.store.base import ClaimParams, Outcome, ProgressUpdate, WorkerInfo
from jobforge.tasks import JobDefinition
from jobforge.worker.batch import Backlog, Item, SyncBatch
from jobforge.worker.executor import execute
from jobforge.worker.scheduler import Scheduler

if TYPE_CHECKING:
    from jobforge.app import Forge

LIMIT_POLL = 0.05  # seconds between claims while limits hold due jobs back
log = logging.getLogger("jobforge.worker")
T = TypeVar("T")


@dataclass
class WorkerConfig:
    """Tuning knobs; the defaults rescue a dead worker's jobs within about 35 s."""

    queues: list[str] | None = None
    concurrency: int = 4
    burst: bool = False
    # Jobs claimed ahead of free slots. None adapts it: enough to cover PREFETCH_HORIZON of
    # work at the measured job duration, at most MAX_PREFETCH (fast jobs get big batches,
    # slow ones are not hoarded away from other workers).
    prefetch: int | None = None
    lease_seconds: float = 30.0
    heartbeat_interval: float | None = None  # default: lease / 3
    rescue_interval: float = 5.0
    schedule_interval: float = 1.0  # how often due cron ticks are looked for
    prune_interval: float = 60.0  # how often finished jobs past the app's retention go
    poll_interval: float = 2.0  # fallback only: listeners wake the worker first
    grace_period: float = 30.0


MAX_PREFETCH = 64
PREFETCH_HORIZON = 0.05  # seconds of work to hold claimed ahead
MAX_BATCH = 16  # sync jobs one slot runs in one thread hop
BATCH_BUDGET = 0.002  # seconds of handler time per batch: longer handlers go one at a time
# A job in a batch running this long holds up the rest: they go back to the other slots.
# Well above the budget, so that a thread waiting for the GIL (5 ms slices) does not count.
BATCH_PATIENCE = 0.01


class Running(NamedTuple):
    """A job in a slot: what finishes when it ends, and how to drop it (lease lost)."""

    done: asyncio.Future[Any]
    abort: Callable[[], object]


@dataclass
class WorkerStats:
    claimed: int = 0
    finished: dict[str, int] = field(default_factory=dict)
    lost: int = 0  # outcomes refused because the lease had moved on


class Worker:
    """Runs jobs of `app`'s registered types until stopped (or idle, in burst mode)."""

    def __init__(self, app: Forge, config: WorkerConfig | None = None) -> None:
        app.validate()  # an invalid registry refuses to start, before any claim
        self.app = app
        self.config = config or WorkerConfig()
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stats = WorkerStats()
        self._types = sorted({*app.registry, *app.builtins})
        self._stop = asyncio.Event()
        self._poke = asyncio.Event()
        self._backlog = Backlog()
        self._running: dict[uuid.UUID, Running] = {}
        self._contexts: dict[uuid.UUID, JobContext] = {}
        self._claimed: dict[uuid.UUID, Job] = {}
        self._outcomes: list[Outcome] = []
        self._progress: list[ProgressUpdate] = []
        self._flush_needed = asyncio.Event()
        self._claim_lock = asyncio.Lock()  # claims from the fetch loop and the flusher
        self._avg_run: float | None = None  # moving average of a slot's time per job, seconds
        self._sync_cost: dict[str, float] = {}  # the same per sync type, in the handler alone
        self._retry_horizon = 0.0  # burst mode waits for retries it scheduled itself
        self._db = ThreadPoolExecutor(2, thread_name_prefix="jobforge-db")
        self._pool = ThreadPoolExecutor(
            self.config.concurrency + 32, thread_name_prefix="jobforge-job"
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduler = Scheduler(app)

    # -- control -----------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop claiming; running jobs get the grace period to finish."""
        self._stop.set()
        self._poke.set()

    def wake(self) -> None:
        """Thread-safe: jobs may be runnable now."""
        loop = self._loop
        if loop is not None:
            # A listener thread may still deliver a wake-up after run() returned and its
            # event loop closed: nothing is left to wake then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._poke.set)

    async def _db_call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, fn, *args)

    # -- main --------------------------------------------------------------------------
    async def run(self) -> WorkerStats:
        self._loop = asyncio.get_running_loop()
        store = self.app.store
        cfg = self.config
        await self._db_call(
            store.register_worker,
            WorkerInfo(self.id, socket.gethostname(), os.getpid(), cfg.queues, cfg.concurrency),
        )
        await self._db_call(self._scheduler.start)
        listener = store.listener()
        listener.start(self.wake)
        self.app.on_enqueue.append(self.wake)
        log.info(
            "worker %s started: types=%s queues=%s concurrency=%d",
            self.id, ",".join(self._types), ",".join(cfg.queues or ["*"]), cfg.concurrency,
        )  # fmt: skip
        runners = [asyncio.create_task(self._runner()) for _ in range(cfg.concurrency)]
        side = [
            asyncio.create_task(self._flusher(), name="flusher"),
            asyncio.create_task(self._every(self._heartbeat_interval(), self._heartbeat)),
            asyncio.create_task(self._every(cfg.rescue_interval, self._rescue)),
            asyncio.create_task(self._every(cfg.schedule_interval, self._fire_schedules)),
            asyncio.create_task(self._every(cfg.prune_interval, self._prune)),
        ]
        try:
            await self._monitored(self._fetch_loop(), side)
        finally:
            await self._shutdown(runners, side)
            listener.stop()
            self.app.on_enqueue.remove(self.wake)
            await self._db_call(store.unregister_worker, self.id)
            self._db.shutdown(wait=True)
            self._pool.shutdown(wait=False, cancel_futures=True)
            log.info("worker %s stopped: %s", self.id, self.stats)
        return self.stats

    async def _monitored(self, main: Awaitable[None], side: list[asyncio.Task[None]]) -> None:
        """Run the fetch loop; if a side task dies, stop the worker with its error."""
        main_task = asyncio.ensure_future(main)
        done, _ = await asyncio.wait([main_task, *side], return_when=asyncio.FIRST_COMPLETED)
        if main_task not in done:
            self.request_stop()
            await main_task
            for task in done:
                task.result()  # re-raise the side task's failure

    def _heartbeat_interval(self) -> float:
        return self.config.heartbeat_interval or self.config.lease_seconds / 3

    # -- fetching ----------------------------------------------------------------------
    async def _fetch_loop(self) -> None:
        cfg = self.config
        failures = 0
        while not self._stop.is_set():
            if self._capacity() - len(self._claimed) <= 0:
                self._poke.clear()
                if self._capacity() - len(self._claimed) <= 0:
                    await self._poke.wait()
                continue
            async with self._claim_lock:
                free = self._capacity() - len(self._claimed)
                # Clear before claiming: a wake-up landing during the claim is kept, not lost.
                self._poke.clear()
                asked = time.time()
                try:
                    jobs = await self._db_call(self.app.store.claim_jobs, self._claim_params(free))
                    failures = 0
                except Exception as exc:
                    failures += 1
                    log.warning("claim failed (%s); retrying", exc)
                    jobs = None
                if jobs is not None:
                    self._take(jobs)
            if jobs is None:
                # Back off, but a notification (the database is back) cuts the wait short.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poke.wait(), min(5.0, 0.2 * 2**failures))
                continue
            if len(jobs) == free:
                continue
            if not jobs and cfg.burst and await self._idle(asked):
                return
            await self._wait_for_work(bool(jobs))

    def _capacity(self) -> int:
        """How many jobs this worker holds at most: its slots plus the prefetch."""
        cfg = self.config
        if cfg.prefetch is not None:
            return cfg.concurrency + cfg.prefetch
        if self._avg_run is None:
            return 2 * cfg.concurrency
        ahead = int(cfg.concurrency * PREFETCH_HORIZON / max(self._avg_run, 1e-5))
        return cfg.concurrency + min(MAX_PREFETCH, ahead)

    def _take(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._claimed[job.id] = job
            self._backlog.put_nowait(job)
        self.stats.claimed += len(jobs)

    def _claim_params(self, limit: int) -> ClaimParams:
        cfg = self.config
        return ClaimParams(
            self.id, self._types, cfg.queues, limit, cfg.lease_seconds, self.app.limits
        )

    async def _idle(self, asked: float) -> bool:
        """Burst mode: nothing runnable, nothing in flight, no retry of ours coming up.

        `asked` is when the empty claim was sent: a retry that came due after it may not
        have been claimable then, so it still counts as coming up.
        """
        if self._claimed or self._outcomes or asked < self._retry_horizon:
            return False
        if self.app.limits:  # due jobs a limit holds back are still work to wait for
            due = await self._db_call(self.app.store.next_due_at, self._types, self.config.queues)
            return due is None or due > utcnow()
        return True

    async def _wait_for_work(self, got_some: bool) -> None:
        timeout = self.config.poll_interval
        # With limits, a claim that took some jobs may have held others back: look again.
        if not got_some or self.app.limits:
            try:
                due = await self._db_call(
                    self.app.store.next_due_at, self._types, self.config.queues
                )
            except Exception as exc:  # the next claim reports and backs off
                log.warning("reading the next due time failed (%s)", exc)
                due = None
            if due is not None:
                wait = (due - utcnow()).total_seconds()
                if wait <= 0 and self.app.limits:
                    wait = LIMIT_POLL  # due jobs held back by a limit: look again soon
                timeout = max(0.0, min(timeout, wait))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._poke.wait(), timeout)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    # -- running -----------------------------------------------------------------------
    async def _runner(self) -> None:
        """One slot: async handlers one at a time, sync ones in batches."""
        while True:
            job = await self._backlog.get()
            definition = self.app.definition(job.type)
            assert definition is not None  # only registered types are claimed
            if definition.is_async:
                await self._run_async(definition, job)
            else:
                await self._run_batch(self._gather_sync(definition, job))

    async def _run_async(self, definition: JobDefinition[Any, Any], job: Job) -> None:
        task = asyncio.create_task(execute(definition, self._context(job)))
        self._running[job.id] = Running(task, task.cancel)
        began = time.perf_counter()
        try:
            outcome = await task
        except asyncio.CancelledError:
            if task.cancelled() and not self._stop.is_set():
                self._claimed.pop(job.id, None)  # lost its lease; nothing to record
                self._poke.set()
                return
            raise
        finally:
            self._running.pop(job.id, None)
            self._contexts.pop(job.id, None)
        self._note_run_time(time.perf_counter() - began)
        self._record(outcome)

    def _gather_sync(self, definition: JobDefinition[Any, Any], first: Job) -> list[Item]:
        """`first` and the sync jobs queued behind it, up to BATCH_BUDGET of handler time.

        Short handlers gain more from sharing a hop than from spreading over the slots
        (they hold the GIL); longer ones, and types not yet timed, go one at a time and so
        keep running in parallel.
        """
        items = [(definition, self._context(first))]
        spent = self._sync_cost.get(first.type, BATCH_BUDGET)
        while len(items) < MAX_BATCH and not self._backlog.empty():
            job = self._backlog.peek()
            nxt = self.app.definition(job.type)
            assert nxt is not None
            cost = self._sync_cost.get(job.type, BATCH_BUDGET)
            if nxt.is_async or spent + cost > BATCH_BUDGET:
                break  # the next free slot takes it
            items.append((nxt, self._context(self._backlog.get_nowait())))
            spent += cost
        return items

    async def _run_batch(self, items: list[Item]) -> None:
        # is_set only reads a flag: safe from the thread.
        batch = SyncBatch(items, self._stop.is_set, BATCH_PATIENCE)
        for _, ctx in items:
            self._running[ctx.job.id] = Running(
                batch.done, functools.partial(batch.drop, ctx.job.id)
            )
        began = time.perf_counter()
        try:
            await batch.run(self._pool, self._hand_back)
        finally:
            self._forget([ctx.job for _, ctx in items if ctx.job.id not in batch.handed_back])
            self._settle(batch)
        if batch.timings:
            self._note_run_time((time.perf_counter() - began) / len(batch.timings))
        # Handler time alone, per type: the hops a batch saves must not count against it.
        for type_name, took in batch.timings:
            self._sync_cost[type_name] = _ewma(self._sync_cost.get(type_name), took)

    def _settle(self, batch: SyncBatch) -> None:
        """Record what finished, forget what was lost, requeue what never started."""
        for _, ctx in batch.items:
            outcome = batch.outcomes.get(ctx.job.id)
            if outcome is not None:
                self._record(outcome)
            elif ctx.job.id in batch.lost:
                self._claimed.pop(ctx.job.id, None)  # lost its lease; nothing to record
                self._poke.set()
        self._hand_back([j for j in batch.unstarted() if j.id not in batch.lost])

    def _hand_back(self, jobs: list[Job]) -> None:
        """Jobs a batch will not start: the next free slots take them."""
        self._forget(jobs)
        if not self._stop.is_set():  # when stopping, they stay claimed and are released
            self._backlog.put_back(jobs)

    def _forget(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._running.pop(job.id, None)
            self._contexts.pop(job.id, None)

    def _context(self, job: Job) -> JobContext:
        ctx = JobContext(job, self._add_progress, cancel_requested=job.cancel_requested)
        self._contexts[job.id] = ctx
        return ctx

    def _note_run_time(self, took: float) -> None:
        """Moving average of the time a slot spends per job; sizes the prefetch."""
        self._avg_run = _ewma(self._avg_run, took)

    def _record(self, outcome: Outcome) -> None:
        # A run waiting for an event is someone else's to wake: burst mode does not wait.
        if outcome.status == JobStatus.SCHEDULED and outcome.wait_event is None:
            due = outcome.scheduled_at.timestamp() if outcome.scheduled_at else 0.0
            self._retry_horizon = max(self._retry_horizon, due)
        self._outcomes.append(outcome)
        self._flush_needed.set()

    def _add_progress(self, update: ProgressUpdate) -> None:
        """Called from handler threads as well as the loop."""
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._queue_progress, update)

    def _queue_progress(self, update: ProgressUpdate) -> None:
        self._progress.append(update)
        self._flush_needed.set()

    # -- recording ---------------------------------------------------------------------
    async def _flusher(self) -> None:
        """Write outcomes in batches: whatever piled up during one write goes in the next."""
        while True:
            await self._flush_needed.wait()
            self._flush_needed.clear()
            await self._flush()

    async def _flush(self) -> None:
        """Record outcomes and, in the same transaction, claim jobs for the freed slots."""
        async with self._claim_lock:
            outcomes, self._outcomes = self._outcomes, []
            progress, self._progress = self._progress, []
            if not outcomes and not progress:
                return
            free = self._capacity() - len(self._claimed) + len(outcomes)
            claim = None if self._stop.is_set() or free <= 0 else self._claim_params(free)
            try:
                applied_ids, claimed = await asyncio.shield(
                    self._db_call(self.app.store.finish_and_claim, outcomes, progress, claim)
                )
            except Exception as exc:
                log.warning("recording %d outcomes failed (%s); will retry", len(outcomes), exc)
                self._outcomes[:0] = outcomes
                await asyncio.sleep(0.5)
                self._flush_needed.set()
                return
            for o in outcomes:
                self._claimed.pop(o.id, None)
            self._take(claimed)
        self._count(outcomes, set(applied_ids))
        if not claimed:
            self._poke.set()  # nothing more was runnable: let the fetch loop decide

    def _count(self, outcomes: list[Outcome], applied: set[uuid.UUID]) -> None:
        for o in outcomes:
            if o.id in applied:
                self.stats.finished[o.status.value] = self.stats.finished.get(o.status.value, 0) + 1
            else:
                self.stats.lost += 1
                log.warning("job %s outcome dropped: its lease was lost", o.id)

    # -- side services -----------------------------------------------------------------
    async def _every(self, interval: float, action: Callable[[], Awaitable[None]]) -> None:
        while not self._stop.is_set():
            await self._sleep(interval)
            if self._stop.is_set():
                return
            try:
                await action()
            except Exception as exc:
                log.warning("%s failed: %s", action.__name__, exc)

    async def _heartbeat(self) -> None:
        # Only jobs claimed before the heartbeat's snapshot can be judged by it: a claim that
        # commits while the heartbeat runs is missing from `held` but is ours.
        before = set(self._claimed)
        held = await self._db_call(self.app.store.heartbeat, self.id, self.config.lease_seconds)
        for job_id, running in list(self._running.items()):
            if job_id not in held:
                if job_id in before:
                    log.warning("job %s was taken from this worker (cancelled or rescued)", job_id)
                    running.abort()
            elif held[job_id] and job_id in self._contexts:
                self._contexts[job_id].cancel_requested = True

    async def _rescue(self) -> None:
        """Maintenance: rescue expired leases, fail overdue dependency waits and workflows."""
        if await self._db_call(self.app.store.expire_overdue):
            self._poke.set()
        rescued = await self._db_call(self.app.store.rescue_expired)
        if rescued.requeued or rescued.failed:
            log.warning(
                "rescued jobs from dead workers: %d requeued, %d failed",
                len(rescued.requeued), len(rescued.failed),
            )  # fmt: skip
            self._poke.set()

    # -- shutdown ----------------------------------------------------------------------
    async def _fire_schedules(self) -> None:
        """Maintenance: enqueue due cron ticks (each fires once across all workers)."""
        if await self._db_call(self._scheduler.run_due):
            self._poke.set()

    async def _prune(self) -> None:
        """Maintenance: delete finished jobs and workflows older than the app's retention."""
        keep = self.app.retention
        pruned = await self._db_call(
            retention.prune, self.app.store, None if keep is None else utcnow() - keep
        )
        if pruned.jobs or pruned.workflows:
            log.info("pruned %d jobs and %d workflows", pruned.jobs, pruned.workflows)

    async def _shutdown(
        self, runners: list[asyncio.Task[None]], side: list[asyncio.Task[None]]
    ) -> None:
        """Stop starting jobs, give running ones the grace period, release the rest."""
        while not self._backlog.empty():
            self._backlog.get_nowait()  # never started; released below with the rest
        if self._running:
            log.info(
                "waiting up to %.1fs for %d running jobs",
                self.config.grace_period,
                len(self._running),
            )
            # Wait in short steps, re-reading the grace period: a second signal sets it to 0.
            pending = {r.done for r in self._running.values()}
            begun = time.monotonic()
            while pending and (left := self.config.grace_period - (time.monotonic() - begun)) > 0:
                _, pending = await asyncio.wait(pending, timeout=min(left, 0.1))
            await asyncio.sleep(0)  # let runners record what finished
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        await self._flush()
        # Whatever is still claimed did not finish: unstarted, or still running after grace.
        release = [(j.id, j.lease_token or "") for j in self._claimed.values()]
        if release:
            n = await self._db_call(self.app.store.release_jobs, release)
            log.info("released %d unfinished jobs back to the queue", n)
        for task in side:
            task.cancel()
        await asyncio.gather(*side, return_exceptions=True)


def _ewma(avg: float | None, value: float) -> float:
    return value if avg is None else 0.9 * avg + 0.1 * value
