"""/dependencies over HTTP, in process, on both backends: add (201; cycles and missing jobs
refused), check, list a job's edges, parents and children, and remove (204, releasing the
child)."""

from __future__ import annotations

from typing import Any

from jobforge import Forge
from jobforge.testing import run_until_idle
from tests.integration.api_support import ISO_Z, TestClient, enqueue, error, ok, unknown

EDGE_FIELDS = {
    "id", "parent_id", "child_id", "dependency_type", "condition", "status", "workflow_id",
    "created_at", "resolved_at", "resolved_by",
}  # fmt: skip


def link(client: TestClient, h: dict[str, str], parent: str, child: str, **extra: Any) -> Any:
    body = {"parent_job_id": parent, "child_job_id": child, **extra}
    return client.post("/dependencies", json=body, headers=h)


def check(client: TestClient, h: dict[str, str], job_id: str) -> Any:
    return ok(client.post("/dependencies/check", json={"job_id": job_id}, headers=h))


def test_add_check_list_and_remove_a_dependency(
    forge: Forge, client: TestClient, admin: dict[str, str]
) -> None:
    parent, child, grandchild = (enqueue(client, admin) for _ in range(3))
    assert check(client, admin, child) == {
        "job_id": child, "can_execute": True, "pending_dependencies": 0,
        "failed_dependencies": 0, "dependency_status": "none",
    }  # fmt: skip
    edge = ok(link(client, admin, parent, child), 201)
    assert set(edge) == EDGE_FIELDS and ISO_Z.match(edge["created_at"])
    assert (edge["parent_id"], edge["child_id"], edge["status"]) == (parent, child, "pending")
    assert (edge["dependency_type"], edge["condition"]) == ("sequential", "succeeded")
    ok(link(client, admin, child, grandchild, dependency_type="conditional",
            condition="sum > 2"), 201)  # fmt: skip
    assert ok(client.get(f"/jobs/{child}", headers=admin))["status"] == "waiting"
    assert check(client, admin, child) | {"dependency_status": None} == {
        "job_id": child, "can_execute": False, "pending_dependencies": 1,
        "failed_dependencies": 0, "dependency_status": None,
    }  # fmt: skip
    # The same edge again is a conflict, not a second edge.
    error(link(client, admin, parent, child), 409, "duplicate_dependency")

    edges = ok(client.get(f"/dependencies/job/{child}", headers=admin))
    assert edges["job_id"] == child
    assert [e["id"] for e in edges["parents"]] == [edge["id"]]
    assert [(e["child_id"], e["dependency_type"], e["condition"]) for e in edges["children"]] == [
        (grandchild, "conditional", "sum > 2")
    ]
    top = ok(client.get(f"/dependencies/job/{parent}", headers=admin))
    assert top["parents"] == [] and [e["id"] for e in top["children"]] == [edge["id"]]
    parents = ok(client.get(f"/dependencies/job/{child}/parents", headers=admin))
    children = ok(client.get(f"/dependencies/job/{child}/children", headers=admin))
    assert [j["job_id"] for j in parents] == [parent] and parents[0]["type"] == "add"
    assert [j["job_id"] for j in children] == [grandchild]
    assert ok(client.get(f"/dependencies/job/{parent}/parents", headers=admin)) == []

    # Removing the only edge into `child` releases it at once.
    removed = client.delete(f"/dependencies/{edge['id']}", headers=admin)
    assert removed.status_code == 204 and removed.content == b""
    assert ok(client.get(f"/jobs/{child}", headers=admin))["status"] == "queued"
    assert check(client, admin, child)["can_execute"] is True
    assert ok(client.get(f"/dependencies/job/{child}", headers=admin))["parents"] == []
    error(client.delete(f"/dependencies/{edge['id']}", headers=admin), 404,
          "dependency_not_found")  # fmt: skip
    run_until_idle(forge)
    assert ok(client.get(f"/jobs/{grandchild}", headers=admin))["status"] == "succeeded"


def test_cycles_are_refused_with_the_cycle_named(
    forge: Forge, client: TestClient, admin: dict[str, str]
) -> None:
    a, b, c = (enqueue(client, admin) for _ in range(3))
    ok(link(client, admin, a, b), 201)
    ok(link(client, admin, b, c), 201)
    message = error(link(client, admin, c, a), 422, "circular_dependency")
    assert a in message and c in message
    assert message.index(a) < message.index(c) < message.rindex(a)  # a -> ... -> c -> a
    assert a in error(link(client, admin, a, a), 422, "circular_dependency")
    assert ok(client.get(f"/dependencies/job/{a}", headers=admin))["parents"] == []
    assert ok(client.get(f"/jobs/{a}", headers=admin))["status"] == "queued"


def test_refused_dependencies(forge: Forge, client: TestClient, admin: dict[str, str]) -> None:
    a, b = enqueue(client, admin), enqueue(client, admin)
    missing = unknown("job")
    assert missing in error(link(client, admin, missing, b), 404, "job_not_found")
    assert missing in error(link(client, admin, a, missing), 404, "job_not_found")
    error(link(client, admin, "nonsense", b), 404, "job_not_found")
    error(link(client, admin, a, b, dependency_type="sometimes"), 422, "invalid")
    error(link(client, admin, a, b, dependency_type="conditional", condition="((("), 422,
          "bad_condition")  # fmt: skip
    error(client.post("/dependencies", json={"parent_job_id": a}, headers=admin), 422, "invalid")
    error(client.post("/dependencies", content=b"{", headers={
        **admin, "content-type": "application/json"}), 400, "malformed_json")  # fmt: skip
    error(client.post("/dependencies/check", json={"job_id": missing}, headers=admin), 404,
          "job_not_found")  # fmt: skip
    error(client.post("/dependencies/check", json={}, headers=admin), 422, "invalid")
    for path in ("", "/parents", "/children"):
        error(client.get(f"/dependencies/job/{missing}{path}", headers=admin), 404,
              "job_not_found")  # fmt: skip
    for ref in ("nonsense", "00000000-0000-0000-0000-000000000000"):
        error(client.delete(f"/dependencies/{ref}", headers=admin), 404, "dependency_not_found")
    # A child that has finished cannot be made to wait.
    run_until_idle(forge)
    c = enqueue(client, admin)
    assert "succeeded" in error(link(client, admin, c, a), 409, "invalid_transition")
    assert ok(client.get(f"/dependencies/job/{a}", headers=admin))["parents"] == []


def test_a_failed_parent_shows_in_the_check(
    forge: Forge, client: TestClient, admin: dict[str, str]
) -> None:
    parent = enqueue(client, admin, "fail")
    child = enqueue(client, admin, depends_on=[parent])
    run_until_idle(forge)
    got = check(client, admin, child)
    assert (got["can_execute"], got["pending_dependencies"], got["failed_dependencies"]) == (
        False, 0, 1,
    )  # fmt: skip
    assert ok(client.get(f"/jobs/{child}", headers=admin))["status"] == "skipped"
