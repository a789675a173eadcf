"""Batches: one logical job over many items that run in parallel under it.

The batch is a job of the built-in type `jobforge.batch` that waits for every item with an
`always` edge, so it is released however the items end. A worker then runs its built-in
handler, which reads the items' outcomes and ends the batch `succeeded`, `partial_success`
(some items failed) or `failed` (all failed). Other jobs depend on the batch like on any job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobforge.deps import SUCCESS
from jobforge.jobs import Job, PartialSuccess
from jobforge.retry import DEFAULT_BACKOFF, DEFAULT_BACKOFF_MAX
from jobforge.tasks import JobDefinition

if TYPE_CHECKING:
    from jobforge.app import Forge
    from jobforge.context import JobContext

BATCH_TYPE = "jobforge.batch"


class BatchFailed(Exception):
    """Every item of the batch failed."""


def summarize(items: list[Job]) -> dict[str, Any]:
    """Counts by outcome and the items that did not succeed (with their index)."""
    failed = [j for j in items if j.status not in SUCCESS]
    return {
        "items": len(items),
        "succeeded": len(items) - len(failed),
        "failed": len(failed),
        "failed_items": [
            {"index": int(j.name or 0), "job_id": j.job_id, "status": j.status.value}
            for j in failed
        ],
    }


def batch_definition(app: Forge) -> JobDefinition[[str, int], Any]:
    """The built-in handler that ends a batch from its items' outcomes."""

    def finish_batch(ctx: JobContext, type: str, items: int) -> Any:
        jobs = app.batch_items(ctx.job_id)
        summary = summarize(jobs)
        if summary["succeeded"] == 0:
            raise BatchFailed(f"all {len(jobs)} items of {type} failed")
        if summary["failed"]:
            errors = [
                {"type": "ItemFailed", "message": f"item {f['job_id']} {f['status']}", **f}
                for f in summary["failed_items"]
            ]
            return PartialSuccess(summary, errors)
        return summary

    return JobDefinition(
        app,
        finish_batch,
        name=BATCH_TYPE,
        queue=app.default_queue,
        retries=0,  # the outcome is a pure function of the items: nothing to retry
        timeout=None,
        priority=0,
        backoff=DEFAULT_BACKOFF,
        backoff_max=DEFAULT_BACKOFF_MAX,
        description="Ends a batch from its items' outcomes.",
    )
