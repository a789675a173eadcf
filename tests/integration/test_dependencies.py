"""Dependencies between single jobs, through real workers on both backends: edge kinds and
conditions, skips and their propagation, timeouts, validation, graph edits and queries."""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from jobforge import (
    Forge,
    InvalidTransition,
    Job,
    JobContext,
    JobNotFound,
    JobOptions,
    JobSpec,
    JobStatus,
    PartialSuccess,
    ValidationError,
    Worker,
    WorkerConfig,
)
from jobforge.conditions import ConditionError
from jobforge.deps import CycleError, DependencyError, MissingDependency
from jobforge.jobs import readable_id
from jobforge.testing import run_until_idle
from jobforge.worker.worker import WorkerStats

FAST: dict[str, Any] = {"poll_interval": 0.05}
S = JobStatus


def get(app: Forge, job_id: str) -> Job:
    job = app.get_job(job_id)
    assert job is not None, f"{job_id} does not exist"
    return job


def count_jobs(app: Forge) -> int:
    return len(app.list_jobs(limit=100_000))


def run_workers(
    app: Forge,
    until: Callable[[], bool],
    *,
    workers: int = 1,
    timeout: float = 20.0,
    **config: Any,
) -> list[WorkerStats]:
    """Run `workers` non-burst workers on `app` until `until()` holds, then stop them."""
    config = {**FAST, "grace_period": 2.0, **config}

    async def main() -> list[WorkerStats]:
        ws = [Worker(app, WorkerConfig(**config)) for _ in range(workers)]
        tasks = [asyncio.create_task(w.run()) for w in ws]
        deadline = time.monotonic() + timeout
        try:
            while not await asyncio.to_thread(until):
                assert not any(t.done() for t in tasks), "a worker stopped by itself"
                assert time.monotonic() < deadline, "condition not reached in time"
                await asyncio.sleep(0.02)
        finally:
            for w in ws:
                w.request_stop()
        return list(await asyncio.gather(*tasks))

    return asyncio.run(main())


def all_terminal(app: Forge, ids: list[str]) -> Callable[[], bool]:
    return lambda: all(get(app, i).status.is_terminal for i in ids)


def assert_after(child: Job, parent: Job) -> None:
    """The child started only once the parent had completed."""
    assert parent.completed_at is not None, f"{parent.job_id} never completed"
    assert child.started_at is not None, f"{child.job_id} never started"
    assert child.started_at >= parent.completed_at, (
        f"{child.job_id} started {child.started_at} before its parent completed"
        f" {parent.completed_at}"
    )


# -- chains, waiting and release ----------------------------------------------------------


def test_chain_waits_then_runs_in_order_and_resolves_its_edges(app: Forge) -> None:
    order: list[int] = []

    @app.job(retries=0)
    def step(ctx: JobContext, n: int) -> dict[str, int]:
        order.append(n)
        return {"n": n}

    a = step.enqueue(n=1)
    b = app.enqueue("step", {"n": 2}, depends_on=[a])
    c = app.enqueue("step", {"n": 3}, depends_on=[{"job": b, "type": "sequential"}])

    jb = get(app, b)
    assert (jb.status, jb.dependency_status, jb.pending_parents) == (S.WAITING, "waiting", 1)
    assert get(app, a).dependency_status == "none"
    assert {j.job_id for j in app.list_jobs(dependency_status="waiting")} == {b, c}
    assert {j.job_id for j in app.list_jobs(status="waiting")} == {b, c}
    assert app.check_dependencies(b) == {
        "job_id": b,
        "can_execute": False,
        "pending_dependencies": 1,
        "failed_dependencies": 0,
        "dependency_status": "waiting",
    }
    [pending] = app.dependencies(b)[0]
    assert (pending.status, pending.resolved_at, pending.resolved_by) == ("pending", None, None)
    assert (pending.kind, pending.condition) == ("sequential", "succeeded")

    run_until_idle(app, concurrency=4, **FAST)

    assert order == [1, 2, 3]
    ja, jb, jc = get(app, a), get(app, b), get(app, c)
    assert [j.status for j in (ja, jb, jc)] == [S.SUCCEEDED] * 3
    assert_after(jb, ja)
    assert_after(jc, jb)
    assert (jb.dependency_status, jb.pending_parents) == ("satisfied", 0)
    into, out = app.dependencies(b)
    assert [e.parent_id for e in into] == [ja.id] and [e.child_id for e in out] == [jc.id]
    edge = into[0]
    assert edge.status == "resolved"
    assert edge.resolved_by == a  # the parent's label: its id, having no name
    assert edge.resolved_at is not None and ja.completed_at is not None
    assert ja.completed_at <= edge.resolved_at <= jb.started_at  # type: ignore[operator]
    assert app.check_dependencies(c)["can_execute"] is True
    assert edge.to_dict()["parent_id"] == a and edge.to_dict()["status"] == "resolved"


def test_waiting_job_is_never_claimed_whatever_its_priority(app: Forge) -> None:
    @app.job
    def work(ctx: JobContext) -> None:
        pass

    later = work.configure(delay=60).enqueue()
    urgent = app.enqueue("work", {}, priority=1000, depends_on=[later])
    other = work.enqueue()
    stats = run_until_idle(app, **FAST)
    assert stats.finished == {"succeeded": 1}
    assert get(app, other).status == S.SUCCEEDED
    child = get(app, urgent)
    assert (child.status, child.attempts, child.started_at) == (S.WAITING, 0, None)
    assert get(app, later).status == S.SCHEDULED


def test_priorities_order_only_jobs_whose_dependencies_are_met(app: Forge) -> None:
    order: list[str] = []

    @app.job
    def work(ctx: JobContext, tag: str) -> None:
        order.append(tag)

    parent = app.enqueue("work", {"tag": "parent"}, priority=60)
    app.enqueue("work", {"tag": "child"}, priority=100, depends_on=[parent])
    for tag, prio in [("mid1", 50), ("mid2", 50), ("low1", 10), ("low2", 10)]:
        app.enqueue("work", {"tag": tag}, priority=prio)
    run_until_idle(app, concurrency=1, prefetch=0, **FAST)
    # The child (100) cannot pass its parent (60); once released it passes everything else.
    assert order == ["parent", "child", "mid1", "mid2", "low1", "low2"]


# -- sequential conditions ---------------------------------------------------------------------


def test_sequential_conditions_against_each_outcome(app: Forge) -> None:
    ran: set[str] = set()

    @app.job(retries=0)
    def parent(ctx: JobContext, outcome: str) -> Any:
        if outcome == "fail":
            raise RuntimeError("parent failed")
        if outcome == "partial":
            return PartialSuccess({"done": 9}, errors=["one row"])
        return {"done": 10}

    @app.job
    def child(ctx: JobContext, tag: str) -> None:
        ran.add(tag)

    expected: dict[str, JobStatus] = {}
    children: dict[str, str] = {}
    for outcome in ("ok", "partial", "fail"):
        p = parent.enqueue(outcome=outcome)
        for cond in ("succeeded", "failed", "always"):
            tag = f"{outcome}/{cond}"
            children[tag] = app.enqueue(
                "child", {"tag": tag}, depends_on=[{"job": p, "condition": cond}]
            )
            runs = cond == "always" or (cond == "failed") == (outcome == "fail")
            expected[tag] = S.SUCCEEDED if runs else S.SKIPPED
    run_until_idle(app, concurrency=4, **FAST)
    assert {t: get(app, j).status for t, j in children.items()} == expected
    assert ran == {t for t, s in expected.items() if s == S.SUCCEEDED}
    skipped = get(app, children["ok/failed"])
    assert skipped.dependency_status == "failed"
    assert skipped.reason is not None
    assert re.fullmatch(
        r"skipped: parent job_[0-9a-f]{32} ended succeeded; the edge requires failed",
        skipped.reason,
    )
    assert skipped.started_at is None and skipped.completed_at is not None
    [edge] = app.dependencies(skipped.job_id)[0]
    assert edge.status == "failed"


def test_cancelled_parent_counts_as_not_succeeding(app: Forge) -> None:
    @app.job
    def work(ctx: JobContext) -> None:
        pass

    parent = work.configure(delay=60).enqueue()
    on_success = app.enqueue("work", {}, depends_on=[parent])
    on_failure = app.enqueue("work", {}, depends_on=[{"job": parent, "condition": "failed"}])
    regardless = app.enqueue("work", {}, depends_on=[{"job": parent, "condition": "always"}])
    app.cancel_job(parent)
    # Settled in the cancel's own transaction, before any worker runs.
    assert get(app, on_success).status == S.SKIPPED
    assert get(app, on_failure).status == S.QUEUED
    assert get(app, regardless).status == S.QUEUED
    assert f"parent {parent} ended cancelled" in (get(app, on_success).reason or "")
    run_until_idle(app, **FAST)
    assert get(app, on_failure).status == S.SUCCEEDED
    assert get(app, regardless).status == S.SUCCEEDED


# -- conditional edges ----------------------------------------------------------------------------


def test_conditional_branches_true_and_false(app: Forge) -> None:
    ran: list[str] = []

    @app.job(retries=0)
    def validate(ctx: JobContext, status: str, rows: int) -> dict[str, Any]:
        return {"validation_status": status, "rows": rows}

    @app.job
    def branch(ctx: JobContext, tag: str) -> None:
        ran.append(tag)

    def cond(parent: str, expr: str) -> list[dict[str, str]]:
        return [{"job": parent, "type": "conditional", "condition": expr}]

    ids: dict[str, str] = {}
    for status in ("valid", "invalid"):
        v = validate.enqueue(status=status, rows=12)
        ids[f"{status}:load"] = app.enqueue(
            "branch", {"tag": f"{status}:load"}, depends_on=cond(v, "validation_status == 'valid'")
        )
        ids[f"{status}:quarantine"] = app.enqueue(
            "branch",
            {"tag": f"{status}:quarantine"},
            depends_on=cond(v, "result.validation_status != 'valid'"),
        )
        ids[f"{status}:big"] = app.enqueue(
            "branch", {"tag": f"{status}:big"}, depends_on=cond(v, "rows > 10 && has(result.rows)")
        )
        ids[f"{status}:typo"] = app.enqueue(
            "branch", {"tag": f"{status}:typo"}, depends_on=cond(v, "no_such_field == 1")
        )
    run_until_idle(app, concurrency=4, **FAST)
    statuses = {t: get(app, j).status for t, j in ids.items()}
    assert statuses == {
        "valid:load": S.SUCCEEDED,
        "valid:quarantine": S.SKIPPED,
        "valid:big": S.SUCCEEDED,
        "valid:typo": S.SKIPPED,  # a condition that errors does not hold
        "invalid:load": S.SKIPPED,
        "invalid:quarantine": S.SUCCEEDED,
        "invalid:big": S.SUCCEEDED,
        "invalid:typo": S.SKIPPED,
    }
    assert sorted(ran) == sorted(t for t, s in statuses.items() if s == S.SUCCEEDED)
    skipped = get(app, ids["invalid:load"])
    parent_id = app.dependencies(skipped.job_id)[0][0].parent_id
    assert skipped.reason == (
        f"skipped: condition \"validation_status == 'valid'\" on parent"
        f" {readable_id(parent_id)}'s result is false"
    )
    edge = app.dependencies(ids["valid:load"])[0][0]
    assert (edge.kind, edge.condition, edge.status) == (
        "conditional",
        "validation_status == 'valid'",
        "resolved",
    )


def test_conditional_edge_fails_when_the_parent_does_not_succeed(app: Forge) -> None:
    @app.job(retries=0)
    def boom(ctx: JobContext) -> None:
        raise ValueError("no")

    @app.job
    def after(ctx: JobContext) -> None:
        pass

    parent = boom.enqueue()
    child = app.enqueue(
        "after", {}, depends_on=[{"job": parent, "type": "conditional", "condition": "true"}]
    )
    run_until_idle(app, **FAST)
    job = get(app, child)
    assert job.status == S.SKIPPED
    assert job.reason == f"skipped: parent {parent} ended failed"
    assert app.dependencies(child)[0][0].status == "failed"


def test_bad_condition_is_refused_at_creation_and_nothing_is_written(app: Forge) -> None:
    @app.job
    def work(ctx: JobContext) -> None:
        pass

    parent = work.enqueue()
    before = count_jobs(app)
    with pytest.raises(ConditionError, match=r"^Invalid condition 'rows >': "):
        app.enqueue(
            "work", {}, depends_on=[{"job": parent, "type": "conditional", "condition": "rows >"}]
        )
    with pytest.raises(DependencyError, match="Invalid condition 'rows > 1' for a sequential"):
        app.enqueue("work", {}, depends_on=[{"job": parent, "condition": "rows > 1"}])
    with pytest.raises(DependencyError, match="Invalid dependency type 'later'"):
        app.enqueue("work", {}, depends_on=[{"job": parent, "type": "later"}])
    assert count_jobs(app) == before


# -- skips propagate ---------------------------------------------------------------------------


def test_skips_propagate_respecting_each_edges_condition(app: Forge) -> None:
    ran: set[str] = set()

    @app.job(retries=0)
    def node(ctx: JobContext, tag: str, fail: bool = False) -> dict[str, str]:
        ran.add(tag)
        if fail:
            raise RuntimeError(tag)
        return {"tag": tag}

    def add(tag: str, *deps: Any, fail: bool = False) -> str:
        return app.enqueue("node", {"tag": tag, "fail": fail}, depends_on=list(deps))

    a = add("a", fail=True)
    b = add("b", a)  # skipped: a failed
    c = add("c", {"job": b, "condition": "failed"})  # runs: b did not succeed
    d = add("d", {"job": b, "condition": "always"})  # runs
    e = add("e", b)  # skipped
    f = add("f", {"job": e, "type": "conditional", "condition": "tag == 'e'"})  # skipped
    g = add("g", c, d)  # runs
    h = add("h", {"job": f, "type": "parallel"})  # skipped: f never started
    i = add("i", {"job": h, "condition": "always"}, {"job": e, "condition": "failed"})  # runs
    run_until_idle(app, concurrency=4, **FAST)

    status = {t: get(app, j).status for t, j in dict(a=a, b=b, c=c, d=d, e=e, f=f, g=g, h=h,
                                                      i=i).items()}  # fmt: skip
    assert status == {
        "a": S.FAILED,
        "b": S.SKIPPED,
        "c": S.SUCCEEDED,
        "d": S.SUCCEEDED,
        "e": S.SKIPPED,
        "f": S.SKIPPED,
        "g": S.SUCCEEDED,
        "h": S.SKIPPED,
        "i": S.SUCCEEDED,
    }
    assert ran == {"a", "c", "d", "g", "i"}
    assert get(app, b).reason == f"skipped: parent {a} ended failed; the edge requires succeeded"
    assert get(app, e).reason == f"skipped: parent {b} ended skipped; the edge requires succeeded"
    assert get(app, f).reason == f"skipped: parent {e} ended skipped"
    assert get(app, h).reason == f"skipped: parent {f} ended skipped without starting"
    for ref in (c, d, g, i):
        assert_after(get(app, ref), get(app, a))


def test_new_child_of_a_finished_parent_is_settled_at_once(app: Forge) -> None:
    @app.job(retries=0)
    def node(ctx: JobContext, fail: bool = False) -> None:
        if fail:
            raise RuntimeError("x")

    good, bad = node.enqueue(), node.enqueue(fail=True)
    run_until_idle(app, **FAST)
    released = get(app, app.enqueue("node", {}, depends_on=[good]))
    assert (released.status, released.dependency_status) == (S.QUEUED, "satisfied")
    skipped = get(app, app.enqueue("node", {}, depends_on=[bad]))
    assert skipped.status == S.SKIPPED
    assert skipped.reason == f"skipped: parent {bad} ended failed; the edge requires succeeded"
    on_fail = get(app, app.enqueue("node", {}, depends_on=[{"job": bad, "condition": "failed"}]))
    assert on_fail.status == S.QUEUED
    parallel = get(app, app.enqueue("node", {}, depends_on=[{"job": bad, "type": "parallel"}]))
    assert parallel.status == S.QUEUED  # the parent did start
    # Both kinds at once: one edge holds, the other never will.
    mixed = get(app, app.enqueue("node", {}, depends_on=[good, bad]))
    assert mixed.status == S.SKIPPED


# -- parallel edges --------------------------------------------------------------------------


def test_parallel_child_starts_while_its_parent_is_still_running(app: Forge) -> None:
    child_started = threading.Event()

    @app.job(retries=0)
    def server(ctx: JobContext) -> bool:
        return child_started.wait(10)  # finishes only once the child has started

    @app.job(retries=0)
    def client(ctx: JobContext) -> None:
        child_started.set()

    @app.job
    def after(ctx: JobContext) -> None:
        pass

    parent = server.enqueue()
    child = app.enqueue("client", {}, depends_on=[{"job": parent, "type": "parallel"}])
    late = app.enqueue("after", {}, depends_on=[parent])
    assert get(app, child).status == S.WAITING
    run_until_idle(app, concurrency=2, **FAST)
    p, c, lt = get(app, parent), get(app, child), get(app, late)
    assert p.status == c.status == lt.status == S.SUCCEEDED
    assert p.result is True  # the parent saw its child start
    assert p.started_at is not None and c.started_at is not None
    assert p.completed_at is not None
    assert p.started_at <= c.started_at < p.completed_at
    assert_after(lt, p)
    edge = app.dependencies(child)[0][0]
    assert (edge.kind, edge.condition, edge.status, edge.resolved_by) == (
        "parallel",
        None,
        "resolved",
        parent,
    )


def test_parallel_child_is_skipped_if_its_parent_never_starts(app: Forge) -> None:
    @app.job
    def work(ctx: JobContext) -> None:
        pass

    parent = work.configure(delay=60).enqueue()
    child = app.enqueue("work", {}, depends_on=[{"job": parent, "type": "parallel"}])
    app.cancel_job(parent)
    job = get(app, child)
    assert job.status == S.SKIPPED
    assert job.reason == f"skipped: parent {parent} ended cancelled without starting"


# -- dependency timeouts ------------------------------------------------------------------------


def test_dependency_timeout_fails_a_job_still_waiting(app: Forge) -> None:
    @app.job
    def work(ctx: JobContext) -> None:
        pass

    slow_parent = work.configure(delay=60).enqueue()
    quick_parent = work.enqueue()
    stuck = app.enqueue("work", {}, depends_on=[slow_parent], dependency_timeout=0.3)
    fine = app.enqueue("work", {}, depends_on=[quick_parent], dependency_timeout=30)
    below = app.enqueue("work", {}, depends_on=[stuck])
    regardless = app.enqueue("work", {}, depends_on=[{"job": stuck, "condition": "always"}])
    job = get(app, stuck)
    assert job.dependency_deadline is not None
    assert 0.2 < (job.dependency_deadline - job.created_at).total_seconds() < 0.4
    began = time.monotonic()
    run_workers(app, all_terminal(app, [stuck, fine, below, regardless]), rescue_interval=0.1)
    assert time.monotonic() - began >= 0.25  # not before its deadline
    job = get(app, stuck)
    assert (job.status, job.dependency_status, job.started_at) == (S.FAILED, "failed", None)
    assert job.reason == "dependency timeout: still waiting for 1 parent(s) at its deadline"
    assert job.completed_at is not None and job.dependency_deadline is not None
    assert job.completed_at >= job.dependency_deadline
    assert get(app, fine).status == S.SUCCEEDED
    assert get(app, below).status == S.SKIPPED
    assert get(app, regardless).status == S.SUCCEEDED
    assert get(app, slow_parent).status == S.SCHEDULED  # the parent itself is untouched


# -- validation before anything is written -----------------------------------------------------


def test_missing_parent_is_refused_and_nothing_is_written(app: Forge) -> None:
    @app.job
    def work(ctx: JobContext) -> None:
        pass

    real = work.enqueue()
    before = count_jobs(app)
    ghost = readable_id(uuid.uuid4())
    with pytest.raises(MissingDependency) as info:
        app.enqueue("work", {}, depends_on=[real, ghost])
    # The new job has no id anyone has seen yet: it is named by its type.
    assert str(info.value) == f"Dependency not found: {ghost} (required by the new work job)"
    with pytest.raises(MissingDependency, match=r"^Dependency not found: extract \(required by"):
        app.enqueue("work", {}, depends_on=["extract"])
    # One bad spec in a batch: none of the batch is written.
    with pytest.raises(MissingDependency):
        app.enqueue_many(
            [
                JobSpec("work", {}),
                JobSpec("work", {}, JobOptions(depends_on=[ghost])),
            ]
        )
    assert count_jobs(app) == before
    assert get(app, real).status == S.QUEUED
    assert app.dependencies(real) == ([], [])


def test_cycle_through_add_dependency_is_refused(app: Forge) -> None:
    @app.job
    def work(ctx: JobContext) -> None:
        pass

    a = work.enqueue()
    b = app.enqueue("work", {}, depends_on=[a])
    c = app.enqueue("work", {}, depends_on=[b])
    with pytest.raises(CycleError) as info:
        app.add_dependency(c, a)
    assert str(info.value) == f"Circular dependency detected: {a} -> ... -> {c} -> {a}"
    with pytest.raises(CycleError, match="Circular dependency detected"):
        app.add_dependency(b, a)
    with pytest.raises(CycleError, match="Circular dependency detected"):
        app.add_dependency(a, a)  # itself
    # Nothing changed: a is still runnable with no parents.
    ja = get(app, a)
    assert (ja.status, ja.pending_parents, ja.dependency_status) == (S.QUEUED, 0, "none")
    assert app.dependencies(a)[0] == []
    run_until_idle(app, **FAST)
    assert [get(app, x).status for x in (a, b, c)] == [S.SUCCEEDED] * 3


def test_depth_limit(db_url: str) -> None:
    app = Forge(db_url, max_dependency_depth=2)
    try:

        @app.job
        def work(ctx: JobContext) -> None:
            pass

        a = work.enqueue()
        b = app.enqueue("work", {}, depends_on=[a])
        c = app.enqueue("work", {}, depends_on=[b])
        assert [get(app, x).depth for x in (a, b, c)] == [0, 1, 2]
        before = count_jobs(app)
        with pytest.raises(DependencyError) as info:
            app.enqueue("work", {}, depends_on=[a, c])  # 3 deep through c
        assert str(info.value) == (
            "Dependency depth limit exceeded: the new work job is 3 levels deep (limit 2)"
        )
        assert count_jobs(app) == before
        assert app.dependencies(c)[1] == []
        # At the limit is fine.
        d = app.enqueue("work", {}, depends_on=[a, b])
        assert get(app, d).depth == 2
    finally:
        app.close()


# -- editing the graph -----------------------------------------------------------------------------


def test_add_and_remove_dependency_between_waiting_jobs(app: Forge) -> None:
    order: list[str] = []

    @app.job
    def work(ctx: JobContext, tag: str) -> None:
        order.append(tag)

    a = app.enqueue("work", {"tag": "a"}, delay=60)  # will not finish during the test
    b = app.enqueue("work", {"tag": "b"})
    c = app.enqueue("work", {"tag": "c"}, priority=10)
    e1 = app.add_dependency(a, c)
    e2 = app.add_dependency(b, c, type="sequential", condition="always")
    assert (e1.kind, e1.condition, e1.status) == ("sequential", "succeeded", "pending")
    assert (e2.condition, e2.parent_id, e2.child_id) == ("always", get(app, b).id, get(app, c).id)
    jc = get(app, c)
    assert (jc.status, jc.pending_parents, jc.dependency_status) == (S.WAITING, 2, "waiting")
    assert {e.id for e in app.dependencies(c)[0]} == {e1.id, e2.id}

    app.remove_dependency(str(e1.id))
    jc = get(app, c)
    assert (jc.status, jc.pending_parents) == (S.WAITING, 1)  # still waiting for b
    assert [e.id for e in app.dependencies(c)[0]] == [e2.id]
    assert app.dependencies(a)[1] == []

    run_until_idle(app, concurrency=1, prefetch=0, **FAST)
    # c no longer waits for a (still scheduled), but does wait for b.
    assert order == ["b", "c"]
    assert get(app, a).status == S.SCHEDULED


def test_removing_the_last_edge_releases_the_job(app: Forge) -> None:
    @app.job
    def work(ctx: JobContext) -> None:
        pass

    parent = work.configure(delay=60).enqueue()
    child = app.enqueue("work", {}, depends_on=[parent])
    [edge] = app.dependencies(child)[0]
    app.remove_dependency(str(edge.id))
    job = get(app, child)
    assert (job.status, job.pending_parents) == (S.QUEUED, 0)
    run_until_idle(app, **FAST)
    assert get(app, child).status == S.SUCCEEDED
    with pytest.raises(JobNotFound, match=f"Dependency not found: {edge.id}"):
        app.remove_dependency(str(edge.id))
    with pytest.raises(ValidationError, match="Invalid dependency id: 'nope'"):
        app.remove_dependency("nope")


def test_add_dependency_on_a_finished_parent_resolves_at_once(app: Forge) -> None:
    @app.job(retries=0)
    def work(ctx: JobContext, fail: bool = False) -> None:
        if fail:
            raise RuntimeError("x")

    good, bad = work.enqueue(), work.enqueue(fail=True)
    run_until_idle(app, **FAST)
    target = work.configure(delay=60).enqueue()
    edge = app.add_dependency(good, target)
    assert get(app, target).status == S.SCHEDULED  # still due later, nothing to wait for
    assert app.dependencies(target)[0][0].status == "resolved"
    assert edge.id == app.dependencies(target)[0][0].id
    doomed = work.enqueue()
    app.add_dependency(bad, doomed)
    job = get(app, doomed)
    assert job.status == S.SKIPPED
    assert job.reason == f"skipped: parent {bad} ended failed; the edge requires succeeded"


def test_edges_can_change_only_on_jobs_not_yet_started(app: Forge) -> None:
    @app.job
    def work(ctx: JobContext) -> None:
        pass

    a = work.enqueue()
    b = app.enqueue("work", {}, depends_on=[a])
    run_until_idle(app, **FAST)
    c = work.configure(delay=60).enqueue()
    with pytest.raises(InvalidTransition) as info:
        app.add_dependency(c, b)
    assert str(info.value) == f"Cannot add a dependency to {b}: it is succeeded"
    [edge] = app.dependencies(b)[0]
    with pytest.raises(InvalidTransition, match=f"Cannot remove a dependency of {b}: it is"):
        app.remove_dependency(str(edge.id))
    assert app.dependencies(b)[0][0].id == edge.id
    with pytest.raises(MissingDependency, match="Dependency not found"):
        app.add_dependency(readable_id(uuid.uuid4()), c)
    with pytest.raises(JobNotFound):
        app.add_dependency(a, readable_id(uuid.uuid4()))
    with pytest.raises(DependencyError, match="Invalid dependency type 'soon'"):
        app.add_dependency(a, c, type="soon")
    with pytest.raises(ConditionError):
        app.add_dependency(a, c, type="conditional", condition="x ==")
    assert app.dependencies(c) == ([], [])
    assert get(app, c).status == S.SCHEDULED


# -- explain and graph queries ------------------------------------------------------------------


def test_explain_waiting_and_skipped_jobs(app: Forge) -> None:
    @app.job(retries=0)
    def work(ctx: JobContext, fail: bool = False) -> None:
        if fail:
            raise RuntimeError("x")

    done = work.enqueue()
    run_until_idle(app, **FAST)
    later = work.configure(delay=60).enqueue()
    waiting = app.enqueue(
        "work",
        {},
        depends_on=[done, {"job": later, "type": "conditional", "condition": "ok == true"}],
    )
    ex = app.explain(waiting)
    d = ex.to_dict()
    assert d["status"] == "waiting" and d["summary"] == "waiting for 1 of 2 dependencies"
    by_parent = {x["parent_id"]: x for x in d["dependencies"]}
    assert {p: (x["state"], x["edge_status"]) for p, x in by_parent.items()} == {
        done: ("satisfied", "resolved"),
        later: ("blocking", "pending"),
    }
    assert by_parent[later]["detail"] == (
        "released when the parent succeeds and 'ok == true' holds for its result"
    )
    assert by_parent[later]["dependency_type"] == "conditional"
    assert by_parent[later]["parent_status"] == "scheduled"
    text = ex.text()
    assert text.splitlines()[0] == f"{waiting} (work): waiting for 1 of 2 dependencies"
    assert f"… work {later} is scheduled — conditional [ok == true]" in text
    assert f"✓ work {done} is succeeded — sequential [succeeded]: satisfied at " in text

    failing = work.enqueue(fail=True)
    skipped = app.enqueue("work", {}, depends_on=[failing])
    run_until_idle(app, **FAST)
    ex = app.explain(skipped)
    assert ex.summary == f"skipped — parent {failing} ended failed; the edge requires succeeded"
    assert ex.to_dict()["dependencies"][0]["state"] == "failed"
    assert "✗ work" in ex.text() and "the parent did not succeed" in ex.text()
    ready = app.explain(done)
    assert ready.summary == "succeeded" and ready.edges == []


def test_parents_children_ancestors_descendants(app: Forge) -> None:
    @app.job
    def work(ctx: JobContext) -> None:
        pass

    a = work.enqueue()
    b = app.enqueue("work", {}, depends_on=[a])
    c = app.enqueue("work", {}, depends_on=[a])
    d = app.enqueue("work", {}, depends_on=[b, c])
    e = app.enqueue("work", {}, depends_on=[{"job": d, "type": "parallel"}])
    x = work.enqueue()  # unrelated

    def ids(jobs: list[Job]) -> set[str]:
        return {j.job_id for j in jobs}

    assert ids(app.parents(d)) == {b, c}
    assert ids(app.children(a)) == {b, c}
    assert ids(app.ancestors(e)) == {a, b, c, d}
    assert next(j.job_id for j in app.ancestors(e)) == a  # shallowest first
    assert ids(app.descendants(a)) == {b, c, d, e}
    assert ids(app.descendants(b)) == {d, e}
    assert app.ancestors(a) == [] and app.descendants(e) == []
    assert app.ancestors(x) == app.descendants(x) == []
    assert [get(app, r).depth for r in (a, b, d, e)] == [0, 1, 2, 3]
    with pytest.raises(JobNotFound):
        app.ancestors(readable_id(uuid.uuid4()))


# -- several workers on one DAG --------------------------------------------------------------------


def test_concurrent_workers_never_start_a_job_before_its_parents(app: Forge) -> None:
    rng = random.Random(7)

    @app.job
    def node(ctx: JobContext, k: int) -> int:
        time.sleep(rng.choice([0.0, 0.005, 0.02]))
        return k

    layers: list[list[str]] = []
    parents_of: dict[str, list[str]] = {}
    for depth in range(6):
        layer = []
        for k in range(7):
            pool = [j for lay in layers[-2:] for j in lay]
            ps = rng.sample(pool, min(len(pool), rng.randint(1, 3))) if pool else []
            ref = app.enqueue("node", {"k": depth * 10 + k}, depends_on=ps)
            parents_of[ref] = ps
            layer.append(ref)
        layers.append(layer)
    ids = list(parents_of)
    stats = run_workers(app, all_terminal(app, ids), workers=3, concurrency=2, prefetch=0)
    jobs = {i: get(app, i) for i in ids}
    assert all(j.status == S.SUCCEEDED for j in jobs.values())
    assert sum(s.claimed for s in stats) == len(ids)
    assert sum(1 for s in stats if s.claimed) >= 2, "the work was not shared"
    checked = 0
    for child, ps in parents_of.items():
        for p in ps:
            assert_after(jobs[child], jobs[p])
            checked += 1
    assert checked > 40


def test_two_parents_finishing_at_once_release_their_child_exactly_once(pg_url: str) -> None:
    """Each parent's transaction takes its edge off the child's count. The second blocks on
    the child's row until the first commits, then reads the row again: it sees the count the
    first left and releases the child (the first, seeing a parent still pending, did not)."""
    import psycopg

    from jobforge.store.base import ClaimParams, Outcome

    app = Forge(pg_url)

    @app.job
    def node(ctx: JobContext) -> None: ...

    a, b = node.enqueue(), node.enqueue()
    child = app.enqueue("node", {}, depends_on=[a, b])
    claimed = app.store.claim_jobs(ClaimParams("w", ["node"], None, 10, 30.0))
    assert sorted(j.job_id for j in claimed) == sorted([a, b])
    first, second = ([Outcome(j.id, j.lease_token or "", S.SUCCEEDED)] for j in claimed)
    with psycopg.connect(pg_url) as conn:
        app.store.bound(conn).finish_jobs(first)  # in conn's transaction, not committed
        other = threading.Thread(target=app.store.finish_jobs, args=(second,))
        other.start()
        other.join(0.5)
        assert other.is_alive()  # waiting for the child's row
        assert get(app, child).status == S.WAITING
        conn.commit()
    other.join(10)
    job = get(app, child)
    assert (job.status, job.pending_parents, job.dependency_status) == (S.QUEUED, 0, "satisfied")
    with psycopg.connect(pg_url) as conn:
        queued = conn.execute(
            "SELECT count(*) FROM jobforge_events WHERE object_id = %s AND status = 'queued'",
            (job.id,),
        ).fetchone()
    assert queued == (1,)
    app.close()
