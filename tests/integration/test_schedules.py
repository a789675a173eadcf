"""Cron schedules fired by `Scheduler.run_due(now=...)` on both backends, with explicit
moments instead of waiting for the clock: each tick fires once (also with two schedulers
racing), missed ticks collapse or are caught up, same-day dependencies gate a tick, and
group and workflow-file targets enqueue one workflow per tick."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jobforge import Forge, Job, JobContext, JobStatus, ValidationError
from jobforge.schedules import make
from jobforge.store.schedules import ScheduleNotFound, ScheduleRun
from jobforge.testing import run_until_idle
from jobforge.worker.scheduler import Scheduler
from tests.apps.groups_app import register
from tests.e2e.helpers import sql

FAST: dict[str, Any] = {"poll_interval": 0.05}
S = JobStatus


def next_run(app: Forge, name: str) -> datetime:
    found = {s.name: s for s in app.list_schedules()}
    assert name in found, f"schedule {name} is not stored"
    value = found[name].next_run_at
    assert value is not None
    return value


def runs(app: Forge, name: str) -> list[ScheduleRun]:
    """The schedule's runs, oldest first."""
    return list(reversed(app.schedule_runs(name, limit=1000)))


def counts(app: Forge) -> tuple[int, int]:
    """(schedule run rows, jobs), straight from the database."""
    (row,) = sql(
        app.url,
        "SELECT (SELECT count(*) FROM jobforge_schedule_runs),"
        " (SELECT count(*) FROM jobforge_jobs)",
    )
    return int(row[0]), int(row[1])


def job_of(app: Forge, run: ScheduleRun) -> Job:
    assert run.job_id is not None, run
    job = app.get_job(str(run.job_id))
    assert job is not None
    return job


def add_job(app: Forge, name: str = "t", **options: Any) -> None:
    @app.job(name=name, **options)
    def handler(ctx: JobContext, **payload: Any) -> dict[str, Any]:
        return payload


def test_a_tick_fires_once(app: Forge) -> None:
    add_job(app)
    app.schedule("hourly", "0 * * * *", job="t", payload={"report": "sales"})
    sched = Scheduler(app)
    sched.start()
    tick = next_run(app, "hourly")
    assert tick > datetime.now(UTC) and (tick.minute, tick.second) == (0, 0)

    assert sched.run_due(now=tick - timedelta(seconds=1)) == 0
    assert counts(app) == (0, 0)
    assert sched.run_due(now=tick) == 1
    assert counts(app) == (1, 1)
    (run,) = runs(app, "hourly")
    assert run.tick == tick and run.note is None and run.workflow_id is None
    job = job_of(app, run)
    assert job.type == "t" and job.payload == {"report": "sales"}
    assert job.status == S.QUEUED

    # the same moment again, and later moments before the next tick, fire nothing
    assert sched.run_due(now=tick) == 0
    assert sched.run_due(now=tick + timedelta(minutes=59)) == 0
    assert counts(app) == (1, 1)
    (stored,) = app.list_schedules()
    assert stored.next_run_at == tick + timedelta(hours=1) and stored.last_run_at == tick
    # restarting the scheduler keeps its place in time (no repeat, no skip)
    Scheduler(app).start()
    assert next_run(app, "hourly") == tick + timedelta(hours=1)
    assert sched.run_due(now=tick + timedelta(hours=1)) == 1
    assert [r.tick for r in runs(app, "hourly")] == [tick, tick + timedelta(hours=1)]
    run_until_idle(app, **FAST)
    assert {job_of(app, r).status for r in runs(app, "hourly")} == {S.SUCCEEDED}


def test_two_schedulers_racing_fire_each_tick_once(app: Forge, db_url: str) -> None:
    forges = [Forge(db_url) for _ in range(2)]
    try:
        for f in forges:
            add_job(f)
            f.schedule("minutely", "* * * * *", job="t")
        schedulers = [Scheduler(f) for f in forges]
        for s in schedulers:
            s.start()
        first = next_run(forges[0], "minutely")
        ticks = [first + timedelta(minutes=i) for i in range(6)]
        callers = [s for s in schedulers for _ in range(2)]  # two threads per instance
        barrier = threading.Barrier(len(callers))

        def fire(s: Scheduler, now: datetime) -> int:
            barrier.wait(10)
            return s.run_due(now=now)

        with ThreadPoolExecutor(len(callers)) as pool:
            for tick in ticks:
                fired = list(pool.map(fire, callers, [tick] * len(callers)))
                assert sum(fired) == 1, (tick, fired)
    finally:
        for f in forges:
            f.close()
    assert counts(app) == (6, 6)
    got = runs(app, "minutely")
    assert [r.tick for r in got] == ticks
    assert len({r.job_id for r in got}) == 6
    job_ids = {row[0] for row in sql(db_url, "SELECT id FROM jobforge_jobs")}
    assert {str(r.job_id) for r in got} == {str(i) for i in job_ids}


@pytest.mark.parametrize("catch_up", [False, True])
def test_missed_ticks_after_downtime(app: Forge, catch_up: bool) -> None:
    add_job(app)
    app.schedule("hourly", "0 * * * *", job="t", catch_up=catch_up)
    sched = Scheduler(app)
    sched.start()
    first = next_run(app, "hourly")
    now = first + timedelta(hours=5, minutes=30)  # the workers were down for 5 more ticks
    fired = sched.run_due(now=now)
    missed = [first + timedelta(hours=h) for h in range(6)]
    expected = missed if catch_up else missed[-1:]
    assert fired == len(expected)
    got = runs(app, "hourly")
    assert [r.tick for r in got] == expected
    assert counts(app) == (len(expected), len(expected))
    jobs = [job_of(app, r) for r in got]
    assert [j.created_at for j in jobs] == sorted(j.created_at for j in jobs)  # oldest first
    assert next_run(app, "hourly") == first + timedelta(hours=6)
    assert sched.run_due(now=now) == 0


def test_a_paused_schedule_fires_nothing_and_resumes_from_now(app: Forge) -> None:
    add_job(app)
    app.schedule("hourly", "0 * * * *", job="t")
    sched = Scheduler(app)
    sched.start()
    tick = next_run(app, "hourly")
    paused = app.pause_schedule("hourly")
    assert paused.paused
    assert sched.run_due(now=tick + timedelta(hours=3)) == 0
    assert counts(app) == (0, 0)
    resumed = app.pause_schedule("hourly", False)
    assert not resumed.paused and resumed.next_run_at == tick  # the next tick from now
    assert sched.run_due(now=tick) == 1
    with pytest.raises(ScheduleNotFound, match=r"^Schedule not found: nope$"):
        app.pause_schedule("nope")


def test_cron_with_a_same_day_dependency(app: Forge) -> None:
    @app.job(cron="0 2 * * *")
    def extract(ctx: JobContext) -> str:
        return "extracted"

    @app.job
    def report(ctx: JobContext) -> str:
        return "reported"

    app.schedule("morning-report", "0 8 * * *", job="report", depends_on=["extract"])
    sched = Scheduler(app)
    sched.start()
    latest = max(next_run(app, "extract"), next_run(app, "morning-report"))
    day = datetime.combine(latest.date() + timedelta(days=2), datetime.min.time(), UTC)

    # 02:00 on `day`: extract fires; the report's latest tick (the day before, 08:00) finds
    # no extract run that day, so it records why and enqueues nothing
    assert sched.run_due(now=day + timedelta(hours=2)) == 1
    (extract_run,) = runs(app, "extract")
    assert extract_run.tick == day + timedelta(hours=2)
    (skipped,) = runs(app, "morning-report")
    assert skipped.tick == day - timedelta(hours=16)
    assert skipped.job_id is None and skipped.workflow_id is None
    assert skipped.note == f"not run: no run of extract on {(day - timedelta(days=1)).date()}"
    assert counts(app) == (2, 1)

    # 08:00 on `day`: the report waits for that day's extract job
    assert sched.run_due(now=day + timedelta(hours=8)) == 1
    report_run = runs(app, "morning-report")[-1]
    assert report_run.tick == day + timedelta(hours=8) and report_run.note is None
    report_job, extract_job = job_of(app, report_run), job_of(app, extract_run)
    assert report_job.status == S.WAITING
    parents = app.parents(report_job.job_id)
    assert [p.id for p in parents] == [extract_job.id]

    run_until_idle(app, **FAST)
    report_job, extract_job = job_of(app, report_run), job_of(app, extract_run)
    assert extract_job.status == S.SUCCEEDED and report_job.status == S.SUCCEEDED
    assert report_job.started_at is not None and extract_job.completed_at is not None
    assert report_job.started_at >= extract_job.completed_at


def test_cron_dependency_that_failed_skips_the_tick(app: Forge) -> None:
    @app.job(cron="0 2 * * *", retries=0)
    def extract(ctx: JobContext) -> str:
        raise RuntimeError("source down")

    @app.job
    def report(ctx: JobContext) -> str:
        return "reported"

    app.schedule("morning-report", "0 8 * * *", job="report", depends_on=["extract"])
    sched = Scheduler(app)
    sched.start()
    latest = max(next_run(app, "extract"), next_run(app, "morning-report"))
    day = datetime.combine(latest.date() + timedelta(days=2), datetime.min.time(), UTC)
    sched.run_due(now=day + timedelta(hours=2))
    assert sched.run_due(now=day + timedelta(hours=8)) == 1
    run_until_idle(app, **FAST)
    report_job = job_of(app, runs(app, "morning-report")[-1])
    assert job_of(app, runs(app, "extract")[-1]).status == S.FAILED
    assert report_job.status == S.SKIPPED and report_job.started_at is None


def test_group_target_enqueues_a_workflow_per_tick(app: Forge) -> None:
    register(app)
    app.schedule(
        "feed-nightly", "0 3 * * *", group="feed", payload={"feed-build": {"batchSize": 7}}
    )
    sched = Scheduler(app)
    sched.start()
    first = next_run(app, "feed-nightly")
    assert sched.run_due(now=first) == 1
    assert sched.run_due(now=first + timedelta(days=1)) == 1
    got = runs(app, "feed-nightly")
    assert [r.tick for r in got] == [first, first + timedelta(days=1)]
    assert all(r.job_id is None and r.workflow_id is not None for r in got)
    assert len({r.workflow_id for r in got}) == 2
    wf_ref = "wf_" + got[0].workflow_id.hex  # type: ignore[union-attr]
    wf = app.get_workflow(wf_ref)
    assert wf is not None and wf.name == "group:feed"
    assert wf.metadata["schedule"] == "feed-nightly"
    assert datetime.fromisoformat(wf.metadata["tick"].replace("Z", "+00:00")) == first
    jobs = {j.name: j for j in app.workflow_jobs(wf_ref)}
    assert set(jobs) == {"extract", "clean", "match-scores", "rank-scores", "feed-build",
                         "feed-publish"}  # fmt: skip
    assert jobs["feed-build"].payload == {"batchSize": 7, "locale": "en"}
    assert counts(app) == (2, 12)
    run_until_idle(app, concurrency=4, **FAST)
    wf = app.get_workflow(wf_ref)
    assert wf is not None and wf.status == "succeeded"


def test_workflow_file_target_enqueues_a_workflow_per_tick(app: Forge, tmp_path: Path) -> None:
    add_job(app)
    path = tmp_path / "etl.json"
    path.write_text(
        json.dumps(
            {
                "name": "etl",
                "jobs": [
                    {"name": "pull", "type": "t", "payload": {"step": 1}},
                    {"name": "push", "type": "t", "payload": {"step": 2}, "depends_on": ["pull"]},
                ],
            }
        )
    )
    app.schedule("etl-hourly", "0 * * * *", workflow_file=str(path))
    path.write_text("{}")  # the definition was read when the schedule was made
    sched = Scheduler(app)
    sched.start()
    tick = next_run(app, "etl-hourly")
    assert sched.run_due(now=tick) == 1
    (run,) = runs(app, "etl-hourly")
    assert run.workflow_id is not None
    wf_ref = "wf_" + run.workflow_id.hex
    wf = app.get_workflow(wf_ref)
    assert wf is not None and wf.name == "etl"
    jobs = {j.name: j for j in app.workflow_jobs(wf_ref)}
    assert {n: j.payload for n, j in jobs.items()} == {"pull": {"step": 1}, "push": {"step": 2}}
    (edge,) = app.workflow_edges(wf_ref)
    assert (edge.parent_id, edge.child_id) == (jobs["pull"].id, jobs["push"].id)
    run_until_idle(app, **FAST)
    jobs = {j.name: j for j in app.workflow_jobs(wf_ref)}
    assert jobs["push"].started_at and jobs["pull"].completed_at
    assert jobs["push"].started_at >= jobs["pull"].completed_at


def test_stored_schedules_add_list_remove(app: Forge) -> None:
    add_job(app)
    added = app.add_schedule(make("nightly", "30 1 * * *", job="t", payload={"a": 1},
                                  timezone="Europe/Paris", source="cli"))  # fmt: skip
    assert added.source == "cli" and added.payload == {"a": 1} and not added.paused
    assert added.next_run_at is not None and added.next_run_at > datetime.now(UTC)
    local = added.next_run_at.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (1, 30)
    with pytest.raises(ValidationError, match=r"^Schedule 'nightly' already exists$"):
        app.add_schedule(make("nightly", "0 2 * * *", job="t"))
    with pytest.raises(ScheduleNotFound, match=r"^Schedule not found: ghost \(required by r\)$"):
        app.add_schedule(make("r", "0 8 * * *", job="t", depends_on=["ghost"]))
    assert [s.name for s in app.list_schedules()] == ["nightly"]

    sched = Scheduler(app)
    sched.start()  # code schedules are stored next to it; stored ones are left alone
    assert sched.run_due(now=added.next_run_at) == 1
    (run,) = runs(app, "nightly")
    assert job_of(app, run).payload == {"a": 1}

    app.remove_schedule("nightly")
    assert app.list_schedules() == []
    with pytest.raises(ScheduleNotFound, match=r"^Schedule not found: nightly$"):
        app.remove_schedule("nightly")
    with pytest.raises(ScheduleNotFound, match=r"^Schedule not found: nightly$"):
        app.schedule_runs("nightly")
    assert counts(app) == (1, 1)  # its past run's job stays


def test_cron_depending_on_a_group_schedule_waits_for_its_whole_workflow(app: Forge) -> None:
    register(app)
    app.schedule("ingest-nightly", "0 2 * * *", group="ingest")
    app.schedule("scores-morning", "0 8 * * *", job="match-scores", depends_on=["ingest-nightly"])
    sched = Scheduler(app)
    sched.start()
    latest = max(next_run(app, "ingest-nightly"), next_run(app, "scores-morning"))
    day = datetime.combine(latest.date() + timedelta(days=2), datetime.min.time(), UTC)
    sched.run_due(now=day + timedelta(hours=2))
    assert sched.run_due(now=day + timedelta(hours=8)) == 1
    ingest_run = runs(app, "ingest-nightly")[-1]
    assert ingest_run.workflow_id is not None
    ingest_jobs = app.workflow_jobs("wf_" + ingest_run.workflow_id.hex)
    scores = job_of(app, runs(app, "scores-morning")[-1])
    assert scores.status == S.WAITING and scores.payload == {"batchSize": 100}
    assert {p.id for p in app.parents(scores.job_id)} == {j.id for j in ingest_jobs}
    run_until_idle(app, concurrency=4, **FAST)
    scores = job_of(app, runs(app, "scores-morning")[-1])
    assert scores.status == S.SUCCEEDED and scores.started_at is not None
    for j in app.workflow_jobs("wf_" + ingest_run.workflow_id.hex):
        assert j.completed_at is not None and scores.started_at >= j.completed_at


def test_a_changed_cron_moves_the_stored_next_tick(app: Forge, db_url: str) -> None:
    add_job(app)
    app.schedule("report", "0 * * * *", job="t")
    Scheduler(app).start()
    hourly = next_run(app, "report")
    assert hourly.minute == 0
    redeployed = Forge(db_url)
    try:
        add_job(redeployed)
        redeployed.schedule("report", "30 * * * *", job="t", payload={"v": 2})
        Scheduler(redeployed).start()
        (stored,) = redeployed.list_schedules()
        assert stored.cron == "30 * * * *" and stored.payload == {"v": 2}
        assert stored.next_run_at is not None and stored.next_run_at.minute == 30
        assert timedelta(0) < stored.next_run_at - datetime.now(UTC) <= timedelta(hours=1)
    finally:
        redeployed.close()
