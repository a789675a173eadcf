"""Drive one attempt of a durable run: replay the function, park it, finish it, or roll back.

This is the handler of the job that carries the run (the job and the run share an id), so
runs get the workers' leases, rescue and retries. Parking uses the job's snooze, so a
sleeping or waiting run holds no worker slot.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from jobforge.durable.context import (
    LostClaim,
    NonDeterminism,
    RunContext,
    RunInterrupted,
    Suspend,
    as_json,
    error_info,
)
from jobforge.durable.definitions import DurableWorkflow
from jobforge.durable.records import RUN_FINISHED, RunRecord, RunStatus
from jobforge.errors import Cancel, Fail, Park, ValidationError
from jobforge.jobs import utcnow
from jobforge.store import runs as stored

if TYPE_CHECKING:
    from jobforge.app import Forge
    from jobforge.context import JobContext

log = logging.getLogger("jobforge.durable")


def drive(app: Forge, job_ctx: JobContext) -> Any:
    """One attempt of the run carried by this job; returns the run's output."""
    run = _load(app, job_ctx)
    if run.status in RUN_FINISHED:
        return run.output
    try:
        wf = app.durable.get(run.name, run.version)
    except ValidationError as exc:
        message = (
            f"run {run.run_id} was started with version {run.version} of {run.name},"
            f" which this worker does not have: {exc}"
        )
        info = {"type": "NonDeterminism", "message": message}
        _status(app, job_ctx, RunStatus.FAILED, error=info)
        raise Fail(info["message"]) from None
    compensating = run.error if run.status == RunStatus.COMPENSATING else None
    ctx = RunContext(app, run, job_ctx, stored.steps(app.store, run.id), compensating)
    if compensating is None:
        _status(app, job_ctx, RunStatus.RUNNING)
    try:
        output = _call(wf, ctx, run.input)
    except Suspend as s:
        _status(app, job_ctx, RunStatus.WAITING, current_step=s.step)
        raise Park(ctx.until_seconds(s.until), s.event) from None
    except NonDeterminism as exc:
        _status(app, job_ctx, RunStatus.FAILED, error=error_info(exc))
        raise Fail(str(exc)) from None
    except RunInterrupted as exc:
        return _roll_back(app, ctx, exc.reason)
    except Exception as exc:
        return _roll_back(app, ctx, error_info(exc), getattr(exc, "step", None))
    if ctx.interrupted is not None:  # the function swallowed a failure while rolling back
        return _roll_back(app, ctx, ctx.interrupted)
    try:
        output = as_json(output, f"output of run {run.run_id}")
    except ValidationError as exc:
        return _roll_back(app, ctx, error_info(exc))
    _status(app, job_ctx, RunStatus.COMPLETED, output=output)
    return output


def _status(app: Forge, job_ctx: JobContext, status: RunStatus, **fields: Any) -> None:
    """Record the run's status, fenced like its steps: a worker that lost the run stops."""
    job = job_ctx.job
    if not stored.set_status(app.store, job.id, job.lease_token or "", status, **fields):
        raise LostClaim(f"run of job {job.job_id} was taken over by another worker")


def _load(app: Forge, job_ctx: JobContext) -> RunRecord:
    """The run of this job; a job enqueued as a DAG node gets its run on first execution."""
    job = job_ctx.job
    run = stored.find(app.store, job.id)
    if run is not None:
        return run
    wf = app.durable.starting(job.type, None)
    deadline = None if wf.timeout is None else utcnow() + timedelta(seconds=wf.timeout)
    return stored.adopt(
        app.store, job.id, wf.name, wf.version, job.payload, deadline, job.tenant_id, job.trace_id
    )


def _call(wf: DurableWorkflow, ctx: RunContext, input: Any) -> Any:
    if wf.is_async:
        return asyncio.run(wf.func(ctx, input))
    return wf.func(ctx, input)


def _roll_back(app: Forge, ctx: RunContext, cause: dict[str, Any], step: str | None = None) -> Any:
    """Run the completed steps' compensations, latest first, each recorded; a crash here
    resumes the rollback (the run is `compensating`), not the workflow."""
    _status(app, ctx._job, RunStatus.COMPENSATING, current_step=step, error=cause)
    for _, name, undo, result in ctx.compensations():
        try:
            outcome = undo(result)
            if inspect.isawaitable(outcome):
                asyncio.run(_await(outcome))
        except Exception as exc:
            info = {**cause, "compensation": name, "compensation_error": error_info(exc)}
            _status(app, ctx._job, RunStatus.FAILED, current_step=name, error=info)
            raise Fail(f"run {ctx.run_id}: compensation of {name!r} failed: {exc}") from None
        ctx._mark_compensated(name)
    cancelled = cause.get("type") == "cancelled"
    final = RunStatus.CANCELLED if cancelled else RunStatus.COMPENSATED
    _status(app, ctx._job, final, current_step=step, error=cause)
    log.info("run %s %s after %s", ctx.run_id, final.value, cause.get("message"))
    if cancelled:
        raise Cancel(f"run {ctx.run_id} cancelled")
    raise Fail(f"run {ctx.run_id} {final.value}: {cause.get('message')}")


async def _await(outcome: Any) -> Any:
    return await outcome
