"""/jobs over HTTP, in process, on both backends: enqueue, read, list and page, cancel,
retry, and every way a request is refused (nothing written when it is)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from jobforge import Forge
from jobforge.testing import run_until_idle
from tests.integration.api_support import ISO_Z, JSON, TestClient, at, enqueue, error, ok, unknown

JOB_FIELDS = {
    "job_id", "type", "queue", "status", "payload", "priority", "scheduled_at", "attempts",
    "max_attempts", "timeout", "progress", "progress_message", "result", "result_url", "errors",
    "tenant_id", "trace_id", "correlation_id", "worker_id", "created_at", "updated_at",
    "started_at", "completed_at", "workflow_id", "name", "dependency_status", "pending_parents",
    "reason", "cancel_requested", "unique_key",
}  # fmt: skip
TIMES = ("scheduled_at", "created_at", "updated_at", "started_at", "completed_at")


def assert_times(job: dict[str, Any]) -> None:
    for name in TIMES:
        assert job[name] is None or ISO_Z.match(job[name]), (name, job[name])


def test_enqueue_returns_202_and_the_job_reads_back_through_its_life(
    forge: Forge, client: TestClient, admin: dict[str, str]
) -> None:
    accepted = ok(client.post("/jobs", json={"type": "add", "payload": {"a": 2, "b": 3}},
                              headers=admin), 202)  # fmt: skip
    assert set(accepted) == {"job_id", "status", "created_at"}
    assert accepted["status"] == "queued" and ISO_Z.match(accepted["created_at"])
    job_id = accepted["job_id"]
    assert job_id.startswith("job_") and len(job_id) == 36

    job = ok(client.get(f"/jobs/{job_id}", headers=admin))
    assert set(job) == JOB_FIELDS
    assert (job["job_id"], job["type"], job["status"], job["payload"]) == (
        job_id, "add", "queued", {"a": 2, "b": 3},
    )  # fmt: skip
    assert job["created_at"] == accepted["created_at"] and job["tenant_id"] == "acme"
    assert (job["progress"], job["result"], job["errors"], job["started_at"]) == (0, None, [], None)
    assert_times(job)
    # The bare UUID names the same job.
    assert ok(client.get(f"/jobs/{uuid.UUID(job_id[4:])}", headers=admin))["job_id"] == job_id

    failing = enqueue(client, admin, "fail", payload={"message": "no luck"})
    run_until_idle(forge)
    done = ok(client.get(f"/jobs/{job_id}", headers=admin))
    assert (done["status"], done["result"], done["attempts"]) == ("succeeded", {"sum": 5}, 1)
    assert done["progress"] == 100 and done["progress_message"] == "half way"
    assert done["started_at"] and done["completed_at"] and done["errors"] == []
    assert at(done["created_at"]) <= at(done["started_at"]) <= at(done["completed_at"])
    assert_times(done)
    failed = ok(client.get(f"/jobs/{failing}", headers=admin))
    assert failed["status"] == "failed" and failed["result"] is None
    (err,) = failed["errors"]
    assert (err["type"], err["message"], err["attempt"]) == ("RuntimeError", "no luck", 1)
    assert "Traceback" in err["traceback"] and ISO_Z.match(err["time"])


def test_enqueue_options_and_unique_key(client: TestClient, admin: dict[str, str]) -> None:
    job_id = enqueue(client, admin, queue="emails", priority=7, delay=3600, retries=4,
                     timeout=12.5, trace_id="t-1", correlation_id="c-1")  # fmt: skip
    job = ok(client.get(f"/jobs/{job_id}", headers=admin))
    assert (job["queue"], job["priority"], job["status"], job["max_attempts"]) == (
        "emails", 7, "scheduled", 5,
    )  # fmt: skip
    assert (job["timeout"], job["trace_id"], job["correlation_id"]) == (12.5, "t-1", "c-1")
    assert (at(job["scheduled_at"]) - at(job["created_at"])).total_seconds() == 3600

    first = enqueue(client, admin, unique_key="nightly")
    assert enqueue(client, admin, unique_key="nightly") == first  # unfinished: the same job
    ok(client.post(f"/jobs/{first}/cancel", headers=admin))
    again = enqueue(client, admin, unique_key="nightly")
    assert again != first
    assert ok(client.get(f"/jobs/{again}", headers=admin))["unique_key"] == "nightly"


def test_enqueue_with_depends_on_waits_for_its_parents(
    forge: Forge, client: TestClient, admin: dict[str, str]
) -> None:
    parent = enqueue(client, admin)
    other = enqueue(client, admin)
    child = enqueue(client, admin, depends_on=[
        parent, {"job_id": other, "type": "conditional", "condition": "sum == 3"},
    ])  # fmt: skip
    job = ok(client.get(f"/jobs/{child}", headers=admin))
    assert (job["status"], job["dependency_status"], job["pending_parents"]) == (
        "waiting", "waiting", 2,
    )  # fmt: skip
    run_until_idle(forge)
    assert ok(client.get(f"/jobs/{child}", headers=admin))["status"] == "succeeded"


def jobs_written(forge: Forge) -> int:
    return len(forge.list_jobs(limit=1000))


def test_refused_enqueues_answer_the_right_error_and_write_nothing(
    forge: Forge, client: TestClient, admin: dict[str, str]
) -> None:
    parent = enqueue(client, admin)
    before = jobs_written(forge)
    h = {**admin, **JSON}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("malformed JSON", {"content": b'{"type": "add",', "headers": h}, 400, "malformed_json"),
        ("form body", {"content": b"type=add", "headers": {
            **admin, "content-type": "application/x-www-form-urlencoded"}}, 400,
         "bad_content_type"),
        ("text body", {"content": b'{"type": "add"}', "headers": {
            **admin, "content-type": "text/plain"}}, 400, "bad_content_type"),
        ("no content type", {"content": b'{"type": "add"}', "headers": admin}, 400,
         "bad_content_type"),
        ("empty body", {"content": b"", "headers": h}, 422, "invalid"),
        ("not an object", {"json": [{"type": "add"}]}, 422, "invalid"),
        ("no type", {"json": {"payload": {}}}, 422, "invalid"),
        ("empty type", {"json": {"type": ""}}, 422, "invalid"),
        ("payload not an object", {"json": {"type": "add", "payload": [1]}}, 422, "invalid"),
        ("priority not a number", {"json": {"type": "add", "priority": "high"}}, 422, "invalid"),
        ("negative delay", {"json": {"type": "add", "delay": -1}}, 422, "invalid"),
        ("zero timeout", {"json": {"type": "add", "timeout": 0}}, 422, "invalid"),
        ("unknown field", {"json": {"type": "add", "tenant_id": "other"}}, 422, "invalid"),
        ("bad dependency type", {"json": {"type": "add", "depends_on": [
            {"job_id": parent, "type": "sometimes"}]}}, 422, "invalid"),
        ("bad condition", {"json": {"type": "add", "depends_on": [
            {"job_id": parent, "type": "conditional", "condition": "sum >>> 1"}]}}, 422,
         "bad_condition"),
        ("same parent twice", {"json": {"type": "add", "depends_on": [parent, parent]}}, 422,
         "bad_dependency"),
        ("unknown type", {"json": {"type": "no_such_job"}}, 422, "unknown_job_type"),
        ("built-in type", {"json": {"type": "jobforge.batch"}}, 422, "unknown_job_type"),
        ("payload over the limit", {"json": {"type": "add", "payload": {
            "x": "a" * forge.max_payload_bytes}}}, 413, "payload_too_large"),
        ("missing parent", {"json": {"type": "add", "depends_on": [unknown("job")]}}, 404,
         "job_not_found"),
        ("malformed parent id", {"json": {"type": "add", "depends_on": ["nonsense"]}}, 404,
         "job_not_found"),
        ("empty parent id", {"json": {"type": "add", "depends_on": [""]}}, 422, "invalid"),
        ("one parent of two missing", {"json": {"type": "add", "depends_on": [
            parent, unknown("job")]}}, 404, "job_not_found"),
    ]  # fmt: skip
    for name, request, status, code in cases:
        request.setdefault("headers", admin)
        response = client.post("/jobs", **request)
        assert response.status_code == status, (name, response.text)
        error(response, status, code)
        assert jobs_written(forge) == before, name
    # The named field is in the message.
    message = error(client.post("/jobs", json={"type": "add", "priority": "x"}, headers=admin), 422)
    assert "priority" in message
    assert "no_such_job" in error(client.post("/jobs", json={"type": "no_such_job"},
                                              headers=admin), 422)  # fmt: skip


def big_body(size: int) -> bytes:
    return b'{"type": "add", "payload": {"x": "' + b"a" * size + b'"}}'


def test_request_body_over_the_limit_is_refused_before_it_is_read(
    forge: Forge, client: TestClient, admin: dict[str, str]
) -> None:
    limit = max(16 * 1024 * 1024, 2 * forge.max_payload_bytes)
    body = big_body(limit)
    declared = client.post("/jobs", content=body, headers={**admin, **JSON})
    assert "over" in error(declared, 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(body), 1024 * 1024):
            yield body[start : start + 1024 * 1024]

    chunked = client.post("/jobs", content=chunks(), headers={**admin, **JSON})
    assert "content-length" not in chunked.request.headers
    error(chunked, 413, "payload_too_large")
    assert jobs_written(forge) == 0
    # Just under both limits is fine: the limits are not off by much.
    fits = big_body(forge.max_payload_bytes - 100)
    ok(client.post("/jobs", content=fits, headers={**admin, **JSON}), 202)


def test_list_filters_and_pages_walk_every_job_once(
    forge: Forge, client: TestClient, admin: dict[str, str]
) -> None:
    adds = [enqueue(client, admin, queue="q1") for _ in range(4)]
    fails = [enqueue(client, admin, "fail", queue="q2") for _ in range(3)]
    ok(client.post(f"/jobs/{adds[0]}/cancel", headers=admin))
    # A workflow's jobs share one created_at: pages must break the tie by id.
    wf = ok(client.post("/workflows", json={"name": "tie", "jobs": [
        {"name": f"n{i}", "type": "add", "payload": {"a": i, "b": 0}} for i in range(5)
    ]}, headers=admin), 201)["workflow_id"]  # fmt: skip
    everything = ok(client.get("/jobs", headers=admin))
    assert everything["next_cursor"] is None and len(everything["jobs"]) == 12
    order = [j["job_id"] for j in everything["jobs"]]
    keys = [(at(j["created_at"]), j["job_id"]) for j in everything["jobs"]]
    assert keys == sorted(keys, reverse=True)  # newest first

    def ids(query: str) -> list[str]:
        return [j["job_id"] for j in ok(client.get(f"/jobs?{query}", headers=admin))["jobs"]]

    assert set(ids("status=cancelled")) == {adds[0]}
    assert set(ids("status=queued&queue=q1")) == set(adds[1:])
    assert set(ids("queue=q2")) == set(fails)
    assert set(ids("type=fail")) == set(fails)
    assert len(ids(f"workflow_id={wf}")) == 5
    assert ids("type=fail&queue=q1") == []
    assert ids("status=succeeded") == []

    for limit in (1, 3, 5, 12):
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(20):
            query = f"limit={limit}" + (f"&cursor={cursor}" if cursor else "")
            page = ok(client.get(f"/jobs?{query}", headers=admin))
            assert len(page["jobs"]) <= limit
            seen += [j["job_id"] for j in page["jobs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == order, limit  # each once, none missed, in order
    # Paging a filtered list.
    page = ok(client.get("/jobs?type=add&limit=2", headers=admin))
    rest = ok(client.get(f"/jobs?type=add&limit=100&cursor={page['next_cursor']}", headers=admin))
    assert [j["job_id"] for j in page["jobs"] + rest["jobs"]] == [
        j for j in order if j not in fails
    ]

    for query, word in (("status=bogus", "status"), ("limit=0", "limit"), ("limit=1001", "limit"),
                        ("cursor=bm9wZQ", "cursor"), ("cursor=%25%25", "cursor")):  # fmt: skip
        assert word in error(client.get(f"/jobs?{query}", headers=admin), 422, "invalid"), query
    for wf_ref in (unknown("wf"), ""):
        error(client.get(f"/jobs?workflow_id={wf_ref}", headers=admin), 404, "workflow_not_found")


def test_cancel_and_retry_follow_the_job_state(
    forge: Forge, client: TestClient, admin: dict[str, str]
) -> None:
    job_id = enqueue(client, admin)
    assert "queued" in error(client.post(f"/jobs/{job_id}/retry", headers=admin), 409,
                             "invalid_transition")  # fmt: skip
    cancelled = ok(client.post(f"/jobs/{job_id}/cancel", headers=admin))
    assert cancelled["job_id"] == job_id and cancelled["status"] == "cancelled"
    assert cancelled["completed_at"] is not None
    error(client.post(f"/jobs/{job_id}/cancel", headers=admin), 409, "invalid_transition")
    assert ok(client.post(f"/jobs/{job_id}/retry", headers=admin))["status"] == "queued"

    failing = enqueue(client, admin, "fail")
    run_until_idle(forge)
    assert ok(client.get(f"/jobs/{job_id}", headers=admin))["status"] == "succeeded"
    error(client.post(f"/jobs/{job_id}/cancel", headers=admin), 409, "invalid_transition")
    error(client.post(f"/jobs/{job_id}/retry", headers=admin), 409, "invalid_transition")
    retried = ok(client.post(f"/jobs/{failing}/retry", headers=admin))
    assert (retried["status"], retried["attempts"]) == ("queued", 0)
    assert len(retried["errors"]) == 1  # the history stays

    for verb in ("cancel", "retry"):
        for ref in (unknown("job"), "nonsense"):
            message = error(client.post(f"/jobs/{ref}/{verb}", headers=admin), 404,
                            "job_not_found")  # fmt: skip
            assert ref in message
    error(client.get(f"/jobs/{unknown('job')}", headers=admin), 404, "job_not_found")
