"""Tenant isolation over HTTP, on both backends.

Tenant `alpha` owns a job, edges, workflows (one from a group), durable runs. With an admin
key of tenant `beta`, every endpoint that takes an id must answer exactly what it answers for
an id that names nothing (404, never 403) and change nothing in the database; lists leave
alpha's objects out; links across tenants are refused; unique and idempotency keys are per
tenant; beta's change feed (the SSE stream and the store's reader) never carries alpha's
events. `CASES` must name every route that takes an id (`test_every_route_is_covered`).

The objects are made once per backend (module scope): each case that changes an object has
an object of its own, so the cases do not depend on their order.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from jobforge import Forge, apikeys
from jobforge.api.server import create_api
from jobforge.events import EventFilter, FeedCursor
from jobforge.testing import run_until_idle
from tests.apps.api_app import register
from tests.conftest import TEMPLATE_DB, with_dbname
from tests.integration.api_support import (
    CHEAP_SCRYPT,
    TestClient,
    enqueue,
    key,
    ok,
    routes,
    serving,
    sse_events,
    unknown,
)
from tests.integration.feed_support import settled_read

A, B = "alpha", "beta"
# What a refused request must leave as it was (keys and the change feed are not objects).
TABLES = ("jobforge_jobs", "jobforge_edges", "jobforge_workflows", "jobforge_runs",
          "jobforge_steps", "jobforge_run_events")  # fmt: skip


def chain(name: str, *types: str, policy: str = "fail_fast") -> dict[str, Any]:
    return {"name": name, "failure_policy": policy, "jobs": [
        {"name": f"s{i}", "type": t, "payload": {"a": i, "b": 1} if t == "add" else {},
         "depends_on": [f"s{i - 1}"] if i else []} for i, t in enumerate(types)
    ]}  # fmt: skip


@dataclass
class World:
    forge: Forge
    client: TestClient
    a: dict[str, str]  # alpha's admin key
    b: dict[str, str]  # beta's admin key
    default: dict[str, str]  # an admin key of tenant "default" (owns untagged rows)
    refs: dict[str, str]  # alpha's objects by role, plus "b_job" and "untagged"
    db: Any = None  # a second connection, to snapshot the tables
    live: httpx.Client | None = None  # a client of the same API under a real server

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        return {t: [tuple(r) for r in self.db.execute(f"SELECT * FROM {t} ORDER BY 1")]
                for t in TABLES}  # fmt: skip

    def post(self, path: str, headers: dict[str, str], body: Any = None, status: int = 201) -> Any:
        return ok(self.client.post(path, json=body, headers=headers), status)


def build(forge: Forge, client: TestClient) -> World:
    a, b = key(forge, A), key(forge, B)
    w = World(forge, client, a, b, key(forge, "default"), {})
    refs = w.refs
    # First what needs a worker: a workflow paused by a failure, runs parked on their event.
    refs["wf_to_resume"] = w.post("/workflows", a, chain("p", "add", "fail", policy="manual"))[
        "workflow_id"
    ]
    for role in ("run", "run_to_cancel", "run_to_resume", "run_to_signal"):
        refs[role] = w.post("/runs/approval/start", a, {"input": {"role": role}})["run_id"]
    run_until_idle(forge)
    # Then what must stay as it is made: no worker runs again.
    for role in ("job", "job_to_cancel", "job_to_retry", "parent", "del_parent"):
        refs[role] = enqueue(client, a)
    w.post(f"/jobs/{refs['job_to_retry']}/cancel", a, status=200)
    refs["child"] = enqueue(client, a, depends_on=[refs["parent"]])
    del_child = enqueue(client, a, depends_on=[refs["del_parent"]])
    refs["edge_to_delete"] = ok(client.get(f"/dependencies/job/{del_child}", headers=a))["parents"][
        0
    ]["id"]
    for role in ("wf", "wf_to_cancel", "wf_to_retry"):
        refs[role] = w.post("/workflows", a, chain(role, "add", "add"))["workflow_id"]
    w.post(f"/workflows/{refs['wf_to_retry']}/cancel", a, status=200)
    for role in ("group_wf", "group_wf_to_cancel"):
        refs[role] = w.post("/groups/enqueue", a, {"group": "publish"})["workflow_id"]
    group_jobs = ok(client.get(f"/jobs?workflow_id={refs['group_wf']}", headers=a))["jobs"]
    refs["group_job"] = group_jobs[0]["job_id"]
    refs["job_uuid"] = str(uuid.UUID(refs["job"][4:]))
    refs["run_job"] = "job_" + refs["run"][4:]  # the job that carries the run
    refs["b_job"] = enqueue(client, b)
    refs["untagged"] = forge.enqueue("add", {"a": 1, "b": 1})  # no tenant: "default"'s
    checks = [(f"/workflows/{refs['wf_to_resume']}", "paused")] + [
        (f"/runs/{refs[r]}", "waiting")
        for r in ("run", "run_to_cancel", "run_to_resume", "run_to_signal")
    ]
    for path, status in checks:
        assert ok(client.get(path, headers=a))["status"] == status, path
    return w


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(apikeys, "_SCRYPT", CHEAP_SCRYPT)
        if request.param == "sqlite":
            path = tmp_path_factory.mktemp("tenants") / "jobforge.db"
            yield from _world(f"sqlite:///{path}", lambda: sqlite3.connect(f"file:{path}?mode=ro",
                                                                          uri=True))  # fmt: skip
            return
        server = request.getfixturevalue("pg_template")
        name = "jf_" + uuid.uuid4().hex[:12]
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
        url = with_dbname(server, name)
        try:
            yield from _world(url, lambda: psycopg.connect(url, autocommit=True))
        finally:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _world(url: str, connect: Callable[[], Any]) -> Iterator[World]:
    forge = register(Forge(url))
    try:
        with (
            TestClient(create_api(forge)) as client,
            serving(create_api(forge)) as base,
            httpx.Client(base_url=base, timeout=20) as live,
        ):
            w = build(forge, client)
            w.db, w.live = connect(), live
            try:
                yield w
            finally:
                w.db.close()
    finally:
        forge.close()


# -- every endpoint that takes an id -----------------------------------------------------


@dataclass(frozen=True)
class Case:
    route: tuple[str, str]  # (method, path template), as in the OpenAPI document
    target: str  # the role of alpha's object in World.refs
    path: str = ""  # the request's path, "{ref}" standing for the object's id
    body: Callable[[str, dict[str, str]], Any] | None = None  # (ref, refs) -> JSON body
    owner: int | None = 200  # alpha's own answer; None: not asked (the stream would open)
    live: bool = False  # through the real server: a stream that opens must not hang the test

    @property
    def id(self) -> str:
        return f"{self.route[0]} {self.path or self.route[1]} [{self.target}]"


def _case(method: str, template: str, target: str, **kw: Any) -> Case:
    param = template[template.find("{") : template.find("}") + 1] if "{" in template else ""
    path = kw.pop("path", template.replace(param, "{ref}") if param else template)
    return Case((method, template), target, path, **kw)


CASES = [
    _case("GET", "/jobs/{job_id}", "job"),
    _case("GET", "/jobs/{job_id}", "job_uuid"),
    _case("GET", "/jobs/{job_id}", "group_job"),
    _case("GET", "/jobs/{job_id}", "run_job"),
    _case("POST", "/jobs/{job_id}/cancel", "job_to_cancel"),
    _case("POST", "/jobs/{job_id}/retry", "job_to_retry"),
    _case("GET", "/jobs", "wf", path="/jobs?workflow_id={ref}"),
    _case("POST", "/jobs", "job", owner=202,
          body=lambda ref, _: {"type": "add", "payload": {"a": 1, "b": 1}, "depends_on": [ref]}),
    _case("POST", "/jobs", "parent", owner=None,  # beta's own job first, then alpha's
          body=lambda ref, refs: {"type": "add", "payload": {"a": 1, "b": 1}, "depends_on": [
              refs["b_job"], {"job_id": ref, "type": "conditional", "condition": "sum > 1"}]}),
    # alpha cannot name beta's job either: these two are refused for both.
    _case("POST", "/dependencies", "job", owner=None,
          body=lambda ref, refs: {"parent_job_id": ref, "child_job_id": refs["b_job"]}),
    _case("POST", "/dependencies", "job", owner=None,
          body=lambda ref, refs: {"parent_job_id": refs["b_job"], "child_job_id": ref}),
    _case("POST", "/dependencies/check", "child", body=lambda ref, _: {"job_id": ref}),
    _case("GET", "/dependencies/job/{job_id}", "child"),
    _case("GET", "/dependencies/job/{job_id}/parents", "child"),
    _case("GET", "/dependencies/job/{job_id}/children", "parent"),
    _case("DELETE", "/dependencies/{dependency_id}", "edge_to_delete", owner=204),
    _case("GET", "/workflows/{workflow_id}", "wf"),
    _case("GET", "/workflows/{workflow_id}", "group_wf"),
    _case("GET", "/workflows/{workflow_id}/stats", "wf"),
    _case("GET", "/workflows/{workflow_id}/graph", "wf"),
    _case("GET", "/workflows/{workflow_id}/graph", "group_wf",
          path="/workflows/{ref}/graph?format=dot"),
    _case("POST", "/workflows/{workflow_id}/cancel", "wf_to_cancel"),
    _case("POST", "/workflows/{workflow_id}/cancel", "group_wf_to_cancel"),
    _case("POST", "/workflows/{workflow_id}/retry", "wf_to_retry"),
    _case("POST", "/workflows/{workflow_id}/resume", "wf_to_resume"),
    _case("GET", "/runs/{run_id}", "run"),
    _case("GET", "/runs/{run_id}", "run_job"),
    _case("POST", "/runs/{run_id}/cancel", "run_to_cancel"),
    _case("POST", "/runs/{run_id}/resume", "run_to_resume"),
    _case("POST", "/runs/{run_id}/events/{name}", "run_to_signal", owner=202,
          path="/runs/{ref}/events/approved", body=lambda ref, _: {"by": "mallory"}),
    _case("GET", "/events", "job", owner=None, live=True, path="/events?job_id={ref}"),
    _case("GET", "/events", "run", owner=None, live=True, path="/events?run_id={ref}"),
    _case("GET", "/events", "wf", owner=None, live=True, path="/events?workflow_id={ref}"),
]  # fmt: skip
# Routes that take no id of an existing object, and the test that covers them.
NO_ID = {
    ("GET", "/jobs"): "test_lists_show_only_the_callers_objects (and the workflow_id case)",
    ("GET", "/workflows"): "test_lists_show_only_the_callers_objects",
    ("POST", "/workflows"): "test_new_objects_belong_to_the_caller",
    ("GET", "/groups"): "the app's registry: no tenant data",
    ("POST", "/groups/enqueue"): "test_new_objects_belong_to_the_caller",
    ("POST", "/groups/enqueue-all"): "test_new_objects_belong_to_the_caller",
    ("POST", "/runs/{name}/start"): "test_unique_and_idempotency_keys_are_per_tenant",
    ("GET", "/events"): "test_the_feed_of_one_tenant_never_carries_anothers (and the cases)",
    ("GET", "/health"): "no data",
    ("GET", "/metrics"): "admin only, counts of every tenant (by design)",
}


def unknown_like(ref: str) -> str:
    """An id of the same form as `ref` that names nothing."""
    for prefix in ("job", "wf", "run"):
        if ref.startswith(prefix + "_"):
            return unknown(prefix)
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    text: str  # "" when the response was a stream (left unread)


def call(w: World, case: Case, ref: str, headers: dict[str, str]) -> Reply:
    method, path = case.route[0], case.path.format(ref=ref)
    body = None if case.body is None else case.body(ref, w.refs)
    if not case.live:
        r = w.client.request(method, path, json=body, headers=headers)
        return Reply(r.status_code, r.headers.get("content-type", ""), r.text)
    assert w.live is not None
    with w.live.stream(method, path, json=body, headers=headers) as r:
        streaming = r.headers["content-type"].startswith("text/event-stream")
        return Reply(
            r.status_code, r.headers["content-type"], "" if streaming else r.read().decode()
        )


def test_every_route_is_covered(world: World) -> None:
    covered = {c.route for c in CASES} | set(NO_ID)
    assert covered == routes(world.client.app)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_another_tenants_object_is_not_found(world: World, case: Case) -> None:
    ref = world.refs[case.target]
    before = world.snapshot()
    theirs = call(world, case, ref, world.b)
    assert world.snapshot() == before, "beta's request changed the database"
    other = unknown_like(ref)
    nothing = call(world, case, other, world.b)
    assert theirs.status == nothing.status == 404, (theirs, nothing)
    assert theirs.text.replace(ref, "<id>") == nothing.text.replace(other, "<id>")
    assert theirs.content_type == nothing.content_type == "application/json"
    assert json.loads(theirs.text)["error"]["code"].endswith("_not_found")
    if case.owner is not None:
        mine = call(world, case, ref, world.a)
        assert mine.status == case.owner, mine  # alpha's object, and it can act


def job_ids(w: World, headers: dict[str, str], query: str = "") -> set[str]:
    return {j["job_id"] for j in ok(w.client.get(f"/jobs?limit=1000&{query}", headers=headers))[
        "jobs"
    ]}  # fmt: skip


def test_lists_show_only_the_callers_objects(world: World) -> None:
    w, refs = world, world.refs
    alphas, betas, defaults = job_ids(w, w.a), job_ids(w, w.b), job_ids(w, w.default)
    assert {refs["job"], refs["child"], refs["group_job"], refs["run_job"]} <= alphas
    assert refs["b_job"] in betas and refs["untagged"] in defaults
    assert not alphas & betas and not alphas & defaults and not betas & defaults
    for query in ("status=queued", "status=waiting", "status=cancelled", "type=add",
                  "queue=default", "type=approval"):  # fmt: skip
        assert not job_ids(w, w.b, query) & alphas, query
        assert job_ids(w, w.a, query) <= alphas, query

    def workflows(headers: dict[str, str]) -> set[str]:
        listed = ok(w.client.get("/workflows?limit=500", headers=headers))["workflows"]
        return {x["workflow_id"] for x in listed}

    mine = {refs[r] for r in ("wf", "wf_to_resume", "group_wf")}
    assert mine <= workflows(w.a) and not workflows(w.b) & mine
    assert not workflows(w.default) & mine


def test_links_across_tenants_are_refused(world: World) -> None:
    """Even with auth off (which sees every tenant) an edge between two tenants' jobs is
    refused, and nothing is written."""
    w = world
    before = w.snapshot()
    with TestClient(create_api(w.forge, auth=False)) as anyone:
        for parent, child in ((w.refs["job"], w.refs["b_job"]), (w.refs["b_job"], w.refs["job"])):
            body = {"parent_job_id": parent, "child_job_id": child}
            refused = anyone.post("/dependencies", json=body)
            assert refused.status_code == 422 and "tenant" in refused.json()["error"]["message"]
    assert w.snapshot() == before


def test_unique_and_idempotency_keys_are_per_tenant(world: World) -> None:
    w = world
    first = enqueue(w.client, w.a, unique_key="shared-key")
    theirs = enqueue(w.client, w.b, unique_key="shared-key")
    assert theirs != first
    assert ok(w.client.get(f"/jobs/{theirs}", headers=w.b))["tenant_id"] == B
    assert w.client.get(f"/jobs/{theirs}", headers=w.a).status_code == 404
    assert enqueue(w.client, w.a, unique_key="shared-key") == first
    assert enqueue(w.client, w.b, unique_key="shared-key") == theirs

    start = "/runs/approval/start"
    run_a = w.post(start, w.a, {"input": {"who": "a"}, "idempotency_key": "shared-key"})
    run_b = w.post(start, w.b, {"input": {"who": "b"}, "idempotency_key": "shared-key"})
    assert run_b["run_id"] != run_a["run_id"] and run_b["input"] == {"who": "b"}
    assert (run_b["tenant_id"], run_b["idempotency_key"]) == (B, "shared-key")
    assert w.post(start, w.a, {"idempotency_key": "shared-key"})["run_id"] == run_a["run_id"]
    assert w.client.get(f"/runs/{run_a['run_id']}", headers=w.b).status_code == 404


def test_the_default_tenant_owns_untagged_rows(world: World) -> None:
    """What Python enqueues without a tenant is the "default" tenant's: its key can link to
    it and meets its unique keys (and no other tenant does)."""
    w = world
    untagged = w.forge.enqueue("add", {"a": 1, "b": 1}, unique_key="py-key")
    assert enqueue(w.client, w.default, unique_key="py-key") == untagged
    assert enqueue(w.client, w.b, unique_key="py-key") != untagged
    child = enqueue(w.client, w.default, depends_on=[untagged])
    assert ok(w.client.get(f"/jobs/{child}", headers=w.default))["status"] == "waiting"
    other = enqueue(w.client, w.default)
    w.post("/dependencies", w.default, {"parent_job_id": untagged, "child_job_id": other})
    start = "/runs/approval/start"
    run = w.post(start, w.default, {"idempotency_key": "d-key"})
    assert run["idempotency_key"] == "d-key" and run["tenant_id"] is None
    assert w.post(start, w.default, {"idempotency_key": "d-key"})["run_id"] == run["run_id"]
    betas = w.post(start, w.b, {"idempotency_key": "d-key"})["run_id"]
    assert betas != run["run_id"]
    # Keys are scoped by tenant name, so none can be made to name another tenant's.
    fresh = w.post(start, w.default, {"idempotency_key": "beta:d-key"})
    assert fresh["run_id"] not in (betas, run["run_id"]) and fresh["tenant_id"] is None
    wf = w.post("/workflows", w.default, chain("mine", "add"))["workflow_id"]
    assert ok(w.client.get(f"/workflows/{wf}", headers=w.default))["workflow_id"] == wf
    assert w.client.get(f"/workflows/{wf}", headers=w.b).status_code == 404


def test_new_objects_belong_to_the_caller(world: World) -> None:
    w = world
    # A definition naming another tenant still makes the caller's workflow.
    wf = w.post("/workflows", w.b, {**chain("sneaky", "add"), "tenant_id": A})["workflow_id"]
    assert ok(w.client.get(f"/workflows/{wf}", headers=w.b))["tenant_id"] == B
    assert w.client.get(f"/workflows/{wf}", headers=w.a).status_code == 404
    group = w.post("/groups/enqueue", w.b, {"group": "ingest"})["workflow_id"]
    everything = w.post("/groups/enqueue-all", w.b, {})["workflow_id"]
    for ref in (group, everything):
        assert ok(w.client.get(f"/workflows/{ref}", headers=w.b))["tenant_id"] == B
        assert w.client.get(f"/workflows/{ref}", headers=w.a).status_code == 404
        jobs = ok(w.client.get(f"/jobs?workflow_id={ref}", headers=w.b))["jobs"]
        assert jobs and {j["tenant_id"] for j in jobs} == {B}


# -- the change feed ---------------------------------------------------------------------


def test_the_store_feed_filters_by_tenant(world: World) -> None:
    store, refs = world.forge.store, world.refs
    start = FeedCursor(0, 0)
    events = {t: settled_read(store, start, EventFilter(tenant=t), 10_000).events
              for t in (A, B, "default")}  # fmt: skip
    assert {e.tenant_id for e in events[A]} == {A}
    assert {e.tenant_id for e in events[B]} == {B}
    assert {e.tenant_id for e in events["default"]} <= {None, "default"}
    assert {e.kind for e in events[A]} == {"job", "workflow", "run"}

    def objects(tenant: str) -> set[str]:
        return {
            e.to_dict().get("job_id") or e.to_dict().get("run_id") or "" for e in events[tenant]
        }

    assert {refs["job"], refs["run"]} <= objects(A)
    assert refs["b_job"] in objects(B) and refs["untagged"] in objects("default")
    assert not objects(B) & objects(A) - {""}


def test_the_feed_of_one_tenant_never_carries_anothers(world: World) -> None:
    """Over a real server: beta's stream, open while alpha's jobs change, carries only
    beta's events (alpha's own stream shows alpha's did happen)."""
    w = world
    assert w.live is not None
    with (
        w.live.stream("GET", "/events", headers=w.b) as b_stream,
        w.live.stream("GET", "/events", headers=w.a) as a_stream,
    ):
        assert b_stream.status_code == a_stream.status_code == 200
        assert b_stream.headers["content-type"].startswith("text/event-stream")
        a_jobs = [enqueue(w.client, w.a) for _ in range(3)]
        w.post(f"/jobs/{a_jobs[0]}/cancel", w.a, status=200)
        a_wf = w.post("/workflows", w.a, chain("live", "add"))["workflow_id"]
        marker = enqueue(w.client, w.b)  # after alpha's: beta sees it last
        seen_b = []
        for event in sse_events(b_stream):
            seen_b.append(event["data"])
            if event["data"].get("job_id") == marker:
                break
        seen_a = []
        for event in sse_events(a_stream):
            seen_a.append(event["data"])
            if event["data"].get("workflow_id") == a_wf and event["event"] == "workflow":
                break
    assert {e.get("job_id") for e in seen_a} >= set(a_jobs)
    assert not {e.get("job_id") for e in seen_b} & set(a_jobs)
    assert a_wf not in {e.get("workflow_id") for e in seen_b}
    assert marker not in {e.get("job_id") for e in seen_a}


def test_sse_helper_parses_what_the_server_sends() -> None:
    """The reader above must not skip events: a frame split across lines, a comment."""
    text = b'retry: 1000\n\n: keepalive\n\nid: 0-5\nevent: job\ndata: {"job_id": "x"}\n\n'
    response = httpx.Response(200, content=text)
    assert list(sse_events(response)) == [{"id": "0-5", "event": "job", "data": {"job_id": "x"}}]
