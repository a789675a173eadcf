"""Workflows and dependencies through the command line, against real databases and workers.

Each test creates workflows (from YAML or JSON files) or dependent jobs with `jobforge`,
runs them with `jobforge worker --burst` in a separate process, and reads the outcome back
through the CLI's JSON and table output (checked, where it matters, against the database).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pydot
import pytest
import yaml

from tests.e2e.helpers import APP, ROOT, WorkerProcess, cli_env, jobforge, ok, sql, wait_until

EXAMPLE_APP = "examples.app:app"
WF_APP = "tests.apps.wf_app:app"
WF_ID = re.compile(r"^wf_[0-9a-f]{32}$")
JOB_ID = re.compile(r"^job_[0-9a-f]{32}$")
MISSING_WF = "wf_" + "0" * 32
MISSING_JOB = "job_" + "0" * 32
STAT_KEYS = {
    "total", "waiting", "queued", "running", "succeeded", "failed", "skipped", "cancelled",
    "completion_percentage",
}  # fmt: skip
JOB_KEYS = {"name", "id", "type", "status", "started_at", "completed_at", "result"}


# -- helpers -----------------------------------------------------------------------------------
def run_all(db_url: str, *commands: Sequence[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run independent read-only commands at once (each is a fresh interpreter)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: jobforge(*args, db_url=db_url), commands))


def outputs(db_url: str, *commands: Sequence[str]) -> list[Any]:
    """stdout of each command, parsed as JSON when the command has --json."""
    results = run_all(db_url, *commands)
    return [
        json.loads(ok(r)) if "--json" in args or "json" in args else ok(r)
        for r, args in zip(results, commands, strict=True)
    ]


def create(db_url: str, path: Path, app: str | None = None) -> str:
    extra = ["--app", app] if app else []
    wf_id = ok(jobforge("workflow", "create", "--file", str(path), *extra, db_url=db_url))
    assert WF_ID.match(wf_id.strip()), wf_id
    return wf_id.strip()


def burst(db_url: str, app: str = APP, *extra: str) -> str:
    """A worker that runs every runnable job, then exits; returns its log."""
    result = jobforge(
        "worker", "--app", app, "--burst", "--poll-interval", "0.1", *extra, db_url=db_url
    )
    ok(result)
    return result.stderr


def refused(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """A clean refusal: non-zero exit, one `error:` line naming the problem, no stdout."""
    assert result.returncode != 0, f"{result.args} succeeded:\n{result.stdout}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"{result.args}: expected one error line, got:\n{result.stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    for text in expected:
        assert text in line, f"{text!r} not in {line!r}"
    assert result.stdout == ""
    return line


def by_name(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    jobs = {j["name"]: j for j in workflow["jobs"]}
    assert len(jobs) == len(workflow["jobs"])
    for j in jobs.values():
        assert set(j) >= JOB_KEYS, j
        assert JOB_ID.match(j["id"])
    return jobs


def row_counts(db_url: str) -> tuple[int, int, int]:
    (counts,) = sql(
        db_url,
        "SELECT (SELECT count(*) FROM jobforge_workflows), (SELECT count(*) FROM jobforge_jobs),"
        " (SELECT count(*) FROM jobforge_edges)",
    )
    return int(counts[0]), int(counts[1]), int(counts[2])


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2))
    return path


def dot_graph(text: str) -> tuple[set[str], list[tuple[str, str, str]]]:
    """(node ids, [(from, to, label)]) of DOT text, as pydot parses it."""
    with warnings.catch_warnings():
        # pydot's parser still calls pyparsing's deprecated camelCase API
        warnings.simplefilter("ignore", DeprecationWarning)
        graphs = pydot.graph_from_dot_data(text)
    assert graphs is not None and len(graphs) == 1, text
    (graph,) = graphs
    nodes = [n.get_name().strip('"') for n in graph.get_nodes()]
    nodes = [n for n in nodes if n not in ("node", "edge", "graph")]  # default attributes
    assert len(nodes) == len(set(nodes)), f"a node is declared twice:\n{text}"
    edges = [
        (e.get_source().strip('"'), e.get_destination().strip('"'), e.get("label").strip('"'))
        for e in graph.get_edges()
    ]
    return set(nodes), edges


# -- a YAML workflow of shape (a): each job names its parents ------------------------------------
ETL_YAML = """\
name: nightly-etl
description: extract, load, report
jobs:
  - name: extract            # type defaults to the name
    payload: {source: warehouse}
  - name: load
    type: flaky_load         # fails on its first attempt, retried
    payload: {table: facts}
    depends_on: [extract]
  - name: report
    type: send_report
    payload: {recipients: ["ops@example.org", "nobody"]}
    depends_on:
      - extract
      - {job: load, type: conditional, condition: "loaded == true && attempt == 2"}
  - name: tiny_source
    type: noop
    depends_on:
      - {job: extract, type: conditional, condition: "rows < 10"}
"""


def when(value: Any) -> datetime:
    """An ISO 8601 UTC timestamp as the CLI prints it ('...Z')."""
    assert isinstance(value, str) and value.endswith("Z"), value
    return datetime.fromisoformat(value)


def test_yaml_workflow_runs_and_false_branch_is_skipped(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "etl.yaml"
    path.write_text(ETL_YAML)
    wf = create(db_url, path, EXAMPLE_APP)

    before, listed_before = outputs(
        db_url, ("workflow", "show", wf, "--json"), ("workflow", "list", "--json")
    )
    assert before["workflow_id"] == wf
    assert before["name"] == "nightly-etl"
    assert before["description"] == "extract, load, report"
    assert before["status"] == "pending"
    assert before["failure_policy"] == "fail_fast"
    assert before["completed_at"] is None
    assert set(before["stats"]) == STAT_KEYS
    assert before["stats"] == {
        "total": 4, "waiting": 3, "queued": 1, "running": 0, "succeeded": 0, "failed": 0,
        "skipped": 0, "cancelled": 0, "completion_percentage": 0.0,
    }  # fmt: skip
    jobs = by_name(before)
    assert {n: (j["type"], j["status"]) for n, j in jobs.items()} == {
        "extract": ("extract", "queued"),
        "load": ("flaky_load", "waiting"),
        "report": ("send_report", "waiting"),
        "tiny_source": ("noop", "waiting"),
    }
    assert all(j["started_at"] is None and j["result"] is None for j in jobs.values())
    assert [w["workflow_id"] for w in listed_before] == [wf]
    assert listed_before[0]["status"] == "pending"
    assert listed_before[0]["stats"] == before["stats"]

    burst(db_url, EXAMPLE_APP)

    after, listed, running, table = outputs(
        db_url,
        ("workflow", "show", wf, "--json"),
        ("workflow", "list", "--json"),
        ("workflow", "list", "--status", "running", "--json"),
        ("workflow", "status", wf),
    )
    assert after["status"] == "succeeded"
    when(after["completed_at"])
    assert after["stats"] == {
        "total": 4, "waiting": 0, "queued": 0, "running": 0, "succeeded": 3, "failed": 0,
        "skipped": 1, "cancelled": 0, "completion_percentage": 100.0,
    }  # fmt: skip
    jobs = by_name(after)
    assert {n: j["status"] for n, j in jobs.items()} == {
        "extract": "succeeded",
        "load": "succeeded",
        "report": "partial_success",
        "tiny_source": "skipped",
    }
    assert jobs["extract"]["result"] == {"source": "warehouse", "rows": 90}
    assert jobs["load"]["result"] == {"table": "facts", "loaded": True, "attempt": 2}
    assert jobs["report"]["result"] == {"sent": ["ops@example.org"]}
    skipped = jobs["tiny_source"]
    assert skipped["started_at"] is None and skipped["result"] is None
    when(skipped["completed_at"])
    # every child started after its parents finished
    assert when(jobs["extract"]["completed_at"]) <= when(jobs["load"]["started_at"])
    assert when(jobs["load"]["completed_at"]) <= when(jobs["report"]["started_at"])
    # the database agrees
    assert dict(sql(db_url, "SELECT name, status FROM jobforge_jobs")) == {
        n: j["status"] for n, j in jobs.items()
    }

    assert [w["workflow_id"] for w in listed] == [wf]
    assert listed[0]["status"] == "succeeded"
    assert listed[0]["stats"] == after["stats"]
    assert running == []
    assert "status: succeeded" in table
    assert "100.0% of 4 jobs" in table
    assert "succeeded: 3" in table and "skipped: 1" in table and "failed: 0" in table
    row = next(line for line in table.splitlines() if skipped["id"] in line)
    assert "tiny_source" in row and "skipped" in row
    assert "condition 'rows < 10'" in row  # the reason, in the table

    # why was tiny_source skipped? explain, show, list and dependencies all say
    tiny, extract, load, report = (
        jobs[n]["id"] for n in ("tiny_source", "extract", "load", "report")
    )
    text, explained, shown, extract_table, report_deps, failed, in_wf, tiny_deps, load_deps = (
        outputs(
            db_url,
            ("job", "explain", tiny),
            ("job", "explain", tiny, "--json"),
            ("job", "show", tiny, "--json"),
            ("job", "show", extract, "--include-dependencies"),
            ("job", "show", report, "--include-dependencies", "--json"),
            ("job", "list", "--dependency-status", "failed", "--json"),
            ("job", "list", "--workflow", wf, "--json"),
            ("workflow", "dependencies", tiny, "--json"),
            ("workflow", "dependencies", load, "--json"),
        )
    )
    first, *edge_lines = text.strip().splitlines()
    assert first.startswith(f"{tiny} (tiny_source): skipped")
    assert "condition 'rows < 10' on parent extract's result is false" in first
    assert len(edge_lines) == 1
    assert "extract" in edge_lines[0] and extract in edge_lines[0]
    assert "conditional [rows < 10]" in edge_lines[0]
    assert "the condition is false" in edge_lines[0]

    assert explained["job_id"] == tiny
    assert explained["name"] == "tiny_source"
    assert explained["status"] == "skipped"
    assert explained["dependency_status"] == "failed"
    assert "rows < 10" in explained["summary"] and "extract" in explained["summary"]
    (why,) = explained["dependencies"]
    assert why["parent_id"] == extract
    assert why["parent_name"] == "extract"
    assert why["parent_status"] == "succeeded"
    assert why["dependency_type"] == "conditional"
    assert why["condition"] == "rows < 10"
    assert why["edge_status"] == "failed"
    assert why["state"] == "failed"
    assert "condition is false" in why["detail"]

    assert shown["job_id"] == tiny
    assert shown["workflow_id"] == wf
    assert shown["name"] == "tiny_source"
    assert shown["status"] == "skipped"
    assert shown["dependency_status"] == "failed"
    assert shown["attempts"] == 0
    assert shown["reason"].startswith("skipped: condition 'rows < 10'")
    assert shown["parents"] == [
        {"job_id": extract, "dependency_type": "conditional", "condition": "rows < 10",
         "status": "failed"}
    ]  # fmt: skip

    with pytest.raises(json.JSONDecodeError):
        json.loads(extract_table)
    children = {
        child: line for line in extract_table.splitlines() for child in (load, report, tiny)
        if child in line
    }  # fmt: skip
    assert set(children) == {load, report, tiny}
    assert all(line.split("│")[1].strip() == "child" for line in children.values())
    assert "conditional" in children[tiny] and "rows < 10" in children[tiny]
    assert "skipped" in children[tiny] and "failed" in children[tiny]
    assert "sequential" in children[load] and "resolved" in children[load]

    assert report_deps["job_id"] == report
    assert report_deps["children"] == []
    assert sorted(
        (p["job_id"], p["dependency_type"], p["condition"], p["status"])
        for p in report_deps["parents"]
    ) == sorted([
        (extract, "sequential", "succeeded", "resolved"),
        (load, "conditional", "loaded == true && attempt == 2", "resolved"),
    ])  # fmt: skip

    assert [j["job_id"] for j in failed] == [tiny]
    assert failed[0]["parents"] == shown["parents"]
    assert {j["job_id"] for j in in_wf} == {tiny, extract, load, report}
    assert {j["workflow_id"] for j in in_wf} == {wf}

    assert tiny_deps["job_id"] == tiny
    assert tiny_deps["check"]["can_execute"] is False
    assert tiny_deps["check"]["failed_dependencies"] == 1
    assert tiny_deps["check"]["pending_dependencies"] == 0
    assert tiny_deps["children"] == []
    (edge,) = tiny_deps["parents"]
    assert (edge["parent_id"], edge["child_id"]) == (extract, tiny)
    assert (edge["dependency_type"], edge["condition"], edge["status"]) == (
        "conditional", "rows < 10", "failed",
    )  # fmt: skip
    assert edge["workflow_id"] == wf
    assert edge["resolved_by"] == "extract"
    when(edge["resolved_at"])

    assert load_deps["check"]["can_execute"] is True
    assert [(e["parent_id"], e["status"]) for e in load_deps["parents"]] == [(extract, "resolved")]
    assert [(e["child_id"], e["dependency_type"]) for e in load_deps["children"]] == [
        (report, "conditional")
    ]


# -- a JSON workflow of shape (b): jobs with ids and a separate edge list; its graph -------------
FAN_IN = {
    "name": "fan-in",
    "failure_policy": "continue_on_failure",
    "jobs": [
        {"id": "left", "type": "echo", "payload": {"side": "left"}},
        {"id": "right", "type": "echo", "payload": {"side": "right"}},
        {"id": "join", "type": "echo", "payload": {"kind": "joined"}},
        {"id": "audit", "type": "echo"},
        {"id": "publish", "type": "echo", "payload": {"done": True}},
        {"id": "alert", "type": "echo"},
    ],
    "dependencies": [
        {"from": "left", "to": "join"},
        {"from": "right", "to": "join", "type": "sequential", "condition": "always"},
        {"from": "left", "to": "audit", "type": "parallel"},
        {"from": "join", "to": "publish", "type": "conditional", "condition": "kind == 'joined'"},
        {
            "from": "join",
            "to": "alert",
            "type": "conditional",
            "condition": "result.kind != 'joined'",
        },
    ],
}
FAN_IN_EDGES = {
    ("left", "join"): ("sequential", "succeeded", "resolved"),
    ("right", "join"): ("sequential", "always", "resolved"),
    ("left", "audit"): ("parallel", None, "resolved"),
    ("join", "publish"): ("conditional", "kind == 'joined'", "resolved"),
    ("join", "alert"): ("conditional", "result.kind != 'joined'", "failed"),
}


def test_json_edge_list_workflow_and_its_graph(db_url: str, tmp_path: Path) -> None:
    wf = create(db_url, write_json(tmp_path / "fan-in.json", FAN_IN), APP)
    (pending,) = outputs(db_url, ("workflow", "graph", wf, "--format", "json"))
    assert {n["name"]: n["status"] for n in pending["nodes"]} == {
        "left": "queued", "right": "queued", "join": "waiting", "audit": "waiting",
        "publish": "waiting", "alert": "waiting",
    }  # fmt: skip
    assert sorted(e["status"] for e in pending["edges"]) == ["pending"] * 5

    burst(db_url)

    shown, dot, mermaid, graph, hood, hood_dot = outputs(
        db_url,
        ("workflow", "show", wf, "--json"),
        ("workflow", "graph", wf),  # dot is the default
        ("workflow", "graph", wf, "--format", "mermaid"),
        ("workflow", "graph", wf, "--format", "json"),
        ("workflow", "graph", by_name_id(db_url, wf, "join"), "--format", "json"),
        ("workflow", "graph", by_name_id(db_url, wf, "join"), "--format", "dot"),
    )
    assert shown["status"] == "succeeded"  # a false branch is skipped, not a failure
    assert shown["failure_policy"] == "continue_on_failure"
    jobs = by_name(shown)
    ids = {name: j["id"] for name, j in jobs.items()}
    names = {v: k for k, v in ids.items()}
    assert {n: j["status"] for n, j in jobs.items()} == {
        "left": "succeeded", "right": "succeeded", "join": "succeeded", "audit": "succeeded",
        "publish": "succeeded", "alert": "skipped",
    }  # fmt: skip
    assert jobs["join"]["result"] == {"kind": "joined"}
    assert jobs["publish"]["result"] == {"done": True}

    # DOT: one node per job, one edge per dependency, labelled with kind and status
    nodes, edges = dot_graph(dot)
    assert nodes == set(ids.values())
    assert len(edges) == len(FAN_IN_EDGES)
    got = {(names[a], names[b]): label for a, b, label in edges}
    assert set(got) == set(FAN_IN_EDGES)
    for pair, (kind, condition, status) in FAN_IN_EDGES.items():
        assert got[pair].startswith(kind), got[pair]
        assert got[pair].endswith(f"({status})"), got[pair]
        if kind == "conditional":
            assert condition in got[pair]
    assert re.search(rf'"{ids["alert"]}" \[label="alert\\necho · skipped"', dot), dot

    # Mermaid
    lines = mermaid.splitlines()
    assert lines[0].startswith("flowchart")
    for name, job_id in ids.items():
        (node,) = [line for line in lines if line.strip().startswith(f"{job_id}[")]
        assert f'"{name}<br/>echo · {jobs[name]["status"]}' in node
    arrows = [line for line in lines if "-->" in line or "-.->" in line]
    assert len(arrows) == len(FAN_IN_EDGES)
    (dashed,) = [line for line in arrows if "-.->" in line]
    assert dashed.split()[0] == ids["left"] and dashed.split()[-1] == ids["audit"]

    # SVG: a picture with a box per job and a path per edge
    picture = ET.fromstring(ok(jobforge("workflow", "graph", wf, "--format", "svg", db_url=db_url)))
    svg = "{http://www.w3.org/2000/svg}"
    classes = [g.get("class", "") for g in picture.iter(f"{svg}g")]
    assert sorted(c for c in classes if c.startswith("job ")) == sorted(
        f"job {j['status']}" for j in jobs.values()
    )
    assert sum(c.startswith("edge ") for c in classes) == len(FAN_IN_EDGES)

    # JSON: nodes and edges with status and kind
    assert {n["id"]: (n["name"], n["type"], n["status"]) for n in graph["nodes"]} == {
        ids[name]: (name, "echo", j["status"]) for name, j in jobs.items()
    }
    assert {
        (names[e["from"]], names[e["to"]]): (e["kind"], e["condition"], e["status"])
        for e in graph["edges"]
    } == FAN_IN_EDGES
    assert len(graph["edges"]) == len(FAN_IN_EDGES)

    # a job id gives its neighbourhood: parents, itself, children
    near = {"left", "right", "join", "publish", "alert"}
    assert {names[n["id"]] for n in hood["nodes"]} == near
    assert len(hood["nodes"]) == len(near)
    assert {(names[e["from"]], names[e["to"]]) for e in hood["edges"]} == {
        pair for pair in FAN_IN_EDGES if "join" in pair
    }
    hood_nodes, hood_edges = dot_graph(hood_dot)
    assert {names[n] for n in hood_nodes} == near
    assert len(hood_edges) == 4


def by_name_id(db_url: str, wf: str, name: str) -> str:
    """A workflow job's id by its name, read from the database."""
    rows = sql(db_url, f"SELECT id FROM jobforge_jobs WHERE name = '{name}'")
    assert len(rows) == 1, rows
    return "job_" + str(rows[0][0]).replace("-", "")


# -- status --watch -------------------------------------------------------------------------------
def test_status_watch_exits_when_the_workflow_ends(
    db_url: str, tmp_path: Path, markers: Path
) -> None:
    dirname = str(markers)
    definition = {
        "name": "watched",
        "jobs": [
            {"id": "nap", "type": "sleepy", "payload": {"seconds": 0.5, "marker_dir": dirname}},
            {"id": "after", "type": "echo", "payload": {"x": 1}},
        ],
        "dependencies": [{"from": "nap", "to": "after"}],
    }  # fmt: skip
    wf = create(db_url, write_json(tmp_path / "watched.json", definition))
    args = ["workflow", "status", wf, "--watch", "--interval", "0.2"]
    watch = subprocess.Popen(
        [sys.executable, "-m", "jobforge", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(db_url),
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            watch.wait(timeout=2)  # a pending workflow keeps it watching
        burst(db_url)
        stdout, stderr = watch.communicate(timeout=20)
        assert watch.returncode == 0, stderr
        assert stderr == ""
        assert "status: succeeded" in stdout
        assert "100.0% of 2 jobs" in stdout
    finally:
        if watch.poll() is None:
            os.killpg(watch.pid, signal.SIGKILL)
        watch.communicate()


# -- enqueue --depends-on -------------------------------------------------------------------------
def enqueue(db_url: str, *args: str) -> str:
    job_id = ok(jobforge("enqueue", *args, db_url=db_url)).strip()
    assert JOB_ID.match(job_id), job_id
    return job_id


def test_enqueue_depends_on_waits_for_its_parents(db_url: str, markers: Path) -> None:
    quick = enqueue(db_url, "echo", "--payload", '{"n": 1}')
    slow = enqueue(
        db_url, "sleepy", "--payload", json.dumps({"seconds": 0.3, "marker_dir": str(markers)})
    )
    child = enqueue(
        db_url, "echo", "--payload", '{"child": true}', "--depends-on", quick,
        "--depends-on", slow, "--app", APP,
    )  # fmt: skip

    shown, text, waiting, deps = outputs(
        db_url,
        ("job", "show", child, "--json"),
        ("job", "explain", child),
        ("job", "list", "--dependency-status", "waiting", "--json"),
        ("workflow", "dependencies", child, "--json"),
    )
    assert shown["status"] == "waiting"
    assert shown["dependency_status"] == "waiting"
    assert shown["workflow_id"] is None
    assert sorted(shown["parents"], key=lambda p: p["job_id"]) == sorted(
        [
            {"job_id": p, "dependency_type": "sequential", "condition": "succeeded",
             "status": "pending"}
            for p in (quick, slow)
        ],
        key=lambda p: p["job_id"],
    )  # fmt: skip
    assert "waiting for 2 of 2 dependencies" in text
    assert quick in text and slow in text
    assert [j["job_id"] for j in waiting] == [child]
    assert deps["check"]["can_execute"] is False
    assert deps["check"]["pending_dependencies"] == 2
    assert {e["parent_id"] for e in deps["parents"]} == {quick, slow}

    burst(db_url)

    done, listed = outputs(db_url, ("job", "show", child, "--json"), ("job", "list", "--json"))
    first, second = ({j["job_id"]: j for j in listed}[p] for p in (quick, slow))
    assert done["status"] == "succeeded"
    assert done["result"] == {"child": True}
    assert done["dependency_status"] == "satisfied"
    assert {p["status"] for p in done["parents"]} == {"resolved"}
    assert first["status"] == second["status"] == "succeeded"
    assert when(done["started_at"]) >= when(first["completed_at"])
    assert when(done["started_at"]) >= when(second["completed_at"])

    # a parent that already succeeded releases a new child at once
    late = enqueue(db_url, "echo", "--depends-on", quick)
    (late_shown,) = outputs(db_url, ("job", "show", late, "--json"))
    assert late_shown["status"] == "queued"
    assert late_shown["dependency_status"] == "satisfied"
    assert [p["status"] for p in late_shown["parents"]] == ["resolved"]


# -- cancel, retry, resume ------------------------------------------------------------------------
def test_workflow_cancel(db_url: str, tmp_path: Path, markers: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    definition = {
        "name": "to-cancel",
        "jobs": [
            {"name": "hold", "type": "until_cancelled", "payload": {"marker_dir": str(markers)}},
            {"name": "after", "type": "record", "payload": {"out_dir": str(runs)},
             "depends_on": ["hold"]},
            {"name": "last", "type": "record", "payload": {"out_dir": str(runs)},
             "depends_on": ["after"]},
        ],
    }  # fmt: skip
    wf = create(db_url, write_json(tmp_path / "cancel.json", definition), WF_APP)
    worker = WorkerProcess(
        ["--app", WF_APP, "--db", db_url, "--lease-seconds", "1", "--poll-interval", "0.1"],
        cli_env(db_url),
        tmp_path / "worker.log",
    )
    try:
        wait_until(lambda: any(markers.iterdir()), 20, "the hold job to start")

        cancelled = json.loads(ok(jobforge("workflow", "cancel", wf, "--json", db_url=db_url)))
        assert cancelled["workflow_id"] == wf
        assert cancelled["status"] == "cancelled"
        assert cancelled["reason"] == "cancelled"
        # the running job is asked to stop, not killed; the others will never start
        assert cancelled["stats"]["running"] == 1
        assert cancelled["stats"]["cancelled"] == 2

        wait_until(
            lambda: sql(db_url, "SELECT completed_at FROM jobforge_workflows")[0][0] is not None,
            20,
            "the running job to see the cancel request and the workflow to complete",
        )
        shown, text = outputs(
            db_url,
            ("workflow", "show", wf, "--json"),
            ("job", "explain", by_name_id(db_url, wf, "after")),
        )
        assert worker.alive()
    finally:
        worker.kill()
    assert shown["status"] == "cancelled"
    when(shown["completed_at"])
    jobs = by_name(shown)
    assert jobs["hold"]["result"] == {"stopped": "cancel requested"}  # it saw the request
    assert jobs["after"]["status"] == jobs["last"]["status"] == "cancelled"
    assert jobs["after"]["started_at"] is None and jobs["last"]["started_at"] is None
    assert list(runs.iterdir()) == []  # the cancelled jobs never ran
    assert "cancelled" in text.splitlines()[0]

    refused(jobforge("workflow", "cancel", wf, db_url=db_url), f"Cannot cancel workflow {wf}")


def run_lines(runs: Path) -> list[str]:
    """Job ids the `record` job ran for, one per run."""
    return [line.split()[0] for f in runs.iterdir() for line in f.read_text().splitlines()]


def test_workflow_retry_reruns_only_what_failed(db_url: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    flag = tmp_path / "flag"
    path = tmp_path / "retry.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "retryable",
                "jobs": [
                    {"name": "first", "type": "record", "payload": {"out_dir": str(runs)}},
                    {
                        "name": "gate",
                        "type": "needs_file",
                        "payload": {"path": str(flag)},
                        "depends_on": ["first"],
                    },
                    {
                        "name": "last",
                        "type": "record",
                        "payload": {"out_dir": str(runs)},
                        "depends_on": ["gate"],
                    },
                ],
            }
        )
    )
    wf = create(db_url, path, APP)
    burst(db_url)

    failed, text = outputs(
        db_url,
        ("workflow", "show", wf, "--json"),
        ("job", "explain", by_name_id(db_url, wf, "last")),
    )
    assert failed["status"] == "failed"
    assert "gate" in failed["reason"]
    jobs = by_name(failed)
    assert {n: j["status"] for n, j in jobs.items()} == {
        "first": "succeeded",
        "gate": "failed",
        "last": "cancelled",
    }
    assert failed["stats"]["failed"] == 1 and failed["stats"]["cancelled"] == 1
    assert "cancelled" in text and "gate failed" in text
    first = jobs["first"]
    assert run_lines(runs) == [first["id"]]

    flag.write_text("now it exists")
    assert ok(jobforge("workflow", "retry", wf, db_url=db_url)).split() == [wf, "running"]
    burst(db_url)

    done, gate = outputs(
        db_url, ("workflow", "show", wf, "--json"), ("job", "show", jobs["gate"]["id"], "--json")
    )
    assert done["status"] == "succeeded"
    assert done["reason"] is None
    when(done["completed_at"])
    after = by_name(done)
    assert {n: j["status"] for n, j in after.items()} == dict.fromkeys(jobs, "succeeded")
    assert after["first"] == first  # kept as it was: not run again
    assert after["gate"]["result"] == "now it exists"
    assert gate["attempts"] == 1
    assert [e["type"] for e in gate["errors"]] == ["RuntimeError"]  # the first run's error
    assert sorted(run_lines(runs)) == sorted([first["id"], after["last"]["id"]])

    refused(
        jobforge("workflow", "retry", wf, db_url=db_url),
        f"Cannot retry workflow {wf}: no failed, cancelled or skipped job",
    )


def test_workflow_resume_after_manual_pause(db_url: str, tmp_path: Path, markers: Path) -> None:
    definition = {
        "name": "supervised",
        "failure_policy": "manual",
        "jobs": [
            {"name": "bad", "type": "needs_file", "payload": {"path": str(tmp_path / "never")}},
            {
                "name": "nap",
                "type": "sleepy",
                "payload": {"seconds": 1.0, "marker_dir": str(markers)},
            },
            {"name": "held", "type": "echo", "payload": {"ok": True}, "depends_on": ["nap"]},
            {"name": "after_bad", "type": "echo", "depends_on": ["bad"]},
        ],
    }
    wf = create(db_url, write_json(tmp_path / "manual.json", definition), APP)  # retries=0
    burst(db_url)

    paused, text = outputs(
        db_url,
        ("workflow", "show", wf, "--json"),
        ("job", "explain", by_name_id(db_url, wf, "held")),
    )
    assert paused["status"] == "paused"
    assert paused["reason"] == "job bad failed"
    assert paused["completed_at"] is None
    jobs = by_name(paused)
    assert {n: j["status"] for n, j in jobs.items()} == {
        "bad": "failed",
        "nap": "succeeded",
        "held": "waiting",
        "after_bad": "waiting",
    }
    assert "held by its workflow" in text  # its parent succeeded, the pause holds it

    assert ok(jobforge("workflow", "resume", wf, db_url=db_url)).split() == [wf, "running"]
    (resumed,) = outputs(db_url, ("workflow", "show", wf, "--json"))
    assert resumed["status"] == "running"
    jobs = by_name(resumed)
    assert jobs["held"]["status"] == "queued"
    assert jobs["after_bad"]["status"] == "skipped"  # as under continue_on_failure
    assert "bad" in jobs["after_bad"]["reason"]

    burst(db_url)
    (final,) = outputs(db_url, ("workflow", "show", wf, "--json"))
    assert final["status"] == "failed"  # it went on, but a job did fail
    when(final["completed_at"])
    jobs = by_name(final)
    assert jobs["held"]["status"] == "succeeded"
    assert jobs["held"]["result"] == {"ok": True}
    assert final["stats"]["succeeded"] == 2
    assert final["stats"]["failed"] == 1
    assert final["stats"]["skipped"] == 1

    refused(
        jobforge("workflow", "resume", wf, db_url=db_url), "Cannot resume workflow", "not paused"
    )


# -- bad input ------------------------------------------------------------------------------------
BAD_FILES: dict[str, tuple[str, list[str]]] = {
    "syntax.yaml": (
        "name: x\njobs:\n  - name: a\n    payload: {b: [1, 2}\n",
        ["invalid YAML at line 4"],
    ),
    "syntax.json": ('{"name": "x", "jobs": [{"id": "a",}]}', ["invalid JSON at line 1, column"]),
    "missing.yaml": (
        "name: x\njobs:\n  - {name: y, type: echo, depends_on: [x]}\n",
        ["Dependency not found: x (required by y)"],
    ),
    "missing.json": (
        json.dumps(
            {
                "name": "x",
                "jobs": [{"id": "a"}, {"id": "b"}],
                "dependencies": [{"from": "a", "to": "b"}, {"from": "x", "to": "b"}],
            }
        ),
        ["Dependency not found: x (required by b)"],
    ),
    "cycle.json": (
        json.dumps(
            {
                "name": "x",
                "jobs": [{"id": "a"}, {"id": "b"}],
                "dependencies": [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}],
            }
        ),
        ["Circular dependency detected: a -> b -> a"],
    ),
    "payload.yaml": (
        "name: x\njobs:\n  - {name: a, type: echo, payload: [1, 2]}\n",
        ["job 'a'", "field 'payload' must be an object"],
    ),
    "field.yaml": (
        "name: x\njobs:\n  - {name: a, type: echo, colour: red}\n",
        ["job 'a'", "unknown field(s) 'colour'"],
    ),
    "edge-field.json": (
        json.dumps(
            {
                "name": "x",
                "jobs": [{"id": "a"}, {"id": "b"}],
                "dependencies": [{"from": "a", "to": "b", "weight": 2}],
            }
        ),
        ["dependencies[0]", "unknown field(s) 'weight'"],
    ),
    "condition.yaml": (
        "name: x\njobs:\n  - {name: a, type: echo}\n"
        "  - name: b\n    depends_on: [{job: a, type: conditional, condition: 'rows <'}]\n",
        ["job 'b'", "depends_on[0]", "Invalid condition 'rows <'"],
    ),
    "condition.json": (
        json.dumps(
            {
                "name": "x",
                "jobs": [{"id": "a"}, {"id": "b"}],
                "dependencies": [
                    {"from": "a", "to": "b", "type": "conditional", "condition": "a +"}
                ],
            }
        ),
        ["dependencies[0] (a -> b)", "Invalid condition 'a +'"],
    ),
    "condition-type.yaml": (
        "name: x\njobs:\n  - {name: a, type: echo}\n"
        "  - {name: b, type: echo, depends_on: [{job: a, type: conditional, condition: 5}]}\n",
        ["job 'b'", "depends_on[0]", "field 'condition' must be a string"],
    ),
}


def assert_refused_without_writes(
    db_url: str, cases: list[tuple[tuple[str, ...], list[str]]]
) -> None:
    before = row_counts(db_url)
    assert before != (0, 0, 0)
    results = run_all(db_url, *(args for args, _ in cases))
    for (args, expected), result in zip(cases, results, strict=True):
        line = refused(result, *expected)
        assert result.returncode == 1, (args, line)
    assert row_counts(db_url) == before


def test_bad_workflow_files_are_refused(sqlite_url: str, tmp_path: Path) -> None:
    """Files are checked before the database is opened: once, on SQLite, is enough."""
    create(sqlite_url, write_json(tmp_path / "ok.json", {"name": "ok", "jobs": [{"id": "echo"}]}))
    cases: list[tuple[tuple[str, ...], list[str]]] = []
    for name, (text, expected) in BAD_FILES.items():
        path = tmp_path / name
        path.write_text(text)
        cases.append((("workflow", "create", "--file", str(path)), [str(path), *expected]))
    absent = str(tmp_path / "absent.yaml")
    cases.append((("workflow", "create", "--file", absent), [absent, "cannot read"]))
    assert_refused_without_writes(sqlite_url, cases)


def test_bad_references_are_refused(db_url: str, tmp_path: Path) -> None:
    wf = create(db_url, write_json(tmp_path / "ok.json", {"name": "ok", "jobs": [{"id": "echo"}]}))
    existing = by_name_id(db_url, wf, "echo")
    unknown_type = tmp_path / "unknown-type.yaml"
    unknown_type.write_text("name: x\njobs:\n  - {name: a, type: nope}\n")
    not_found = f"Workflow not found: {MISSING_WF}"
    assert_refused_without_writes(
        db_url,
        [
            (
                ("workflow", "create", "--file", str(unknown_type), "--app", APP),
                ["Unknown job type 'nope'", "workflow job 'a'"],
            ),
            (
                ("workflow", "graph", wf, "--format", "png"),
                ["Unknown graph format 'png' (expected dot, mermaid, json, svg)"],
            ),
            (("workflow", "show", MISSING_WF, "--json"), [not_found]),
            (("workflow", "status", MISSING_WF, "--watch"), [not_found]),
            (("workflow", "cancel", MISSING_WF), [not_found]),
            (("workflow", "graph", "wf_nonsense"), ["Invalid workflow id: 'wf_nonsense'"]),
            (
                ("enqueue", "echo", "--depends-on", existing, "--depends-on", MISSING_JOB),
                [f"Dependency not found: {MISSING_JOB}"],
            ),
            (("workflow", "dependencies", MISSING_JOB), [f"Job not found: {MISSING_JOB}"]),
        ],
    )
