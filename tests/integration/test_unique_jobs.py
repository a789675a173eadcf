"""Unique jobs on both backends: while a job holding a `unique_key` is unfinished (scheduled,
queued, waiting or running), enqueueing the key again returns that job; once it has finished,
a new job is created. Concurrent enqueues of one key, from threads, from separate Forge
instances and from separate processes, create exactly one job."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from jobforge import (
    Forge,
    JobContext,
    JobforgeError,
    JobOptions,
    JobSpec,
    JobStatus,
    ValidationError,
    Workflow,
)
from jobforge.testing import run_until_idle
from tests.e2e.helpers import ROOT, cli_env, sql
from tests.integration.test_workflows import worker_running

FAST: dict[str, Any] = {"poll_interval": 0.05}


def count(app: Forge, key: str | None = None) -> int:
    app.store  # noqa: B018 - the schema exists even if nothing was written yet
    where = "" if key is None else f" WHERE unique_key = '{key}'"
    return int(sql(app.url, f"SELECT count(*) FROM jobforge_jobs{where}")[0][0])


def status(app: Forge, ref: str) -> JobStatus:
    job = app.get_job(ref)
    assert job is not None
    return job.status


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_same_key_returns_the_unfinished_job(app: Forge) -> None:
    @app.job
    def sync(ctx: JobContext, account: int) -> int:
        return account

    first = app.enqueue("sync", {"account": 1}, unique_key="sync:1")
    again = app.enqueue("sync", {"account": 1}, unique_key="sync:1")
    other_payload = sync.configure(unique_key="sync:1").enqueue(account=99)
    assert again == first and other_payload == first
    job = app.get_job(first)
    assert job is not None and job.unique_key == "sync:1" and job.payload == {"account": 1}
    # other keys, and no key, are independent
    second = app.enqueue("sync", {"account": 2}, unique_key="sync:2")
    plain = [app.enqueue("sync", {"account": 1}) for _ in range(2)]
    assert len({first, second, *plain}) == 4
    assert count(app) == 4 and count(app, "sync:1") == 1

    run_until_idle(app, **FAST)
    assert status(app, first) == JobStatus.SUCCEEDED
    # finished: the key is free again
    third = app.enqueue("sync", {"account": 1}, unique_key="sync:1")
    assert third != first and status(app, third) == JobStatus.QUEUED
    assert count(app, "sync:1") == 2
    assert app.enqueue("sync", {"account": 1}, unique_key="sync:1") == third


def test_scheduled_and_waiting_jobs_hold_their_key(app: Forge) -> None:
    @app.job
    def t(ctx: JobContext) -> None:
        return None

    later = app.enqueue("t", delay=3600, unique_key="later")
    assert status(app, later) == JobStatus.SCHEDULED
    assert app.enqueue("t", unique_key="later") == later
    assert app.enqueue("t", delay=5, unique_key="later") == later

    parent = app.enqueue("t", delay=3600)
    child = app.enqueue("t", depends_on=[parent], unique_key="child")
    assert status(app, child) == JobStatus.WAITING
    assert app.enqueue("t", unique_key="child") == child
    assert app.enqueue("t", depends_on=[parent], unique_key="child") == child
    assert count(app, "later") == 1 and count(app, "child") == 1
    assert len(app.dependencies(child)[0]) == 1  # the duplicate added no edge


def test_running_job_holds_its_key(app: Forge) -> None:
    release = threading.Event()

    @app.job
    def slow(ctx: JobContext) -> str:
        assert release.wait(20)
        return "done"

    first = app.enqueue("slow", unique_key="slow")
    with worker_running(app, **FAST):
        wait_for(lambda: status(app, first) == JobStatus.RUNNING, "the job to start")
        assert app.enqueue("slow", unique_key="slow") == first
        release.set()
        wait_for(lambda: status(app, first) == JobStatus.SUCCEEDED, "the job to finish")
    assert count(app, "slow") == 1


@pytest.mark.parametrize("ending", ["failed", "cancelled"])
def test_failed_or_cancelled_job_frees_its_key(app: Forge, ending: str) -> None:
    @app.job(retries=0)
    def boom(ctx: JobContext) -> None:
        raise RuntimeError("boom")

    first = app.enqueue("boom", unique_key="k")
    if ending == "failed":
        run_until_idle(app, **FAST)
    else:
        app.cancel_job(first)
    assert status(app, first) == JobStatus(ending)
    second = app.enqueue("boom", unique_key="k")
    assert second != first and status(app, second) == JobStatus.QUEUED
    assert count(app, "k") == 2


def test_retrying_a_finished_job_whose_key_is_taken_is_refused_cleanly(app: Forge) -> None:
    """Retrying a failed unique job while a newer job holds its key cannot make two
    unfinished jobs share the key; it must be refused as a jobforge error (the CLI prints
    those as one line), not surface the database's unique-index violation."""

    @app.job(retries=0)
    def boom(ctx: JobContext) -> None:
        raise RuntimeError("boom")

    first = app.enqueue("boom", unique_key="k")
    run_until_idle(app, **FAST)
    assert status(app, first) == JobStatus.FAILED
    second = app.enqueue("boom", unique_key="k")
    with pytest.raises(JobforgeError):
        app.retry_job(first)
    assert status(app, first) == JobStatus.FAILED
    assert status(app, second) == JobStatus.QUEUED


def test_duplicates_in_one_enqueue_many_collapse(app: Forge) -> None:
    @app.job
    def t(ctx: JobContext, n: int) -> int:
        return n

    existing = app.enqueue("t", {"n": 0}, unique_key="held")
    ids = app.enqueue_many(
        [
            JobSpec("t", {"n": 1}, JobOptions(unique_key="a")),
            JobSpec("t", {"n": 2}, JobOptions(unique_key="b")),
            JobSpec("t", {"n": 3}, JobOptions(unique_key="a")),
            JobSpec("t", {"n": 4}),
            JobSpec("t", {"n": 5}, JobOptions(unique_key="held")),
            JobSpec("t", {"n": 6}, JobOptions(unique_key="a")),
        ]
    )
    assert len(ids) == 6
    assert ids[0] == ids[2] == ids[5]
    assert ids[4] == existing
    assert len({ids[0], ids[1], ids[3], existing}) == 4
    assert count(app) == 4  # existing + a + b + the one without a key
    a = app.get_job(ids[0])
    assert a is not None and a.payload == {"n": 1}  # the first of the batch is kept


def test_unique_key_inside_a_workflow_is_refused(app: Forge) -> None:
    @app.job
    def t(ctx: JobContext) -> None:
        return None

    wf = Workflow("w").add(JobSpec("t", {}, JobOptions(unique_key="k")), name="first")
    with pytest.raises(ValidationError) as err:
        app.enqueue_workflow(wf)
    assert str(err.value) == "Workflow job 'first': unique_key is not supported in workflows"
    assert count(app) == 0
    assert int(sql(app.url, "SELECT count(*) FROM jobforge_workflows")[0][0]) == 0


def test_unique_key_configured_on_a_job_is_refused_in_a_workflow(app: Forge) -> None:
    """`job.configure(unique_key=...)` is the other way to ask for a unique job; added to a
    workflow it must be refused too, not enqueued as an ordinary job without the key."""

    @app.job
    def t(ctx: JobContext) -> None:
        return None

    wf = Workflow("w").add(t, name="a").then(t.configure(unique_key="k"), name="b")
    with pytest.raises(ValidationError, match="unique_key is not supported in workflows"):
        app.enqueue_workflow(wf)
    assert count(app) == 0


# -- concurrency ---------------------------------------------------------------------------------
N_THREADS = 8


def race(calls: list[Callable[[], str]]) -> list[str]:
    """Run the calls at the same moment from one thread each; their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], str]) -> str:
        barrier.wait(10)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_concurrent_enqueues_from_threads_create_one_job(app: Forge) -> None:
    @app.job
    def t(ctx: JobContext, n: int) -> int:
        return n

    app.store  # noqa: B018 - open before racing
    for round_ in range(5):
        key = f"race-{round_}"
        ids = race(
            [
                lambda n=n, key=key: app.enqueue("t", {"n": n}, unique_key=key)  # type: ignore[misc]
                for n in range(N_THREADS)
            ]
        )
        assert len(set(ids)) == 1, ids
        assert count(app, key) == 1
    assert count(app) == 5


def test_concurrent_enqueues_from_separate_forges_create_one_job(db_url: str) -> None:
    forges = [Forge(db_url, allow_unknown_types=True) for _ in range(N_THREADS)]
    try:
        for f in forges:
            f.store  # noqa: B018 - open (and migrate) before racing
        for round_ in range(3):
            key = f"forge-race-{round_}"
            ids = race(
                [
                    lambda f=f, key=key: f.enqueue("anything", {}, unique_key=key)  # type: ignore[misc]
                    for f in forges
                ]
            )
            assert len(set(ids)) == 1, ids
        counts = sql(db_url, "SELECT unique_key, count(*) FROM jobforge_jobs GROUP BY unique_key")
        assert sorted(counts) == [(f"forge-race-{i}", 1) for i in range(3)]
    finally:
        for f in forges:
            f.close()


ENQUEUER = """
import sys, time
from pathlib import Path
from jobforge import Forge

url, key, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
app = Forge(url, allow_unknown_types=True)
app.store  # open and migrate before the start signal
print("ready", flush=True)
deadline = time.monotonic() + 30
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("no start signal")
    time.sleep(0.001)
print(app.enqueue("anything", {"pid": 1}, unique_key=key), flush=True)
"""


def test_concurrent_enqueues_from_processes_create_one_job(db_url: str, tmp_path: Path) -> None:
    Forge(db_url).store.close()  # create the schema first
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ENQUEUER, db_url, "proc-race", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=cli_env(),
        )
        for _ in range(6)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
        go.touch()
        ids = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            ids.append(out.strip())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert len(set(ids)) == 1 and ids[0].startswith("job_"), ids
    assert sql(db_url, "SELECT unique_key, count(*) FROM jobforge_jobs GROUP BY unique_key") == [
        ("proc-race", 1)
    ]
