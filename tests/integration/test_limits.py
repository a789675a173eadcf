"""Concurrency and rate limits through real in-process workers on both backends: how many
jobs of a scope run at once, how starts spread over sliding windows, that jobs outside any
limit are unaffected, and that workers of two apps on one database share the limits."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg

from jobforge import Forge, Job, JobContext, JobStatus
from jobforge.store.base import ClaimParams
from jobforge.testing import run_until_idle, worker_running
from jobforge.worker.worker import WorkerStats
from tests.e2e.helpers import sql

FAST: dict[str, Any] = {"poll_interval": 0.05}
# A handler starts a little after its claim (thread hand-off). Starts the handlers record
# themselves are checked over windows this much shorter than `per`; the database's own
# start log (what the claim enforces) is checked over the exact window.
HANDLER_SLACK = 0.1


# -- helpers ----------------------------------------------------------------------------------
class Overlap:
    """Counts handlers inside `with overlap.running():` at once, per label, and remembers the
    peak and every start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.starts: dict[str, list[float]] = {}

    @contextmanager
    def running(self, label: str) -> Iterator[None]:
        with self._lock:
            self.now[label] = self.now.get(label, 0) + 1
            self.peak[label] = max(self.peak.get(label, 0), self.now[label])
            self.starts.setdefault(label, []).append(time.time())
        try:
            yield
        finally:
            with self._lock:
                self.now[label] -= 1


def max_in_window(times: list[float], window: float) -> int:
    """The most of `times` inside any half-open interval [t, t + window)."""
    ts = sorted(times)
    best = j = 0
    for i in range(len(ts)):
        while ts[i] - ts[j] >= window:
            j += 1
        best = max(best, i - j + 1)
    return best


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t comes before a start at t)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = now = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def ts(value: datetime | float | None) -> float:
    assert value is not None
    return value if isinstance(value, float) else value.timestamp()


def db_intervals(jobs: list[Job]) -> list[tuple[float, float]]:
    return [(ts(j.started_at), ts(j.completed_at)) for j in jobs]


def logged_starts(url: str, scope: str) -> list[float]:
    """The start log the claims count, read straight from the database."""
    rows = sql(url, f"SELECT started_at FROM jobforge_limit_starts WHERE scope = '{scope}'")
    return [ts(r[0]) for r in rows]


def of_type(app: Forge, type_name: str) -> list[Job]:
    return app.list_jobs(type=type_name, limit=1000)


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def run_burst_workers(apps: list[Forge], **config: Any) -> list[WorkerStats]:
    """One burst worker per app, each on its own thread and event loop, all at once."""
    results: list[WorkerStats | BaseException | None] = [None] * len(apps)

    def target(i: int) -> None:
        try:
            results[i] = run_until_idle(apps[i], **config)
        except BaseException as exc:  # surfaced in the test's thread
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(apps))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a burst worker did not finish"
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [r for r in results if isinstance(r, WorkerStats)]


# -- concurrency ------------------------------------------------------------------------------
def test_type_limit_caps_jobs_running_at_once(app: Forge) -> None:
    app.limit(type="capped", max_running=2)
    overlap = Overlap()

    @app.job
    def capped(ctx: JobContext, i: int) -> int:
        with overlap.running("capped"):
            time.sleep(0.1)
        return i

    for i in range(12):
        capped.enqueue(i=i)
    stats = run_until_idle(app, concurrency=8, **FAST)

    assert stats.finished == {"succeeded": 12}, "the burst worker left limited jobs behind"
    assert overlap.peak["capped"] == 2, "at most 2 may run, and 2 should run side by side"
    jobs = of_type(app, "capped")
    assert sorted(j.result for j in jobs) == list(range(12))
    # The database's own running intervals never overlap more than the limit either.
    assert max_overlap(db_intervals(jobs)) <= 2


def test_queue_concurrency_limit_covers_every_type_in_the_queue(app: Forge) -> None:
    app.limit(queue="narrow", max_running=3)
    overlap = Overlap()

    @app.job(queue="narrow")
    def first(ctx: JobContext) -> None:
        with overlap.running(ctx.job.queue):
            time.sleep(0.1)

    @app.job(queue="narrow")
    def second(ctx: JobContext) -> None:
        with overlap.running(ctx.job.queue):
            time.sleep(0.1)

    for _ in range(6):
        first.enqueue()
        second.enqueue()
        # The same type sent to another queue is not under the queue's limit.
        app.enqueue("first", {}, queue="wide")
    stats = run_until_idle(app, concurrency=10, **FAST)

    assert stats.finished == {"succeeded": 18}
    assert overlap.peak["narrow"] == 3
    assert overlap.peak["wide"] >= 4, "jobs in another queue were held back too"
    narrow = [j for j in app.list_jobs(limit=100) if j.queue == "narrow"]
    wide = [j for j in app.list_jobs(limit=100) if j.queue == "wide"]
    assert len(narrow) == 12 and len(wide) == 6
    assert max_overlap(db_intervals(narrow)) <= 3
    assert max_overlap(db_intervals(wide)) >= 4, "jobs in another queue were held back too"


# -- rate -------------------------------------------------------------------------------------
def test_queue_rate_limit_spreads_starts_over_sliding_windows(app: Forge, db_url: str) -> None:
    app.limit(queue="emails", max_started=5, per=1.0)
    overlap = Overlap()

    @app.job(queue="emails")
    def send(ctx: JobContext, i: int) -> int:
        with overlap.running("emails"):
            time.sleep(0.01)
        return i

    for i in range(12):
        send.enqueue(i=i)
    began = time.monotonic()
    stats = run_until_idle(app, concurrency=8, **FAST)
    took = time.monotonic() - began

    assert stats.finished == {"succeeded": 12}, "the burst worker left limited jobs behind"
    assert sorted(j.result for j in of_type(app, "send")) == list(range(12))
    starts = overlap.starts["emails"]
    assert len(starts) == 12
    assert max_in_window(logged_starts(db_url, "queue:emails"), 1.0) <= 5
    assert len(logged_starts(db_url, "queue:emails")) == 12
    assert max_in_window(starts, 1.0 - HANDLER_SLACK) <= 5
    db_starts = [ts(j.started_at) for j in of_type(app, "send")]
    assert max_in_window(db_starts, 1.0 - HANDLER_SLACK) <= 5
    # Three windows are needed (5 + 5 + 2), and the worker uses each as soon as it opens.
    spread = max(starts) - min(starts)
    assert 2.0 - HANDLER_SLACK <= spread < 3.0, spread
    assert took < 4.0


def test_rate_limited_jobs_start_when_the_window_opens_not_at_the_next_poll(app: Forge) -> None:
    """A claim that took some jobs while the limit held the rest back must look again when
    the window allows, even with the default 2 s poll interval and long-running handlers."""
    app.limit(type="slow_call", max_started=3, per=0.5)
    overlap = Overlap()

    @app.job
    def slow_call(ctx: JobContext) -> None:
        with overlap.running("slow"):
            time.sleep(1.5)

    for _ in range(6):
        slow_call.enqueue()
    stats = run_until_idle(app, concurrency=10, poll_interval=2.0)

    assert stats.finished == {"succeeded": 6}
    starts = sorted(overlap.starts["slow"])
    assert max_in_window(starts, 0.5 - HANDLER_SLACK) <= 3
    second_batch = starts[3] - starts[0]
    assert 0.5 - HANDLER_SLACK <= second_batch < 1.0, (
        f"the held-back jobs started {second_batch:.2f}s after the first, not ~0.5s"
    )


def test_both_caps_on_one_type(app: Forge, db_url: str) -> None:
    app.limit(type="both", max_running=2, max_started=4, per=1.0)
    overlap = Overlap()

    @app.job
    def both(ctx: JobContext) -> None:
        with overlap.running("both"):
            time.sleep(0.05)

    for _ in range(9):
        both.enqueue()
    stats = run_until_idle(app, concurrency=8, **FAST)

    assert stats.finished == {"succeeded": 9}
    assert overlap.peak["both"] <= 2
    assert max_overlap(db_intervals(of_type(app, "both"))) <= 2
    assert max_in_window(logged_starts(db_url, "type:both"), 1.0) <= 4
    assert max_in_window(overlap.starts["both"], 1.0 - HANDLER_SLACK) <= 4
    assert max(overlap.starts["both"]) - min(overlap.starts["both"]) >= 2.0 - HANDLER_SLACK


# -- jobs outside the limits ------------------------------------------------------------------
def test_unlimited_jobs_run_at_full_concurrency_beside_limited_ones(app: Forge) -> None:
    app.limit(type="capped", max_running=1)
    app.limit(queue="metered", max_started=1, per=60)
    overlap = Overlap()
    free_slots = 8 - 1  # one slot is taken by the capped job
    together = threading.Barrier(free_slots, timeout=10)

    @app.job
    def capped(ctx: JobContext) -> None:
        with overlap.running("capped"):
            time.sleep(0.3)

    @app.job(queue="metered", retries=0)
    def metered(ctx: JobContext) -> None:
        with overlap.running("metered"):
            pass

    @app.job(retries=0)
    def free(ctx: JobContext, i: int) -> int:
        with overlap.running("free"):
            together.wait()  # passes only once all of them run at the same time
        return i

    # Limited jobs come first in run order: the claim must look past them.
    for _ in range(4):
        app.enqueue("capped", {}, priority=10)
    first_metered = app.enqueue("metered", {}, priority=10)
    app.enqueue("metered", {}, priority=10)  # held back for a minute: must not stop the rest
    for i in range(free_slots):
        free.enqueue(i=i)

    def stop_when_done() -> bool:
        done = [j for j in app.list_jobs(limit=100) if j.status == JobStatus.SUCCEEDED]
        return len(done) == 4 + 1 + free_slots

    with worker_running(app, concurrency=8, **FAST):
        wait_until(stop_when_done, 15, "every job but the second metered one")

    free_jobs = of_type(app, "free")
    assert all(j.status == JobStatus.SUCCEEDED for j in free_jobs), [
        (j.status, j.errors) for j in free_jobs
    ]
    assert overlap.peak["free"] == free_slots
    assert overlap.peak["capped"] == 1
    assert len(overlap.starts["metered"]) == 1
    statuses = {j.job_id: j.status for j in of_type(app, "metered")}
    assert statuses.pop(first_metered) == JobStatus.SUCCEEDED
    assert list(statuses.values()) == [JobStatus.QUEUED], "the rate limit let a second through"


# -- several workers --------------------------------------------------------------------------
def two_apps(db_url: str, overlap: Overlap, **limit: Any) -> list[Forge]:
    """Two apps on one database, as two deployments of the same code would be."""
    apps = []
    for _ in range(2):
        forge = Forge(db_url)
        forge.limit(type="shared", **limit)

        @forge.job(name="shared")
        def shared(ctx: JobContext) -> None:
            with overlap.running("shared"):
                time.sleep(0.1)

        apps.append(forge)
    return apps


def test_concurrency_limit_holds_across_workers_of_two_apps(db_url: str) -> None:
    overlap = Overlap()
    apps = two_apps(db_url, overlap, max_running=5)
    try:
        for _ in range(30):
            apps[0].enqueue("shared")
        # Without prefetch each worker holds at most 4, so together they could run 8: the
        # limit of 5 only holds if each worker counts the other's jobs. Both get some.
        stats = run_burst_workers(apps, concurrency=4, prefetch=0, **FAST)
        assert sum(s.finished.get("succeeded", 0) for s in stats) == 30
        assert all(s.claimed > 0 for s in stats), [s.claimed for s in stats]
        assert overlap.peak["shared"] <= 5
        assert max_overlap(db_intervals(of_type(apps[0], "shared"))) <= 5
    finally:
        for forge in apps:
            forge.close()


def test_rate_limit_holds_across_workers_of_two_apps(db_url: str) -> None:
    overlap = Overlap()
    apps = two_apps(db_url, overlap, max_started=6, per=0.5)
    try:
        for _ in range(18):
            apps[0].enqueue("shared")
        stats = run_burst_workers(apps, concurrency=4, prefetch=0, **FAST)
        assert sum(s.finished.get("succeeded", 0) for s in stats) == 18
        assert max_in_window(logged_starts(db_url, "type:shared"), 0.5) <= 6
        starts = overlap.starts["shared"]
        assert len(starts) == 18
        assert max_in_window(starts, 0.5 - HANDLER_SLACK) <= 6
        assert max(starts) - min(starts) >= 1.0 - HANDLER_SLACK
    finally:
        for forge in apps:
            forge.close()


# -- the start is logged when the claim happens -----------------------------------------------
@contextmanager
def scope_locked(db_url: str, scope: str) -> Iterator[None]:
    """Hold what a claim of `scope` must wait for: the scope's advisory lock on PostgreSQL,
    the write lock on SQLite."""
    if db_url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(db_url[len("sqlite:///") :], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with psycopg.connect(db_url) as pg:
        pg.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 42))", ("limit:" + scope,))
        yield
        pg.rollback()


def test_a_claim_that_waited_for_the_scope_lock_logs_its_start_when_it_claimed(
    app: Forge, db_url: str
) -> None:
    """max_started=1 per 1 s: two claims' jobs must start at least 1 s apart, even when the
    first claim had to wait for another worker's lock on the scope."""
    lim = app.limit(type="ping", max_started=1, per=1.0)

    @app.job
    def ping(ctx: JobContext) -> None: ...

    ping.enqueue()
    ping.enqueue()
    params = ClaimParams(f"test:{uuid.uuid4().hex[:6]}", ["ping"], None, 5, 30.0, [lim])
    first: list[Job] = []
    claimer = threading.Thread(target=lambda: first.extend(app.store.claim_jobs(params)))
    with scope_locked(db_url, lim.scope):
        claimer.start()
        claimer.join(0.6)
        assert claimer.is_alive(), "the claim did not wait for the scope's lock"
    claimer.join(10)
    assert len(first) == 1 and first[0].started_at is not None

    second: list[Job] = []

    def claimed_again() -> bool:
        second.extend(app.store.claim_jobs(params))
        return bool(second)

    wait_until(claimed_again, 5, "the second job to be claimed")
    assert second[0].started_at is not None
    gap = ts(second[0].started_at) - ts(first[0].started_at)
    assert gap >= 1.0 - 0.01, (
        f"max_started=1 per 1s, yet two jobs started {gap:.3f}s apart: the first claim's "
        "start was logged at the time it began waiting for the lock"
    )
