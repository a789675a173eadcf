"""A run's status, like its steps, is written only under the claim of the job carrying it."""

from __future__ import annotations

from typing import Any

from jobforge import Forge
from jobforge.durable.records import RunStatus, parse_run_ref
from jobforge.store import runs as stored
from jobforge.store.base import ClaimParams


def test_run_status_writes_are_fenced_by_the_jobs_lease(app: Forge) -> None:
    @app.workflow
    def flow(ctx: Any, input: dict[str, Any]) -> int:
        return 1

    run_id = parse_run_ref(app.start_workflow("flow"))
    # Not claimed yet: nobody holds the run, so no status write lands.
    assert not stored.set_status(app.store, run_id, "any-token", RunStatus.RUNNING)
    (job,) = app.store.claim_jobs(ClaimParams("w1", ["flow"], None, 1, 30.0))
    assert job.lease_token
    # A stale token (a worker that lost the run) is refused; the holder's write lands.
    assert not stored.set_status(app.store, run_id, "stale", RunStatus.COMPLETED, output=9)
    assert stored.get(app.store, run_id).status == RunStatus.CREATED
    assert stored.set_status(app.store, run_id, job.lease_token, RunStatus.RUNNING)
    assert stored.get(app.store, run_id).status == RunStatus.RUNNING
