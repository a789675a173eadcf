"""Graceful shutdown: SIGTERM finishes running jobs, hands back the rest, and exits."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from jobforge import Forge
from tests.e2e.helpers import Workers, status_counts, wait_until


def test_sigterm_finishes_the_running_job_and_releases_prefetched(
    db_url: str, forge: Forge, workers: Workers, markers: Path
) -> None:
    payload = {"seconds": 1.0, "marker_dir": str(markers)}
    ids = [forge.enqueue("sleepy", payload) for _ in range(3)]
    # One slot plus one prefetched: the worker claims two of the three jobs.
    proc = workers.start(db_url, "--concurrency", "1", "--poll-interval", "0.2")
    wait_until(lambda: list(markers.iterdir()), 20, "the first job to start")
    assert status_counts(db_url) == {"running": 2, "queued": 1}
    [marker] = markers.iterdir()
    running = marker.name.removesuffix(".1")
    held = {j.job_id for j in forge.list_jobs(status="running")}
    [prefetched] = held - {running}

    proc.send(signal.SIGTERM)
    sent = time.monotonic()
    assert proc.wait(10) == 0
    took = time.monotonic() - sent
    assert took < 3.0, f"shutdown took {took:.1f}s for a 1 s job"

    finished = forge.get_job(running)
    assert finished is not None
    assert finished.status == "succeeded" and finished.attempts == 1
    assert finished.result == {"pid": proc.pid, "attempt": 1}
    released = forge.get_job(prefetched)
    assert released is not None
    assert released.status == "queued"
    assert released.attempts == 0  # it never ran: the attempt is not counted
    assert released.worker_id is None and released.errors == []
    assert [p.name for p in markers.iterdir()] == [marker.name]  # nothing else started
    assert status_counts(db_url) == {"succeeded": 1, "queued": 2}
    assert "released 1 unfinished jobs back to the queue" in proc.log

    # The released jobs are runnable as ever.
    again = workers.start(db_url, "--burst", "--poll-interval", "0.1")
    assert again.wait(20) == 0, again.log
    assert status_counts(db_url) == {"succeeded": 3}
    for job_id in ids:
        job = forge.get_job(job_id)
        assert job is not None and job.attempts == 1


def test_grace_period_ends_and_the_job_is_released(
    db_url: str, forge: Forge, workers: Workers, markers: Path
) -> None:
    job_id = forge.enqueue("sleepy", {"seconds": 10, "marker_dir": str(markers)})
    proc = workers.start(db_url, "--grace", "0.5")
    wait_until(lambda: list(markers.iterdir()), 20, "the job to start")

    proc.send(signal.SIGTERM)
    sent = time.monotonic()
    wait_until(lambda: status_counts(db_url) == {"queued": 1}, 3, "the job to be released")
    released_after = time.monotonic() - sent
    assert proc.wait(3) == 0
    exited_after = time.monotonic() - sent
    assert released_after < 2.0 and exited_after < 3.0, (released_after, exited_after)

    job = forge.get_job(job_id)
    assert job is not None
    assert job.status == "queued" and job.attempts == 0 and job.errors == []
    assert "released 1 unfinished jobs back to the queue" in proc.log


def test_second_sigint_stops_at_once(
    db_url: str, forge: Forge, workers: Workers, markers: Path
) -> None:
    job_id = forge.enqueue("sleepy", {"seconds": 10, "marker_dir": str(markers)})
    proc = workers.start(db_url)  # default grace: 30 s
    wait_until(lambda: list(markers.iterdir()), 20, "the job to start")

    proc.send(signal.SIGINT)
    wait_until(lambda: "waiting up to" in proc.log, 5, "the worker to start its grace period")
    time.sleep(0.5)
    assert proc.alive(), "the first SIGINT must wait for the running job"
    assert status_counts(db_url) == {"running": 1}

    proc.send(signal.SIGINT)
    sent = time.monotonic()
    assert proc.wait(3) == 0
    assert time.monotonic() - sent < 2.0
    job = forge.get_job(job_id)
    assert job is not None
    assert job.status == "queued" and job.attempts == 0
