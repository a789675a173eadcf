"""Concurrency and rate limits observed across two real `jobforge worker --burst` processes on
both backends: from the `start end pid` lines the handlers append, at no instant do more jobs
of the scope run than allowed, no sliding window holds more starts than allowed, and both
processes take jobs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from jobforge import Forge, JobOptions, JobSpec
from tests.apps import limits_app
from tests.e2e.helpers import WorkerProcess, cli_env, sql, status_counts

APP = "tests.apps.limits_app:app"
# A handler starts a few milliseconds after the claim that the limit governs (process and
# thread hand-off, more on a loaded machine): windows over the starts the handlers record are
# this much shorter than `per`. The database's start log is checked over the exact window.
HANDLER_SLACK = 0.1


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for proc in started:
        proc.kill()


def start_two(procs: list[WorkerProcess], db_url: str, tmp_path: Path) -> list[WorkerProcess]:
    """Two burst workers of the limits app, started back to back. `--prefetch 0`: each holds
    at most its 4 slots, so the other one gets jobs too."""
    args = ["--app", APP, "--db", db_url, "--burst", "--concurrency", "4", "--prefetch", "0"]
    for n in (1, 2):
        procs.append(WorkerProcess(args, cli_env(db_url), tmp_path / f"worker{n}.log"))
    return procs


def read_lines(path: Path) -> list[tuple[float, float, int]]:
    rows = []
    for line in path.read_text().splitlines():
        start, end, pid = line.split()
        rows.append((float(start), float(end), int(pid)))
    return rows


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t comes before a start at t)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = now = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def max_in_window(times: list[float], window: float) -> int:
    """The most of `times` inside any half-open interval [t, t + window)."""
    ts = sorted(times)
    best = j = 0
    for i in range(len(ts)):
        while ts[i] - ts[j] >= window:
            j += 1
        best = max(best, i - j + 1)
    return best


def seconds(value: object) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    assert isinstance(value, int | float), value
    return float(value)


def enqueue(forge: Forge, type_name: str, n: int, path: Path, run_for: float, **opts: str) -> None:
    payload = {"path": str(path), "seconds": run_for}
    forge.enqueue_many([JobSpec(type_name, payload, JobOptions(**opts)) for _ in range(n)])


def finish(workers: list[WorkerProcess], db_url: str, n: int) -> None:
    for w in workers:
        assert w.wait(60) == 0, f"worker {w.pid} failed:\n{w.log}"
    assert status_counts(db_url) == {"succeeded": n}, [w.log for w in workers]


def test_concurrency_limit_across_two_worker_processes(
    forge: Forge, db_url: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    cap = limits_app.RUNNING_CAP
    out = tmp_path / "capped.txt"
    n = 60
    enqueue(forge, "capped", n, out, 0.2)
    workers = start_two(procs, db_url, tmp_path)
    finish(workers, db_url, n)

    rows = read_lines(out)
    assert len(rows) == n, "a job ran twice or not at all"
    assert {pid for _, _, pid in rows} == {w.pid for w in workers}, "a worker took no job"
    peak = max_overlap([(s, e) for s, e, _ in rows])
    assert peak <= cap, f"{peak} capped jobs ran at once across the workers (limit {cap})"
    # Each worker alone runs at most 4: reaching the limit needs both at once.
    assert peak > 4 or cap <= 4
    # The database's running intervals (claim to recorded outcome) agree.
    db = sql(db_url, "SELECT started_at, completed_at FROM jobforge_jobs")
    assert max_overlap([(seconds(s), seconds(e)) for s, e in db]) <= cap


def test_rate_limit_across_two_worker_processes(
    forge: Forge, db_url: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    cap, per = limits_app.RATE_CAP, limits_app.RATE_PER
    out = tmp_path / "metered.txt"
    n = 4 * cap
    # Jobs that outlast a share of the window: a worker holding all of its 4 slots cannot
    # take the window's whole budget of 6, so the other process takes its share.
    enqueue(forge, "metered", n, out, 0.3, queue="metered")
    workers = start_two(procs, db_url, tmp_path)
    finish(workers, db_url, n)

    rows = read_lines(out)
    assert len(rows) == n, "a job ran twice or not at all"
    assert {pid for _, _, pid in rows} == {w.pid for w in workers}, "a worker took no job"
    starts = [s for s, _, _ in rows]
    query = "SELECT started_at FROM jobforge_limit_starts WHERE scope = 'queue:metered'"
    logged = [seconds(r[0]) for r in sql(db_url, query)]
    assert len(logged) == n
    assert max_in_window(logged, per) <= cap, "the start log breaks the limit"
    busiest = max_in_window(starts, per - HANDLER_SLACK)
    assert busiest <= cap, f"{busiest} metered jobs started within {per}s (limit {cap})"
    db_starts = [seconds(r[0]) for r in sql(db_url, "SELECT started_at FROM jobforge_jobs")]
    assert max_in_window(db_starts, per - HANDLER_SLACK) <= cap
    # n = 4 * cap starts need 4 windows: the limit was binding, not just satisfied.
    assert max(starts) - min(starts) >= 3 * per - HANDLER_SLACK
