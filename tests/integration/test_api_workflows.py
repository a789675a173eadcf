"""/workflows and /groups over HTTP, in process, on both backends: create from a definition
(the workflow-file format, as JSON), read, list, stats, graph, cancel/retry/resume; list and
enqueue groups (dry runs write nothing; dependencies across groups come along)."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from jobforge import Forge
from jobforge.testing import run_until_idle
from tests.integration.api_support import ISO_Z, JSON, TestClient, at, error, ok, unknown

ROOT = Path(__file__).resolve().parents[2]
# examples/etl.yaml with this app's job types: extract -> load -> report, plus conditional
# alerts on the extract's result (only billing's is big enough), and one edge listed apart.
ETL: dict[str, Any] = {
    "name": "nightly_etl",
    "description": "extract two sources, load each, then report",
    "failure_policy": "continue_on_failure",
    "metadata": {"owner": "ops"},
    "jobs": [
        {"name": "extract_crm", "type": "add", "payload": {"a": 10, "b": 1}},
        {"name": "extract_billing", "type": "add", "payload": {"a": 60, "b": 1}},
        {"name": "load_crm", "type": "add", "payload": {"a": 1, "b": 1},
         "depends_on": ["extract_crm"]},
        {"name": "load_billing", "type": "add", "payload": {"a": 1, "b": 2},
         "depends_on": ["extract_billing"]},
        {"name": "alert_big_billing", "type": "add", "payload": {"a": 0, "b": 0},
         "depends_on": [{"job": "extract_billing", "type": "conditional",
                         "condition": "sum > 50"}]},
        {"name": "alert_big_crm", "type": "add", "payload": {"a": 0, "b": 0},
         "depends_on": [{"job": "extract_crm", "type": "conditional", "condition": "sum > 50"}]},
        {"name": "report", "type": "add", "payload": {"a": 2, "b": 2}, "depends_on": ["load_crm"]},
    ],
    "dependencies": [{"from": "load_billing", "to": "report"}],
}  # fmt: skip
WORKFLOW_FIELDS = {
    "workflow_id", "name", "description", "status", "failure_policy", "priority", "timeout",
    "metadata", "tenant_id", "trace_id", "correlation_id", "reason", "created_at", "updated_at",
    "completed_at", "stats",
}  # fmt: skip


def create(client: TestClient, h: dict[str, str], definition: dict[str, Any]) -> str:
    return str(ok(client.post("/workflows", json=definition, headers=h), 201)["workflow_id"])


def chain(name: str, *types: str, policy: str = "fail_fast") -> dict[str, Any]:
    jobs: list[dict[str, Any]] = []
    for i, t in enumerate(types):
        jobs.append({"name": f"s{i}", "type": t, "payload": {"a": i, "b": 1} if t == "add" else {},
                     "depends_on": [f"s{i - 1}"] if i else []})  # fmt: skip
    return {"name": name, "failure_policy": policy, "jobs": jobs}


def names(client: TestClient, h: dict[str, str], wf: str) -> dict[str, dict[str, Any]]:
    page = ok(client.get(f"/jobs?workflow_id={wf}", headers=h))
    return {j["name"]: j for j in page["jobs"]}


def test_create_read_graph_and_run_a_workflow(
    forge: Forge, client: TestClient, admin: dict[str, str]
) -> None:
    created = ok(client.post("/workflows", json=ETL, headers=admin), 201)
    assert set(created) == {"workflow_id", "status"} and created["status"] == "pending"
    wf = created["workflow_id"]
    got = ok(client.get(f"/workflows/{wf}", headers=admin))
    assert set(got) == WORKFLOW_FIELDS
    assert (got["workflow_id"], got["name"], got["failure_policy"], got["tenant_id"]) == (
        wf, "nightly_etl", "continue_on_failure", "acme",
    )  # fmt: skip
    assert got["metadata"] == {"owner": "ops"} and ISO_Z.match(got["created_at"])
    stats = ok(client.get(f"/workflows/{wf}/stats", headers=admin))
    assert stats["total"] == 7 and stats["completion_percentage"] == 0
    assert stats["queued"] == 2 and stats["waiting"] == 5
    jobs = names(client, admin, wf)
    assert set(jobs) == {j["name"] for j in ETL["jobs"]}
    assert all(j["workflow_id"] == wf for j in jobs.values())
    report = ok(client.get(f"/dependencies/job/{jobs['report']['job_id']}/parents", headers=admin))
    assert {j["name"] for j in report} == {"load_crm", "load_billing"}

    graph = client.get(f"/workflows/{wf}/graph?format=json", headers=admin)
    assert graph.headers["content-type"].startswith("application/json")
    assert ok(client.get(f"/workflows/{wf}/graph", headers=admin)) == graph.json()  # the default
    nodes, edges = graph.json()["nodes"], graph.json()["edges"]
    assert {n["name"] for n in nodes} == set(jobs) and len(edges) == 6
    by_id = {n["id"]: n["name"] for n in nodes}
    assert {(by_id[e["from"]], by_id[e["to"]]) for e in edges} >= {
        ("load_crm", "report"), ("load_billing", "report"), ("extract_crm", "alert_big_crm"),
    }  # fmt: skip
    dot = client.get(f"/workflows/{wf}/graph?format=dot", headers=admin)
    assert dot.status_code == 200 and dot.headers["content-type"].startswith("text/plain")
    assert dot.text.startswith('digraph "nightly_etl"') and dot.text.count("->") == 6
    mermaid = client.get(f"/workflows/{wf}/graph?format=mermaid", headers=admin)
    assert mermaid.status_code == 200 and mermaid.headers["content-type"].startswith("text/plain")
    assert mermaid.text.startswith("flowchart") and mermaid.text.count("-->") == 6
    svg = client.get(f"/workflows/{wf}/graph?format=svg", headers=admin)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.count('<g class="job ') == 7 and svg.text.count('<g class="edge ') == 6
    ET.fromstring(svg.text)  # well-formed
    assert "format" in error(client.get(f"/workflows/{wf}/graph?format=png", headers=admin), 422)

    run_until_idle(forge)
    done = ok(client.get(f"/workflows/{wf}", headers=admin))
    assert done["status"] == "succeeded" and done["completed_at"] is not None
    assert done["stats"]["completion_percentage"] == 100
    statuses = {n: j["status"] for n, j in names(client, admin, wf).items()}
    assert statuses == {n: "succeeded" for n in statuses} | {"alert_big_crm": "skipped"}


def test_list_workflows_filters_and_pages(client: TestClient, admin: dict[str, str]) -> None:
    made = [create(client, admin, chain(f"w{i}", "add")) for i in range(5)]
    ok(client.post(f"/workflows/{made[1]}/cancel", headers=admin))
    listed = ok(client.get("/workflows", headers=admin))
    assert [w["workflow_id"] for w in listed["workflows"]] == made[::-1]
    assert listed["next_cursor"] is None and set(listed["workflows"][0]) == WORKFLOW_FIELDS
    cancelled = ok(client.get("/workflows?status=cancelled", headers=admin))["workflows"]
    assert [w["workflow_id"] for w in cancelled] == [made[1]]
    seen: list[str] = []
    cursor = ""
    for _ in range(10):
        page = ok(client.get(f"/workflows?limit=2{cursor}", headers=admin))
        seen += [w["workflow_id"] for w in page["workflows"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == made[::-1]
    for query in ("status=bogus", "limit=0", "limit=501", "cursor=bm9wZQ"):
        error(client.get(f"/workflows?{query}", headers=admin), 422, "invalid")


def test_refused_definitions_write_nothing(
    forge: Forge, client: TestClient, admin: dict[str, str]
) -> None:
    etl_example = yaml.safe_load((ROOT / "examples" / "etl.yaml").read_text())
    cyclic = chain("loop", "add", "add")
    cyclic["jobs"][0]["depends_on"] = ["s1"]
    unknown_field = chain("x", "add") | {"bogus": 1}
    bad_edge = copy.deepcopy(ETL)
    bad_edge["dependencies"] = [{"from": "load_billing", "to": "nowhere"}]
    one = {"name": "a", "type": "add", "payload": {"a": 1, "b": 1}}
    cases: list[tuple[Any, int, str, str]] = [
        (etl_example, 422, "unknown_job_type", "extract"),  # the example app's types
        ({"jobs": [{"name": "a", "type": "add"}]}, 422, "invalid", "name"),
        ({"name": "empty", "jobs": []}, 422, "invalid", "jobs"),
        (cyclic, 422, "bad_workflow_file", "s0 -> s1 -> s0"),
        (unknown_field, 422, "invalid", "bogus"),
        (bad_edge, 422, "bad_workflow_file", "nowhere"),
        ({"name": "x", "jobs": [{"type": "add"}]}, 422, "bad_workflow_file", "name"),
        ({"name": "x", "jobs": [one, one]}, 422, "bad_workflow_file", "duplicate"),
        ({"name": "x", "failure_policy": "sometimes", "jobs": [one]}, 422, "invalid",
         "failure_policy"),
        (chain("huge", "add") | {"jobs": [{"name": "a", "type": "add", "payload": {
            "x": "a" * forge.max_payload_bytes}}]}, 413, "payload_too_large", "limit"),
        ([ETL], 422, "invalid", ""),
        # Numbers are bounded as for POST /jobs (they reached the database as they were).
        ({"name": "x", "priority": 10**20, "jobs": [one]}, 422, "invalid", "priority"),
        ({"name": "x", "retries": 10**20, "jobs": [one]}, 422, "invalid", "retries"),
        ({"name": "x", "timeout": 1e300, "jobs": [one]}, 422, "invalid", "timeout"),
        ({"name": "x", "jobs": [one | {"priority": 10**20}]}, 422, "invalid", "jobs.0.priority"),
        ({"name": "x", "jobs": [one | {"delay": 1e300}]}, 422, "invalid", "jobs.0.delay"),
        ({"name": "x", "jobs": [one | {"priority": "5"}]}, 422, "invalid", "priority"),
        ({"name": "x", "jobs": [one | {"optional": 1}]}, 422, "invalid", "optional"),
    ]  # fmt: skip
    for definition, status, code, word in cases:
        response = client.post("/workflows", json=definition, headers=admin)
        assert word in error(response, status, code), response.text
    # Python's JSON reads NaN and Infinity; they are refused, wherever they are.
    template = '{"name": "x", "metadata": %s, "jobs": [{"name": "a", "type": "add", %s}]}'
    for meta, job in (('{"x": NaN}', '"timeout": 1'), ("{}", '"timeout": NaN'),
                      ("{}", '"delay": Infinity'), ("{}", '"dependency_timeout": -Infinity'),
                      ("{}", '"payload": {"a": NaN}')):  # fmt: skip
        body = (template % (meta, job)).encode()
        response = client.post("/workflows", content=body, headers={**admin, **JSON})
        assert response.status_code == 422, (body, response.text)
    error(client.post("/workflows", content=b"{", headers={**admin, **JSON}), 400,
          "malformed_json")  # fmt: skip
    error(client.post("/workflows", content=json.dumps(ETL), headers={
        **admin, "content-type": "text/yaml"}), 400, "bad_content_type")  # fmt: skip
    assert ok(client.get("/workflows", headers=admin))["workflows"] == []
    assert forge.list_jobs() == []


def test_cancel_retry_and_resume(forge: Forge, client: TestClient, admin: dict[str, str]) -> None:
    wf = create(client, admin, chain("c", "add", "add"))
    error(client.post(f"/workflows/{wf}/retry", headers=admin), 409, "invalid_transition")
    cancelled = ok(client.post(f"/workflows/{wf}/cancel", headers=admin))
    assert set(cancelled) == WORKFLOW_FIELDS and cancelled["status"] == "cancelled"
    assert {j["status"] for j in names(client, admin, wf).values()} == {"cancelled"}
    error(client.post(f"/workflows/{wf}/cancel", headers=admin), 409, "invalid_transition")
    assert "paused" in error(client.post(f"/workflows/{wf}/resume", headers=admin), 409)
    assert ok(client.post(f"/workflows/{wf}/retry", headers=admin))["status"] == "running"
    assert names(client, admin, wf)["s0"]["status"] == "queued"

    manual = create(client, admin, chain("m", "add", "fail", "add", policy="manual"))
    run_until_idle(forge)
    assert ok(client.get(f"/workflows/{wf}", headers=admin))["status"] == "succeeded"
    paused = ok(client.get(f"/workflows/{manual}", headers=admin))
    assert paused["status"] == "paused", paused
    resumed = ok(client.post(f"/workflows/{manual}/resume", headers=admin))
    assert resumed["status"] != "paused"

    for path in ("", "/stats", "/graph", "/graph?format=dot"):
        error(client.get(f"/workflows/{unknown('wf')}{path}", headers=admin), 404,
              "workflow_not_found")  # fmt: skip
    for verb in ("cancel", "retry", "resume"):
        for ref in (unknown("wf"), "nonsense"):
            assert ref in error(client.post(f"/workflows/{ref}/{verb}", headers=admin), 404,
                                "workflow_not_found")  # fmt: skip


def test_groups_list_dry_run_and_enqueue(
    forge: Forge, client: TestClient, admin: dict[str, str]
) -> None:
    assert ok(client.get("/groups", headers=admin)) == [
        {"name": "ingest", "jobs": 2}, {"name": "publish", "jobs": 1},
    ]  # fmt: skip
    body = {"group": "publish", "params": {"render": {"format": "pdf"}}}
    dry = ok(client.post("/groups/enqueue", json=body | {"dry_run": True}, headers=admin))
    assert dry["dry_run"] is True and dry["workflow_id"] is None and dry["target"] == "publish"
    assert [(j["name"], j["group"], j["reason"], j["depends_on"]) for j in dry["jobs"]] == [
        ("fetch", "ingest", "dependency of parse", []),
        ("parse", "ingest", "dependency of render", ["fetch"]),
        ("render", "publish", "member", ["parse"]),
    ]
    assert dry["jobs"][2]["payload"] == {"format": "pdf"}
    assert ok(client.get("/workflows", headers=admin))["workflows"] == []
    assert forge.list_jobs() == []

    real = ok(client.post("/groups/enqueue", json=body, headers=admin), 201)
    assert real["dry_run"] is False and real["jobs"] == dry["jobs"]
    wf = real["workflow_id"]
    assert ok(client.get(f"/workflows/{wf}", headers=admin))["tenant_id"] == "acme"
    jobs = names(client, admin, wf)
    assert set(jobs) == {"fetch", "parse", "render"} and jobs["render"]["payload"] == {
        "format": "pdf"
    }
    parents = ok(client.get(f"/dependencies/job/{jobs['render']['job_id']}/parents",
                            headers=admin))  # fmt: skip
    assert [p["name"] for p in parents] == ["parse"]  # the edge across groups
    run_until_idle(forge)
    assert ok(client.get(f"/workflows/{wf}", headers=admin))["status"] == "succeeded"
    done = names(client, admin, wf)
    assert at(done["render"]["started_at"]) >= at(done["parse"]["completed_at"])
    assert at(done["parse"]["started_at"]) >= at(done["fetch"]["completed_at"])

    everything = {"add", "fail", "fetch", "parse", "render"}
    before = len(forge.list_jobs())
    dry_all = ok(client.post("/groups/enqueue-all", json={"dry_run": True}, headers=admin))
    assert dry_all["target"] == "all" and {j["name"] for j in dry_all["jobs"]} == everything
    assert len(forge.list_jobs()) == before and dry_all["workflow_id"] is None
    all_ = ok(client.post("/groups/enqueue-all", json={}, headers=admin), 201)
    assert set(names(client, admin, all_["workflow_id"])) == everything

    error(client.post("/groups/enqueue", json={"group": "nope"}, headers=admin), 422,
          "group_not_found")  # fmt: skip
    error(client.post("/groups/enqueue", json={}, headers=admin), 422, "invalid")
    error(client.post("/groups/enqueue", json={"group": "ingest", "dry_run": [1]},
                      headers=admin), 422, "invalid")  # fmt: skip
    error(client.post("/groups/enqueue", json={"group": "ingest", "params": {"fetch": 3}},
                      headers=admin), 422, "invalid")  # fmt: skip
    error(client.post("/groups/enqueue-all", content=b"[", headers={**admin, **JSON}), 400,
          "malformed_json")  # fmt: skip
    assert len(forge.list_jobs()) == before + len(everything)
