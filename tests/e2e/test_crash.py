"""A worker killed with SIGKILL loses nothing: its jobs are rescued after their lease."""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path

from jobforge import Forge
from tests.e2e.helpers import Workers, started_line, status_counts, wait_until

FAST = ["--concurrency", "2", "--lease-seconds", "2", "--rescue-interval", "0.5"]


def test_sigkilled_worker_jobs_are_rescued_and_rerun(
    db_url: str, forge: Forge, workers: Workers, markers: Path
) -> None:
    # 4 jobs for a worker running 2 at a time: 2 start, 2 wait in its prefetch buffer.
    payload = {"seconds": 60, "marker_dir": str(markers), "retry_seconds": 0.1}
    ids = [forge.enqueue("sleepy", payload) for _ in range(4)]

    first = workers.start(db_url, *FAST)
    wait_until(lambda: len(list(markers.glob("*.1"))) == 2, 20, "two jobs to start")
    assert status_counts(db_url) == {"running": 4}
    started_on_first = {p.name.removesuffix(".1") for p in markers.glob("*.1")}
    first_worker_id = forge.get_job(ids[0]).worker_id  # type: ignore[union-attr]
    assert first_worker_id and f":{first.pid}:" in first_worker_id

    first.popen.send_signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    leases = {job_id: forge.get_job(job_id).lease_expires_at for job_id in ids}  # type: ignore[union-attr]
    assert all(leases.values())

    second = workers.start(db_url, *FAST)
    started_line(second)
    wait_until(
        lambda: status_counts(db_url) == {"succeeded": 4}, 20, "every job to finish on the rescuer"
    )

    for job_id in ids:
        job = forge.get_job(job_id)
        assert job is not None
        assert job.status == "succeeded"
        assert job.result == {"pid": second.pid, "attempt": 2}
        assert job.attempts == 2
        [lease_error] = job.errors
        assert lease_error["type"] == "LeaseExpired"
        assert first_worker_id in lease_error["message"]
        assert lease_error["attempt"] == 1
        # Rescued only once the dead worker's lease had run out, not before.
        rescued_at = datetime.fromisoformat(lease_error["time"])
        assert rescued_at >= leases[job_id], (rescued_at, leases[job_id])
    # The two that had started ran again; none ran a third time.
    assert {p.name.removesuffix(".2") for p in markers.glob("*.2")} == set(ids)
    assert {p.name.removesuffix(".1") for p in markers.glob("*.1")} == started_on_first
    assert not list(markers.glob("*.3"))
    assert "rescued jobs from dead workers: 4 requeued" in second.log

    second.send(signal.SIGTERM)
    assert second.wait(10) == 0
