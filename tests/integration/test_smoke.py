from __future__ import annotations

from jobforge import Forge, JobStatus
from jobforge.testing import run_until_idle


def test_enqueue_and_run(app: Forge) -> None:
    @app.job
    def add(ctx, a: int, b: int) -> int:
        return a + b

    job_id = add.enqueue(a=2, b=3)
    stats = run_until_idle(app)
    job = app.get_job(job_id)
    assert job is not None
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == 5
    assert stats.finished == {"succeeded": 1}
