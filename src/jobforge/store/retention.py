"""Retention: delete finished jobs, workflows, durable runs and cron runs past an age.

Only what can no longer matter goes: a job is kept while its workflow is unfinished or while
any of its children has still to run, so pruning never strands a child or half a workflow.
Deletes go in batches, each its own short transaction, so workers are never held up long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from jobforge.jobs import utcnow
from jobforge.limits import MAX_WINDOW

if TYPE_CHECKING:
    from jobforge.store.sql import SQLStore

BATCH = 5000
MIN_RUN_HISTORY = timedelta(days=2)  # cron dependencies look up the same day's runs
EVENT_HISTORY = timedelta(days=1)  # how far back a reconnecting feed reader can resume


@dataclass(frozen=True, slots=True)
class Pruned:
    jobs: int
    workflows: int


def prune(store: SQLStore, before: datetime | None, batch: int = BATCH) -> Pruned:
    """Delete what finished before `before` (None keeps every job); old rate-limit starts,
    cron runs and change-feed events go too."""
    now = utcnow()
    jobs = workflows = 0
    if before is not None:
        while True:
            with store._tx() as cur:
                n = store._run(cur, "prune_jobs", before=before, batch=batch).rowcount
            jobs += n
            if n < batch:
                break
        with store._tx() as cur:
            workflows = store._run(cur, "prune_workflows", before=before).rowcount
            store._run(cur, "prune_runs", before=before)  # durable runs whose job is gone
            runs_before = min(before, now - MIN_RUN_HISTORY)
            store._run(cur, "prune_schedule_runs", before=runs_before)
    events_before = now - EVENT_HISTORY if before is None else min(before, now - EVENT_HISTORY)
    with store._tx() as cur:
        store._run(cur, "prune_starts", before=now - timedelta(seconds=MAX_WINDOW))
        store._run(cur, "prune_events", before=events_before)
    return Pruned(jobs, workflows)
