"""An idle worker starts a new job at once: woken by LISTEN/NOTIFY on PostgreSQL and by
PRAGMA data_version on SQLite, not by its 2 s fallback poll."""

from __future__ import annotations

import signal
import statistics
import time

import pytest

from jobforge import Forge
from tests.e2e.helpers import Workers, jobforge, ok, started_line, wait_until


def latency(forge: Forge, job_id: str) -> float:
    """Seconds from the job's creation (just before its insert) to its handler starting."""
    job = wait_until(
        lambda: (j := forge.get_job(job_id)) is not None and j.status == "succeeded" and j,
        10,
        f"{job_id} to run",
        0.02,
    )
    return float(job.result["started"]) - job.created_at.timestamp()


def test_enqueue_wakes_an_idle_worker(
    db_url: str, forge: Forge, workers: Workers, record_property: pytest.RecordProperty
) -> None:
    proc = workers.start(db_url, "--poll-interval", "2")
    started_line(proc)
    time.sleep(0.3)  # let it finish its first (empty) claim and go idle

    delays = []
    # Different gaps put each enqueue at a different point of the 2 s poll cycle.
    for gap in (0.1, 0.45, 0.8, 1.15, 1.5, 0.3):
        time.sleep(gap)
        delays.append(latency(forge, forge.enqueue("stamp", {})))
    # ... and one from the command line, yet another process.
    job_id = ok(jobforge("enqueue", "stamp", db_url=db_url)).strip()
    delays.append(latency(forge, job_id))

    record_property("wakeup_latencies_s", [round(d, 3) for d in delays])
    print(f"\nwake-up latencies ({db_url.split(':')[0]}):", [f"{d * 1000:.0f} ms" for d in delays])
    assert all(d >= 0 for d in delays), delays
    assert max(delays) < 1.0, delays  # a poll-only worker would average 1 s
    assert statistics.median(delays) < 0.5, delays

    proc.send(signal.SIGTERM)
    assert proc.wait(10) == 0
