"""`jobforge serve` as a real process with a real worker: keys from the CLI, jobs and a DAG
workflow over HTTP, revocation, the refusals of bad start-up options, and SIGTERM."""

from __future__ import annotations

import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import WorkerProcess, cli_env, jobforge, ok, sql, wait_until
from tests.e2e.serving import SERVE_APP, TOKEN, Servers, create_key, free_port_taken

FINISHED = {"succeeded", "partial_success", "failed", "cancelled", "skipped"}


@pytest.fixture
def worker(db_url: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A `jobforge worker` process on the test app, in its own session."""
    proc = WorkerProcess(
        ["--app", SERVE_APP, "--db", db_url, "--poll-interval", "0.2"],
        cli_env(db_url),
        tmp_path / "worker.log",
    )
    try:
        yield proc
    finally:
        proc.kill()


def one_error_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """A clean refusal: exit 1, one `error:` line naming the problem, nothing on stdout."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{result.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert result.stdout == ""
    return lines[0]


def finished(client: httpx.Client, path: str, timeout: float = 20) -> dict[str, Any]:
    """GET `path` until its status is final."""

    def done() -> dict[str, Any] | None:
        response = client.get(path)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["status"] in FINISHED else None

    return wait_until(done, timeout, f"{path} to finish", interval=0.05)


def stored_keys(db_url: str) -> list[str]:
    """Every API key row as text, whatever the backend stores."""
    query = (
        "SELECT id || ' ' || tenant_id || ' ' || coalesce(name, '') || ' ' || permissions "
        "|| ' ' || hash FROM jobforge_api_keys"
    )
    if not db_url.startswith("sqlite"):
        query = "SELECT t::text FROM jobforge_api_keys t"
    return [str(row[0]) for row in sql(db_url, query)]


# -- keys, jobs, workflows, revocation ---------------------------------------------------------
def test_keys_jobs_and_a_workflow_through_a_real_server_and_worker(
    db_url: str, tmp_path: Path, servers: Servers, worker: WorkerProcess
) -> None:
    writer_id, writer = create_key(
        db_url, "acme", "jobs:read,jobs:write,workflows:read,workflows:write", "--name", "ci"
    )
    made = jobforge("apikey", "create", "--tenant", "acme", "--permissions", "jobs:read",
                    db_url=db_url)  # fmt: skip
    reader = ok(made).strip()  # the token alone on stdout, said once
    reader_match = TOKEN.match(reader)
    assert reader_match, made.stdout
    reader_id = reader_match.group(1)
    assert f"API key {reader_id} for tenant acme (jobs:read)" in made.stderr
    assert "not shown again" in made.stderr and reader not in made.stderr

    # Only a slow hash of each key is kept: no secret in the table, the file or its journal.
    rows = stored_keys(db_url)
    assert len(rows) == 2
    for token in (writer, reader):
        secret = token.split("_", 2)[2]
        assert all(secret not in row for row in rows)
        assert all("scrypt$" in row for row in rows)
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        for file in (path, Path(f"{path}-wal")):
            if file.exists():
                data = file.read_bytes()
                assert writer.split("_", 2)[2].encode() not in data
                assert reader.split("_", 2)[2].encode() not in data
    listed = ok(jobforge("apikey", "list", "--tenant", "acme", "--json", db_url=db_url))
    assert writer.split("_", 2)[2] not in listed and reader.split("_", 2)[2] not in listed
    assert '"ci"' in listed and writer_id in listed and reader_id in listed

    server = servers.start(db_url, "--app", SERVE_APP)
    with server.client(writer) as w, server.client(reader) as r, server.client() as anon:
        missing = anon.get("/jobs")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthorized"
        forbidden = r.post("/jobs", json={"type": "echo", "payload": {}})
        assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"

        # A job: enqueued over HTTP, run by the worker process, its result read back.
        accepted = w.post("/jobs", json={"type": "echo", "payload": {"n": 7, "s": "é"}})
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        assert accepted.json()["status"] in {"queued", "running", "succeeded"}  # a fast worker
        job = finished(r, f"/jobs/{job_id}")
        assert job["status"] == "succeeded", job
        assert job["result"] == {"n": 7, "s": "é"} and job["attempts"] == 1
        assert job["tenant_id"] == "acme"
        assert job["completed_at"] >= job["started_at"] >= job["created_at"]

        # A DAG workflow: a, then b and c, then d, in that order.
        log = tmp_path / "order.log"

        def node(name: str, *parents: str) -> dict[str, Any]:
            payload = {"name": name, "log": str(log)}
            return {"name": name, "type": "step", "payload": payload, "depends_on": list(parents)}

        definition = {
            "name": "diamond",
            "jobs": [node("a"), node("b", "a"), node("c", "a"), node("d", "b", "c")],
        }
        created = w.post("/workflows", json=definition)
        assert created.status_code == 201, created.text
        wf_id = created.json()["workflow_id"]
        wf = finished(w, f"/workflows/{wf_id}")
        assert wf["status"] == "succeeded" and wf["tenant_id"] == "acme", wf
        assert wf["stats"]["total"] == 4 and wf["stats"]["completion_percentage"] == 100
        lines = log.read_text().split()
        assert lines[0] == "a" and sorted(lines[1:3]) == ["b", "c"] and lines[3] == "d", lines
        page = w.get("/jobs", params={"workflow_id": wf_id})
        assert page.status_code == 200
        jobs = {j["name"]: j for j in page.json()["jobs"]}
        assert {j["status"] for j in jobs.values()} == {"succeeded"} and len(jobs) == 4
        for child, parent in (("b", "a"), ("c", "a"), ("d", "b"), ("d", "c")):
            assert jobs[child]["started_at"] >= jobs[parent]["completed_at"], (child, parent)

        # Revocation is seen by the running server at the next request.
        assert r.get(f"/jobs/{job_id}").status_code == 200
        revoked = jobforge("apikey", "revoke", reader_id, db_url=db_url)
        ok(revoked)
        assert f"revoked API key {reader_id}" in revoked.stderr
        refused = r.get(f"/jobs/{job_id}")
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == {
            "code": "unauthorized",
            "message": "Invalid or revoked API key",
        }
        assert w.get(f"/jobs/{job_id}").status_code == 200  # the other key still works
    assert worker.alive(), worker.log
    revoked_rows = sql(db_url, "SELECT id FROM jobforge_api_keys WHERE revoked_at IS NOT NULL")
    assert [row[0] for row in revoked_rows] == [reader_id]


# -- start-up refusals --------------------------------------------------------------------------
def test_no_auth_is_refused_off_loopback(sqlite_url: str) -> None:
    result = jobforge("serve", "--no-auth", "--host", "0.0.0.0", "--port", "0", db_url=sqlite_url)
    one_error_line(result, "--no-auth", "loopback", "0.0.0.0")


def test_no_auth_on_loopback_says_so_and_needs_no_key(sqlite_url: str, servers: Servers) -> None:
    server = servers.start(sqlite_url, "--no-auth", "--host", "127.0.0.1", "--app", SERVE_APP)
    assert server.url.startswith("http://127.0.0.1:")
    assert "auth is OFF" in server.log
    with server.client() as anon:
        accepted = anon.post("/jobs", json={"type": "echo", "payload": {}})
        assert accepted.status_code == 202, accepted.text
        assert anon.get(f"/jobs/{accepted.json()['job_id']}").status_code == 200
        assert anon.get("/metrics").status_code == 200  # acts as admin
        # One kept-alive connection gets each answer at once (Nagle's algorithm against the
        # client's delayed ACK would add 40 ms to every response).
        took = []
        for _ in range(15):
            sent = time.monotonic()
            assert anon.get("/health").status_code == 200
            took.append(time.monotonic() - sent)
    assert statistics.median(took) < 0.025, took


def test_a_taken_port_is_one_error_line(sqlite_url: str) -> None:
    with free_port_taken() as sock:
        port = sock.getsockname()[1]
        result = jobforge("serve", "--port", str(port), db_url=sqlite_url)
    one_error_line(result, f"Cannot listen on 127.0.0.1:{port}", "in use")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("no_such_module_xyz:app", "No module named 'no_such_module_xyz'"),
        ("tests.apps.e2e:NOT_A_FORGE", "is a str, not a Forge"),
    ],
)
def test_a_bad_app_is_one_error_line(sqlite_url: str, ref: str, expected: str) -> None:
    result = jobforge("serve", "--app", ref, "--port", "0", db_url=sqlite_url)
    one_error_line(result, f"Cannot load app {ref!r}", expected)


# -- stopping --------------------------------------------------------------------------------
def test_sigterm_stops_the_server_and_its_worker_cleanly(
    db_url: str, tmp_path: Path, servers: Servers
) -> None:
    _, token = create_key(db_url, "acme", "admin")
    server = servers.start(db_url, "--app", SERVE_APP, "--with-worker")
    gate = tmp_path / "gate"
    with server.client(token) as c:
        done = c.post("/jobs", json={"type": "echo", "payload": {"x": 1}}).json()["job_id"]
        assert finished(c, f"/jobs/{done}")["result"] == {"x": 1}  # the worker inside ran it
        held = c.post("/jobs", json={"type": "wait_for_file", "payload": {"path": str(gate)}})
        held_id = held.json()["job_id"]
        wait_until(
            lambda: c.get(f"/jobs/{held_id}").json()["status"] == "running", 20, "the job to run"
        )

    server.send(signal.SIGTERM)

    def http_down() -> bool:
        try:
            httpx.get(server.url + "/health", timeout=2)
        except httpx.TransportError:
            return True
        return not server.alive()

    # The API stops first; the process stays while its worker finishes the running job.
    wait_until(http_down, 10, "the API to stop listening")
    assert server.alive(), f"exited {server.popen.returncode} before its job ended:\n{server.log}"
    gate.write_text("go")
    assert server.wait(20) == 0, server.log
    rows = sql(db_url, "SELECT status, attempts FROM jobforge_jobs WHERE type = 'wait_for_file'")
    assert [tuple(r) for r in rows] == [("succeeded", 1)], rows
    assert "Traceback" not in server.log


def test_sigterm_with_an_open_event_stream(sqlite_url: str, servers: Servers) -> None:
    _, token = create_key(sqlite_url, "acme", "jobs:read")
    server = servers.start(sqlite_url)
    with server.client(token) as c, c.stream("GET", "/events") as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(lines) == "retry: 1000"
        server.send(signal.SIGTERM)
        sent = time.monotonic()
        assert list(lines) == [""]  # the server ends the stream: it does not wait for us
        assert server.wait(10) == 0, server.log
    took = time.monotonic() - sent
    assert took < 3, f"{took:.1f}s to stop (uvicorn's graceful timeout is 5 s)"
    assert "Traceback" not in server.log and "ERROR" not in server.log
