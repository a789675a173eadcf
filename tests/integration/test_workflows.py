"""DAG workflows through real workers on both backends: building, fan-out/fan-in, conditional
branches, failure policies, cancel, retry, resume, stats, validation and graph export."""

from __future__ import annotations

import json
import re
import threading
import time
import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pydot
import pytest

from jobforge import (
    Cancel,
    Dependency,
    Forge,
    InvalidTransition,
    Job,
    JobContext,
    JobOptions,
    JobSpec,
    JobStatus,
    UnknownJobType,
    ValidationError,
    Worker,
    Workflow,
    WorkflowJob,
    testing,
)
from jobforge.deps import CycleError, DependencyError, MissingDependency
from jobforge.store.graph import WorkflowNotFound
from jobforge.testing import run_until_idle
from jobforge.workflows import picture
from jobforge.workflows.files import load_workflow_file
from jobforge.workflows.records import WorkflowRecord

FAST: dict[str, Any] = {"poll_interval": 0.05}
SVG = "http://www.w3.org/2000/svg"
S = JobStatus


# -- helpers ----------------------------------------------------------------------------------


def wf_get(app: Forge, ref: str) -> WorkflowRecord:
    wf = app.get_workflow(ref)
    assert wf is not None, f"{ref} does not exist"
    return wf


def jobs_by_name(app: Forge, ref: str) -> dict[str, Job]:
    return {j.name or "": j for j in app.workflow_jobs(ref)}


def statuses(app: Forge, ref: str) -> dict[str, str]:
    return {n: j.status.value for n, j in jobs_by_name(app, ref).items()}


def wait_until(cond: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} not reached in time"
        time.sleep(0.02)


def settled(app: Forge, ref: str) -> Callable[[], bool]:
    return lambda: wf_get(app, ref).completed_at is not None


def worker_running(app: Forge, **config: Any) -> AbstractContextManager[Worker]:
    """A non-burst worker on its own thread for the duration of the block."""
    return testing.worker_running(app, **{**FAST, **config})


def run_until_settled(app: Forge, ref: str, **config: Any) -> None:
    """Run a worker until the workflow has completed (unlike burst mode, waits for delays)."""
    with worker_running(app, **config):
        wait_until(settled(app, ref), what=f"completion of {ref}")


def assert_after(child: Job, parent: Job) -> None:
    assert parent.completed_at is not None and child.started_at is not None
    assert child.started_at >= parent.completed_at, f"{child.name} started before {parent.name}"


# -- building and running -------------------------------------------------------------------


def test_chain_parallel_barrier_and_explicit_edges(app: Forge) -> None:
    runs: list[str] = []

    @app.job
    def step(ctx: JobContext, tag: str = "") -> dict[str, str]:
        runs.append(ctx.job.name or "")
        return {"tag": tag}

    wf = (
        Workflow("etl", description="nightly", metadata={"team": "data"}, trace_id="t-1")
        .add(step.spec(tag="e"), name="extract")
        .then(step.spec(), name="validate")
        .parallel(
            [
                WorkflowJob("shard_a", "step"),
                WorkflowJob("shard_b", "step"),
                WorkflowJob("shard_c", "step"),
            ]
        )
        .then(step.spec(), name="summary")
        .add(step.spec(), name="audit", depends_on=["extract", "summary"])
    )
    ref = app.enqueue_workflow(wf)
    assert ref.startswith("wf_")
    rec = wf_get(app, ref)
    assert (rec.name, rec.status, rec.failure_policy) == ("etl", "pending", "fail_fast")
    assert (rec.description, rec.metadata, rec.trace_id) == ("nightly", {"team": "data"}, "t-1")
    assert rec.stats() == {
        "total": 7, "waiting": 6, "queued": 1, "running": 0, "succeeded": 0, "failed": 0,
        "skipped": 0, "cancelled": 0, "completion_percentage": 0.0,
    }  # fmt: skip
    assert statuses(app, ref)["extract"] == "queued"
    edges = {(e.parent_id, e.child_id) for e in app.workflow_edges(ref) if e.workflow_id == rec.id}
    assert len(edges) == 1 + 3 + 3 + 2

    run_until_idle(app, concurrency=4, **FAST)

    rec = wf_get(app, ref)
    assert rec.status == "succeeded" and rec.completed_at is not None
    assert rec.stats()["succeeded"] == 7 and rec.stats()["completion_percentage"] == 100.0
    jobs = jobs_by_name(app, ref)
    assert all(j.workflow_id == rec.id and j.trace_id == "t-1" for j in jobs.values())
    assert sorted(runs) == sorted(jobs)
    for shard in ("shard_a", "shard_b", "shard_c"):
        assert_after(jobs[shard], jobs["validate"])
        assert_after(jobs["summary"], jobs[shard])  # the barrier
    assert_after(jobs["audit"], jobs["summary"])
    assert jobs["extract"].result == {"tag": "e"}
    assert all(e.status == "resolved" for e in app.workflow_edges(ref))
    assert {e.resolved_by for e in app.workflow_edges(ref)} == {
        "extract", "validate", "shard_a", "shard_b", "shard_c", "summary",
    }  # fmt: skip
    assert [w.workflow_id for w in app.list_workflows(status="succeeded")] == [ref]


def test_fan_out_fan_in_of_a_thousand(app: Forge) -> None:
    done = 0
    lock = threading.Lock()
    seen_at_fan_in: list[int] = []

    @app.job
    def root(ctx: JobContext) -> None:
        pass

    @app.job
    def leaf(ctx: JobContext, i: int) -> int:
        nonlocal done
        with lock:
            done += 1
        return i

    @app.job
    def gather(ctx: JobContext) -> None:
        seen_at_fan_in.append(done)

    n = 1000
    wf = Workflow("fan").add(root.spec()).parallel([leaf.spec(i=i) for i in range(n)])
    wf.then(gather.spec())
    ref = app.enqueue_workflow(wf)
    assert wf_get(app, ref).stats()["waiting"] == n + 1
    run_until_idle(app, concurrency=8, prefetch=32, **FAST)
    rec = wf_get(app, ref)
    assert rec.status == "succeeded"
    assert rec.stats()["succeeded"] == n + 2 == rec.stats()["total"]
    assert seen_at_fan_in == [n]
    jobs = app.workflow_jobs(ref)
    fan_in = next(j for j in jobs if j.type == "gather")
    leaves = [j for j in jobs if j.type == "leaf"]
    assert len(leaves) == n and fan_in.started_at is not None
    assert fan_in.started_at >= max(j.completed_at for j in leaves if j.completed_at)
    assert sorted(j.result for j in leaves) == list(range(n))
    assert len(app.dependencies(fan_in.job_id)[0]) == n


def test_conditional_branches_true_and_false(app: Forge) -> None:
    @app.job(retries=0)
    def validate(ctx: JobContext, ok: bool) -> dict[str, Any]:
        return {"validation_status": "valid" if ok else "invalid", "rows": 5}

    @app.job
    def act(ctx: JobContext) -> None:
        pass

    refs = {}
    for ok in (True, False):
        wf = Workflow(f"branch-{ok}").add(validate.spec(ok=ok), name="validate")
        wf.add(
            act.spec(),
            name="load",
            depends_on=[Dependency("validate", "conditional", "validation_status == 'valid'")],
        )
        wf.add(
            act.spec(),
            name="quarantine",
            depends_on=[{"job": "validate", "type": "conditional",
                         "condition": "result.validation_status == 'invalid' && rows > 0"}],
        )  # fmt: skip
        wf.add(act.spec(), name="after_load", depends_on=["load"])
        wf.add(
            act.spec(),
            name="report",
            depends_on=[
                {"job": "load", "condition": "always"},
                {"job": "quarantine", "condition": "always"},
            ],
        )
        refs[ok] = app.enqueue_workflow(wf)
    run_until_idle(app, concurrency=4, **FAST)
    assert statuses(app, refs[True]) == {
        "validate": "succeeded", "load": "succeeded", "quarantine": "skipped",
        "after_load": "succeeded", "report": "succeeded",
    }  # fmt: skip
    assert statuses(app, refs[False]) == {
        "validate": "succeeded", "load": "skipped", "quarantine": "succeeded",
        "after_load": "skipped", "report": "succeeded",
    }  # fmt: skip
    # A branch not taken is no failure.
    assert wf_get(app, refs[True]).status == wf_get(app, refs[False]).status == "succeeded"
    skipped = jobs_by_name(app, refs[False])
    assert skipped["load"].reason == (
        "skipped: condition \"validation_status == 'valid'\" on parent validate's result is false"
    )
    assert skipped["after_load"].reason == (
        "skipped: parent load ended skipped; the edge requires succeeded"
    )
    assert_after(skipped["report"], skipped["quarantine"])


# -- failure policies ------------------------------------------------------------------------


def test_fail_fast_cancels_what_has_not_started(app: Forge) -> None:
    slow_started = threading.Event()
    saw_cancel: list[bool] = []

    @app.job(retries=0)
    def boom(ctx: JobContext) -> None:
        assert slow_started.wait(10)
        raise RuntimeError("bad input")

    @app.job
    def slow(ctx: JobContext) -> str:
        slow_started.set()
        deadline = time.monotonic() + 10
        while not ctx.cancel_requested and time.monotonic() < deadline:
            time.sleep(0.01)
        saw_cancel.append(ctx.cancel_requested)
        return "stopped"

    @app.job
    def ok(ctx: JobContext) -> None:
        pass

    wf = Workflow("ff").add(boom.spec(), name="boom").then(ok.spec(), name="after_boom")
    wf.add(slow.spec(), name="slow").then(ok.spec(), name="after_slow")
    wf.add(ok.spec(), name="later", depends_on=[{"job": "slow", "condition": "always"}])
    wf.add(JobSpec("ok", {}, JobOptions(delay=60)), name="delayed")
    ref = app.enqueue_workflow(wf)
    run_until_idle(app, concurrency=2, lease_seconds=0.6, heartbeat_interval=0.05, **FAST)

    rec = wf_get(app, ref)
    assert rec.status == "failed"
    assert rec.reason == "job boom failed"
    assert rec.completed_at is not None
    jobs = jobs_by_name(app, ref)
    assert {n: j.status.value for n, j in jobs.items()} == {
        "boom": "failed", "after_boom": "cancelled", "slow": "succeeded",
        "after_slow": "cancelled", "later": "cancelled", "delayed": "cancelled",
    }  # fmt: skip
    assert saw_cancel == [True]  # the running job was asked to stop
    assert jobs["after_boom"].reason == "cancelled: workflow failed fast (job boom failed)"
    assert all(jobs[n].started_at is None for n in ("after_boom", "after_slow", "delayed"))
    assert rec.stats()["cancelled"] == 4 and rec.stats()["completion_percentage"] == 100.0


def test_continue_on_failure_runs_independent_branches(app: Forge) -> None:
    @app.job(retries=0)
    def node(ctx: JobContext, fail: bool = False) -> None:
        if fail:
            raise RuntimeError("no")

    for optional, expected in ((False, "failed"), (True, "succeeded")):
        wf = Workflow(f"c-{optional}", failure_policy="continue_on_failure")
        wf.add(node.spec(fail=True), name="bad", optional=optional)
        wf.then(node.spec(), name="b").then(node.spec(), name="c")
        wf.add(node.spec(), name="x").then(node.spec(), name="y")
        wf.add(node.spec(), name="cleanup", depends_on=[{"job": "bad", "condition": "failed"}])
        ref = app.enqueue_workflow(wf)
        run_until_idle(app, concurrency=2, **FAST)
        assert statuses(app, ref) == {
            "bad": "failed", "b": "skipped", "c": "skipped", "x": "succeeded",
            "y": "succeeded", "cleanup": "succeeded",
        }  # fmt: skip
        rec = wf_get(app, ref)
        assert rec.status == expected, f"optional={optional}"
        assert rec.stats() == {
            "total": 6, "waiting": 0, "queued": 0, "running": 0, "succeeded": 3, "failed": 1,
            "skipped": 2, "cancelled": 0, "completion_percentage": 100.0,
        }  # fmt: skip
        assert jobs_by_name(app, ref)["c"].reason == (
            "skipped: parent b ended skipped; the edge requires succeeded"
        )


def test_workflow_ends_when_a_cascade_skips_a_child_another_parent_just_counted(
    app: Forge,
) -> None:
    """One finish batch: `a` succeeds (its child `c` still waits for `b`) and `x` fails, which
    skips `b` and then `c`. Nothing is left to run, so the same transaction ends the workflow."""
    from jobforge.store.base import ClaimParams, Outcome

    @app.job(retries=0)
    def node(ctx: JobContext) -> None: ...

    wf = Workflow("cascade", failure_policy="continue_on_failure")
    wf.add(node.spec(), name="x").add(node.spec(), name="a")
    wf.add(node.spec(), name="b", depends_on=["x"])
    wf.add(node.spec(), name="c", depends_on=["a", "b"])
    ref = app.enqueue_workflow(wf)
    claimed = app.store.claim_jobs(ClaimParams("w", ["node"], None, 10, 30.0))
    assert sorted(j.name or "" for j in claimed) == ["a", "x"]
    app.store.finish_jobs([
        Outcome(j.id, j.lease_token or "", S.FAILED if j.name == "x" else S.SUCCEEDED)
        for j in claimed
    ])  # fmt: skip
    assert statuses(app, ref) == {"x": "failed", "a": "succeeded", "b": "skipped", "c": "skipped"}
    rec = wf_get(app, ref)
    assert rec.status == "failed" and rec.completed_at is not None


def test_finish_and_claim_takes_jobs_a_skip_cascade_released(app: Forge) -> None:
    """`x` fails: `b` is skipped, which releases `cleanup` (an `always` edge) one level later,
    after the claim riding with the first level took `y`. The worker takes `cleanup` in the
    same transaction; otherwise nothing would wake anyone for it."""
    from jobforge.store.base import ClaimParams, Outcome

    @app.job(retries=0)
    def node(ctx: JobContext) -> None: ...

    wf = Workflow("cleanup", failure_policy="continue_on_failure").add(node.spec(), name="x")
    wf.add(node.spec(), name="b", depends_on=["x"])
    wf.add(node.spec(), name="cleanup", depends_on=[{"job": "b", "condition": "always"}])
    ref = app.enqueue_workflow(wf)
    params = ClaimParams("w", ["node"], None, 5, 30.0)
    [x] = app.store.claim_jobs(params)
    y = app.enqueue("node", {})
    _, claimed = app.store.finish_and_claim(
        [Outcome(x.id, x.lease_token or "", S.FAILED)], [], params
    )
    assert sorted(j.name or j.job_id for j in claimed) == sorted(["cleanup", y])
    assert statuses(app, ref) == {"x": "failed", "b": "skipped", "cleanup": "running"}


def test_optional_failure_does_not_fail_fast(app: Forge) -> None:
    @app.job(retries=0)
    def node(ctx: JobContext, fail: bool = False) -> None:
        if fail:
            raise RuntimeError("no")

    wf = Workflow("opt")  # fail_fast
    wf.add(node.spec(fail=True), name="nice_to_have", optional=True).then(node.spec(), name="dep")
    wf.add(node.spec(), name="main").then(node.spec(), name="main2")
    ref = app.enqueue_workflow(wf)
    run_until_idle(app, concurrency=2, **FAST)
    assert statuses(app, ref) == {
        "nice_to_have": "failed", "dep": "skipped", "main": "succeeded", "main2": "succeeded",
    }  # fmt: skip
    assert wf_get(app, ref).status == "succeeded"


def manual_workflow(app: Forge, gate: threading.Event) -> tuple[str, dict[str, int]]:
    """bad fails once; x finishes only after the workflow paused; y depends on x."""
    calls: Counter[str] = Counter()

    @app.job(retries=0)
    def bad(ctx: JobContext) -> str:
        calls["bad"] += 1
        if calls["bad"] == 1:
            raise RuntimeError("first attempt fails")
        return "fixed"

    @app.job
    def gated(ctx: JobContext) -> None:
        calls[ctx.job.name or ""] += 1
        assert gate.wait(10)

    @app.job
    def node(ctx: JobContext) -> None:
        calls[ctx.job.name or ""] += 1

    wf = Workflow("m", failure_policy="manual")
    wf.add(bad.spec(), name="bad").then(node.spec(), name="after_bad")
    wf.add(gated.spec(), name="x").then(node.spec(), name="y")
    # Due soon after the failure: held by the pause instead of running.
    wf.add(JobSpec("node", {}, JobOptions(delay=1.0)), name="due_later")
    return app.enqueue_workflow(wf), calls


def pause(app: Forge, ref: str, gate: threading.Event) -> None:
    """Run until the workflow paused and x (started before the failure) has finished."""
    with worker_running(app, concurrency=2):
        wait_until(lambda: wf_get(app, ref).status == "paused", what="pause")
        gate.set()
        wait_until(lambda: statuses(app, ref)["x"] == "succeeded", what="x done")
        time.sleep(0.3)  # a worker had every chance to start y
    jobs = jobs_by_name(app, ref)
    rec = wf_get(app, ref)
    assert (rec.status, rec.reason, rec.completed_at) == ("paused", "job bad failed", None)
    # Nothing new started while paused: y was released by x but is held.
    assert jobs["y"].status == S.WAITING and jobs["y"].started_at is None
    assert jobs["after_bad"].status == S.WAITING and jobs["after_bad"].started_at is None
    assert jobs["due_later"].status == S.WAITING
    assert jobs["due_later"].reason == "held: workflow paused, job bad failed"
    ex = app.explain(jobs["y"].job_id)
    assert ex.to_dict()["dependencies"][0]["state"] == "satisfied"
    assert "waiting" in ex.summary


def test_manual_policy_pauses_then_resume_continues(app: Forge) -> None:
    gate = threading.Event()
    ref, calls = manual_workflow(app, gate)
    pause(app, ref, gate)
    rec = app.resume_workflow(ref)
    assert rec.status in ("running", "failed")
    with pytest.raises(InvalidTransition, match="not paused"):
        app.resume_workflow(ref)
    run_until_settled(app, ref, concurrency=2)
    assert statuses(app, ref) == {
        "bad": "failed", "after_bad": "skipped", "x": "succeeded", "y": "succeeded",
        "due_later": "succeeded",
    }  # fmt: skip
    rec = wf_get(app, ref)
    assert rec.status == "failed" and rec.completed_at is not None
    assert calls["bad"] == 1 and calls["after_bad"] == 0


def test_manual_policy_retrying_the_failed_job_resumes(app: Forge) -> None:
    gate = threading.Event()
    ref, calls = manual_workflow(app, gate)
    pause(app, ref, gate)
    bad = jobs_by_name(app, ref)["bad"]
    app.retry_job(bad.job_id)
    assert wf_get(app, ref).status == "running"
    run_until_settled(app, ref, concurrency=2)
    assert statuses(app, ref) == {
        "bad": "succeeded", "after_bad": "succeeded", "x": "succeeded", "y": "succeeded",
        "due_later": "succeeded",
    }  # fmt: skip
    assert wf_get(app, ref).status == "succeeded"
    assert calls["bad"] == 2 and calls["x"] == 1 and calls["y"] == 1
    assert jobs_by_name(app, ref)["bad"].result == "fixed"


def test_manual_policy_cancel_a_paused_workflow(app: Forge) -> None:
    gate = threading.Event()
    ref, calls = manual_workflow(app, gate)
    pause(app, ref, gate)
    rec = app.cancel_workflow(ref)
    assert rec.status == "cancelled" and rec.completed_at is not None
    assert statuses(app, ref) == {
        "bad": "failed", "after_bad": "cancelled", "x": "succeeded", "y": "cancelled",
        "due_later": "cancelled",
    }  # fmt: skip
    run_until_idle(app, **FAST)
    assert calls["y"] == calls["after_bad"] == calls["due_later"] == 0


# -- cancel, retry -------------------------------------------------------------------------------


def test_cancel_workflow_stops_everything_and_running_jobs_see_it(app: Forge) -> None:
    seen: list[bool] = []

    @app.job
    def long(ctx: JobContext) -> None:
        deadline = time.monotonic() + 10
        while not ctx.cancel_requested and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(ctx.cancel_requested)
        raise Cancel()

    @app.job
    def node(ctx: JobContext) -> None:
        pass

    wf = Workflow("c").add(long.spec(), name="long").then(node.spec(), name="after")
    wf.add(node.spec(), name="side", depends_on=[{"job": "long", "type": "parallel"}])
    wf.add(JobSpec("node", {}, JobOptions(delay=60)), name="delayed")
    ref = app.enqueue_workflow(wf)
    with worker_running(app, concurrency=2, lease_seconds=0.6, heartbeat_interval=0.05):
        wait_until(lambda: statuses(app, ref)["side"] == "succeeded", what="side job")
        assert statuses(app, ref)["long"] == "running"
        assert wf_get(app, ref).status == "running"
        rec = app.cancel_workflow(ref)
        assert rec.status == "cancelled" and rec.completed_at is None  # long still running
        assert statuses(app, ref) == {
            "long": "running", "after": "cancelled", "side": "succeeded", "delayed": "cancelled",
        }  # fmt: skip
        wait_until(settled(app, ref), what="workflow completion")
    assert seen == [True]
    rec = wf_get(app, ref)
    assert rec.status == "cancelled"
    jobs = jobs_by_name(app, ref)
    assert jobs["long"].status == S.CANCELLED and jobs["after"].started_at is None
    assert jobs["after"].reason == "cancelled: cancelled"
    assert {e.status for e in app.dependencies(jobs["after"].job_id)[0]} == {"cancelled"}
    with pytest.raises(InvalidTransition, match="it is cancelled"):
        app.cancel_workflow(ref)


def test_retry_workflow_reruns_failed_and_downstream_keeping_successes(app: Forge) -> None:
    calls: Counter[str] = Counter()

    @app.job(retries=0)
    def node(ctx: JobContext, fail_first: bool = False) -> str:
        name = ctx.job.name or ""
        calls[name] += 1
        if fail_first and calls[name] == 1:
            raise RuntimeError("transient")
        return name

    for policy in ("fail_fast", "continue_on_failure"):
        calls.clear()
        wf = Workflow(f"r-{policy}", failure_policy=policy)
        wf.add(node.spec(), name="extract")
        wf.then(node.spec(fail_first=True), name="transform").then(node.spec(), name="load")
        # Under fail_fast the audit is still due later when transform fails: cancelled.
        delay = 30.0 if policy == "fail_fast" else None
        wf.add(JobSpec("node", {}, JobOptions(delay=delay)), name="audit", depends_on=["extract"])
        ref = app.enqueue_workflow(wf)
        run_until_settled(app, ref, concurrency=2)
        first = statuses(app, ref)
        assert wf_get(app, ref).status == "failed"
        assert first["transform"] == "failed"
        assert first["load"] == ("cancelled" if policy == "fail_fast" else "skipped")
        # fail_fast cancels the delayed audit; continue_on_failure lets it run.
        assert first["audit"] == ("cancelled" if policy == "fail_fast" else "succeeded")
        assert calls["audit"] == (0 if policy == "fail_fast" else 1)
        extract_done = jobs_by_name(app, ref)["extract"].completed_at

        rec = app.retry_workflow(ref)
        assert rec.status == "running" and rec.completed_at is None and rec.reason is None
        now = statuses(app, ref)
        assert now["extract"] == "succeeded"
        assert now["transform"] == "queued"  # its parent's success was kept
        assert now["load"] == "waiting"
        run_until_settled(app, ref, concurrency=2)

        assert set(statuses(app, ref).values()) == {"succeeded"}
        rec = wf_get(app, ref)
        assert rec.status == "succeeded" and rec.completed_at is not None
        assert calls["extract"] == 1, "a kept success ran again"
        assert calls["transform"] == 2 and calls["load"] == 1
        assert calls["audit"] == 1  # run once in all: after the retry or before it
        jobs = jobs_by_name(app, ref)
        assert jobs["extract"].completed_at == extract_done
        assert_after(jobs["load"], jobs["transform"])
        with pytest.raises(InvalidTransition, match="no failed, cancelled or skipped job"):
            app.retry_workflow(ref)


def test_retry_and_cancel_refusals(app: Forge) -> None:
    @app.job
    def node(ctx: JobContext) -> None:
        pass

    ref = app.enqueue_workflow(Workflow("w").add(node.spec()).then(node.spec()))
    with pytest.raises(InvalidTransition, match="it is still pending"):
        app.retry_workflow(ref)
    with pytest.raises(InvalidTransition, match="it is pending, not paused"):
        app.resume_workflow(ref)
    with pytest.raises(WorkflowNotFound):
        app.cancel_workflow("wf_" + "0" * 32)
    assert app.get_workflow("wf_" + "0" * 32) is None


# -- timeouts -------------------------------------------------------------------------------------


def test_workflow_timeout_fails_it_and_cancels_what_is_left(app: Forge) -> None:
    @app.job
    def node(ctx: JobContext) -> None:
        pass

    wf = Workflow("t", timeout=0.3).add(node.spec(), name="quick")
    wf.add(JobSpec("node", {}, JobOptions(delay=60)), name="late").then(node.spec(), name="after")
    ref = app.enqueue_workflow(wf)
    run_until_settled(app, ref, rescue_interval=0.1)
    rec = wf_get(app, ref)
    assert (rec.status, rec.reason) == ("failed", "workflow timed out")
    assert rec.completed_at is not None
    assert (rec.completed_at - rec.created_at).total_seconds() >= 0.3
    assert statuses(app, ref) == {"quick": "succeeded", "late": "cancelled", "after": "cancelled"}
    assert jobs_by_name(app, ref)["late"].reason == "cancelled: workflow timed out"


def test_dependency_timeout_in_a_fail_fast_workflow(app: Forge) -> None:
    @app.job
    def node(ctx: JobContext) -> None:
        pass

    wf = Workflow("dt").add(JobSpec("node", {}, JobOptions(delay=60)), name="slow")
    wf.then(JobSpec("node", {}, JobOptions(dependency_timeout=0.3)), name="impatient")
    wf.add(node.spec(), name="free")
    ref = app.enqueue_workflow(wf)
    run_until_settled(app, ref, rescue_interval=0.1)
    rec = wf_get(app, ref)
    assert (rec.status, rec.reason) == ("failed", "job impatient failed")
    jobs = jobs_by_name(app, ref)
    assert statuses(app, ref) == {"slow": "cancelled", "impatient": "failed", "free": "succeeded"}
    assert jobs["impatient"].reason == (
        "dependency timeout: still waiting for 1 parent(s) at its deadline"
    )
    assert jobs["impatient"].started_at is None


# -- validation: nothing is written ----------------------------------------------------------


def count_all(app: Forge) -> tuple[int, int]:
    return len(app.list_jobs(limit=100_000)), len(app.list_workflows(limit=1000))


def test_invalid_workflows_write_nothing(db_url: str) -> None:
    app = Forge(db_url, max_dependency_depth=3)
    try:

        @app.job
        def node(ctx: JobContext) -> None:
            pass

        app.enqueue_workflow(Workflow("ok").add(node.spec()).then(node.spec()))
        before = count_all(app)
        assert before == (2, 1)

        cyc = Workflow("cyc")
        cyc.add(node.spec(), name="a", depends_on=["c"]).add(node.spec(), name="b",
                                                              depends_on=["a"])  # fmt: skip
        cyc.add(node.spec(), name="c", depends_on=["b"]).add(node.spec(), name="free")
        with pytest.raises(CycleError) as info:
            app.enqueue_workflow(cyc)
        assert str(info.value) == "Circular dependency detected: a -> b -> c -> a"

        missing = Workflow("m").add(node.spec(), name="load", depends_on=["extract"])
        with pytest.raises(MissingDependency) as info2:
            app.enqueue_workflow(missing)
        assert str(info2.value) == "Dependency not found: extract (required by load)"

        self_dep = Workflow("s").add(node.spec(), name="a", depends_on=["a"])
        with pytest.raises(CycleError, match=r"^Circular dependency detected: a -> a$"):
            app.enqueue_workflow(self_dep)

        deep = Workflow("deep").add(node.spec(), name="n0")
        for i in range(1, 5):
            deep.then(node.spec(), name=f"n{i}")
        with pytest.raises(DependencyError) as info3:
            app.enqueue_workflow(deep)
        assert str(info3.value) == "Dependency depth limit exceeded: n4 is 4 levels deep (limit 3)"

        bad_cond = Workflow("bc").add(node.spec(), name="a")
        bad_cond.add(node.spec(), name="b", depends_on=[Dependency("a", "conditional", "x ==")])
        with pytest.raises(ValidationError, match="Invalid condition 'x =='"):
            app.enqueue_workflow(bad_cond)

        unknown = Workflow("u").add(node.spec(), name="a").then(JobSpec("nope", {}), name="b")
        with pytest.raises(UnknownJobType, match=r"Unknown job type 'nope' \(workflow job 'b'\)"):
            app.enqueue_workflow(unknown)

        assert count_all(app) == before
        # At the depth limit is accepted.
        deep.jobs.pop("n4")
        app.enqueue_workflow(deep)
        assert count_all(app) == (before[0] + 4, before[1] + 1)
    finally:
        app.close()


# -- files and graphs ----------------------------------------------------------------------------


def test_workflow_from_file_runs(app: Forge, tmp_path: Path) -> None:
    @app.job(retries=0)
    def check(ctx: JobContext) -> dict[str, Any]:
        return {"status": "ok", "n": 3}

    @app.job
    def node(ctx: JobContext, tag: str = "") -> str:
        return tag

    path = tmp_path / "flow.yaml"
    path.write_text(
        "name: from-file\n"
        "failure_policy: continue_on_failure\n"
        "jobs:\n"
        "  - {id: check, type: check}\n"
        "  - {id: good, type: node, payload: {tag: g}}\n"
        "  - {id: bad, type: node}\n"
        "  - {id: watch, type: node, dependency_timeout: 30}\n"
        "dependencies:\n"
        "  - {from: check, to: good, type: conditional, condition: \"status == 'ok' && n > 2\"}\n"
        "  - {from: check, to: bad, type: conditional, condition: \"status != 'ok'\"}\n"
        "  - {from: check, to: watch, type: parallel}\n"
    )
    ref = app.enqueue_workflow(load_workflow_file(path))
    watch = jobs_by_name(app, ref)["watch"]
    assert watch.dependency_deadline is not None
    run_until_idle(app, concurrency=2, **FAST)
    assert statuses(app, ref) == {
        "check": "succeeded", "good": "succeeded", "bad": "skipped", "watch": "succeeded",
    }  # fmt: skip
    rec = wf_get(app, ref)
    assert (rec.status, rec.failure_policy) == ("succeeded", "continue_on_failure")
    assert jobs_by_name(app, ref)["good"].result == "g"


def test_workflow_graph_exports(app: Forge, monkeypatch: pytest.MonkeyPatch) -> None:
    @app.job(retries=0)
    def node(ctx: JobContext, fail: bool = False) -> None:
        if fail:
            raise RuntimeError("x")

    wf = Workflow('quote "me"', failure_policy="continue_on_failure")
    wf.add(node.spec(), name="a").then(node.spec(fail=True), name="b")
    wf.then(node.spec(), name="c")
    wf.add(node.spec(), name="d", depends_on=[{"job": "a", "type": "parallel"},
                                               {"job": "b", "condition": "failed"}])  # fmt: skip
    ref = app.enqueue_workflow(wf)
    run_until_idle(app, concurrency=2, **FAST)
    jobs = jobs_by_name(app, ref)

    with warnings.catch_warnings():  # pydot's own pyparsing deprecation noise
        warnings.simplefilter("ignore")
        graphs = pydot.graph_from_dot_data(app.workflow_graph(ref, "dot"))
    assert graphs is not None and len(graphs) == 1
    g = graphs[0]
    nodes = {n.get_name().strip('"') for n in g.get_nodes() if n.get_name() != "node"}
    assert nodes == {j.job_id for j in jobs.values()}
    dot_edges = {(e.get_source().strip('"'), e.get_destination().strip('"')): e
                 for e in g.get_edges()}  # fmt: skip
    assert len(dot_edges) == 4
    assert dot_edges[(jobs["a"].job_id, jobs["d"].job_id)].get("style") == "dashed"
    assert dot_edges[(jobs["b"].job_id, jobs["c"].job_id)].get("color") == "red"

    data = json.loads(app.workflow_graph(ref, "json"))
    assert {n["name"]: n["status"] for n in data["nodes"]} == {
        "a": "succeeded", "b": "failed", "c": "skipped", "d": "succeeded",
    }  # fmt: skip
    assert {(e["from"], e["to"], e["kind"], e["status"]) for e in data["edges"]} == {
        (jobs["a"].job_id, jobs["b"].job_id, "sequential", "resolved"),
        (jobs["b"].job_id, jobs["c"].job_id, "sequential", "failed"),
        (jobs["a"].job_id, jobs["d"].job_id, "parallel", "resolved"),
        (jobs["b"].job_id, jobs["d"].job_id, "sequential", "resolved"),
    }
    mermaid = app.workflow_graph(ref, "mermaid")
    assert mermaid.startswith("flowchart LR\n")
    assert f"{jobs['c'].job_id}[" in mermaid and ":::skipped" in mermaid
    assert f"job_{jobs['a'].id.hex} -.->" in mermaid

    around_b = json.loads(app.job_graph(jobs["b"].job_id))
    assert next(n["name"] for n in around_b["nodes"]) == "a"
    assert {n["name"] for n in around_b["nodes"]} == {"a", "b", "c", "d"}
    assert len(around_b["edges"]) == 3

    # SVG, a picture: one box per job coloured by status, every edge pointing right.
    title, boxes, arrows = svg_graph(app.workflow_graph(ref, "svg"))
    assert title == 'quote "me"'  # escaped in the file, read back intact
    assert {name: fill for name, (fill, _, _) in boxes.items()} == {
        "a": "palegreen", "b": "salmon", "c": "gainsboro", "d": "palegreen",
    }  # fmt: skip
    x = {name: left for name, (_, left, _) in boxes.items()}
    assert x["a"] < x["b"] < x["c"] and x["b"] < x["d"]  # columns by longest path
    assert len({(left, top) for _, left, top in boxes.values()}) == 4  # no two boxes overlap
    assert sorted(arrows) == sorted([
        ("sequential: succeeded (resolved)", "darkgreen", False),
        ("sequential: succeeded (failed)", "red", False),
        ("parallel (resolved)", "darkgreen", True),
        ("sequential: failed (resolved)", "darkgreen", False),
    ])  # fmt: skip
    _, near_b, _ = svg_graph(app.job_graph(jobs["b"].job_id, "svg"))
    assert set(near_b) == {"a", "b", "c", "d"}

    monkeypatch.setattr(picture, "MAX_JOBS", 3)
    with pytest.raises(
        ValidationError, match=re.escape("Graph too large to draw: 4 jobs (at most 3);")
    ):
        app.workflow_graph(ref, "svg")
    with pytest.raises(ValidationError, match="expected dot, mermaid, json, svg"):
        app.workflow_graph(ref, "png")


def svg_graph(text: str) -> tuple[str, dict[str, tuple[str, float, float]], list[Any]]:
    """(title, {job name: (fill, x, y)}, [(edge tooltip, stroke, dashed)]) of an SVG graph;
    every edge must run from its parent's right side rightwards to its child."""
    svg = ET.fromstring(text)  # well-formed XML, or this raises
    assert svg.tag == f"{{{SVG}}}svg"
    boxes: dict[str, tuple[str, float, float]] = {}
    arrows = []
    for g in svg.iter(f"{{{SVG}}}g"):
        tip = g.findtext(f"{{{SVG}}}title") or ""
        if g.get("class", "").startswith("job "):
            rect = g.find(f"{{{SVG}}}rect")
            assert rect is not None
            boxes[tip.split(" (")[0]] = (rect.get("fill", ""), float(rect.get("x", 0)),
                                         float(rect.get("y", 0)))  # fmt: skip
        elif g.get("class", "").startswith("edge "):
            path = g.find(f"{{{SVG}}}path")
            assert path is not None
            start, end = path.get("d", "").split()[0], path.get("d", "").split()[-1]
            assert float(start[1:].split(",")[0]) < float(end.split(",")[0])  # points right
            arrows.append((tip, path.get("stroke"), path.get("stroke-dasharray") is not None))
    return svg.findtext(f"{{{SVG}}}title") or "", boxes, arrows


def test_large_workflows_store_what_small_ones_do(app: Forge) -> None:
    """PostgreSQL writes 200 rows or more with binary COPY, fewer with INSERT: same rows."""

    @app.job
    def node(ctx: JobContext, **payload: Any) -> None:
        pass

    def workflow(n: int) -> Workflow:
        first = node.configure(timeout=2.5, priority=2).spec(s="é☃", l=[1.5, None], n=None)
        wf = Workflow("w", tenant_id="t1", trace_id="tr").add(first, name="n0")
        for i in range(1, n):
            dep = Dependency(f"n{i - 1}", "sequential", "always") if i % 2 else f"n{i - 1}"
            wf.add(
                node.configure(dependency_timeout=60).spec(i=i),
                name=f"n{i}", depends_on=[dep], optional=i == 1,
            )  # fmt: skip
        return wf

    def stored(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        ref = app.enqueue_workflow(workflow(n))
        jobs = sorted(app.workflow_jobs(ref), key=lambda j: j.depth)[:3]
        edges = sorted(app.workflow_edges(ref), key=lambda e: e.created_at)
        ignore = {"id", "job_id", "workflow_id", "created_at", "updated_at", "scheduled_at",
                  "dependency_deadline"}  # fmt: skip
        deadlines = [j.dependency_deadline is not None for j in jobs]
        edge_keys = ("dependency_type", "condition", "status", "resolved_by")
        return (
            [{k: v for k, v in j.to_dict().items() if k not in ignore} for j in jobs] + [
                {"deadlines": deadlines}],
            [{k: e.to_dict()[k] for k in edge_keys} for e in edges[:2]],
        )  # fmt: skip

    assert stored(250) == stored(3)
