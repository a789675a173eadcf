"""Batches on both backends: one job over many items that run in parallel, ending
`succeeded`, `partial_success` or `failed` from its items' outcomes; items are listed in
payload order with their own results and errors; other jobs can depend on the batch."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from jobforge import Forge, Job, JobContext, JobStatus, ValidationError
from jobforge.batches import BATCH_TYPE
from jobforge.testing import run_until_idle
from tests.e2e.helpers import sql

FAST: dict[str, Any] = {"poll_interval": 0.05}
S = JobStatus


def get(app: Forge, ref: str) -> Job:
    job = app.get_job(ref)
    assert job is not None, ref
    return job


def register_square(app: Forge, spans: list[tuple[int, float, float]] | None = None) -> None:
    lock = threading.Lock()

    @app.job(retries=0)
    def square(ctx: JobContext, n: int, sleep: float = 0.0) -> int:
        started = time.monotonic()
        time.sleep(sleep)
        if n < 0:
            raise ValueError(f"negative: {n}")
        if spans is not None:
            with lock:
                spans.append((n, started, time.monotonic()))
        return n * n


def test_batch_succeeds_with_counts_and_items_in_payload_order(app: Forge) -> None:
    spans: list[tuple[int, float, float]] = []
    register_square(app, spans)
    payloads = [{"n": n, "sleep": 0.3} for n in (3, 1, 4, 1, 5, 9, 2, 6)]
    batch_id = app.enqueue_batch("square", payloads, priority=3)
    batch = get(app, batch_id)
    assert batch_id.startswith("job_") and batch.type == BATCH_TYPE
    assert batch.status == S.WAITING and batch.payload == {"type": "square", "items": 8}
    assert batch.priority == 3

    items = app.batch_items(batch_id)
    assert [j.payload["n"] for j in items] == [3, 1, 4, 1, 5, 9, 2, 6]
    assert [j.name for j in items] == [str(i) for i in range(8)]
    assert {j.status for j in items} == {S.QUEUED} and {j.priority for j in items} == {3}

    run_until_idle(app, concurrency=4, **FAST)
    batch = get(app, batch_id)
    assert batch.status == S.SUCCEEDED
    assert batch.result == {"items": 8, "succeeded": 8, "failed": 0, "failed_items": []}
    items = app.batch_items(batch_id)
    assert [j.result for j in items] == [9, 1, 16, 1, 25, 81, 4, 36]
    assert all(j.status == S.SUCCEEDED for j in items)
    # the batch ended after its last item
    last = max(j.completed_at for j in items if j.completed_at is not None)
    assert batch.started_at is not None and batch.started_at >= last
    # items ran in parallel: with 4 slots, at some moment several ran at once
    most = max(sum(1 for _, s, e in spans if s <= start < e) for _, start, _ in spans)
    assert most >= 2, spans
    assert len(spans) == 8


def test_some_failed_items_make_a_partial_success(app: Forge) -> None:
    register_square(app)
    batch_id = app.enqueue_batch("square", [{"n": 2}, {"n": -1}, {"n": 3}, {"n": -7}])
    run_until_idle(app, concurrency=4, **FAST)
    batch = get(app, batch_id)
    assert batch.status == S.PARTIAL_SUCCESS
    items = app.batch_items(batch_id)
    assert [j.status for j in items] == [S.SUCCEEDED, S.FAILED, S.SUCCEEDED, S.FAILED]
    assert items[0].result == 4 and items[2].result == 9
    assert "negative: -1" in items[1].errors[-1]["message"]
    assert "negative: -7" in items[3].errors[-1]["message"]
    assert batch.result == {
        "items": 4,
        "succeeded": 2,
        "failed": 2,
        "failed_items": [
            {"index": 1, "job_id": items[1].job_id, "status": "failed"},
            {"index": 3, "job_id": items[3].job_id, "status": "failed"},
        ],
    }
    # the batch's errors list the failed items
    assert [(e["type"], e["message"], e["detail"]["index"], e["detail"]["job_id"])
            for e in batch.errors] == [
        ("ItemFailed", f"item {items[1].job_id} failed", 1, items[1].job_id),
        ("ItemFailed", f"item {items[3].job_id} failed", 3, items[3].job_id),
    ]  # fmt: skip


def test_all_items_failed_fail_the_batch(app: Forge) -> None:
    register_square(app)
    batch_id = app.enqueue_batch("square", [{"n": -1}, {"n": -2}])
    run_until_idle(app, concurrency=4, **FAST)
    batch = get(app, batch_id)
    assert batch.status == S.FAILED
    assert batch.attempts == 1  # not retried: its outcome cannot change
    assert "all 2 items of square failed" in batch.errors[-1]["message"]
    assert [j.status for j in app.batch_items(batch_id)] == [S.FAILED, S.FAILED]


@pytest.mark.parametrize(
    ("ns", "batch_status", "child_status"),
    [
        ([1, 2], S.SUCCEEDED, S.SUCCEEDED),
        ([1, -2], S.PARTIAL_SUCCESS, S.SUCCEEDED),
        ([-1, -2], S.FAILED, S.SKIPPED),
    ],
)
def test_a_job_depending_on_a_batch_runs_after_it(
    app: Forge, ns: list[int], batch_status: JobStatus, child_status: JobStatus
) -> None:
    """A sequential dependency (condition `succeeded`) counts a partial success as success;
    a failed batch skips its dependants."""
    register_square(app)

    @app.job
    def after(ctx: JobContext) -> str:
        return "after"

    batch_id = app.enqueue_batch("square", [{"n": n} for n in ns])
    child_id = app.enqueue("after", depends_on=[batch_id])
    assert get(app, child_id).status == S.WAITING
    run_until_idle(app, concurrency=4, **FAST)
    batch, child = get(app, batch_id), get(app, child_id)
    assert batch.status == batch_status
    assert child.status == child_status
    if child_status == S.SUCCEEDED:
        assert batch.completed_at is not None and child.started_at is not None
        assert child.started_at >= batch.completed_at
    else:
        assert child.started_at is None


def test_batch_items_can_wait_for_a_parent(app: Forge) -> None:
    register_square(app)

    @app.job
    def first(ctx: JobContext) -> str:
        return "first"

    parent = app.enqueue("first")
    batch_id = app.enqueue_batch("square", [{"n": 1}, {"n": 2}], depends_on=[parent])
    assert {j.status for j in app.batch_items(batch_id)} == {S.WAITING}
    run_until_idle(app, concurrency=4, **FAST)
    parent_job = get(app, parent)
    assert get(app, batch_id).status == S.SUCCEEDED
    for item in app.batch_items(batch_id):
        assert item.started_at is not None and parent_job.completed_at is not None
        assert item.started_at >= parent_job.completed_at


def test_bad_batches_are_refused_and_write_nothing(app: Forge) -> None:
    register_square(app)
    with pytest.raises(ValidationError, match=r"^A batch needs at least one item$"):
        app.enqueue_batch("square", [])
    with pytest.raises(ValidationError, match=r"^unique_key is not supported for batches$"):
        app.enqueue_batch("square", [{"n": 1}], unique_key="k")
    with pytest.raises(ValidationError, match="Unknown job type 'nope'"):
        app.enqueue_batch("nope", [{"n": 1}])
    app.store  # noqa: B018 - the schema exists even though nothing was written
    assert sql(app.url, "SELECT count(*) FROM jobforge_jobs")[0][0] == 0
