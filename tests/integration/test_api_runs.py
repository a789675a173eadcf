"""/runs over HTTP, in process, on both backends: start a durable run (idempotently), read
it, deliver the event it waits for so that it completes, resume and cancel it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jobforge import Forge
from jobforge.testing import run_until_idle
from tests.integration.api_support import ISO_Z, JSON, TestClient, at, error, ok, unknown

RUN_FIELDS = {
    "run_id", "job_id", "name", "version", "input", "output", "status", "current_step", "error",
    "idempotency_key", "deadline", "tenant_id", "trace_id", "created_at", "started_at",
    "updated_at", "completed_at",
}  # fmt: skip


def start(client: TestClient, h: dict[str, str], **body: Any) -> dict[str, Any]:
    run: dict[str, Any] = ok(client.post("/runs/approval/start", json=body, headers=h), 201)
    return run


def get(client: TestClient, h: dict[str, str], run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = ok(client.get(f"/runs/{run_id}", headers=h))
    return run


def test_start_wait_for_the_event_and_complete(
    forge: Forge, client: TestClient, admin: dict[str, str]
) -> None:
    run = start(client, admin, input={"order": 7}, idempotency_key="order-7")
    assert set(run) == RUN_FIELDS
    assert (run["name"], run["version"], run["input"], run["status"]) == (
        "approval", 1, {"order": 7}, "created",
    )  # fmt: skip
    assert run["idempotency_key"] == "order-7" and run["tenant_id"] == "acme"
    assert run["run_id"].startswith("run_") and run["job_id"] == "job_" + run["run_id"][4:]
    assert ISO_Z.match(run["created_at"]) and ISO_Z.match(run["deadline"])
    # The same key gives the same run back, whatever the input; another key a new run.
    again = start(client, admin, input={"order": 8}, idempotency_key="order-7")
    assert again["run_id"] == run["run_id"] and again["input"] == {"order": 7}
    other = start(client, admin, input={"order": 8}, idempotency_key="order-8")
    assert other["run_id"] != run["run_id"]
    assert start(client, admin)["input"] == {}  # no body fields: an empty input

    run_until_idle(forge)  # each run records its step, then parks for the event
    waiting = get(client, admin, run["run_id"])
    assert waiting["status"] == "waiting" and waiting["output"] is None
    sent = client.post(f"/runs/{run['run_id']}/events/approved", json={"by": "ann"}, headers=admin)
    assert ok(sent, 202)["run_id"] == run["run_id"]
    run_until_idle(forge)
    done = get(client, admin, run["run_id"])
    assert done["status"] == "completed" and ISO_Z.match(done["completed_at"])
    assert done["output"] == {"approved_by": "ann", "input": {"order": 7}}
    assert get(client, admin, other["run_id"])["status"] == "waiting"  # not its event

    for verb in ("cancel", "resume"):
        assert "completed" in error(client.post(f"/runs/{run['run_id']}/{verb}", headers=admin),
                                    409, "invalid_transition")  # fmt: skip


def test_resume_and_cancel_a_waiting_run(
    forge: Forge, client: TestClient, admin: dict[str, str]
) -> None:
    to_cancel, to_resume = start(client, admin), start(client, admin)
    run_until_idle(forge)
    parked = ok(client.get(f"/jobs/{to_resume['job_id']}", headers=admin))
    assert at(parked["scheduled_at"]) > datetime.now(UTC) + timedelta(minutes=30)  # the wait
    resumed = ok(client.post(f"/runs/{to_resume['run_id']}/resume", headers=admin))
    assert resumed["run_id"] == to_resume["run_id"] and set(resumed) == RUN_FIELDS
    job = ok(client.get(f"/jobs/{to_resume['job_id']}", headers=admin))
    assert at(job["scheduled_at"]) <= datetime.now(UTC)  # due now: a worker takes it again
    ok(client.post(f"/runs/{to_cancel['run_id']}/cancel", headers=admin))
    run_until_idle(forge)
    assert get(client, admin, to_cancel["run_id"])["status"] == "cancelled"
    assert get(client, admin, to_resume["run_id"])["status"] == "waiting"  # waits again


def test_refused_run_requests(forge: Forge, client: TestClient, admin: dict[str, str]) -> None:
    missing = unknown("run")
    for method, path in (("GET", ""), ("POST", "/cancel"), ("POST", "/resume"),
                         ("POST", "/events/approved")):  # fmt: skip
        for ref in (missing, "nonsense"):
            response = client.request(method, f"/runs/{ref}{path}", headers=admin)
            assert ref in error(response, 404, "run_not_found")
    assert "nope" in error(client.post("/runs/nope/start", json={}, headers=admin), 422)
    error(client.post("/runs/approval/start", json={"input": [1]}, headers=admin), 422, "invalid")
    error(client.post("/runs/approval/start", json={"input": {}, "idempotency_key": ""},
                      headers=admin), 422, "invalid")  # fmt: skip
    error(client.post("/runs/approval/start", json={"inputs": {}}, headers=admin), 422, "invalid")
    error(client.post("/runs/approval/start", content=b"{", headers={**admin, **JSON}), 400,
          "malformed_json")  # fmt: skip
    run = start(client, admin)
    events = f"/runs/{run['run_id']}/events/approved"
    error(client.post(events, content=b"{nope", headers={**admin, **JSON}), 400,
          "malformed_json")  # fmt: skip
    for body in (b'{"by": NaN}', b"Infinity"):  # Python's JSON reads them; JSON does not
        error(client.post(events, content=body, headers={**admin, **JSON}), 422, "invalid")
    for kind in ({"content-type": "text/plain"}, {}):  # any body is data: it must be JSON
        error(client.post(events, content=b'{"by": "x"}', headers={**admin, **kind}), 400,
              "bad_content_type")  # fmt: skip
    over = {"by": "a" * forge.max_payload_bytes}
    assert "limit" in error(client.post(events, json=over, headers=admin), 413,
                            "payload_too_large")  # fmt: skip
    run_until_idle(forge)  # no event was stored: the run waits for one
    assert get(client, admin, run["run_id"])["status"] == "waiting"
