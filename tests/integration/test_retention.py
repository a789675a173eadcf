"""Retention on both backends: exactly which finished jobs, edges and workflows `prune` deletes
and which it must keep (unfinished work, parents of children still to run, jobs of workflows
not finished before the cutoff), batching, old limit starts and cron runs, and a worker that
prunes by itself."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobforge import (
    Forge,
    Job,
    JobContext,
    JobStatus,
    PartialSuccess,
    Worker,
    WorkerConfig,
    Workflow,
    WorkflowJob,
    testing,
)
from jobforge.jobs import utcnow
from jobforge.store import retention
from jobforge.store import schedules as stored_schedules
from jobforge.store.base import ClaimParams, Outcome
from jobforge.store.graph import WorkflowNotFound
from jobforge.store.retention import Pruned
from jobforge.testing import run_until_idle
from tests.e2e.helpers import sql

FAST: dict[str, Any] = {"poll_interval": 0.05}
S = JobStatus


# -- helpers ----------------------------------------------------------------------------------
def soon() -> datetime:
    """A cutoff just ahead of now: everything finished so far is older."""
    return utcnow() + timedelta(seconds=1)


def get(app: Forge, ref: str) -> Job:
    job = app.get_job(ref)
    assert job is not None, f"{ref} was pruned"
    return job


def gone(app: Forge, *refs: str) -> bool:
    return all(app.get_job(r) is None for r in refs)


def count(url: str, table: str) -> int:
    return int(sql(url, f"SELECT count(*) FROM {table}")[0][0])


def register(app: Forge) -> None:
    """Job types for these tests. `gate` jobs run in the `later` queue, which the first
    worker of a test leaves alone, so their dependants stay waiting until the test says."""

    @app.job
    def work(ctx: JobContext) -> str:
        return "ok"

    @app.job(retries=0)
    def boom(ctx: JobContext) -> None:
        raise RuntimeError("boom")

    @app.job
    def partly(ctx: JobContext) -> PartialSuccess:
        return PartialSuccess(result={"done": 1}, errors=[{"item": 2}])

    @app.job(queue="later")
    def gate(ctx: JobContext) -> str:
        return "open"

    @app.job(queue="held")
    def held(ctx: JobContext) -> None: ...


def run_default(app: Forge) -> None:
    """Run everything runnable in the default queue, nothing of `later` or `held`."""
    run_until_idle(app, queues=["default"], **FAST)


def claim_held(app: Forge) -> list[Job]:
    """Claim the `held` jobs as some other worker would: they stay running."""
    params = ClaimParams(f"elsewhere:{uuid.uuid4().hex[:6]}", ["held"], ["held"], 10, 300.0)
    return app.store.claim_jobs(params)


def parent_ids(app: Forge, ref: str) -> set[uuid.UUID]:
    into, _ = app.dependencies(ref)
    return {e.parent_id for e in into}


# -- standalone jobs --------------------------------------------------------------------------
def test_finished_jobs_of_every_end_state_go_and_unfinished_ones_stay(
    app: Forge, db_url: str
) -> None:
    register(app)
    ok = app.enqueue("work")
    failed = app.enqueue("boom")
    skipped = app.enqueue("work", {}, depends_on=[failed])
    partial = app.enqueue("partly")
    cancelled = app.cancel_job(app.enqueue("work")).job_id
    queued = app.enqueue("gate")
    waiting = app.enqueue("work", {}, depends_on=[queued])
    scheduled = app.enqueue("work", {}, delay=3600)
    running = app.enqueue("held")
    run_default(app)
    assert [c.job_id for c in claim_held(app)] == [running]

    expected = {
        ok: S.SUCCEEDED, failed: S.FAILED, skipped: S.SKIPPED, partial: S.PARTIAL_SUCCESS,
        cancelled: S.CANCELLED, queued: S.QUEUED, waiting: S.WAITING,
        scheduled: S.SCHEDULED, running: S.RUNNING,
    }  # fmt: skip
    assert {ref: get(app, ref).status for ref in expected} == expected
    assert count(db_url, "jobforge_edges") == 2

    pruned = retention.prune(app.store, soon())

    assert pruned == Pruned(jobs=5, workflows=0)
    assert gone(app, ok, failed, skipped, partial, cancelled)
    for ref in (queued, waiting, scheduled, running):
        assert get(app, ref).status == expected[ref]
    assert count(db_url, "jobforge_jobs") == 4
    # The failed parent's edge to its skipped child went with them; the waiting job's stays.
    assert count(db_url, "jobforge_edges") == 1
    assert parent_ids(app, waiting) == {get(app, queued).id}
    # Nothing more to prune now.
    assert retention.prune(app.store, soon()) == Pruned(jobs=0, workflows=0)


def test_a_job_finished_after_the_cutoff_stays(app: Forge) -> None:
    register(app)
    early = app.enqueue("work")
    late = app.enqueue("gate")  # created before the cutoff, finished after it
    run_default(app)
    cutoff = utcnow()
    assert get(app, early).completed_at is not None
    assert get(app, early).completed_at <= cutoff  # type: ignore[operator]
    run_until_idle(app, **FAST)
    assert get(app, late).completed_at > cutoff  # type: ignore[operator]

    assert retention.prune(app.store, cutoff) == Pruned(jobs=1, workflows=0)
    assert gone(app, early)
    assert get(app, late).status == S.SUCCEEDED
    assert retention.prune(app.store, soon()).jobs == 1
    assert gone(app, late)


def test_pruning_in_batches_deletes_them_all(app: Forge, db_url: str) -> None:
    register(app)
    refs = [app.enqueue("work")]
    for _ in range(4):  # a chain: each finished job is also a finished job's parent
        refs.append(app.enqueue("work", {}, depends_on=[refs[-1]]))
    run_default(app)
    assert all(get(app, r).status == S.SUCCEEDED for r in refs)
    assert count(db_url, "jobforge_edges") == 4

    assert retention.prune(app.store, soon(), batch=2) == Pruned(jobs=5, workflows=0)
    assert gone(app, *refs)
    assert count(db_url, "jobforge_jobs") == 0
    assert count(db_url, "jobforge_edges") == 0


# -- parents of children still to run --------------------------------------------------------
def test_finished_parent_of_a_child_still_to_run_stays(app: Forge, db_url: str) -> None:
    register(app)
    gate = app.enqueue("gate")
    p_waiting = app.enqueue("work")
    waiting = app.enqueue("work", {}, depends_on=[p_waiting, gate])
    p_queued = app.enqueue("work")
    queued = app.enqueue("gate", {}, depends_on=[p_queued])
    p_scheduled = app.enqueue("work")
    p_running = app.enqueue("work")
    lonely = app.enqueue("work")
    run_default(app)
    # Children written once their parents have finished.
    scheduled = app.enqueue("work", {}, depends_on=[p_scheduled], delay=3600)
    running = app.enqueue("held", {}, depends_on=[p_running])
    assert [c.job_id for c in claim_held(app)] == [running]

    parents = (p_waiting, p_queued, p_scheduled, p_running)
    assert all(get(app, p).status == S.SUCCEEDED for p in parents)
    children = {waiting: S.WAITING, queued: S.QUEUED, scheduled: S.SCHEDULED, running: S.RUNNING}
    assert {c: get(app, c).status for c in children} == children

    assert retention.prune(app.store, soon()) == Pruned(jobs=1, workflows=0)

    assert gone(app, lonely)
    assert all(get(app, p).status == S.SUCCEEDED for p in parents)
    assert {c: get(app, c).status for c in children} == children
    assert count(db_url, "jobforge_edges") == 5
    assert parent_ids(app, waiting) == {get(app, p_waiting).id, get(app, gate).id}

    # The waiting child can still run, and still shows the parent it waited for.
    run_until_idle(app, **FAST)
    assert get(app, waiting).status == S.SUCCEEDED
    assert get(app, queued).status == S.SUCCEEDED
    assert parent_ids(app, waiting) == {get(app, p_waiting).id, get(app, gate).id}
    why = app.explain(waiting)
    assert {(e.parent.job_id, e.state) for e in why.edges} == {
        (p_waiting, "satisfied"), (gate, "satisfied"),
    }  # fmt: skip

    # Now only the parents of the delayed and the running child are still needed.
    pruned = retention.prune(app.store, soon())
    assert pruned.jobs == 5  # gate, p_waiting, waiting, p_queued, queued
    assert gone(app, gate, p_waiting, waiting, p_queued, queued)
    assert get(app, p_scheduled).status == S.SUCCEEDED
    assert get(app, p_running).status == S.SUCCEEDED
    assert parent_ids(app, scheduled) == {get(app, p_scheduled).id}
    assert parent_ids(app, running) == {get(app, p_running).id}


# -- workflows --------------------------------------------------------------------------------
def two_branch_workflow(name: str = "two") -> Workflow:
    """extract -> load (default queue), and an independent `gate` (the `later` queue)."""
    return (
        Workflow(name)
        .add(WorkflowJob("extract", "work"))
        .then(WorkflowJob("load", "work"))
        .add(WorkflowJob("approve", "gate"))
    )


def test_jobs_of_a_running_workflow_stay_even_when_finished(app: Forge, db_url: str) -> None:
    register(app)
    ref = app.enqueue_workflow(two_branch_workflow())
    run_default(app)
    wf = app.get_workflow(ref)
    assert wf is not None and wf.status == "running"
    jobs = {j.name: j for j in app.workflow_jobs(ref)}
    assert jobs["load"].status == S.SUCCEEDED  # finished, no children: only its workflow
    assert jobs["approve"].status == S.QUEUED

    assert retention.prune(app.store, soon()) == Pruned(jobs=0, workflows=0)
    assert {j.name: j.status for j in app.workflow_jobs(ref)} == {
        "extract": S.SUCCEEDED, "load": S.SUCCEEDED, "approve": S.QUEUED,
    }  # fmt: skip
    assert count(db_url, "jobforge_edges") == 1

    # Once the workflow has finished, its jobs, edges and the workflow itself go.
    run_until_idle(app, **FAST)
    wf = app.get_workflow(ref)
    assert wf is not None and wf.status == "succeeded"
    assert retention.prune(app.store, soon()) == Pruned(jobs=3, workflows=1)
    assert app.get_workflow(ref) is None
    assert gone(app, *(j.job_id for j in jobs.values()))
    with pytest.raises(WorkflowNotFound):
        app.workflow_jobs(ref)
    assert count(db_url, "jobforge_edges") == 0
    assert count(db_url, "jobforge_workflows") == 0


def test_finished_workflows_go_whole_succeeded_or_failed(app: Forge, db_url: str) -> None:
    register(app)
    good = app.enqueue_workflow(
        Workflow("good").add(WorkflowJob("a", "work")).parallel(
            [WorkflowJob("b", "work"), WorkflowJob("c", "partly")]
        ).then(WorkflowJob("d", "work"))
    )  # fmt: skip
    bad = app.enqueue_workflow(
        Workflow("bad").add(WorkflowJob("a", "boom")).then(WorkflowJob("b", "work"))
    )
    keep = app.enqueue("work")  # finished after the cutoff below
    run_default(app)
    statuses = {w: app.get_workflow(w).status for w in (good, bad)}  # type: ignore[union-attr]
    assert statuses == {good: "succeeded", bad: "failed"}
    assert count(db_url, "jobforge_edges") == 4 + 1

    assert retention.prune(app.store, soon()) == Pruned(jobs=4 + 2 + 1, workflows=2)
    assert app.get_workflow(good) is None and app.get_workflow(bad) is None
    assert gone(app, keep)
    assert count(db_url, "jobforge_jobs") == 0
    assert count(db_url, "jobforge_edges") == 0
    assert count(db_url, "jobforge_workflows") == 0


def test_workflow_finished_after_the_cutoff_keeps_its_jobs(app: Forge, db_url: str) -> None:
    register(app)
    ref = app.enqueue_workflow(two_branch_workflow())
    standalone = app.enqueue("work")
    run_default(app)
    cutoff = utcnow()  # extract, load and the standalone job finished before it
    run_until_idle(app, **FAST)
    wf = app.get_workflow(ref)
    assert wf is not None and wf.status == "succeeded"
    assert wf.completed_at is not None and wf.completed_at > cutoff
    load = next(j for j in app.workflow_jobs(ref) if j.name == "load")
    assert load.completed_at is not None and load.completed_at <= cutoff

    assert retention.prune(app.store, cutoff) == Pruned(jobs=1, workflows=0)
    assert gone(app, standalone)
    assert {j.name for j in app.workflow_jobs(ref)} == {"extract", "load", "approve"}
    assert count(db_url, "jobforge_edges") == 1


def test_workflow_row_stays_while_one_of_its_jobs_is_still_needed(app: Forge, db_url: str) -> None:
    """A finished workflow's job that a standalone child still waits for is kept, and the
    workflow with it; both go once the child has run."""
    register(app)
    ref = app.enqueue_workflow(Workflow("one").add(WorkflowJob("only", "work")))
    run_default(app)
    only = app.workflow_jobs(ref)[0]
    gate = app.enqueue("gate")
    child = app.enqueue("work", {}, depends_on=[only.job_id, gate])
    assert get(app, child).status == S.WAITING

    assert retention.prune(app.store, soon()) == Pruned(jobs=0, workflows=0)
    assert get(app, only.job_id).status == S.SUCCEEDED
    wf = app.get_workflow(ref)
    assert wf is not None and wf.status == "succeeded"

    run_until_idle(app, **FAST)
    assert get(app, child).status == S.SUCCEEDED
    assert parent_ids(app, child) == {only.id, get(app, gate).id}
    assert retention.prune(app.store, soon()) == Pruned(jobs=3, workflows=1)
    assert app.get_workflow(ref) is None
    assert count(db_url, "jobforge_jobs") == 0 and count(db_url, "jobforge_edges") == 0


def test_cancelled_workflow_keeps_its_jobs_until_its_running_job_ends(
    app: Forge, db_url: str
) -> None:
    register(app)
    wf = (
        Workflow("cancel-me")
        .add(WorkflowJob("a", "work"))
        .then(WorkflowJob("r", "held"))
        .then(WorkflowJob("b", "work"))
        .add(WorkflowJob("side", "work"))
    )
    ref = app.enqueue_workflow(wf)
    run_default(app)
    (r,) = claim_held(app)
    assert app.cancel_workflow(ref).status == "cancelled"
    names = {j.name: j.status for j in app.workflow_jobs(ref)}
    assert names == {"a": S.SUCCEEDED, "side": S.SUCCEEDED, "r": S.RUNNING, "b": S.CANCELLED}

    # `r` still runs: nothing of its workflow may go yet, finished or not.
    assert retention.prune(app.store, soon()) == Pruned(jobs=0, workflows=0)
    assert {j.name: j.status for j in app.workflow_jobs(ref)} == names

    assert r.lease_token is not None
    outcome = Outcome(r.id, r.lease_token, S.SUCCEEDED, result_json="null")
    assert app.store.finish_jobs([outcome]) == [r.id]
    wf_rec = app.get_workflow(ref)
    assert wf_rec is not None and wf_rec.completed_at is not None
    assert retention.prune(app.store, soon()) == Pruned(jobs=4, workflows=1)
    assert app.get_workflow(ref) is None
    assert count(db_url, "jobforge_jobs") == 0 and count(db_url, "jobforge_edges") == 0


def test_paused_workflow_keeps_its_jobs(app: Forge) -> None:
    register(app)
    ref = app.enqueue_workflow(
        Workflow("manual", failure_policy="manual")
        .add(WorkflowJob("ok", "work"))
        .add(WorkflowJob("bad", "boom"))
        .then(WorkflowJob("after", "work"))
    )
    run_default(app)
    wf = app.get_workflow(ref)
    assert wf is not None and wf.status == "paused"
    before = {j.name: j.status for j in app.workflow_jobs(ref)}
    assert before["ok"] == S.SUCCEEDED and before["bad"] == S.FAILED

    assert retention.prune(app.store, soon()) == Pruned(jobs=0, workflows=0)
    assert {j.name: j.status for j in app.workflow_jobs(ref)} == before


# -- limit starts and cron runs ---------------------------------------------------------------
def log_start(app: Forge, scope: str, at: datetime) -> None:
    """A backdated start (the store's own query stamps starts with the current time)."""
    store = app.store
    with store._tx() as cur:
        if store.url.startswith("sqlite"):
            insert = "INSERT INTO jobforge_limit_starts (scope, started_at) VALUES (?, ?)"
            cur.execute(insert, (scope, at.timestamp()))
        else:
            insert = "INSERT INTO jobforge_limit_starts (scope, started_at) VALUES (%s, %s)"
            cur.execute(insert, (scope, at))


def record_run(app: Forge, schedule: str, tick: datetime) -> None:
    with app.store._tx() as cur:
        app.store._run(
            cur, "insert_schedule_run", schedule=schedule, tick=tick, note="test",
            job_id=None, workflow_id=None,
        ).fetchone()  # fmt: skip


def ticks(app: Forge, schedule: str) -> list[datetime]:
    return sorted(r.tick for r in stored_schedules.runs(app.store, schedule, 100))


def test_before_none_keeps_every_job_but_old_limit_starts_go(app: Forge, db_url: str) -> None:
    register(app)
    done = app.enqueue("work")
    run_default(app)
    now = utcnow()
    log_start(app, "type:work", now - timedelta(days=2))
    log_start(app, "type:work", now - timedelta(hours=25))
    log_start(app, "type:work", now - timedelta(seconds=5))
    record_run(app, "nightly", now - timedelta(days=3))

    assert retention.prune(app.store, None) == Pruned(jobs=0, workflows=0)
    assert get(app, done).status == S.SUCCEEDED
    assert count(db_url, "jobforge_limit_starts") == 1, "starts older than a day must go"
    assert len(ticks(app, "nightly")) == 1, "cron runs are kept when no job is pruned"


def test_old_cron_runs_go_but_two_days_of_history_stay(app: Forge) -> None:
    register(app)
    now = utcnow()
    old, recent = now - timedelta(days=3), now - timedelta(days=1)
    record_run(app, "nightly", old)
    record_run(app, "nightly", recent)

    retention.prune(app.store, soon())
    kept = ticks(app, "nightly")
    assert len(kept) == 1 and abs((kept[0] - recent).total_seconds()) < 0.01

    # A cutoff older than two days prunes only the runs before it.
    record_run(app, "weekly", now - timedelta(days=10))
    record_run(app, "weekly", now - timedelta(days=4))
    retention.prune(app.store, now - timedelta(days=5))
    assert len(ticks(app, "weekly")) == 1
    assert ticks(app, "nightly") == kept


# -- the worker prunes by itself --------------------------------------------------------------
def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


def worker_running(app: Forge, **config: Any) -> AbstractContextManager[Worker]:
    """A non-burst worker on its own thread for the duration of the block."""
    return testing.worker_running(app, **{**FAST, **config})


def test_worker_prunes_finished_jobs_past_the_apps_retention(db_url: str) -> None:
    app = Forge(db_url, retention=0.3)
    try:
        register(app)
        done = app.enqueue("work")
        gate = app.enqueue("gate")  # never run by this worker (queue `later`)
        parent = app.enqueue("work")
        child = app.enqueue("work", {}, depends_on=[parent, gate])
        with worker_running(app, queues=["default"], prune_interval=0.2):
            wait_until(lambda: app.get_job(done) is None, 10, "the worker to prune the job")
            # Well past the retention, a parent whose child still waits is kept.
            assert get(app, parent).status == S.SUCCEEDED
            assert get(app, child).status == S.WAITING
            assert get(app, gate).status == S.QUEUED
            # A job that finishes while the worker runs is pruned in its turn.
            later = app.enqueue("work")
            wait_until(lambda: app.get_job(later) is None, 10, "the second job to be pruned")
        assert get(app, parent).status == S.SUCCEEDED
    finally:
        app.close()


def test_worker_without_retention_keeps_jobs(db_url: str) -> None:
    app = Forge(db_url, retention=None)
    try:
        register(app)
        done = app.enqueue("work")
        run_default(app)
        # An old limit start the worker's maintenance removes: proof that it ran.
        log_start(app, "type:work", utcnow() - timedelta(days=2))
        with worker_running(app, prune_interval=0.1):
            wait_until(
                lambda: count(db_url, "jobforge_limit_starts") == 0, 10, "a maintenance pass"
            )
        assert get(app, done).status == S.SUCCEEDED
    finally:
        app.close()


def test_retention_setting(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never.db'}"
    assert Forge(url).retention == timedelta(days=7)
    assert Forge(url, retention=90).retention == timedelta(seconds=90)
    assert Forge(url, retention=0.5).retention == timedelta(seconds=0.5)
    assert Forge(url, retention=timedelta(hours=1)).retention == timedelta(hours=1)
    assert Forge(url, retention=None).retention is None
    assert WorkerConfig().prune_interval == 60.0
