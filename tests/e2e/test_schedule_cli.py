"""Cron schedules through the command line and real worker processes: `schedule add/list/
show/pause/resume/remove`, one-line refusals that write nothing, and a due tick fired exactly
once while two workers run their schedulers against the same database."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from jobforge import Forge
from jobforge.schedules import make
from tests.apps.cron_app import SCHEDULE
from tests.e2e.helpers import APP, WorkerProcess, Workers, cli_env, jobforge, ok, sql, wait_until
from tests.e2e.test_group_cli import parallel
from tests.e2e.test_workflow_cli import refused as refused_somehow

CRON_APP = "tests.apps.cron_app:app"
CRON_HELP = "expected 5 fields (minute hour day-of-month month day-of-week)"


def schedule_rows(db_url: str) -> tuple[int, int, int]:
    """(schedules, schedule runs, jobs); zeros for a SQLite file never created."""
    if db_url.startswith("sqlite:///") and not Path(db_url[len("sqlite:///") :]).exists():
        return 0, 0, 0
    (row,) = sql(
        db_url,
        "SELECT (SELECT count(*) FROM jobforge_schedules),"
        " (SELECT count(*) FROM jobforge_schedule_runs), (SELECT count(*) FROM jobforge_jobs)",
    )
    return int(row[0]), int(row[1]), int(row[2])


def set_next_run(db_url: str, name: str, when: datetime) -> None:
    """Move a stored schedule's next tick (what a test does instead of waiting for it)."""
    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(db_url[len("sqlite:///") :], timeout=30)
        try:
            with conn:
                cur = conn.execute(
                    "UPDATE jobforge_schedules SET next_run_at = ? WHERE name = ?",
                    (when.timestamp(), name),
                )
                assert cur.rowcount == 1
        finally:
            conn.close()
        return
    with psycopg.connect(db_url) as pg:
        cur = pg.execute(
            "UPDATE jobforge_schedules SET next_run_at = %s WHERE name = %s", (when, name)
        )
        assert cur.rowcount == 1


def as_time(value: Any) -> datetime:
    """A timestamp column as an aware datetime (REAL seconds on SQLite)."""
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(float(value), UTC)


def iso_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def refused(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit status 1 with one `error: ...` line on stderr and nothing on stdout; the line."""
    assert result.returncode == 1, (result.args, result.returncode, result.stderr)
    return refused_somehow(result, *expected)


# -- the schedule commands ------------------------------------------------------------------------
def test_schedule_add_list_show_pause_resume_remove(db_url: str) -> None:
    added = json.loads(ok(jobforge(
        "schedule", "add", "nightly", "--cron", "30 1 * * *", "--job", "echo",
        "--payload", '{"report": "sales"}', "--tz", "Europe/Paris", "--json", db_url=db_url,
    )))  # fmt: skip
    fields = ("name", "cron", "timezone", "target_kind", "target", "payload", "depends_on",
              "catch_up", "paused", "source", "last_run_at")  # fmt: skip
    assert {k: added[k] for k in fields} == {
        "name": "nightly", "cron": "30 1 * * *", "timezone": "Europe/Paris", "target_kind": "job",
        "target": "echo", "payload": {"report": "sales"}, "depends_on": [], "catch_up": False,
        "paused": False, "source": "cli", "last_run_at": None,
    }  # fmt: skip
    next_run = iso_time(added["next_run_at"])
    assert next_run > datetime.now(UTC)
    local = next_run.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (1, 30)

    report_added, paused = parallel(
        ["schedule", "add", "report", "--cron", "0 8 * * *", "--job", "echo", "--app", APP,
         "--depends-on", "nightly", "--catch-up"],
        ["schedule", "pause", "nightly", "--json"],
        db_url=db_url,
    )  # fmt: skip
    assert ok(report_added).startswith("schedule report: next run ")
    assert json.loads(ok(paused))["paused"] is True

    listed, table, shown = parallel(
        ["schedule", "list", "--json"],
        ["schedule", "list"],
        ["schedule", "show", "report", "--json"],
        db_url=db_url,
    )
    schedules = {s["name"]: s for s in json.loads(ok(listed))}
    assert list(schedules) == ["nightly", "report"]
    assert schedules["report"]["depends_on"] == ["nightly"]
    assert schedules["report"]["catch_up"] is True
    assert {n: s["paused"] for n, s in schedules.items()} == {"nightly": True, "report": False}
    lines = ok(table).splitlines()
    assert any("nightly" in line and "30 1 * * *" in line and "paused" in line for line in lines)
    assert any("report" in line and "0 8 * * *" in line and "active" in line for line in lines)
    report = json.loads(ok(shown))
    assert report["name"] == "report" and report["runs"] == []

    resumed, removed = parallel(
        ["schedule", "resume", "nightly", "--json"],
        ["schedule", "remove", "report"],
        db_url=db_url,
    )
    resumed_data = json.loads(ok(resumed))
    assert resumed_data["paused"] is False and iso_time(resumed_data["next_run_at"]) == next_run
    assert ok(removed).strip() == "schedule report removed"
    rows = sql(db_url, "SELECT name, source, paused FROM jobforge_schedules")
    assert [(r[0], r[1], bool(r[2])) for r in rows] == [("nightly", "cli", False)]
    assert schedule_rows(db_url) == (1, 0, 0)


def test_bad_schedules_are_refused_and_write_nothing(db_url: str) -> None:
    results = parallel(
        ["schedule", "add", "a", "--cron", "61 * * * *", "--job", "echo"],
        ["schedule", "add", "b", "--cron", "0 0 * * * *", "--job", "echo"],
        ["schedule", "add", "c", "--cron", "0 2 * * *", "--job", "echo", "--tz", "Mars/Olympus"],
        ["schedule", "add", "d", "--cron", "0 2 * * *"],
        ["schedule", "add", "e", "--cron", "0 2 * * *", "--job", "echo", "--payload", "[1]"],
        ["schedule", "add", "f", "--cron", "0 2 * * *", "--job", "nope", "--app", APP],
        db_url=db_url,
    )
    assert refused(results[0]) == f"error: Invalid cron expression '61 * * * *': {CRON_HELP}"
    assert refused(results[1]) == f"error: Invalid cron expression '0 0 * * * *': {CRON_HELP}"
    assert refused(results[2]) == "error: Unknown timezone 'Mars/Olympus'"
    assert refused(results[3]) == (
        "error: A schedule needs exactly one target: a job, a group or a workflow"
    )
    refused(results[4])
    assert refused(results[5]) == "error: Unknown job type 'nope' (schedule 'f')"
    assert schedule_rows(db_url) == (0, 0, 0)


def test_unknown_and_duplicate_schedules_are_refused(db_url: str) -> None:
    forge = Forge(db_url)
    try:
        forge.add_schedule(make("nightly", "0 2 * * *", job="echo", source="cli"))
    finally:
        forge.close()
    results = parallel(
        ["schedule", "pause", "nope"],
        ["schedule", "resume", "nope"],
        ["schedule", "remove", "nope"],
        ["schedule", "show", "nope"],
        ["schedule", "add", "r", "--cron", "0 8 * * *", "--job", "echo", "--depends-on", "ghost"],
        ["schedule", "add", "nightly", "--cron", "0 3 * * *", "--job", "other"],
        db_url=db_url,
    )
    for result in results[:4]:
        assert refused(result) == "error: Schedule not found: nope"
    assert refused(results[4]) == "error: Schedule not found: ghost (required by r)"
    assert refused(results[5]) == "error: Schedule 'nightly' already exists"
    rows = sql(db_url, "SELECT name, cron, target, paused FROM jobforge_schedules")
    assert [(r[0], r[1], r[2], bool(r[3])) for r in rows] == [("nightly", "0 2 * * *", "echo",
                                                                False)]  # fmt: skip
    assert schedule_rows(db_url) == (1, 0, 0)


# -- a due tick with two workers running -----------------------------------------------------------
def test_a_cron_tick_fires_once_with_two_workers(
    db_url: str, tmp_path: Path, workers: Workers
) -> None:
    # storing the app's schedule (as `schedule list --app` does) before the workers start
    listed = json.loads(ok(jobforge("schedule", "list", "--app", CRON_APP, "--json",
                                    db_url=db_url)))  # fmt: skip
    assert [(s["name"], s["cron"], s["source"]) for s in listed] == [
        (SCHEDULE, "* * * * *", "code")
    ]
    procs = []
    for n in range(2):
        proc = WorkerProcess(
            ["--app", CRON_APP, "--db", db_url, "--poll-interval", "0.1"],
            cli_env(db_url),
            tmp_path / f"cron-worker{n}.log",
        )
        workers.started.append(proc)
        procs.append(proc)
    for proc in procs:
        wait_until(lambda p=proc: "started: types=" in p.log or not p.alive(), 20, "a worker")
        assert proc.alive(), proc.log

    # Due now: the tick of the current minute (the workers kept the stored place in time).
    # Not in a minute's last seconds, or the first pass could already collapse it into the next.
    wait_until(lambda: datetime.now(UTC).second < 55, 10, "a minute's first 55 seconds")
    now = datetime.now(UTC)
    tick = now.replace(second=0, microsecond=0)
    set_next_run(db_url, SCHEDULE, tick)

    def run_rows() -> list[tuple[datetime, Any]]:
        return [(as_time(t), j) for t, j in sql(
            db_url, "SELECT tick, job_id FROM jobforge_schedule_runs ORDER BY tick")]  # fmt: skip

    wait_until(run_rows, 15, "the tick to fire")
    # Both workers run their scheduler every second: watch them for a few more passes,
    # checking throughout that no second run or job appears for the tick.
    watch_until = time.monotonic() + 3.0
    while time.monotonic() < watch_until:
        found = run_rows()
        assert [t for t, _ in found].count(tick) == 1, found
        jobs = int(sql(db_url, "SELECT count(*) FROM jobforge_jobs")[0][0])
        assert jobs == len(found), (jobs, found)
        time.sleep(0.1)
    wait_until(
        lambda: (
            sql(db_url, "SELECT count(*) FROM jobforge_jobs WHERE status = 'succeeded'")[0][0]
            == len(run_rows())
        ),
        15,
        "the tick's job to run",
    )
    for proc in procs:
        assert proc.alive(), proc.log
        proc.send(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(30) == 0, proc.log

    found = run_rows()
    ended = datetime.now(UTC)
    ticks = [t for t, _ in found]
    assert ticks[0] == tick
    # Only whole minutes from the tick on; a minute boundary passed during the test adds its
    # own (single) tick.
    assert ticks == [tick + timedelta(minutes=i) for i in range(len(ticks))]
    assert ticks[-1] <= ended
    job_rows = sql(db_url, "SELECT id, type FROM jobforge_jobs")
    assert len(job_rows) == len(found)
    assert {str(j) for _, j in found} == {str(i) for i, _ in job_rows}
    assert {t for _, t in job_rows} == {"tick"}
    fired_lines = sum(p.log.count(f"schedule {SCHEDULE} fired its") for p in procs)
    assert fired_lines == len(found), [p.log for p in procs]

    shown = json.loads(ok(jobforge("schedule", "show", SCHEDULE, "--json", db_url=db_url)))
    assert [iso_time(r["tick"]) for r in shown["runs"]] == sorted(ticks, reverse=True)
    assert all(r["job_id"] and r["job_id"].startswith("job_") for r in shown["runs"])
    assert iso_time(shown["last_run_at"]) == ticks[-1]
    assert iso_time(shown["next_run_at"]) == ticks[-1] + timedelta(minutes=1)
