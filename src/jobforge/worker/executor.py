"""Run one attempt of a job and turn what happened into an `Outcome` for the store."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import traceback
from dataclasses import replace
from datetime import timedelta
from typing import Any

from jobforge.context import JobContext
from jobforge.errors import Cancel, Fail, JobTimeout, Park, Retry, Snooze
from jobforge.jobs import ErrorEntry, Job, JobStatus, PartialSuccess, encode_result, iso, utcnow
from jobforge.retry import backoff_delay
from jobforge.store.base import Outcome
from jobforge.tasks import JobDefinition

log = logging.getLogger("jobforge.worker")


async def execute(definition: JobDefinition[Any, Any], ctx: JobContext) -> Outcome:
    """Run an async handler on the loop under the job's timeout.

    Sync handlers go through `run_sync` in a `SyncBatch`, which enforces their timeout.
    """
    job = ctx.job
    deadline = asyncio.timeout(job.timeout)
    try:
        async with deadline:
            value = await definition.func(ctx, **job.payload)
    except asyncio.CancelledError:
        raise
    except TimeoutError as exc:
        return timed_out(job) if deadline.expired() else settle_error(job, exc)
    except BaseException as exc:  # even SystemExit in a handler fails only this attempt
        return settle_error(job, exc)
    return settle_value(ctx, value)


def run_sync(definition: JobDefinition[Any, Any], ctx: JobContext) -> Outcome:
    """Run a sync handler in the calling thread and map what happened to an outcome."""
    try:
        value = definition.func(ctx, **ctx.job.payload)
    except BaseException as exc:  # even SystemExit in a handler fails only this attempt
        return settle_error(ctx.job, exc)
    return settle_value(ctx, value)


def timed_out(job: Job) -> Outcome:
    """The outcome of an attempt that overran `job.timeout`."""
    return _failure(job, JobTimeout(f"job exceeded its timeout of {job.timeout}s"), None)


def settle_error(job: Job, exc: BaseException) -> Outcome:
    """Map a handler's exception (a control signal or a failure) to its outcome."""
    if isinstance(exc, Park):
        return replace(
            _outcome(job, JobStatus.SCHEDULED, scheduled_in=exc.seconds, attempt_delta=-1),
            parks_run=True, wait_event=exc.event,
        )  # fmt: skip
    if isinstance(exc, Snooze):
        return _outcome(job, JobStatus.SCHEDULED, scheduled_in=exc.seconds, attempt_delta=-1)
    if isinstance(exc, Cancel):
        return _outcome(job, JobStatus.CANCELLED, errors=[_entry(job, exc)])
    if isinstance(exc, Fail):
        return _outcome(job, JobStatus.FAILED, errors=[_entry(job, exc)])
    return _failure(job, exc, exc.delay if isinstance(exc, Retry) else None)


def settle_value(ctx: JobContext, value: Any) -> Outcome:
    """The outcome of a handler that returned `value`."""
    job = ctx.job
    if isinstance(value, PartialSuccess):
        items = [_item_entry(job, e) for e in value.errors]
        # With no item errors there is nothing partial about it.
        status = JobStatus.PARTIAL_SUCCESS if items else JobStatus.SUCCEEDED
        value = value.result
    else:
        status, items = JobStatus.SUCCEEDED, []
    return _outcome(
        job, status, result=value, errors=items, progress=100, result_url=ctx.result_url
    )


def _failure(job: Job, exc: BaseException, delay: float | None) -> Outcome:
    entry = _entry(job, exc)
    if job.attempts >= job.max_attempts:
        log.warning("job %s (%s) failed for good: %s", job.job_id, job.type, entry["message"])
        return _outcome(job, JobStatus.FAILED, errors=[entry])
    wait = delay if delay is not None else backoff_delay(
        job.attempts, job.retry_backoff, job.retry_backoff_max
    )  # fmt: skip
    return _outcome(job, JobStatus.SCHEDULED, errors=[entry], scheduled_in=wait)


def _outcome(
    job: Job,
    status: JobStatus,
    *,
    result: Any = None,
    errors: list[dict[str, Any]] | None = None,
    scheduled_in: float | None = None,
    attempt_delta: int = 0,
    progress: int | None = None,
    result_url: str | None = None,
) -> Outcome:
    return Outcome(
        id=job.id,
        lease_token=job.lease_token or "",
        status=status,
        result_json=encode_result(result),
        errors=job.errors + errors if errors else None,
        scheduled_at=None if scheduled_in is None else utcnow() + timedelta(seconds=scheduled_in),
        attempt_delta=attempt_delta,
        progress=progress,
        result_url=result_url,
    )


def user_traceback(exc: BaseException) -> str | None:
    """The traceback without jobforge's and the event loop's own frames."""
    if exc.__traceback__ is None:
        return None
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _internal(f.filename)]
    return (
        "Traceback (most recent call last):\n"
        + "".join(traceback.format_list(frames))
        + "".join(traceback.format_exception_only(exc))
    )


def _internal(filename: str) -> bool:
    return filename.startswith(_INTERNAL_PREFIXES)


_INTERNAL_PREFIXES = (
    os.path.dirname(os.path.dirname(__file__)) + os.sep,  # the jobforge package
    os.path.dirname(asyncio.__file__) + os.sep,
    os.path.dirname(concurrent.futures.__file__) + os.sep,
)


def _entry(job: Job, exc: BaseException) -> dict[str, Any]:
    tb = user_traceback(exc)
    return ErrorEntry(
        type=type(exc).__name__,
        message=str(exc) or type(exc).__name__,
        traceback=tb,
        attempt=job.attempts,
        time=iso(utcnow()) or "",
    ).to_dict()


def _item_entry(job: Job, item: Any) -> dict[str, Any]:
    """An item error from `PartialSuccess.errors`: a dict keeps its fields, else its text."""
    entry = ErrorEntry(
        type="PartialFailure",
        message=item if isinstance(item, str) else json.dumps(item, default=str),
        traceback=None,
        attempt=job.attempts,
        time=iso(utcnow()) or "",
    ).to_dict()
    if isinstance(item, dict):
        entry["type"] = str(item.get("type", "PartialFailure"))
        entry["message"] = str(item.get("message", entry["message"]))
        entry["detail"] = item
    return entry
