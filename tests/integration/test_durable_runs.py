"""Durable workflow runs through real workers on both backends: steps recorded and replayed,
retries, timeouts, optional steps, compensations, parking (sleep, events), cancel, retry,
concurrency, non-determinism, the low-level step API and durable workflows as DAG nodes."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import pytest

from jobforge import (
    Dependency,
    EventTimeout,
    Forge,
    InvalidTransition,
    JobContext,
    JobSpec,
    StepFailed,
    ValidationError,
    Worker,
    Workflow,
    testing,
)
from jobforge.durable.records import RUN_FINISHED, RunRecord
from jobforge.testing import run_until_idle

FAST: dict[str, Any] = {"poll_interval": 0.05}


# -- helpers ----------------------------------------------------------------------------------


def wait_until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(0.02)


def worker_running(app: Forge, **config: Any) -> AbstractContextManager[Worker]:
    """A non-burst worker on its own thread for the duration of the block."""
    return testing.worker_running(app, **{**FAST, **config})


def finished(app: Forge, run_id: str) -> Callable[[], RunRecord | None]:
    def check() -> RunRecord | None:
        run = app.get_run(run_id)
        return run if run.status in RUN_FINISHED else None

    return check


def settle(app: Forge, run_id: str, timeout: float = 10.0, **config: Any) -> RunRecord:
    """Run a worker until the run has finished (waits through sleeps, unlike burst mode)."""
    with worker_running(app, **config):
        return wait_until(finished(app, run_id), timeout, f"{run_id} to finish")  # type: ignore[no-any-return]


def job_of(app: Forge, run_id: str) -> Any:
    job = app.get_job(run_id.replace("run_", "job_"))
    assert job is not None
    return job


def steps(app: Forge, run_id: str) -> dict[str, Any]:
    return {s.name: s for s in app.run_steps(run_id)}


def step_statuses(app: Forge, run_id: str) -> dict[str, str]:
    return {s.name: s.status.value for s in app.run_steps(run_id)}


# -- completion, recording, retries, timeouts, optional steps -----------------------------------


def test_run_completes_with_output_and_recorded_steps(app: Forge) -> None:
    calls: Counter[str] = Counter()

    def add(x: int, y: int = 0) -> int:
        calls["add"] += 1
        return x + y

    def greet(name: str) -> dict[str, Any]:
        calls["greet"] += 1
        return {"hello": name, "when": (1, 2)}  # a tuple comes back as a list

    @app.workflow
    def simple(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
        total = ctx.step("add", add, input["x"], y=5).run()
        greeting = ctx.step("greet", greet, input["who"]).run()
        assert greeting["when"] == [1, 2]  # the first run sees what a replay would
        return {"total": total, "greeting": greeting, "run": ctx.run_id}

    run_id = app.start_workflow("simple", {"x": 2, "who": "ana"})
    assert run_id.startswith("run_")
    created = app.get_run(run_id)
    assert created.status.value == "created"
    assert (created.name, created.version, created.input) == ("simple", 1, {"x": 2, "who": "ana"})

    run_until_idle(app, **FAST)

    run = app.get_run(run_id)
    assert run.status.value == "completed", run.error
    expected = {"total": 7, "greeting": {"hello": "ana", "when": [1, 2]}, "run": run_id}
    assert run.output == expected
    assert run.error is None
    assert run.started_at is not None and run.completed_at is not None
    assert run.completed_at >= run.started_at
    assert calls == {"add": 1, "greet": 1}

    recorded = app.run_steps(run_id)
    assert [(s.name, s.status.value, s.seq, s.attempts) for s in recorded] == [
        ("add", "completed", 1, 1),
        ("greet", "completed", 2, 1),
    ]
    assert recorded[0].input == {"args": [2], "kwargs": {"y": 5}}
    assert recorded[0].result == 7
    assert recorded[1].input == {"args": ["ana"], "kwargs": {}}
    assert recorded[1].result == {"hello": "ana", "when": [1, 2]}
    assert all(s.completed_at is not None and s.error is None for s in recorded)

    job = job_of(app, run_id)
    assert job.status == "succeeded"
    assert job.result == expected
    assert [r.run_id for r in app.list_runs("completed")] == [run_id]
    assert app.list_runs("failed") == []

    # A finished run is not replayed when its job runs again: nothing re-executes.
    run_until_idle(app, **FAST)
    assert calls == {"add": 1, "greet": 1}


def test_retry_counts_attempts(app: Forge) -> None:
    calls: Counter[str] = Counter()

    def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise ConnectionError(f"try {calls['flaky']}")
        return "ok"

    def broken() -> None:
        calls["broken"] += 1
        raise ValueError("always")

    @app.workflow
    def retrying(ctx: Any, input: dict[str, Any]) -> str:
        value = ctx.step("flaky", flaky).retry(3, backoff=0.01).run()
        if input["break"]:
            ctx.step("broken", broken).retry(1, backoff=0.01).run()
        return str(value)

    good = app.start_workflow("retrying", {"break": False})
    run_until_idle(app, **FAST)
    assert app.get_run(good).output == "ok"
    assert calls["flaky"] == 3
    assert steps(app, good)["flaky"].attempts == 3

    calls.clear()
    bad = app.start_workflow("retrying", {"break": True})
    run_until_idle(app, **FAST)
    assert calls == {"flaky": 3, "broken": 2}
    step = steps(app, bad)["broken"]
    assert step.status.value == "failed"
    assert step.attempts == 2
    assert step.error["type"] == "ValueError"
    assert step.error["message"] == "always"
    assert step.error["attempt"] == 2
    run = app.get_run(bad)
    assert run.status.value == "compensated"
    assert run.error["step"] == "broken"
    assert "always" in run.error["message"]


def test_step_timeout_fails_a_sync_and_an_async_step(app: Forge) -> None:
    release = threading.Event()

    def stuck() -> str:
        release.wait(20)
        return "late"

    async def stuck_async() -> str:
        await asyncio.sleep(20)
        return "late"

    @app.workflow
    def sync_wf(ctx: Any, input: dict[str, Any]) -> str:
        return str(ctx.step("slow", stuck).timeout(0.3).run())

    @app.workflow
    async def async_wf(ctx: Any, input: dict[str, Any]) -> str:
        return str(await ctx.step("slow", stuck_async).timeout(0.3).run_async())

    try:
        ids = [app.start_workflow("sync_wf"), app.start_workflow("async_wf")]
        began = time.monotonic()
        run_until_idle(app, **FAST)
        assert time.monotonic() - began < 8
    finally:
        release.set()
    for run_id in ids:
        run = app.get_run(run_id)
        assert run.status.value == "compensated", (run_id, run.status, run.error)
        step = steps(app, run_id)["slow"]
        assert step.status.value == "failed"
        assert step.error["type"] == "TimeoutError", step.error
        assert step.result is None
        assert job_of(app, run_id).status == "failed"


def test_optional_step_failure_is_skipped_and_the_run_goes_on(app: Forge) -> None:
    def nope() -> None:
        raise RuntimeError("optional thing broke")

    @app.workflow
    def opt(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
        a = ctx.step("a", lambda: 1).run()
        maybe = ctx.step("maybe", nope).optional().run()
        b = ctx.step("b", lambda: 2).run()
        return {"a": a, "maybe": maybe, "b": b}

    run_id = app.start_workflow("opt")
    run_until_idle(app, **FAST)
    run = app.get_run(run_id)
    assert run.status.value == "completed"
    assert run.output == {"a": 1, "maybe": None, "b": 2}
    assert step_statuses(app, run_id) == {"a": "completed", "maybe": "skipped", "b": "completed"}
    skipped = steps(app, run_id)["maybe"]
    assert skipped.error["message"] == "optional thing broke"
    assert skipped.result is None
    assert job_of(app, run_id).status == "succeeded"


# -- compensation ------------------------------------------------------------------------------


def test_failure_compensates_in_reverse_completion_order(app: Forge) -> None:
    undone: list[tuple[str, Any]] = []
    b_done = threading.Event()

    def a() -> str:
        assert b_done.wait(5)  # a completes after b although it was called first
        return "A"

    def b() -> str:
        b_done.set()
        return "B"

    def fail() -> None:
        raise ValueError("card declined")

    def undo(name: str) -> Callable[[Any], None]:
        return lambda result: undone.append((name, result))

    @app.workflow
    def saga(ctx: Any, input: dict[str, Any]) -> None:
        ctx.parallel(
            [
                ctx.step("a", a).compensate(undo("a")),
                ctx.step("b", b).compensate(undo("b")),
            ]
        )
        ctx.step("plain", lambda: "no undo").run()
        ctx.step("c", lambda: {"c": 1}).compensate(undo("c")).run()
        ctx.step("charge", fail).compensate(undo("charge")).run()

    run_id = app.start_workflow("saga")
    run_until_idle(app, **FAST)

    recorded = steps(app, run_id)
    assert recorded["b"].seq < recorded["a"].seq < recorded["c"].seq
    assert undone == [("c", {"c": 1}), ("a", "A"), ("b", "B")]
    assert step_statuses(app, run_id) == {
        "a": "compensated",
        "b": "compensated",
        "plain": "completed",
        "c": "compensated",
        "charge": "failed",
    }
    assert recorded["c"].result == {"c": 1}  # the result is kept
    run = app.get_run(run_id)
    assert run.status.value == "compensated"
    assert run.error["step"] == "charge"
    assert run.current_step == "charge"  # the step it failed at
    assert "card declined" in run.error["message"]
    assert run.completed_at is not None
    job = job_of(app, run_id)
    assert job.status == "failed"
    assert job.attempts == 1  # a failed step does not retry the whole run

    # The job is finished: running the worker again compensates nothing twice.
    run_until_idle(app, **FAST)
    assert len(undone) == 3


def test_workflow_exception_compensates(app: Forge) -> None:
    undone: list[str] = []

    @app.workflow
    def raiser(ctx: Any, input: dict[str, Any]) -> None:
        ctx.step("one", lambda: 1).compensate(lambda r: undone.append(f"one {r}")).run()
        raise KeyError("missing thing")

    run_id = app.start_workflow("raiser")
    run_until_idle(app, **FAST)
    run = app.get_run(run_id)
    assert run.status.value == "compensated"
    assert run.error["type"] == "KeyError"
    assert undone == ["one 1"]


def test_a_failing_compensation_fails_the_run_naming_it(app: Forge) -> None:
    undone: list[str] = []

    def bad_undo(result: Any) -> None:
        raise RuntimeError("refund service down")

    @app.workflow
    def saga2(ctx: Any, input: dict[str, Any]) -> None:
        ctx.step("reserve", lambda: "r").compensate(lambda r: undone.append("reserve")).run()
        ctx.step("charge", lambda: "c").compensate(bad_undo).run()
        ctx.step("notify", lambda: "n").compensate(lambda r: undone.append("notify")).run()
        ctx.step("ship", lambda: 1 / 0).run()

    run_id = app.start_workflow("saga2")
    run_until_idle(app, **FAST)
    run = app.get_run(run_id)
    assert run.status.value == "failed"
    assert run.error["compensation"] == "charge"
    assert run.current_step == "charge"
    assert run.error["compensation_error"]["type"] == "RuntimeError"
    assert run.error["compensation_error"]["message"] == "refund service down"
    assert run.error["step"] == "ship"  # the original cause is kept
    assert undone[0] == "notify"  # compensations before the failing one ran
    recorded = step_statuses(app, run_id)
    assert recorded["notify"] == "compensated"
    assert recorded["charge"] == "completed"  # its compensation did not succeed
    assert recorded["ship"] == "failed"
    assert job_of(app, run_id).status == "failed"


# -- idempotency, workflow_time -----------------------------------------------------------------


def test_idempotency_key_returns_the_same_run(app: Forge) -> None:
    @app.workflow
    def once(ctx: Any, input: dict[str, Any]) -> Any:
        return input

    first = app.start_workflow("once", {"n": 1}, idempotency_key="order-1")
    again = app.start_workflow("once", {"n": 2}, idempotency_key="order-1")
    other = app.start_workflow("once", {"n": 3}, idempotency_key="order-2")
    plain = app.start_workflow("once", {"n": 4})
    assert again == first
    assert len({first, other, plain}) == 3
    assert app.get_run(first).idempotency_key == "order-1"
    assert app.get_run(first).input == {"n": 1}
    assert len(app.list_runs()) == 3
    assert len(app.list_jobs()) == 3
    run_until_idle(app, **FAST)
    assert app.get_run(first).output == {"n": 1}
    # Still the same run after it has finished.
    assert app.start_workflow("once", {"n": 5}, idempotency_key="order-1") == first
    assert len(app.list_runs()) == 3


def test_workflow_time_is_the_same_on_replay(app: Forge) -> None:
    seen: list[tuple[str, str]] = []

    @app.workflow
    def clock(ctx: Any, input: dict[str, Any]) -> dict[str, str]:
        first = ctx.workflow_time()
        seen.append(("first", first.isoformat()))
        ctx.sleep(0.2)
        second = ctx.workflow_time()
        seen.append(("second", second.isoformat()))
        return {"first": first.isoformat(), "second": second.isoformat()}

    run_id = app.start_workflow("clock")
    run = settle(app, run_id)
    assert run.status.value == "completed", run.error
    firsts = [v for k, v in seen if k == "first"]
    assert len(firsts) >= 2, "the run was not replayed"
    assert len(set(firsts)) == 1
    assert run.output["first"] == firsts[0]
    first = datetime.fromisoformat(run.output["first"])
    second = datetime.fromisoformat(run.output["second"])
    assert (second - first).total_seconds() >= 0.2
    assert isinstance(first, datetime) and first.tzinfo is not None


# -- parking: sleep, events, cancel ------------------------------------------------------------


def test_sleep_parks_the_run_then_completes(app: Forge) -> None:
    calls: Counter[str] = Counter()

    def before() -> int:
        calls["before"] += 1
        return 1

    @app.workflow
    def napper(ctx: Any, input: dict[str, Any]) -> str:
        calls["body"] += 1
        ctx.step("before", before).run()
        ctx.sleep(1.5)
        return "rested"

    run_id = app.start_workflow("napper")
    began = time.monotonic()
    with worker_running(app):
        wait_until(
            lambda: (
                app.get_run(run_id).status.value == "waiting"
                and job_of(app, run_id).status == "scheduled"
            ),
            what="the run to park",
        )
        assert time.monotonic() - began < 1.5
        run = app.get_run(run_id)
        assert run.current_step == "sleep:1"
        assert step_statuses(app, run_id) == {"before": "completed", "sleep:1": "running"}
        job = job_of(app, run_id)
        assert job.scheduled_at is not None
        run = wait_until(finished(app, run_id), 10, "the run to finish")
    assert run.status.value == "completed"
    assert run.output == "rested"
    assert time.monotonic() - began >= 1.5
    assert calls == {"before": 1, "body": 2}
    assert step_statuses(app, run_id)["sleep:1"] == "completed"
    assert job_of(app, run_id).status == "succeeded"


def test_send_event_delivers_data_and_wakes_the_run_at_once(app: Forge) -> None:
    @app.workflow
    def approval(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
        ctx.step("prepare", lambda: "ready").run()
        data = ctx.wait_for_event("approved", timeout=3600)
        return {"by": data["by"]}

    run_id = app.start_workflow("approval")
    with worker_running(app, poll_interval=5.0):
        wait_until(
            lambda: (
                app.get_run(run_id).status.value == "waiting"
                and job_of(app, run_id).status == "scheduled"
            ),
            what="the run to park",
        )
        assert app.get_run(run_id).current_step == "event:approved"
        sent = time.monotonic()
        app.send_event(run_id, "approved", {"by": "ana"})
        run = wait_until(finished(app, run_id), 4, "the run to wake and finish")
        took = time.monotonic() - sent
    assert run.status.value == "completed"
    assert run.output == {"by": "ana"}
    assert took < 2.0, f"woke after {took:.2f}s: waited for the poll interval"
    assert steps(app, run_id)["event:approved"].result == {"by": "ana"}


def test_an_event_sent_before_the_wait_is_not_lost(app: Forge) -> None:
    @app.workflow
    def early(ctx: Any, input: dict[str, Any]) -> Any:
        return ctx.wait_for_event("go", timeout=60)

    run_id = app.start_workflow("early")
    app.send_event(run_id, "go", [1, "two"])
    run_until_idle(app, **FAST)
    run = app.get_run(run_id)
    assert run.status.value == "completed"
    assert run.output == [1, "two"]


def test_wait_for_event_timeout_raises_event_timeout(app: Forge) -> None:
    @app.workflow
    def patient(ctx: Any, input: dict[str, Any]) -> str:
        try:
            ctx.wait_for_event("never", timeout=0.3)
        except EventTimeout as exc:
            return f"fallback: {exc}"
        return "got it"

    @app.workflow
    def impatient(ctx: Any, input: dict[str, Any]) -> str:
        ctx.wait_for_event("never", timeout=0.3)
        return "got it"

    caught = app.start_workflow("patient")
    uncaught = app.start_workflow("impatient")
    began = time.monotonic()
    run = settle(app, caught)
    assert run.status.value == "completed"
    assert run.output.startswith("fallback: ")
    assert "never" in run.output
    assert time.monotonic() - began >= 0.3
    step = steps(app, caught)["event:never"]
    assert step.status.value == "failed"
    assert step.error["type"] == "EventTimeout"

    other = settle(app, uncaught)
    assert other.status.value == "compensated"
    assert other.error["type"] == "EventTimeout"


def test_cancel_a_waiting_run_compensates_and_cancels(app: Forge) -> None:
    undone: list[str] = []

    @app.workflow
    def cancellable(ctx: Any, input: dict[str, Any]) -> None:
        ctx.step("one", lambda: 1).compensate(lambda r: undone.append(f"one {r}")).run()
        ctx.step("two", lambda: 2).compensate(lambda r: undone.append(f"two {r}")).run()
        ctx.wait_for_event("go", timeout=3600)
        ctx.step("three", lambda: 3).run()

    run_id = app.start_workflow("cancellable")
    run_until_idle(app, **FAST)
    assert app.get_run(run_id).status.value == "waiting"
    assert undone == []

    returned = app.cancel_run(run_id)
    assert returned.run_id == run_id
    run = settle(app, run_id)
    assert run.status.value == "cancelled"
    assert undone == ["two 2", "one 1"]
    recorded = step_statuses(app, run_id)
    assert recorded["one"] == recorded["two"] == "compensated"
    assert "three" not in recorded
    assert job_of(app, run_id).status == "cancelled"

    with pytest.raises(InvalidTransition, match=f"Cannot cancel run {run_id}: it is cancelled"):
        app.cancel_run(run_id)


# -- retry_run -----------------------------------------------------------------------------------


def test_retry_run_reruns_only_what_did_not_keep_its_result(app: Forge) -> None:
    calls: Counter[str] = Counter()
    fixed = threading.Event()

    def count(name: str, value: Any) -> Callable[[], Any]:
        def fn() -> Any:
            calls[name] += 1
            return value

        return fn

    def charge() -> str:
        calls["charge"] += 1
        if not fixed.is_set():
            raise RuntimeError("declined")
        return "charged"

    @app.workflow
    def order(ctx: Any, input: dict[str, Any]) -> list[Any]:
        a = ctx.step("lookup", count("lookup", "L")).run()
        b = ctx.step("reserve", count("reserve", "R")).compensate(lambda r: None).run()
        c = ctx.step("charge", charge).run()
        return [a, b, c]

    run_id = app.start_workflow("order")
    run_until_idle(app, **FAST)
    assert app.get_run(run_id).status.value == "compensated"
    assert calls == {"lookup": 1, "reserve": 1, "charge": 1}

    fixed.set()
    retried = app.retry_run(run_id)
    assert retried.status.value == "created"
    assert retried.error is None
    run_until_idle(app, **FAST)
    run = app.get_run(run_id)
    assert run.status.value == "completed", run.error
    assert run.output == ["L", "R", "charged"]
    assert calls == {"lookup": 1, "reserve": 2, "charge": 2}
    assert step_statuses(app, run_id) == {
        "lookup": "completed",
        "reserve": "completed",
        "charge": "completed",
    }
    assert job_of(app, run_id).status == "succeeded"

    with pytest.raises(InvalidTransition, match=f"Cannot retry run {run_id}: it is completed"):
        app.retry_run(run_id)


def test_resume_makes_a_parked_run_due_now(app: Forge) -> None:
    body: list[float] = []

    @app.workflow
    def long_wait(ctx: Any, input: dict[str, Any]) -> str:
        body.append(time.monotonic())
        ctx.wait_for_event("go", timeout=3600)
        return "up"

    run_id = app.start_workflow("long_wait")
    run_until_idle(app, **FAST)  # burst mode does not wait for an event
    assert app.get_run(run_id).status.value == "waiting"
    assert len(body) == 1
    app.resume_run(run_id)
    run_until_idle(app, **FAST)
    # Replayed at once; the event has still not come, so the run parks again.
    assert len(body) == 2
    run = app.get_run(run_id)
    assert run.status.value == "waiting"
    assert job_of(app, run_id).status == "scheduled"
    app.cancel_run(run_id)
    assert settle(app, run_id).status.value == "cancelled"
    with pytest.raises(InvalidTransition, match=f"Cannot resume run {run_id}: it is cancelled"):
        app.resume_run(run_id)


# -- concurrency and replay --------------------------------------------------------------------


def test_async_gather_and_parallel_async_steps_overlap_and_replay(app: Forge) -> None:
    calls: Counter[str] = Counter()
    barrier = threading.Barrier(2, timeout=5)
    barrier2 = threading.Barrier(2, timeout=5)

    def meet(name: str, b: threading.Barrier) -> Callable[[], str]:
        def fn() -> str:
            calls[name] += 1
            b.wait()  # both steps must be running at once, or this times out
            return name.upper()

        return fn

    @app.workflow
    async def fan(ctx: Any, input: dict[str, Any]) -> list[Any]:
        calls["body"] += 1
        a, b = await asyncio.gather(
            ctx.step("a", meet("a", barrier)).run_async(),
            ctx.step("b", meet("b", barrier)).run_async(),
        )
        ctx.sleep(0.2)  # parks: the next attempt replays a and b
        c, d = await ctx.parallel_async(
            [ctx.step("c", meet("c", barrier2)), ctx.step("d", meet("d", barrier2))]
        )
        return [a, b, c, d]

    run_id = app.start_workflow("fan")
    run = settle(app, run_id)
    assert run.status.value == "completed", run.error
    assert run.output == ["A", "B", "C", "D"]
    assert calls == {"a": 1, "b": 1, "c": 1, "d": 1, "body": 2}


def test_parallel_threads_overlap_and_replay(app: Forge) -> None:
    calls: Counter[str] = Counter()
    barrier = threading.Barrier(3, timeout=5)

    def meet(name: str) -> Callable[[], str]:
        def fn() -> str:
            calls[name] += 1
            barrier.wait()
            return name * 2

        return fn

    @app.workflow
    def threads(ctx: Any, input: dict[str, Any]) -> list[Any]:
        calls["body"] += 1
        results = ctx.parallel([ctx.step(n, meet(n)) for n in ("x", "y", "z")])
        ctx.sleep(0.2)
        return [*results, ctx.step("after", lambda: "done").run()]

    run_id = app.start_workflow("threads")
    run = settle(app, run_id)
    assert run.status.value == "completed", run.error
    assert run.output == ["xx", "yy", "zz", "done"]
    assert calls == {"x": 1, "y": 1, "z": 1, "body": 2}
    seqs = steps(app, run_id)
    assert sorted(seqs[n].seq for n in "xyz") == [1, 2, 3]
    assert seqs["after"].seq > seqs["sleep:1"].seq > 3


# -- non-determinism and versions ---------------------------------------------------------------


def test_changed_code_under_a_parked_run_fails_with_a_diagnostic(db_url: str) -> None:
    first = Forge(db_url)
    try:

        @first.workflow(name="evolving", version=1)
        def old(ctx: Any, input: dict[str, Any]) -> str:
            ctx.step("reserve", lambda: "r").run()
            ctx.wait_for_event("go")
            ctx.step("charge", lambda: "c").run()
            return "old"

        run_id = first.start_workflow("evolving")
        run_until_idle(first, **FAST)
        assert first.get_run(run_id).status.value == "waiting"
    finally:
        first.close()

    second = Forge(db_url)
    new_calls: Counter[str] = Counter()
    try:

        @second.workflow(name="evolving", version=1)
        def new(ctx: Any, input: dict[str, Any]) -> str:
            ctx.step("validate", lambda: new_calls.update(["validate"])).run()
            ctx.step("reserve", lambda: "r").run()
            ctx.wait_for_event("go")
            return "new"

        second.send_event(run_id, "go", None)
        run = settle(second, run_id)
        assert run.status.value == "failed"
        message = run.error["message"]
        assert run_id in message
        assert "'validate'" in message
        assert "'reserve'" in message
        assert "version 1" in message
        assert run.error["type"] == "NonDeterminism"
        assert new_calls["validate"] == 0  # refused before it ran
        assert job_of(second, run_id).status == "failed"
        assert "validate" not in step_statuses(second, run_id)
    finally:
        second.close()


def test_a_run_whose_version_is_gone_fails_with_a_diagnostic(db_url: str) -> None:
    first = Forge(db_url)
    try:

        @first.workflow(name="billing", version=1)
        def v1(ctx: Any, input: dict[str, Any]) -> str:
            ctx.wait_for_event("go")
            return "v1"

        run_id = first.start_workflow("billing")
        run_until_idle(first, **FAST)
        assert first.get_run(run_id).status.value == "waiting"
    finally:
        first.close()

    second = Forge(db_url)
    try:

        @second.workflow(name="billing", version=2)
        def v2(ctx: Any, input: dict[str, Any]) -> str:
            ctx.wait_for_event("go")
            return "v2"

        second.resume_run(run_id)
        run = settle(second, run_id)
        assert run.status.value == "failed"
        assert run.version == 1
        message = run.error["message"]
        assert run_id in message and "billing" in message
        assert "version 1" in message and "has: 2" in message
        assert job_of(second, run_id).status == "failed"
    finally:
        second.close()


def test_start_picks_latest_or_given_version_and_warns_when_deprecated(
    app: Forge, caplog: pytest.LogCaptureFixture
) -> None:
    @app.workflow(name="ver", version=1, deprecated=True)
    def one(ctx: Any, input: dict[str, Any]) -> int:
        return 1

    @app.workflow(name="ver", version=2)
    def two(ctx: Any, input: dict[str, Any]) -> int:
        return 2

    with caplog.at_level(logging.WARNING, logger="jobforge.durable"):
        latest = app.start_workflow("ver")
        assert not [r for r in caplog.records if "deprecated" in r.getMessage()]
        old = app.start_workflow("ver", version=1)
    assert [r for r in caplog.records if "deprecated" in r.getMessage()]
    run_until_idle(app, **FAST)
    assert (app.get_run(latest).version, app.get_run(latest).output) == (2, 2)
    assert (app.get_run(old).version, app.get_run(old).output) == (1, 1)

    with pytest.raises(ValidationError, match=r"^Unknown workflow 'nope'"):
        app.start_workflow("nope")
    with pytest.raises(ValidationError, match=r"^Workflow 'ver' has no version 9 \(has: 1, 2\)$"):
        app.start_workflow("ver", version=9)
    assert len(app.list_runs()) == 2


# -- low-level API and misuse --------------------------------------------------------------------


def test_low_level_step_api_survives_replay(app: Forge) -> None:
    calls: Counter[str] = Counter()

    @app.workflow
    def manual(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
        if ctx.is_step_completed("quote"):
            quote = ctx.get_step_result("quote")
        else:
            ctx.record_step_start("quote")
            calls["quote"] += 1
            quote = {"price": 42}
            ctx.record_step_complete("quote", quote)
        if not ctx.is_step_completed("audit"):
            ctx.record_step_failure("audit", ValueError("audit offline"))
        with pytest.raises(ValidationError, match="has not completed"):
            ctx.get_step_result("audit")
        ctx.sleep(0.2)
        after = ctx.step("after", lambda: quote["price"] + 1).run()
        return {"quote": quote, "after": after}

    run_id = app.start_workflow("manual")
    run = settle(app, run_id)
    assert run.status.value == "completed", run.error
    assert run.output == {"quote": {"price": 42}, "after": 43}
    assert calls["quote"] == 1
    recorded = steps(app, run_id)
    assert recorded["quote"].status.value == "completed"
    assert recorded["quote"].result == {"price": 42}
    assert recorded["audit"].status.value == "failed"
    assert recorded["audit"].error["type"] == "ValueError"
    assert recorded["audit"].error["message"] == "audit offline"


def test_a_step_name_used_twice_is_an_error(app: Forge) -> None:
    undone: list[Any] = []

    @app.workflow
    def twice(ctx: Any, input: dict[str, Any]) -> None:
        ctx.step("same", lambda: 1).compensate(undone.append).run()
        ctx.step("same", lambda: 2).run()

    run_id = app.start_workflow("twice")
    run_until_idle(app, **FAST)
    run = app.get_run(run_id)
    assert run.status.value == "compensated"
    assert run.error["type"] == "ValidationError"
    assert run.error["message"] == f"Step name 'same' is used twice in run {run_id}"
    assert undone == [1]


def test_non_json_output_and_input_are_refused(app: Forge) -> None:
    @app.workflow
    def odd(ctx: Any, input: dict[str, Any]) -> Any:
        return {"when": object()}

    with pytest.raises(ValidationError):
        app.start_workflow("odd", ["not", "an", "object"])  # type: ignore[arg-type]
    assert app.list_runs() == []
    run_id = app.start_workflow("odd")
    run_until_idle(app, **FAST)
    run = app.get_run(run_id)
    assert run.status.value == "compensated"
    assert "is not JSON" in run.error["message"]


def test_unknown_run_id_is_refused(app: Forge) -> None:
    with pytest.raises(ValidationError, match="Invalid run id: 'nope'"):
        app.get_run("nope")
    missing = "run_" + "0" * 32
    with pytest.raises(Exception, match=f"Run not found: {missing}"):
        app.get_run(missing)
    with pytest.raises(Exception, match=f"Run not found: {missing}"):
        app.send_event(missing, "x", 1)


# -- durable workflows as DAG nodes ---------------------------------------------------------------


def test_a_durable_workflow_as_a_dag_node_with_a_conditional_edge(app: Forge) -> None:
    ran: list[str] = []

    def decide(amount: int) -> dict[str, Any]:
        if amount < 0:
            raise ValueError("negative amount")
        return {"decision": "approve" if amount < 100 else "review", "amount": amount}

    @app.workflow(name="payment_flow")
    def payment_flow(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
        return dict(ctx.step("decide", decide, input["amount"]).run())

    @app.job
    def ship(ctx: JobContext) -> None:
        ran.append("ship")

    @app.job
    def review(ctx: JobContext) -> None:
        ran.append("review")

    @app.job
    def notify(ctx: JobContext) -> None:
        ran.append("notify")

    def build(amount: int) -> Workflow:
        wf = Workflow(f"order-{amount}").add(
            JobSpec("payment_flow", {"amount": amount}), name="pay"
        )
        wf.add(
            ship.spec(),
            name="ship",
            depends_on=[Dependency("pay", "conditional", "decision == 'approve'")],
        )
        wf.add(
            review.spec(),
            name="review",
            depends_on=[{"job": "pay", "type": "conditional", "condition": "amount >= 100"}],
        )
        wf.then(notify.spec(), name="notify")  # after review only, on success
        return wf

    small = app.enqueue_workflow(build(10))
    run_until_idle(app, **FAST)
    jobs = {j.name: j for j in app.workflow_jobs(small)}
    assert {n: j.status.value for n, j in jobs.items()} == {
        "pay": "succeeded",
        "ship": "succeeded",
        "review": "skipped",
        "notify": "skipped",
    }
    assert jobs["pay"].result == {"decision": "approve", "amount": 10}
    run = app.get_run(str(jobs["pay"].id))
    assert run.status.value == "completed"
    assert run.name == "payment_flow" and run.input == {"amount": 10}
    assert run.output == jobs["pay"].result
    assert step_statuses(app, run.run_id) == {"decide": "completed"}
    assert ran == ["ship"]

    ran.clear()
    big = app.enqueue_workflow(build(500))
    run_until_idle(app, **FAST)
    jobs = {j.name: j for j in app.workflow_jobs(big)}
    assert jobs["pay"].status.value == "succeeded"
    assert jobs["ship"].status.value == "skipped"
    assert jobs["review"].status.value == "succeeded"
    assert jobs["notify"].status.value == "succeeded"
    assert sorted(ran) == ["notify", "review"]

    ran.clear()
    failing = app.enqueue_workflow(build(-1))
    run_until_idle(app, **FAST)
    jobs = {j.name: j for j in app.workflow_jobs(failing)}
    assert jobs["pay"].status.value == "failed"
    assert jobs["pay"].attempts == 1
    assert ran == []
    assert app.get_workflow(failing).status == "failed"  # type: ignore[union-attr]


# -- timeouts, cancelling a running run, context information ------------------------------------


def test_a_run_past_its_timeout_compensates(app: Forge) -> None:
    undone: list[Any] = []

    @app.workflow(timeout="1s")
    def slowpoke(ctx: Any, input: dict[str, Any]) -> str:
        ctx.step("hold", lambda: "held").compensate(undone.append).run()
        ctx.sleep(30)  # parked no longer than the run's deadline
        ctx.step("never", lambda: undone.append("never ran")).run()
        return "done"

    run_id = app.start_workflow("slowpoke")
    created = app.get_run(run_id)
    assert created.deadline is not None
    assert 0.9 <= (created.deadline - created.created_at).total_seconds() <= 1.1
    began = time.monotonic()
    run = settle(app, run_id)
    took = time.monotonic() - began
    assert run.status.value == "compensated"
    assert run.error["type"] == "timeout", run.error
    assert undone == ["held"]
    assert took < 6, f"the timed-out run slept {took:.1f}s"
    assert "never" not in step_statuses(app, run_id)
    assert job_of(app, run_id).status == "failed"


def test_cancel_a_running_run_stops_at_the_next_step(app: Forge) -> None:
    undone: list[Any] = []
    started, release = threading.Event(), threading.Event()

    def first() -> str:
        started.set()
        assert release.wait(10)
        return "first"

    @app.workflow
    def busy(ctx: Any, input: dict[str, Any]) -> str:
        ctx.step("first", first).compensate(undone.append).run()
        ctx.step("second", lambda: undone.append("second ran")).run()
        return "done"

    run_id = app.start_workflow("busy")
    with worker_running(app):
        assert started.wait(10)
        assert app.get_run(run_id).status.value == "running"
        assert app.cancel_run(run_id).status.value == "running"  # asked, not yet done
        release.set()
        run = wait_until(finished(app, run_id), 10, "the cancelled run to finish")
    assert run.status.value == "cancelled"
    assert undone == ["first"]
    assert step_statuses(app, run_id) == {"first": "compensated"}
    assert run.error["type"] == "cancelled"


def test_retry_a_cancelled_run(app: Forge) -> None:
    calls: Counter[str] = Counter()

    @app.workflow
    def gated(ctx: Any, input: dict[str, Any]) -> Any:
        ctx.step("one", lambda: calls.update(["one"])).run()
        return ctx.wait_for_event("go")

    run_id = app.start_workflow("gated")
    run_until_idle(app, **FAST)
    app.cancel_run(run_id)
    run_until_idle(app, **FAST)
    assert app.get_run(run_id).status.value == "cancelled"
    app.retry_run(run_id)
    app.send_event(run_id, "go", "went")
    run_until_idle(app, **FAST)
    run = app.get_run(run_id)
    assert run.status.value == "completed", run.error
    assert run.output == "went"
    assert calls["one"] == 1  # no compensation: its result was kept
    assert job_of(app, run_id).status == "succeeded"


def test_context_information(app: Forge) -> None:
    seen: list[dict[str, Any]] = []

    @app.workflow(name="info", version=4)
    def info(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
        seen.append(
            {
                "run_id": ctx.run_id,
                "name": ctx.workflow_name,
                "version": ctx.version,
                "started_at": ctx.started_at,
                "elapsed": ctx.elapsed(),
            }
        )
        ctx.sleep(0.2)
        return {"elapsed": ctx.elapsed()}

    run_id = app.start_workflow("info")
    run = settle(app, run_id)
    assert run.status.value == "completed"
    assert len(seen) == 2
    for s in seen:
        assert (s["run_id"], s["name"], s["version"]) == (run_id, "info", 4)
        assert s["elapsed"] >= 0
    assert seen[1]["started_at"] == run.started_at  # the run's start, not the attempt's
    assert run.output["elapsed"] >= 0.2


def test_a_step_result_that_is_not_json_fails_the_step(app: Forge) -> None:
    @app.workflow
    def setty(ctx: Any, input: dict[str, Any]) -> Any:
        return ctx.step("odd", lambda: {1, 2}).run()

    run_id = app.start_workflow("setty")
    run_until_idle(app, **FAST)
    run = app.get_run(run_id)
    assert run.status.value == "compensated"
    assert "result of step 'odd' is not JSON" in run.error["message"]
    assert step_statuses(app, run_id).get("odd") != "completed"


def test_async_workflow_with_async_steps_and_compensations(app: Forge) -> None:
    undone: list[Any] = []

    async def fetch(n: int) -> int:
        await asyncio.sleep(0.01)
        return n * 10

    async def undo(result: Any) -> None:
        await asyncio.sleep(0.01)
        undone.append(result)

    async def explode() -> None:
        raise LookupError("gone")

    @app.workflow
    async def async_saga(ctx: Any, input: dict[str, Any]) -> None:
        await ctx.step("one", fetch, 1).compensate(undo).run_async()
        await ctx.step("two", fetch, 2).compensate(undo).run_async()
        await ctx.step("boom", explode).run_async()

    run_id = app.start_workflow("async_saga")
    run_until_idle(app, **FAST)
    run = app.get_run(run_id)
    assert run.status.value == "compensated"
    assert undone == [20, 10]
    assert steps(app, run_id)["boom"].error["type"] == "LookupError"


def test_concurrent_starts_with_one_idempotency_key_make_one_run(app: Forge) -> None:
    @app.workflow
    def single(ctx: Any, input: dict[str, Any]) -> Any:
        return input["n"]

    app.store  # noqa: B018 - migrated before the threads race
    barrier = threading.Barrier(8, timeout=10)

    def start(n: int) -> str:
        barrier.wait()
        return app.start_workflow("single", {"n": n}, idempotency_key="same")

    results: list[str] = []
    errors: list[BaseException] = []

    def target(n: int) -> None:
        try:
            results.append(start(n))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    assert len(results) == 8 and len(set(results)) == 1
    assert len(app.list_runs()) == 1
    assert len(app.list_jobs()) == 1
    run_until_idle(app, **FAST)
    assert app.get_run(results[0]).status.value == "completed"


def test_a_caught_step_failure_lets_the_run_go_on_and_replays_the_same(app: Forge) -> None:
    calls: Counter[str] = Counter()

    def primary() -> None:
        calls["primary"] += 1
        raise ConnectionError("primary down")

    def fallback() -> str:
        calls["fallback"] += 1
        return "from fallback"

    @app.workflow
    def resilient(ctx: Any, input: dict[str, Any]) -> str:
        try:
            value = ctx.step("primary", primary).run()
        except StepFailed as exc:
            assert exc.step == "primary"
            value = ctx.step("fallback", fallback).run()
        ctx.sleep(0.2)  # the replay meets the recorded failure again
        return str(value)

    run_id = app.start_workflow("resilient")
    run = settle(app, run_id)
    assert run.status.value == "completed", run.error
    assert run.output == "from fallback"
    assert calls == {"primary": 1, "fallback": 1}
    assert step_statuses(app, run_id) == {
        "primary": "failed",
        "fallback": "completed",
        "sleep:1": "completed",
    }


def test_a_parallel_sibling_that_completes_after_a_failure_is_compensated(app: Forge) -> None:
    """`ctx.parallel`: one step fails while a sibling is still running; the sibling then
    completes (its side effect happened), so the rollback must undo it too."""
    failed, sibling_done = threading.Event(), threading.Event()
    undone: list[Any] = []

    def fail() -> None:
        failed.set()
        raise ValueError("fast failure")

    def slow() -> str:
        assert failed.wait(5)
        time.sleep(0.05)  # still running when the failure is seen
        sibling_done.set()
        return "slow done"

    @app.workflow
    def fan_fail(ctx: Any, input: dict[str, Any]) -> None:
        ctx.parallel([ctx.step("fail", fail), ctx.step("slow", slow).compensate(undone.append)])

    run_id = app.start_workflow("fan_fail")
    run_until_idle(app, **FAST)
    assert sibling_done.wait(5)
    run = wait_until(finished(app, run_id), 5, "the run to finish")
    assert run.status.value == "compensated"
    assert step_statuses(app, run_id) == {"fail": "failed", "slow": "compensated"}
    assert undone == ["slow done"]


def test_a_durable_dag_node_waiting_for_an_event_is_woken_through_its_job_id(
    app: Forge,
) -> None:
    @app.workflow(name="approve_node")
    def approve_node(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
        data = ctx.wait_for_event("ok", timeout=3600)
        return {"by": data, "order": input["order"]}

    @app.job
    def after(ctx: JobContext) -> str:
        return "after"

    wf = Workflow("gate").add(JobSpec("approve_node", {"order": 7}), name="approve")
    wf.then(after.spec(), name="after")
    ref = app.enqueue_workflow(wf)
    run_until_idle(app, **FAST)
    jobs = {j.name: j for j in app.workflow_jobs(ref)}
    assert jobs["after"].status.value == "waiting"
    node_job = f"job_{jobs['approve'].id.hex}"
    run = app.get_run(node_job)
    assert run.status.value == "waiting"
    assert run.run_id == node_job.replace("job_", "run_")
    app.send_event(node_job, "ok", "boss")
    run_until_idle(app, **FAST)
    jobs = {j.name: j for j in app.workflow_jobs(ref)}
    assert jobs["approve"].status.value == "succeeded"
    assert jobs["approve"].result == {"by": "boss", "order": 7}
    assert jobs["after"].status.value == "succeeded"
    assert app.get_workflow(ref).status == "succeeded"  # type: ignore[union-attr]


def test_an_event_sent_while_the_run_is_parking_is_not_lost(app: Forge) -> None:
    """The event is sent at (swept) moments around the run's parking: every run still wakes
    at once, not at the 5 s poll or the hour-long timeout."""
    reached: dict[int, threading.Event] = {i: threading.Event() for i in range(12)}

    @app.workflow
    def racer(ctx: Any, input: dict[str, Any]) -> Any:
        reached[input["i"]].set()
        return ctx.wait_for_event("go", timeout=3600)

    with worker_running(app, poll_interval=5.0):
        for i in reached:
            run_id = app.start_workflow("racer", {"i": i})
            assert reached[i].wait(5)
            time.sleep(i * 0.004)  # sweep the send across the parking window
            app.send_event(run_id, "go", i)
            run = wait_until(finished(app, run_id), 3, f"run {i} to wake")
            assert run.status.value == "completed"
            assert run.output == i
