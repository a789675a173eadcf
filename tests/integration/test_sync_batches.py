"""Short sync handlers run in batches, one thread hop per batch; the per-job rules still hold."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobforge import Forge, Job, JobContext, JobStatus, Worker, WorkerConfig
from jobforge.testing import run_until_idle
from jobforge.worker import worker as worker_module
from jobforge.worker.batch import SyncBatch

FAST: dict[str, Any] = {"poll_interval": 0.05}


@pytest.fixture(autouse=True)
def roomy_budget(monkeypatch: Any) -> None:
    """Batches hold sync jobs whose measured cost fits a 2 ms budget; on a loaded machine a
    no-op can measure more, and these tests would see batches of one. They check the rules
    inside a batch, so the budget is made roomy here."""
    monkeypatch.setattr(worker_module, "BATCH_BUDGET", 0.25)


def get(app: Forge, job_id: str) -> Job:
    job = app.get_job(job_id)
    assert job is not None, f"{job_id} does not exist"
    return job


class BatchSpy:
    """Records the jobs of every batch a worker starts, in order."""

    def __init__(self, monkeypatch: Any) -> None:
        self.batches: list[list[int]] = []
        original = SyncBatch.run

        async def run(batch: SyncBatch, *args: Any) -> None:
            self.batches.append([ctx.job.payload["n"] for _, ctx in batch.items])
            await original(batch, *args)

        monkeypatch.setattr(SyncBatch, "run", run)


def run_worker(app: Forge, done: list[str], **config: Any) -> None:
    """A worker (one slot unless told) until every job of `done` is terminal."""
    settings = {"concurrency": 1, "prefetch": 8, "grace_period": 2.0, **config}

    async def main() -> None:
        worker = Worker(app, WorkerConfig(**settings))
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 15
        try:
            while not all(get(app, j).status.is_terminal for j in done):
                assert not task.done(), "worker stopped by itself"
                assert time.monotonic() < deadline, "jobs did not finish in time"
                await asyncio.sleep(0.02)
        finally:
            worker.request_stop()
        await task

    asyncio.run(main())


def test_short_sync_jobs_run_in_batches_and_all_succeed(app: Forge, monkeypatch: Any) -> None:
    spy = BatchSpy(monkeypatch)
    ran: list[int] = []

    @app.job
    def tick(ctx: JobContext, n: int) -> int:
        ran.append(n)
        return n

    ids = [tick.enqueue(n=n) for n in range(200)]
    stats = run_until_idle(app, concurrency=4, **FAST)
    assert stats.finished == {"succeeded": 200}
    assert [get(app, j).result for j in ids] == list(range(200))
    assert sorted(ran) == list(range(200))  # each ran once
    assert len(spy.batches[0]) == 1  # the first goes alone: its type is not timed yet
    assert max(len(b) for b in spy.batches) > 1
    # A batch whose job runs long on a busy machine hands the rest back to other batches.
    assert {n for b in spy.batches for n in b} == set(range(200))


def test_a_job_overrunning_its_timeout_in_a_batch_fails_and_the_rest_still_run(
    app: Forge, monkeypatch: Any
) -> None:
    spy = BatchSpy(monkeypatch)
    release = threading.Event()

    @app.job(timeout=0.3, retries=0)
    def step(ctx: JobContext, n: int, hang: bool = False) -> int:
        if hang:
            release.wait(10)
        return n

    # Priorities fix the order: 0 alone (to time the type), then 1 (hangs) with 2 and 3.
    ids = [app.enqueue("step", {"n": n, "hang": n == 1}, priority=10 - n) for n in range(4)]
    began = time.monotonic()
    try:
        run_worker(app, ids, **FAST)
    finally:
        release.set()
    assert time.monotonic() - began < 5  # 2 and 3 did not wait for the hung thread
    assert spy.batches[:2] == [[0], [1, 2, 3]]
    assert [n for b in spy.batches[2:] for n in b] == [2, 3]  # handed back unstarted
    hung = get(app, ids[1])
    assert hung.status == JobStatus.FAILED
    assert [e["type"] for e in hung.errors] == ["JobTimeout"]
    assert [get(app, ids[n]).result for n in (0, 2, 3)] == [0, 2, 3]


def test_a_running_sync_job_cancelled_in_a_batch_is_dropped_and_the_rest_run(
    app: Forge, monkeypatch: Any
) -> None:
    spy = BatchSpy(monkeypatch)
    release, started = threading.Event(), threading.Event()

    @app.job
    def step(ctx: JobContext, n: int, hang: bool = False) -> int:
        if hang:
            started.set()
            release.wait(10)
        return n

    ids = [app.enqueue("step", {"n": n, "hang": n == 1}, priority=10 - n) for n in range(4)]

    def cancel_when_started() -> None:
        assert started.wait(10)
        app.cancel_job(ids[1])

    canceller = threading.Thread(target=cancel_when_started)
    canceller.start()
    began = time.monotonic()
    try:
        run_worker(app, ids, heartbeat_interval=0.05, **FAST)
    finally:
        release.set()
        canceller.join()
    assert time.monotonic() - began < 5  # 2 and 3 did not wait for the hung thread
    assert spy.batches[:2] == [[0], [1, 2, 3]]
    assert [n for b in spy.batches[2:] for n in b] == [2, 3]  # handed back unstarted
    assert get(app, ids[1]).status == JobStatus.CANCELLED
    assert [get(app, ids[n]).result for n in (0, 2, 3)] == [0, 2, 3]


def test_stopping_mid_batch_finishes_the_running_job_and_releases_the_rest(
    app: Forge, monkeypatch: Any
) -> None:
    spy = BatchSpy(monkeypatch)
    started = threading.Event()

    @app.job
    def step(ctx: JobContext, n: int, slow: bool = False) -> int:
        if slow:
            started.set()
            time.sleep(0.3)
        return n

    ids = [app.enqueue("step", {"n": n, "slow": n == 1}, priority=10 - n) for n in range(4)]

    async def main() -> None:
        worker = Worker(app, WorkerConfig(concurrency=1, prefetch=8, grace_period=5.0, **FAST))
        task = asyncio.create_task(worker.run())
        assert await asyncio.to_thread(started.wait, 10)
        worker.request_stop()
        await task

    asyncio.run(main())
    assert spy.batches == [[0], [1, 2, 3]]
    assert [get(app, ids[n]).result for n in (0, 1)] == [0, 1]  # within the grace period
    for n in (2, 3):
        job = get(app, ids[n])
        assert (job.status, job.attempts, job.worker_id) == (JobStatus.QUEUED, 0, None)


def test_jobs_behind_a_slow_one_in_a_batch_go_to_another_slot(app: Forge, monkeypatch: Any) -> None:
    spy = BatchSpy(monkeypatch)
    release = threading.Event()
    finished: dict[int, float] = {}

    @app.job
    def step(ctx: JobContext, n: int, slow: bool = False) -> int:
        if slow:
            release.wait(10)
        finished[n] = time.monotonic()
        return n

    # 0 first, alone (to time the type); then 1 (slow), 2 and 3 claimed together.
    ids = [app.enqueue("step", {"n": 0})]
    later = datetime.now(UTC) + timedelta(seconds=0.3)
    ids += [
        app.enqueue("step", {"n": n, "slow": n == 1}, priority=10 - n, run_at=later)
        for n in (1, 2, 3)
    ]

    def release_when_the_rest_ran() -> None:
        deadline = time.monotonic() + 5
        while not {2, 3} <= finished.keys() and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()

    releaser = threading.Thread(target=release_when_the_rest_ran)
    releaser.start()
    try:
        run_worker(app, ids, concurrency=2, **FAST)
    finally:
        release.set()
        releaser.join()
    assert spy.batches == [[0], [1, 2, 3], [2, 3]]
    assert finished[2] < finished[1] and finished[3] < finished[1]
    assert [get(app, j).result for j in ids] == [0, 1, 2, 3]
