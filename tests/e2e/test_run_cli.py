"""`jobforge run ...` against real databases and real `jobforge worker --burst` processes:
start, show, list, event, cancel, resume, retry, and clean refusals of bad input."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.e2e.helpers import (
    WorkerProcess,
    cli_env,
    jobforge,
    ok,
    sql,
    started_line,
    wait_until,
)

DEFS = "tests.apps.durable_app:app"  # only durable workflows
WORKER_APP = "tests.apps.durable_app:worker_app"  # the same, plus one plain job
RUN_ID = re.compile(r"^run_[0-9a-f]{32}$")
MISSING = "run_" + "0" * 32


def start(db_url: str, name: str, *args: str) -> str:
    out = ok(jobforge("run", "start", name, "--app", DEFS, *args, db_url=db_url))
    run_id = out.strip()
    assert RUN_ID.match(run_id), out
    assert out == run_id + "\n"
    return run_id


def run_all(db_url: str, *commands: Sequence[str]) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands at once (each is a fresh interpreter)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: jobforge(*args, db_url=db_url), commands))


def burst(db_url: str, app: str = WORKER_APP) -> str:
    result = jobforge(
        "worker", "--app", app, "--burst", "--poll-interval", "0.1", db_url=db_url, timeout=30
    )
    return ok(result) + result.stderr


def show(db_url: str, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(jobforge("run", "show", run_id, "--json", db_url=db_url)))
    return data


def steps(data: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in data["steps"]}


def refused(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit 1, one `error:` line naming the problem, nothing on stdout."""
    assert result.returncode == 1, (result.args, result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{result.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert result.stdout == ""
    return lines[0]


def counts(db_url: str) -> tuple[int, ...]:
    (row,) = sql(
        db_url,
        "SELECT (SELECT count(*) FROM jobforge_runs), (SELECT count(*) FROM jobforge_jobs),"
        " (SELECT count(*) FROM jobforge_steps), (SELECT count(*) FROM jobforge_run_events)",
    )
    return tuple(int(n) for n in row)


def test_start_show_and_list(db_url: str) -> None:
    latest = start(db_url, "greet", "--input", '{"who": "ana"}')
    keyed = start(db_url, "greet", "--input", '{"who": "bo"}', "--idempotency-key", "k-1")
    assert start(db_url, "greet", "--input", '{"who": "cy"}', "--idempotency-key", "k-1") == keyed
    old = start(db_url, "greet", "--version", "1")
    assert len({latest, keyed, old}) == 3
    assert counts(db_url)[:2] == (3, 3)

    created = show(db_url, latest)
    assert created["status"] == "created"
    assert created["run_id"] == latest
    assert created["job_id"] == latest.replace("run_", "job_")
    assert (created["name"], created["version"], created["input"]) == ("greet", 2, {"who": "ana"})
    assert created["steps"] == []

    burst(db_url)

    done = show(db_url, latest)
    assert done["status"] == "completed"
    assert done["output"] == {"greeting": "hello ana"}
    [step] = done["steps"]
    assert step["name"] == "hello"
    assert step["status"] == "completed"
    assert step["result"] == "hello ana"
    assert step["input"] == {"args": ["ana"], "kwargs": {}}
    assert (step["seq"], step["attempts"]) == (1, 1)
    keyed_json, old_json, table, listed, completed, waiting, list_table = (
        ok(r)
        for r in run_all(
            db_url,
            ["run", "show", keyed, "--json"],
            ["run", "show", old, "--json"],
            ["run", "show", latest],
            ["run", "list", "--json"],
            ["run", "list", "--status", "completed", "--json"],
            ["run", "list", "--status", "waiting", "--json"],
            ["run", "list"],
        )
    )
    assert json.loads(keyed_json)["idempotency_key"] == "k-1"
    assert json.loads(keyed_json)["output"] == {"greeting": "hello bo"}
    v1 = json.loads(old_json)
    assert (v1["version"], v1["output"], v1["steps"]) == (1, "v1 nobody", [])

    assert f"run {latest}" in table
    assert "greet v2" in table
    assert "completed" in table
    assert '"greeting": "hello ana"' in table
    assert "hello" in table and '"hello ana"' in table

    runs = json.loads(listed)
    assert {r["run_id"] for r in runs} == {latest, keyed, old}
    assert {r["status"] for r in runs} == {"completed"}
    assert len(json.loads(completed)) == 3
    assert json.loads(waiting) == []
    for run_id in (latest, keyed, old):
        assert run_id in list_table


def test_a_worker_on_an_app_with_only_durable_workflows_runs_them(db_url: str) -> None:
    run_id = start(db_url, "greet", "--input", '{"who": "solo"}')
    burst(db_url, DEFS)
    assert show(db_url, run_id)["output"] == {"greeting": "hello solo"}


def test_event_wakes_a_waiting_run(db_url: str) -> None:
    run_id = start(db_url, "approval")
    burst(db_url)  # burst mode does not wait for events: the run stays parked
    waiting = show(db_url, run_id)
    assert waiting["status"] == "waiting"
    assert waiting["current_step"] == "event:approved"

    sent = ok(jobforge("run", "event", run_id, "approved", "--data", '{"by": "ana"}',
                       db_url=db_url))  # fmt: skip
    assert run_id in sent
    burst(db_url)
    done = show(db_url, run_id)
    assert done["status"] == "completed"
    assert done["output"] == {"approved_by": "ana"}
    assert steps(done) == {"prepare": "completed", "event:approved": "completed"}


def test_resume_then_cancel_a_waiting_run(db_url: str) -> None:
    run_id = start(db_url, "approval")
    burst(db_url)
    assert show(db_url, run_id)["status"] == "waiting"

    resumed = json.loads(ok(jobforge("run", "resume", run_id, "--json", db_url=db_url)))
    assert resumed["run_id"] == run_id
    burst(db_url)  # replayed: no event yet, so it parks again
    assert show(db_url, run_id)["status"] == "waiting"

    cancelled = ok(jobforge("run", "cancel", run_id, db_url=db_url))
    assert f"run {run_id}" in cancelled
    burst(db_url)
    data = show(db_url, run_id)
    assert data["status"] == "cancelled"
    assert steps(data) == {"prepare": "compensated", "event:approved": "running"}

    refused(jobforge("run", "cancel", run_id, db_url=db_url), "Cannot cancel run", "cancelled")
    refused(jobforge("run", "resume", run_id, db_url=db_url), "Cannot resume run", run_id)


def test_retry_a_compensated_run(db_url: str, tmp_path: Path) -> None:
    fixed = tmp_path / "fixed"
    run_id = start(db_url, "flaky", "--input", json.dumps({"fixed": str(fixed)}))
    burst(db_url)
    failed = show(db_url, run_id)
    assert failed["status"] == "compensated"
    assert steps(failed) == {"first": "completed", "check": "failed"}
    assert failed["error"]["step"] == "check"
    table = ok(jobforge("run", "show", run_id, db_url=db_url))
    assert "compensated" in table and "missing" in table

    fixed.touch()
    retried = json.loads(ok(jobforge("run", "retry", run_id, "--json", db_url=db_url)))
    assert retried["status"] == "created"
    assert steps(retried) == {"first": "completed"}  # kept; the failed step is forgotten
    burst(db_url)
    done = show(db_url, run_id)
    assert done["status"] == "completed"
    assert done["output"] == "fixed"
    assert steps(done) == {"first": "completed"}

    refused(jobforge("run", "retry", run_id, db_url=db_url), "Cannot retry run", "completed")


def test_bad_input_is_refused_and_writes_nothing(db_url: str) -> None:
    done = start(db_url, "greet")
    burst(db_url)
    before = counts(db_url)

    results = run_all(
        db_url,
        ["run", "start", "greet", "--input", "{bad", "--app", DEFS],
        ["run", "start", "greet", "--input", "[1, 2]", "--app", DEFS],
        ["run", "start", "nope", "--app", DEFS],
        ["run", "start", "greet", "--version", "9", "--app", DEFS],
        ["run", "show", MISSING],
        ["run", "show", "nope"],
        ["run", "cancel", MISSING],
        ["run", "event", MISSING, "approved"],
        ["run", "event", done, "approved", "--data", "{bad"],
        ["run", "cancel", done],
        ["run", "retry", done],
    )
    expected = [
        ["not valid JSON"],
        ["object"],
        ["Unknown workflow 'nope'", "greet"],
        ["no version 9"],
        [f"Run not found: {MISSING}"],
        ["Invalid run id: 'nope'"],
        [MISSING],
        [MISSING],
        ["--data is not valid JSON"],
        [f"Cannot cancel run {done}: it is completed"],
        [f"Cannot retry run {done}: it is completed"],
    ]
    for result, texts in zip(results, expected, strict=True):
        refused(result, *texts)
    assert counts(db_url) == before
    assert show(db_url, done)["status"] == "completed"


def test_an_event_from_the_cli_wakes_a_running_worker_at_once(db_url: str, tmp_path: Path) -> None:
    run_id = start(db_url, "approval")
    worker = WorkerProcess(
        ["--app", WORKER_APP, "--db", db_url, "--poll-interval", "5"],
        cli_env(db_url),
        tmp_path / "worker.log",
    )
    try:
        started_line(worker)
        wait_until(lambda: show(db_url, run_id)["status"] == "waiting", 15, "the run to park")
        sent = time.monotonic()
        ok(jobforge("run", "event", run_id, "approved", "--data", '{"by": "cli"}', db_url=db_url))
        done = wait_until(
            lambda: (d := show(db_url, run_id))["status"] == "completed" and d,
            10,
            "the run to complete",
        )
        took = time.monotonic() - sent
    finally:
        worker.kill()
    assert done["output"] == {"approved_by": "cli"}
    # Well before the 5 s poll (the measure includes starting `jobforge run show`).
    assert took < 3.5, f"took {took:.2f}s"
