"""Keys, permissions and operations over HTTP, in process, on both backends: 401 without a
live key, 403 without the permission (each route's permission checked against a table
that must name every route), /health, /metrics, error bodies of the framework's own
errors, and auth off."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobforge import Forge, apikeys
from jobforge.api.server import create_api
from jobforge.testing import run_until_idle
from tests.integration.api_support import (
    ALL_PERMISSIONS,
    TestClient,
    enqueue,
    error,
    key,
    ok,
    routes,
    unknown,
)

REAL_SCRYPT = dict(apikeys._SCRYPT)
JOB, WF, RUN = unknown("job"), unknown("wf"), unknown("run")
DEFINITION = {"name": "p", "jobs": [{"name": "a", "type": "add", "payload": {"a": 1, "b": 1}}]}
# Every route: a request that passes validation, and the permissions that allow it (any
# one of them; admin allows all). None: no key needed.
ROUTES: dict[tuple[str, str], tuple[str, dict[str, Any] | None, tuple[str, ...] | None]] = {
    ("POST", "/jobs"): ("/jobs", {"type": "add", "payload": {"a": 1, "b": 1}}, ("jobs:write",)),
    ("GET", "/jobs"): ("/jobs", None, ("jobs:read",)),
    ("GET", "/jobs/{job_id}"): (f"/jobs/{JOB}", None, ("jobs:read",)),
    ("POST", "/jobs/{job_id}/cancel"): (f"/jobs/{JOB}/cancel", None, ("jobs:write",)),
    ("POST", "/jobs/{job_id}/retry"): (f"/jobs/{JOB}/retry", None, ("jobs:write",)),
    ("POST", "/dependencies"): ("/dependencies", {"parent_job_id": JOB, "child_job_id": JOB},
                                ("dependencies:write",)),
    ("POST", "/dependencies/check"): ("/dependencies/check", {"job_id": JOB},
                                      ("dependencies:read",)),
    ("GET", "/dependencies/job/{job_id}"): (f"/dependencies/job/{JOB}", None,
                                            ("dependencies:read",)),
    ("GET", "/dependencies/job/{job_id}/parents"): (f"/dependencies/job/{JOB}/parents", None,
                                                    ("dependencies:read",)),
    ("GET", "/dependencies/job/{job_id}/children"): (f"/dependencies/job/{JOB}/children", None,
                                                     ("dependencies:read",)),
    ("DELETE", "/dependencies/{dependency_id}"): ("/dependencies/0a0b", None,
                                                  ("dependencies:write",)),
    ("POST", "/workflows"): ("/workflows", DEFINITION, ("workflows:write",)),
    ("GET", "/workflows"): ("/workflows", None, ("workflows:read",)),
    ("GET", "/workflows/{workflow_id}"): (f"/workflows/{WF}", None, ("workflows:read",)),
    ("GET", "/workflows/{workflow_id}/stats"): (f"/workflows/{WF}/stats", None,
                                                ("workflows:read",)),
    ("GET", "/workflows/{workflow_id}/graph"): (f"/workflows/{WF}/graph", None,
                                                ("workflows:read",)),
    ("POST", "/workflows/{workflow_id}/cancel"): (f"/workflows/{WF}/cancel", None,
                                                  ("workflows:write",)),
    ("POST", "/workflows/{workflow_id}/retry"): (f"/workflows/{WF}/retry", None,
                                                 ("workflows:write",)),
    ("POST", "/workflows/{workflow_id}/resume"): (f"/workflows/{WF}/resume", None,
                                                  ("workflows:write",)),
    ("GET", "/groups"): ("/groups", None, ("workflows:read",)),
    ("POST", "/groups/enqueue"): ("/groups/enqueue", {"group": "ingest", "dry_run": True},
                                  ("workflows:write",)),
    ("POST", "/groups/enqueue-all"): ("/groups/enqueue-all", {"dry_run": True},
                                      ("workflows:write",)),
    ("POST", "/runs/{name}/start"): ("/runs/approval/start", {}, ("workflows:write",)),
    ("GET", "/runs/{run_id}"): (f"/runs/{RUN}", None, ("workflows:read",)),
    ("POST", "/runs/{run_id}/cancel"): (f"/runs/{RUN}/cancel", None, ("workflows:write",)),
    ("POST", "/runs/{run_id}/resume"): (f"/runs/{RUN}/resume", None, ("workflows:write",)),
    ("POST", "/runs/{run_id}/events/{name}"): (f"/runs/{RUN}/events/go", {},
                                               ("workflows:write",)),
    # With a filter on an unknown job the stream is refused (404) before it opens.
    ("GET", "/events"): (f"/events?job_id={JOB}", None, ("jobs:read", "workflows:read")),
    ("GET", "/metrics"): ("/metrics", None, ("admin",)),
    ("GET", "/health"): ("/health", None, None),
}  # fmt: skip


def call(client: TestClient, route: tuple[str, str], headers: dict[str, str]) -> Any:
    path, body, _ = ROUTES[route]
    return client.request(route[0], path, json=body, headers=headers)


def test_the_permission_table_names_every_route(forge: Forge) -> None:
    assert routes(create_api(forge)) == set(ROUTES)


def test_each_route_needs_its_permission(forge: Forge, client: TestClient) -> None:
    admin = key(forge, "acme")
    for route, (_, _, needed) in ROUTES.items():
        if needed is None:
            assert call(client, route, {}).status_code == 200, route
            continue
        error(call(client, route, {}), 401, "unauthorized")
        others = [p for p in ALL_PERMISSIONS if p not in needed]
        denied = call(client, route, key(forge, "acme", *others))
        assert needed[0] in error(denied, 403, "forbidden"), route
        for permission in needed:
            allowed = call(client, route, key(forge, "acme", permission))
            assert allowed.status_code not in (401, 403), (route, permission, allowed.text)
        allowed = call(client, route, admin)
        assert allowed.status_code in (200, 201, 202, 404), (route, allowed.text)


def test_missing_wrong_and_revoked_keys_are_401(
    forge: Forge, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apikeys, "_SCRYPT", REAL_SCRYPT)  # this key at its real cost
    api_key, token = apikeys.create(forge.store, "acme", ["jobs:read"])
    assert api_key.tenant_id == "acme" and token.startswith(f"jf_{api_key.id}_")
    good = {"Authorization": f"Bearer {token}"}
    assert ok(client.get("/jobs", headers=good))["jobs"] == []
    assert ok(client.get("/jobs", headers={"Authorization": f"bearer {token}"}))["jobs"] == []
    secret = token.rsplit("_", 1)[1]
    wrong_secret = token.replace(secret, ("A" if secret[0] != "A" else "B") + secret[1:])
    other_id = f"jf_{'0' * 12}_{secret}"
    for name, headers in {
        "none": {},
        "empty bearer": {"Authorization": "Bearer "},
        "other scheme": {"Authorization": f"Basic {token}"},
        "garbage": {"Authorization": "Bearer not-a-key"},
        "wrong secret": {"Authorization": f"Bearer {wrong_secret}"},
        "unknown id": {"Authorization": f"Bearer {other_id}"},
    }.items():
        assert error(client.get("/jobs", headers=headers), 401, "unauthorized"), name
    revoked = apikeys.revoke(forge.store, api_key.id)
    assert revoked.revoked_at is not None
    # Verified a moment ago, refused now: revocation is read on every request.
    error(client.get("/jobs", headers=good), 401, "unauthorized")
    assert [k.id for k in apikeys.list_keys(forge.store, "acme")] == [api_key.id]


def test_health_openapi_and_framework_errors(forge: Forge, client: TestClient) -> None:
    health = ok(client.get("/health"))
    expected = "sqlite" if forge.url.startswith("sqlite") else "postgresql"
    assert health["status"] == "ok" and health["database"].startswith(expected[:8])
    assert isinstance(health["schema_version"], int) and health["schema_version"] >= 6
    spec = ok(client.get("/openapi.json"))
    assert {path for _, path in ROUTES} <= set(spec["paths"])
    error(client.get("/no/such/route"), 404, "not_found")
    error(client.put("/jobs", headers=key(forge, "acme")), 405, "method_not_allowed")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_in_prometheus_format(
    forge: Forge, client: TestClient, admin: dict[str, str]
) -> None:
    enqueue(client, admin)
    enqueue(client, admin, "fail")
    run_until_idle(forge)
    enqueue(client, admin)
    enqueue(client, admin)
    enqueue(client, admin, queue="emails", delay=600)
    ok(client.post("/runs/approval/start", json={}, headers=admin), 201)
    response = client.get("/metrics", headers=admin)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    got = samples(response.text)

    def value(name: str, **labels: str) -> float | None:
        return got.get((name, tuple(sorted(labels.items()))))

    assert value("jobforge_jobs", queue="default", status="succeeded") == 1
    assert value("jobforge_jobs", queue="default", status="failed") == 1
    assert value("jobforge_jobs", queue="default", status="queued") == 3  # with the run's job
    assert value("jobforge_jobs", queue="emails", status="scheduled") == 1
    assert value("jobforge_queue_depth", queue="default") == 3
    assert value("jobforge_queue_depth", queue="emails") == 1
    assert value("jobforge_jobs_finished_recent", type="fail", status="failed") == 1
    assert value("jobforge_jobs_finished_recent", type="add", status="succeeded") == 1
    assert value("jobforge_job_run_seconds_count", type="add") == 1
    assert value("jobforge_runs", status="created") == 1
    assert value("jobforge_workers") is not None
    # Counts cover every tenant: no other key reads them.
    error(client.get("/metrics", headers=key(forge, "acme", *ALL_PERMISSIONS)), 403, "forbidden")
    error(client.get("/metrics"), 401, "unauthorized")


def test_auth_off_needs_no_key_and_sees_every_tenant(forge: Forge) -> None:
    mine = forge.enqueue("add", {"a": 1, "b": 1}, tenant_id="acme")
    untagged = forge.enqueue("add", {"a": 1, "b": 1})
    with TestClient(create_api(forge, auth=False)) as client:
        listed = {j["job_id"] for j in ok(client.get("/jobs"))["jobs"]}
        assert listed == {mine, untagged}
        assert ok(client.get(f"/jobs/{mine}"))["tenant_id"] == "acme"
        new = enqueue(client, {})
        assert ok(client.get(f"/jobs/{new}"))["tenant_id"] is None
        assert "jobforge_jobs{" in client.get("/metrics").text
        run = ok(client.post("/runs/approval/start", json={"idempotency_key": "k"}), 201)
        assert run["idempotency_key"] == "k" and run["tenant_id"] is None
