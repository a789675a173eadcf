"""What a handler does and what the job record says afterwards, through an in-process worker."""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobforge import (
    Cancel,
    Forge,
    Job,
    JobContext,
    JobSpec,
    JobStatus,
    PartialSuccess,
    PayloadError,
    Retry,
    Snooze,
    UnknownJobType,
    ValidationError,
    Worker,
    WorkerConfig,
)
from jobforge.testing import run_until_idle
from jobforge.worker.worker import WorkerStats

FAST: dict[str, Any] = {"poll_interval": 0.05}


def get(app: Forge, job_id: str) -> Job:
    job = app.get_job(job_id)
    assert job is not None, f"{job_id} does not exist"
    return job


def parse_time(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text[:-1] + "+00:00")


def run_worker(
    app: Forge,
    until: Callable[[], bool],
    *,
    timeout: float = 15.0,
    before_stop: Callable[[], None] | None = None,
    **config: Any,
) -> WorkerStats:
    """Run a (non-burst) worker until `until()` holds, then stop it and return its stats."""
    config = {**FAST, "grace_period": 2.0, **config}

    async def main() -> WorkerStats:
        worker = Worker(app, WorkerConfig(**config))
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + timeout
        try:
            while not await asyncio.to_thread(until):
                assert not task.done(), "worker stopped by itself"
                assert time.monotonic() < deadline, "condition not reached in time"
                await asyncio.sleep(0.02)
            if before_stop is not None:
                before_stop()
        finally:
            worker.request_stop()
        return await task

    return asyncio.run(main())


# -- success, results and progress ---------------------------------------------------------


def test_success_stores_result_and_full_progress(app: Forge) -> None:
    seen: list[tuple[str, int, dict[str, Any]]] = []

    @app.job
    def add(ctx: JobContext, a: int, b: int) -> dict[str, int]:
        seen.append((ctx.job_id, ctx.attempt, ctx.payload))
        return {"sum": a + b}

    job_id = add.enqueue(a=2, b=3)
    before = datetime.now(UTC)
    stats = run_until_idle(app, **FAST)
    job = get(app, job_id)
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == {"sum": 5}
    assert job.progress == 100
    assert job.attempts == 1
    assert job.errors == []
    assert job.completed_at is not None and job.completed_at >= before - timedelta(seconds=1)
    assert job.started_at is not None and job.started_at <= job.completed_at
    assert job.lease_token is None and job.worker_id is None
    assert seen == [(job_id, 1, {"a": 2, "b": 3})]
    assert stats.finished == {"succeeded": 1}
    assert stats.claimed == 1


def test_result_that_is_not_json_is_stored_as_its_text(app: Forge) -> None:
    @app.job
    def odd(ctx: JobContext) -> Any:
        return {3, 4}

    @app.job
    def nothing(ctx: JobContext) -> None:
        return None

    a, b = odd.enqueue(), nothing.enqueue()
    run_until_idle(app, **FAST)
    assert get(app, a).status == JobStatus.SUCCEEDED
    assert get(app, a).result == "{3, 4}"
    assert get(app, b).result is None


def test_progress_is_persisted_while_running(app: Forge) -> None:
    observed: list[tuple[int, str | None]] = []

    def wait_for(ctx: JobContext, pct: int, msg: str | None) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            job = app.store.get_job(ctx.job.id)
            assert job is not None
            if (job.progress, job.progress_message) == (pct, msg):
                observed.append((pct, msg))
                return
            time.sleep(0.01)

    @app.job
    def load(ctx: JobContext) -> str:
        ctx.progress(40, "loading")
        wait_for(ctx, 40, "loading")
        ctx.progress(250, "clamped")  # out of range: clamped to 0..100
        wait_for(ctx, 100, "clamped")
        ctx.progress(-5, "rewound")
        wait_for(ctx, 0, "rewound")
        return "done"

    job_id = load.enqueue()
    run_until_idle(app, **FAST)
    assert observed == [(40, "loading"), (100, "clamped"), (0, "rewound")]
    job = get(app, job_id)
    assert job.status == JobStatus.SUCCEEDED
    assert job.progress == 100


def test_async_handler_progress_and_result(app: Forge) -> None:
    @app.job
    async def fetch(ctx: JobContext, url: str) -> dict[str, Any]:
        ctx.progress(10, "connecting")
        await asyncio.sleep(0.01)
        return {"url": url, "loop": asyncio.get_running_loop() is not None}

    job_id = fetch.enqueue(url="https://example.com")
    stats = run_until_idle(app, **FAST)
    job = get(app, job_id)
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == {"url": "https://example.com", "loop": True}
    assert job.progress == 100
    assert job.progress_message == "connecting"
    assert stats.finished == {"succeeded": 1}


def test_jobs_run_concurrently(app: Forge) -> None:
    spans: list[tuple[float, float]] = []

    @app.job
    def slow_sync(ctx: JobContext) -> None:
        start = time.monotonic()
        time.sleep(0.3)
        spans.append((start, time.monotonic()))

    @app.job
    async def slow_async(ctx: JobContext) -> None:
        start = time.monotonic()
        await asyncio.sleep(0.3)
        spans.append((start, time.monotonic()))

    app.enqueue_many([slow_sync.spec(), slow_sync.spec(), slow_async.spec(), slow_async.spec()])
    stats = run_until_idle(app, concurrency=4, **FAST)
    assert stats.finished == {"succeeded": 4}
    assert len(spans) == 4
    # All four were running at the same moment.
    assert max(s for s, _ in spans) < min(e for _, e in spans)


# -- failures and retries ------------------------------------------------------------------


def test_exception_is_retried_with_backoff_then_fails_with_structured_errors(app: Forge) -> None:
    starts: list[float] = []

    @app.job(retries=2, backoff=0.1)
    def flaky(ctx: JobContext) -> None:
        starts.append(time.monotonic())
        raise ValueError(f"boom {ctx.attempt}")

    job_id = flaky.enqueue()
    begin = datetime.now(UTC)
    stats = run_until_idle(app, **FAST)
    job = get(app, job_id)
    assert job.status == JobStatus.FAILED
    assert job.attempts == 3 == job.max_attempts
    assert job.completed_at is not None
    assert job.result is None
    assert len(starts) == 3
    # Equal jitter: at least half the step (0.1, then 0.2) between attempts.
    assert starts[1] - starts[0] >= 0.05 - 0.01
    assert starts[2] - starts[1] >= 0.10 - 0.01
    assert len(job.errors) == 3
    for n, entry in enumerate(job.errors, start=1):
        assert set(entry) == {"type", "message", "traceback", "attempt", "time"}
        assert entry["type"] == "ValueError"
        assert entry["message"] == f"boom {n}"
        assert entry["attempt"] == n
        tb = entry["traceback"]
        assert tb.startswith("Traceback (most recent call last):")
        assert "in flaky" in tb
        assert tb.rstrip().endswith(f"ValueError: boom {n}")
        assert f"{os.sep}jobforge{os.sep}worker{os.sep}" not in tb  # our frames trimmed
        stamp = parse_time(entry["time"])
        assert begin - timedelta(seconds=1) <= stamp <= datetime.now(UTC) + timedelta(seconds=1)
    assert [parse_time(e["time"]) for e in job.errors] == sorted(
        parse_time(e["time"]) for e in job.errors
    )
    assert stats.finished == {"scheduled": 2, "failed": 1}


def test_retry_succeeds_on_a_later_attempt(app: Forge) -> None:
    @app.job(retries=3, backoff=0.05)
    def second_time_lucky(ctx: JobContext) -> int:
        if ctx.attempt < 2:
            raise ConnectionError("transient")
        return ctx.attempt

    job_id = second_time_lucky.enqueue()
    run_until_idle(app, **FAST)
    job = get(app, job_id)
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == 2
    assert job.attempts == 2
    assert [(e["type"], e["attempt"]) for e in job.errors] == [("ConnectionError", 1)]


def test_no_retries_fails_at_once(app: Forge) -> None:
    calls: list[int] = []

    @app.job(retries=0)
    def fragile(ctx: JobContext) -> None:
        calls.append(ctx.attempt)
        raise RuntimeError("nope")

    @app.job(retries=5, backoff=0.05)
    def usually_retried(ctx: JobContext) -> None:
        calls.append(-ctx.attempt)
        raise RuntimeError("nope")

    a = fragile.enqueue()
    b = app.enqueue("usually_retried", {}, retries=0)  # per-call override
    run_until_idle(app, **FAST)
    for job_id in (a, b):
        job = get(app, job_id)
        assert job.status == JobStatus.FAILED
        assert job.attempts == 1 == job.max_attempts
        assert [(e["type"], e["message"]) for e in job.errors] == [("RuntimeError", "nope")]
    assert sorted(calls) == [-1, 1]


def test_async_handler_failure_is_retried(app: Forge) -> None:
    @app.job(retries=1, backoff=0.05)
    async def async_flaky(ctx: JobContext) -> None:
        await asyncio.sleep(0)
        raise KeyError(f"missing {ctx.attempt}")

    job_id = async_flaky.enqueue()
    run_until_idle(app, **FAST)
    job = get(app, job_id)
    assert job.status == JobStatus.FAILED
    assert [(e["type"], e["attempt"]) for e in job.errors] == [("KeyError", 1), ("KeyError", 2)]
    assert "in async_flaky" in job.errors[0]["traceback"]


def test_retry_exception_uses_its_own_delay(app: Forge) -> None:
    starts: list[float] = []

    @app.job(retries=2, backoff=100.0)  # the policy would wait far longer than the test
    def polite(ctx: JobContext) -> str:
        starts.append(time.monotonic())
        if ctx.attempt == 1:
            raise Retry(delay=0.2, message="rate limited")
        return "ok"

    job_id = polite.enqueue()
    run_until_idle(app, **FAST)
    job = get(app, job_id)
    assert job.status == JobStatus.SUCCEEDED
    assert job.attempts == 2
    assert [(e["type"], e["message"]) for e in job.errors] == [("Retry", "rate limited")]
    assert 0.19 <= starts[1] - starts[0] < 5


# -- control exceptions and partial success ------------------------------------------------


def test_snooze_reschedules_without_using_an_attempt(app: Forge) -> None:
    starts: list[tuple[float, int]] = []

    @app.job(retries=0)
    def sleepy(ctx: JobContext) -> str:
        starts.append((time.monotonic(), ctx.attempt))
        if len(starts) < 3:
            raise Snooze(0.15)
        return "awake"

    job_id = sleepy.enqueue()
    stats = run_until_idle(app, **FAST)
    job = get(app, job_id)
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == "awake"
    assert job.attempts == 1
    assert job.errors == []
    assert [a for _, a in starts] == [1, 1, 1]
    assert starts[1][0] - starts[0][0] >= 0.14
    assert starts[2][0] - starts[1][0] >= 0.14
    assert stats.finished == {"scheduled": 2, "succeeded": 1}


def test_partial_success_keeps_result_and_item_errors(app: Forge) -> None:
    @app.job
    def import_rows(ctx: JobContext, rows: list[int]) -> PartialSuccess:
        bad = [r for r in rows if r % 3 == 0]
        return PartialSuccess(
            result={"imported": len(rows) - len(bad)},
            errors=[
                f"row {bad[0]} rejected",
                {"type": "RowError", "message": "bad row", "row": bad[1]},
            ],
        )

    job_id = import_rows.enqueue(rows=[1, 2, 3, 4, 5, 6])
    stats = run_until_idle(app, **FAST)
    job = get(app, job_id)
    assert job.status == JobStatus.PARTIAL_SUCCESS
    assert job.status.is_terminal
    assert job.result == {"imported": 4}
    assert job.progress == 100
    assert job.attempts == 1
    first, second = job.errors
    assert (first["type"], first["message"], first["attempt"]) == (
        "PartialFailure",
        "row 3 rejected",
        1,
    )
    assert first["traceback"] is None
    assert (second["type"], second["message"]) == ("RowError", "bad row")
    assert second["detail"] == {"type": "RowError", "message": "bad row", "row": 6}
    parse_time(second["time"])
    assert stats.finished == {"partial_success": 1}


def test_cancel_exception_ends_the_job_as_cancelled(app: Forge) -> None:
    calls: list[int] = []

    @app.job(retries=3, backoff=0.05)
    def obsolete(ctx: JobContext) -> None:
        calls.append(ctx.attempt)
        raise Cancel("no longer needed")

    job_id = obsolete.enqueue()
    stats = run_until_idle(app, **FAST)
    job = get(app, job_id)
    assert job.status == JobStatus.CANCELLED
    assert calls == [1]
    assert job.completed_at is not None
    assert [(e["type"], e["message"], e["attempt"]) for e in job.errors] == [
        ("Cancel", "no longer needed", 1)
    ]
    assert stats.finished == {"cancelled": 1}


# -- timeouts ------------------------------------------------------------------------------


def test_timeout_is_enforced_for_sync_and_async_handlers(app: Forge) -> None:
    release = threading.Event()

    @app.job(timeout=0.3, retries=0)
    def stuck_sync(ctx: JobContext) -> str:
        release.wait(10)
        return "too late"

    @app.job(timeout=0.3, retries=0)
    async def stuck_async(ctx: JobContext) -> str:
        await asyncio.sleep(10)
        return "too late"

    @app.job
    def quick(ctx: JobContext, n: int) -> int:
        time.sleep(0.05)
        return n * 2

    @app.job(timeout=5)
    async def within_time(ctx: JobContext) -> str:
        await asyncio.sleep(0.05)
        return "in time"

    sync_id, async_id = stuck_sync.enqueue(), stuck_async.enqueue()
    quick_ids = [quick.enqueue(n=n) for n in range(4)]
    ok_id = within_time.enqueue()
    terminal = [sync_id, async_id, *quick_ids, ok_id]
    started = time.monotonic()
    try:
        stats = run_worker(
            app,
            lambda: all(get(app, j).status.is_terminal for j in terminal),
            before_stop=release.set,  # let the abandoned thread end while the loop is alive
            concurrency=4,
        )
    finally:
        release.set()
    assert time.monotonic() - started < 8
    for job_id in (sync_id, async_id):
        job = get(app, job_id)
        assert job.status == JobStatus.FAILED
        assert job.result is None
        (entry,) = job.errors
        assert entry["type"] == "JobTimeout"
        assert entry["message"] == "job exceeded its timeout of 0.3s"
        assert job.completed_at is not None and job.started_at is not None
        assert (job.completed_at - job.started_at).total_seconds() < 5
    assert [get(app, j).result for j in quick_ids] == [0, 2, 4, 6]
    assert get(app, ok_id).result == "in time"
    assert stats.finished == {"failed": 2, "succeeded": 5}


def test_timeout_can_be_set_per_enqueue(app: Forge) -> None:
    @app.job(retries=0)
    async def nap(ctx: JobContext) -> str:
        await asyncio.sleep(2)
        return "rested"

    job_id = app.enqueue("nap", {}, timeout=0.1)
    assert get(app, job_id).timeout == 0.1
    run_until_idle(app, **FAST)
    job = get(app, job_id)
    assert job.status == JobStatus.FAILED
    assert job.errors[0]["type"] == "JobTimeout"


def test_timed_out_job_is_retried_when_it_has_attempts_left(app: Forge) -> None:
    @app.job(timeout=0.1, retries=1, backoff=0.05)
    async def sometimes_slow(ctx: JobContext) -> int:
        if ctx.attempt == 1:
            await asyncio.sleep(5)
        return ctx.attempt

    job_id = sometimes_slow.enqueue()
    run_until_idle(app, **FAST)
    job = get(app, job_id)
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == 2
    assert [e["type"] for e in job.errors] == ["JobTimeout"]


# -- enqueue validation --------------------------------------------------------------------


def test_unknown_job_type_is_refused_and_nothing_is_written(app: Forge) -> None:
    with pytest.raises(UnknownJobType) as info:
        app.enqueue("ghost", {})
    assert str(info.value) == "Unknown job type 'ghost' (known: none registered)"

    @app.job
    def real(ctx: JobContext) -> None: ...

    @app.job
    def also_real(ctx: JobContext) -> None: ...

    with pytest.raises(UnknownJobType) as info:
        app.enqueue("ghost", {"a": 1})
    assert str(info.value) == "Unknown job type 'ghost' (known: also_real, real)"
    assert info.value.code == "unknown_job_type"
    with pytest.raises(UnknownJobType):
        app.enqueue_many([real.spec(), JobSpec("ghost", {}), also_real.spec()])
    assert app.list_jobs() == []


def test_enqueue_many_is_all_or_nothing(app: Forge) -> None:
    @app.job
    def item(ctx: JobContext, n: float) -> float:
        return n

    good = [item.spec(n=i) for i in range(5)]
    with pytest.raises(PayloadError):
        app.enqueue_many([*good[:3], item.spec(n=math.nan), *good[3:]])
    assert app.list_jobs() == []
    with pytest.raises(ValidationError, match="retries must be >= 0"):
        app.enqueue_many(
            [*good, JobSpec("item", {"n": 1}, item.configure(retries=-1).spec().options)]
        )
    assert app.list_jobs() == []
    with pytest.raises(ValidationError, match="delay must be >= 0"):
        app.enqueue_many([good[0], item.configure(delay=-1).spec(n=1)])
    assert app.list_jobs() == []

    ids = app.enqueue_many(good)
    assert len(ids) == 5 and len(set(ids)) == 5
    assert [get(app, i).payload for i in ids] == [{"n": i} for i in range(5)]
    assert {j.status for j in app.list_jobs()} == {JobStatus.QUEUED}
    run_until_idle(app, **FAST)
    assert [get(app, i).result for i in ids] == [0, 1, 2, 3, 4]


def test_enqueue_options_resolve_against_registered_defaults(app: Forge) -> None:
    @app.job(queue="mail", priority=3, retries=4, timeout=9.0, backoff=0.5, backoff_max=7.0)
    def send(ctx: JobContext, to: str) -> None: ...

    plain = get(app, send.enqueue(to="a"))
    assert (plain.queue, plain.priority, plain.max_attempts, plain.timeout) == ("mail", 3, 5, 9.0)
    assert (plain.retry_backoff, plain.retry_backoff_max) == (0.5, 7.0)
    assert plain.status == JobStatus.QUEUED
    custom = get(
        app,
        send.configure(queue="urgent", priority=9, retries=0, delay=60, trace_id="tr-1").enqueue(
            to="b"
        ),
    )
    assert (custom.queue, custom.priority, custom.max_attempts) == ("urgent", 9, 1)
    assert custom.trace_id == "tr-1"
    assert custom.status == JobStatus.SCHEDULED
    assert 50 < (custom.scheduled_at - datetime.now(UTC)).total_seconds() <= 60
    with pytest.raises(ValidationError, match="timezone-aware"):
        send.configure(run_at=datetime(2030, 1, 1)).enqueue(to="c")


# -- which jobs a worker takes -------------------------------------------------------------


def test_worker_claims_only_types_it_has_handlers_for(app: Forge, db_url: str) -> None:
    @app.job
    def known(ctx: JobContext) -> str:
        return "ran"

    producer = Forge(db_url)
    try:

        @producer.job
        def known(ctx: JobContext) -> str:  # same type, other app
            return "never"

        @producer.job
        def extra(ctx: JobContext) -> str:
            return "never"

        extra_id = producer.enqueue("extra", {})
        known_id = producer.enqueue("known", {})
    finally:
        producer.close()
    stats = run_until_idle(app, **FAST)
    assert stats.claimed == 1
    assert get(app, known_id).status == JobStatus.SUCCEEDED
    assert get(app, known_id).result == "ran"
    other = get(app, extra_id)
    assert other.status == JobStatus.QUEUED
    assert other.attempts == 0 and other.worker_id is None


def test_worker_claims_only_its_queues(app: Forge) -> None:
    @app.job
    def where(ctx: JobContext) -> str:
        return ctx.job.queue

    a = app.enqueue("where", {}, queue="alpha")
    b = app.enqueue("where", {}, queue="beta")
    c = app.enqueue("where", {}, queue="gamma")
    run_until_idle(app, queues=["alpha", "gamma"], **FAST)
    assert get(app, a).result == "alpha"
    assert get(app, c).result == "gamma"
    assert get(app, b).status == JobStatus.QUEUED


def test_priorities_order_execution_with_concurrency_one(app: Forge) -> None:
    order: list[str] = []

    @app.job
    def step(ctx: JobContext, name: str) -> None:
        order.append(name)

    for name, priority in [("low", 0), ("high", 10), ("mid", 5), ("lowest", -5), ("top", 20)]:
        app.enqueue("step", {"name": name}, priority=priority)
    run_until_idle(app, concurrency=1, **FAST)
    assert order == ["top", "high", "mid", "low", "lowest"]


def test_delayed_job_runs_only_when_due(app: Forge) -> None:
    ran_at: list[float] = []

    @app.job
    def later(ctx: JobContext) -> None:
        ran_at.append(time.monotonic())

    start = time.monotonic()
    job_id = app.enqueue("later", {}, delay=0.4)
    assert get(app, job_id).status == JobStatus.SCHEDULED
    run_worker(app, lambda: get(app, job_id).status == JobStatus.SUCCEEDED)
    assert len(ran_at) == 1
    assert ran_at[0] - start >= 0.39


# -- cancellation of a running job ---------------------------------------------------------


def test_cancelling_a_running_async_job_makes_the_worker_drop_it(app: Forge) -> None:
    started = threading.Event()
    outcome: dict[str, Any] = {}

    @app.job
    async def long_haul(ctx: JobContext) -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome["cancelled_at"] = time.monotonic()
            outcome["event"].set()
            raise
        return "finished"

    @app.job
    def quick(ctx: JobContext) -> str:
        return "quick"

    job_id = long_haul.enqueue()

    async def main() -> tuple[float, str, WorkerStats]:
        # One slot and no prefetch: the next job can only run if the slot is given back.
        config = WorkerConfig(
            concurrency=1, prefetch=0, lease_seconds=2.0, heartbeat_interval=0.05,
            poll_interval=0.05, grace_period=1.0,
        )  # fmt: skip
        handler_cancelled = outcome["event"] = asyncio.Event()
        worker = Worker(app, config)
        task = asyncio.create_task(worker.run())
        try:
            assert await asyncio.to_thread(started.wait, 10)
            cancelled_at = time.monotonic()
            job = await asyncio.to_thread(app.cancel_job, job_id)
            assert job.status == JobStatus.CANCELLED
            deadline = time.monotonic() + 5
            try:
                await asyncio.wait_for(handler_cancelled.wait(), 5)
            except TimeoutError:
                pytest.fail("the handler was never cancelled")
            quick_id = await asyncio.to_thread(quick.enqueue)
            while (await asyncio.to_thread(get, app, quick_id)).status != JobStatus.SUCCEEDED:
                assert time.monotonic() < deadline + 5, "the freed slot was not reused"
                await asyncio.sleep(0.02)
        finally:
            worker.request_stop()
        stats = await task
        return outcome["cancelled_at"] - cancelled_at, quick_id, stats

    reaction, quick_id, stats = asyncio.run(main())
    assert reaction < 2.0  # the heartbeat noticed, long before the 30 s sleep would end
    job = get(app, job_id)
    assert job.status == JobStatus.CANCELLED
    assert job.result is None
    assert job.worker_id is None and job.lease_token is None
    assert get(app, quick_id).result == "quick"
    assert stats.finished == {"succeeded": 1}
    assert stats.lost == 0
