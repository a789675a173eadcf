"""Registry groups through the command line: `group list/show/enqueue`, `job definitions`,
refusals of a missing or invalid app (by the CLI and by `jobforge worker`), and a whole
registry enqueued with `group enqueue --all` and run by four worker processes at once without
any job starting before the jobs it depends on had finished."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.apps.groups_app import OUT_ENV, SHAPE, SLEEP_ENV
from tests.e2e.helpers import (
    WorkerProcess,
    Workers,
    cli_env,
    jobforge,
    ok,
    sql,
    started_line,
    wait_until,
)
from tests.e2e.test_workflow_cli import JOB_ID, WF_ID
from tests.e2e.test_workflow_cli import refused as refused_somehow

GROUPS = "tests.apps.groups_app:app"
NEEDS_APP = "error: This command needs your app: pass --app module:attr or set JOBFORGE_APP"
TABLES = ("jobforge_jobs", "jobforge_workflows", "jobforge_edges", "jobforge_workers",
          "jobforge_schedules", "jobforge_schedule_runs")  # fmt: skip


def rows(db_url: str) -> dict[str, int]:
    """Rows in each jobforge table (all zero for a SQLite file never created)."""
    if db_url.startswith("sqlite:///") and not Path(db_url[len("sqlite:///") :]).exists():
        return dict.fromkeys(TABLES, 0)
    return {t: int(sql(db_url, f"SELECT count(*) FROM {t}")[0][0]) for t in TABLES}


EMPTY = dict.fromkeys(TABLES, 0)


def parallel(*commands: list[str], db_url: str | None = None) -> list[Any]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: jobforge(*args, db_url=db_url), commands))


def refused(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit status 1 with one `error: ...` line on stderr and nothing on stdout; the line."""
    assert result.returncode == 1, (result.args, result.returncode, result.stderr)
    return refused_somehow(result, *expected)


# -- reading the registry -------------------------------------------------------------------------
def test_group_list_show_and_job_definitions() -> None:
    listed, listed_json, shown, definitions, missing = parallel(
        ["group", "list", "--app", GROUPS],
        ["group", "list", "--app", GROUPS, "--json"],
        ["group", "show", "scoring", "--app", GROUPS, "--json"],
        ["job", "definitions", "--app", GROUPS, "--json"],
        ["group", "show", "nope", "--app", GROUPS],
    )
    table = ok(listed)
    for group, n in (("feed", 2), ("ingest", 2), ("scoring", 2)):
        assert any(group in line and str(n) in line for line in table.splitlines()), table
    assert json.loads(ok(listed_json)) == [
        {"group": "feed", "jobs": 2},
        {"group": "ingest", "jobs": 2},
        {"group": "scoring", "jobs": 2},
    ]
    shown_data = json.loads(ok(shown))
    assert shown_data["group"] == "scoring"
    assert [(j["name"], j["depends_on"]) for j in shown_data["jobs"]] == [
        ("match-scores", ["clean"]),
        ("rank-scores", ["clean"]),
    ]
    defs = {d["name"]: d for d in json.loads(ok(definitions))}
    assert list(defs) == list(SHAPE)  # registration order
    assert {n: (d["group"], d["depends_on"]) for n, d in defs.items()} == {
        n: (g, deps) for n, (g, deps) in SHAPE.items()
    }
    assert defs["match-scores"]["defaults"] == {"batchSize": 100}
    assert defs["match-scores"]["examples"] == [{"batchSize": 10}]
    assert defs["match-scores"]["description"] == "Score every match."
    assert defs["audit"]["group"] is None and defs["audit"]["retries"] == 0
    refused(missing, "Group not found: nope (known: feed, ingest, scoring)")


def test_registry_commands_need_an_app() -> None:
    results = parallel(
        ["group", "list"],
        ["group", "show", "feed"],
        ["group", "enqueue", "feed"],
        ["group", "enqueue", "--all", "--dry-run"],
        ["job", "definitions", "--json"],
    )
    for result in results:
        assert result.returncode == 1, result
        assert result.stderr.strip() == NEEDS_APP, result.stderr
        assert result.stdout == ""


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("bad_cycle", "Circular dependency detected: extract -> transform -> load -> extract"),
        ("bad_missing", "Dependency not found: extract (required by report)"),
    ],
)
def test_an_invalid_app_is_refused_by_the_cli_and_the_worker(
    db_url: str, tmp_path: Path, module: str, message: str
) -> None:
    ref = f"tests.apps.{module}:app"
    expected = f"error: Invalid app {ref!r}: {message}"
    listed, enqueued, definitions = parallel(
        ["group", "list", "--app", ref],
        ["group", "enqueue", "--all", "--app", ref, "--db", db_url],
        ["job", "definitions", "--app", ref],
        db_url=db_url,
    )
    for result in (listed, enqueued, definitions):
        assert result.returncode == 1, result
        assert result.stderr.strip() == expected
        assert result.stdout == ""
    worker = subprocess.run(
        [sys.executable, "-m", "jobforge", "worker", "--app", ref, "--db", db_url, "--burst"],
        capture_output=True,
        text=True,
        env=cli_env(db_url),
        timeout=60,
        check=False,
    )
    assert worker.returncode == 1, worker
    assert worker.stderr.strip() == expected, worker.stderr
    # nothing written: no worker registered, no job, no schedule (bad_* apps have a cron job)
    assert rows(db_url) == EMPTY


# -- enqueueing -----------------------------------------------------------------------------------
def test_group_enqueue_dry_run_writes_nothing(db_url: str) -> None:
    dry, dry_table = parallel(
        ["group", "enqueue", "feed", "--dry-run", "--json", "--app", GROUPS,
         "--params", '{"feed-build": {"batchSize": 5}}'],
        ["group", "enqueue", "--all", "--dry-run", "--app", GROUPS],
        db_url=db_url,
    )  # fmt: skip
    plan = json.loads(ok(dry))
    assert plan["target"] == "feed" and plan["dry_run"] is True and plan["workflow_id"] is None
    jobs = {j["name"]: j for j in plan["jobs"]}
    order = ["extract", "clean", "match-scores", "rank-scores", "feed-build", "feed-publish"]
    assert [j["name"] for j in plan["jobs"]] == order
    assert jobs["feed-build"]["reason"] == "member"
    assert jobs["clean"]["reason"] == "dependency of match-scores"
    assert jobs["clean"]["group"] == "ingest"
    assert jobs["feed-build"]["payload"] == {"batchSize": 5, "locale": "en"}
    assert jobs["feed-build"]["depends_on"] == ["match-scores", "rank-scores"]
    table = ok(dry_table)
    assert "would enqueue" in table and "audit" in table and "wf_" not in table
    assert rows(db_url) == EMPTY


def test_group_enqueue_writes_a_workflow(db_url: str) -> None:
    result = jobforge(
        "group", "enqueue", "feed", "--json", "--app", GROUPS,
        "--params", '{"feed-build": {"batchSize": 5}}', db_url=db_url,
    )  # fmt: skip
    plan = json.loads(ok(result))
    assert plan["dry_run"] is False and WF_ID.match(plan["workflow_id"])
    wf_hex = plan["workflow_id"][3:]
    stored = {
        str(name): (json.loads(p) if isinstance(p, str) else p)
        for name, p in sql(db_url, "SELECT name, payload FROM jobforge_jobs")
    }
    assert set(stored) == {j["name"] for j in plan["jobs"]}
    assert stored["feed-build"] == {"batchSize": 5, "locale": "en"}
    assert stored["match-scores"] == {"batchSize": 100}
    (wf_row,) = sql(db_url, "SELECT id, name FROM jobforge_workflows")
    assert str(wf_row[0]).replace("-", "") == wf_hex and wf_row[1] == "group:feed"

    # the table form ends with the workflow id
    text = ok(jobforge("group", "enqueue", "ingest", "--app", GROUPS, db_url=db_url))
    assert "enqueued ingest" in text and WF_ID.match(text.strip().splitlines()[-1])
    status = json.loads(
        ok(jobforge("workflow", "status", plan["workflow_id"], "--json", db_url=db_url))
    )
    assert status["stats"]["total"] == 6 and status["status"] == "pending"
    assert rows(db_url)["jobforge_workflows"] == 2


def test_bad_group_enqueues_are_refused(db_url: str) -> None:
    results = parallel(
        ["group", "enqueue", "feed", "--app", GROUPS, "--params", "{nope"],
        ["group", "enqueue", "feed", "--app", GROUPS, "--params", '{"feed-build": 5}'],
        ["group", "enqueue", "feed", "--app", GROUPS, "--params", '{"audit": {"x": 1}}'],
        ["group", "enqueue", "feed", "--all", "--app", GROUPS],
        ["group", "enqueue", "--app", GROUPS],
        ["group", "enqueue", "nope", "--app", GROUPS],
        db_url=db_url,
    )
    refused(results[0], "--params is not valid JSON")
    refused(results[1], '--params must be a JSON object of objects: {"job-name": {...}}')
    assert refused(results[2]) == "error: Parameters given for audit, not part of feed"
    assert refused(results[3]) == "error: Give a group name or --all (not both)"
    assert refused(results[4]) == "error: Give a group name or --all (not both)"
    assert refused(results[5]) == "error: Group not found: nope (known: feed, ingest, scoring)"
    assert rows(db_url) == EMPTY


# -- the order holds with four worker processes ------------------------------------------------
def test_enqueue_all_with_four_workers_keeps_dependency_order(
    db_url: str, tmp_path: Path, workers: Workers
) -> None:
    out = tmp_path / "runs"
    out.mkdir()
    env = cli_env(db_url, **{OUT_ENV: str(out), SLEEP_ENV: "0.3"})
    procs = []
    for n in range(4):
        # one job at a time each, nothing claimed ahead: released jobs spread over processes
        proc = WorkerProcess(
            ["--app", GROUPS, "--db", db_url, "--concurrency", "1", "--prefetch", "0",
             "--poll-interval", "0.1"],
            env,
            tmp_path / f"groups-worker{n}.log",
        )  # fmt: skip
        workers.started.append(proc)
        procs.append(proc)
    for proc in procs:
        started_line(proc)

    plan = json.loads(ok(jobforge("group", "enqueue", "--all", "--json", "--app", GROUPS,
                                  db_url=db_url)))  # fmt: skip
    assert plan["target"] == "all" and len(plan["jobs"]) == len(SHAPE)
    wf = plan["workflow_id"]

    def done() -> bool:
        (row,) = sql(db_url, "SELECT status, completed_at FROM jobforge_workflows")
        return row[1] is not None

    wait_until(done, 60, "the workflow to finish")
    assert sql(db_url, "SELECT status FROM jobforge_workflows") == [("succeeded",)]
    for proc in procs:
        assert proc.alive(), proc.log
        proc.send(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(30) == 0, proc.log

    runs: dict[str, tuple[float, float, int]] = {}
    for path in out.iterdir():
        name, start, end, pid = path.read_text().split()
        assert name not in runs, f"{name} ran twice"
        runs[name] = (float(start), float(end), int(pid))
    assert set(runs) == set(SHAPE)
    for name, (_, parents) in SHAPE.items():
        for parent in parents:
            assert runs[name][0] >= runs[parent][1], (
                f"{name} started at {runs[name][0]} before {parent} finished at {runs[parent][1]}"
            )
    # the same from the database's own timestamps
    times = {
        str(name): (started, completed)
        for name, started, completed in sql(
            db_url, "SELECT name, started_at, completed_at FROM jobforge_jobs"
        )
    }
    for name, (_, parents) in SHAPE.items():
        for parent in parents:
            assert times[name][0] >= times[parent][1], (name, parent, times)
    # the work was shared: several processes ran jobs
    assert len({pid for _, _, pid in runs.values()}) >= 2, runs
    status = json.loads(ok(jobforge("workflow", "status", wf, "--json", db_url=db_url)))
    assert status["stats"]["succeeded"] == len(SHAPE)
    graph = json.loads(ok(jobforge("workflow", "graph", wf, "--format", "json", db_url=db_url)))
    assert all(JOB_ID.match(n["id"]) for n in graph["nodes"])
    assert len(graph["edges"]) == sum(len(deps) for _, deps in SHAPE.values())
