"""Two worker processes drain a queue together: every job runs exactly once."""

from __future__ import annotations

import json
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from jobforge import Forge, JobSpec
from tests.e2e.helpers import Workers, sql, started_line, status_counts, wait_until


def drain(url: str, n: int, workers: Workers, tmp_path: Path, *, both_run: bool) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    procs = [workers.start(url, "--concurrency", "4", "--poll-interval", "0.5") for _ in range(2)]
    for proc in procs:
        started_line(proc)

    # Both workers are up before any job exists, so they compete for every batch.
    app = Forge(url, allow_unknown_types=True)
    try:
        ids: list[str] = []
        for _ in range(0, n, 250):
            ids += app.enqueue_many([JobSpec("record", {"out_dir": str(runs)})] * 250)
    finally:
        app.close()
    assert len(set(ids)) == n

    wait_until(lambda: status_counts(url) == {"succeeded": n}, 90, f"{n} jobs to succeed", 0.25)
    for proc in procs:
        proc.send(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(15) == 0, proc.log

    # Each handler run appended "<job_id> <attempt>" to its own process's file.
    per_process = {int(p.stem): p.read_text().split("\n")[:-1] for p in runs.glob("*.log")}
    assert set(per_process) <= {p.pid for p in procs}
    if both_run:  # SKIP LOCKED: the workers claim side by side
        assert len(per_process) == 2, "both workers must have run jobs:\n" + "\n".join(
            p.log for p in procs
        )
    print("\nruns per worker:", {pid: len(batch) for pid, batch in per_process.items()})
    lines = [line for batch in per_process.values() for line in batch]
    ran = Counter(line.split()[0] for line in lines)
    assert len(lines) == n
    duplicates = [job_id for job_id, count in ran.items() if count > 1]
    assert not duplicates, f"{len(duplicates)} jobs ran more than once"
    assert set(ran) == set(ids), "some jobs never ran"
    assert all(line.split()[1] == "1" for line in lines)

    # The database agrees: one attempt each, and the result names the process that ran it.
    owner = {job_id.split()[0]: pid for pid, batch in per_process.items() for job_id in batch}
    rows = sql(url, "SELECT id, attempts, result, errors FROM jobforge_jobs")
    assert len(rows) == n
    for job_uuid, attempts, result, errors in rows:
        job_id = "job_" + uuid.UUID(str(job_uuid)).hex
        assert attempts == 1
        assert _json(result) == owner[job_id]
        assert _json(errors) == []


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def test_two_workers_drain_2000_jobs_on_postgres(
    pg_url: str, workers: Workers, tmp_path: Path
) -> None:
    drain(pg_url, 2000, workers, tmp_path, both_run=True)


def test_two_workers_drain_500_jobs_on_sqlite(
    sqlite_url: str, workers: Workers, tmp_path: Path
) -> None:
    Forge(sqlite_url).close()
    # One writer at a time: a busy worker may keep the lock, so no split is required.
    drain(sqlite_url, 500, workers, tmp_path, both_run=False)
