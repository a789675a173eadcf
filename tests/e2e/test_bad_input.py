"""Bad input: a one-line error naming the problem, a non-zero exit, and nothing written.

Input checks happen before any write, so most cases run once (on SQLite); those whose
refusal involves the database run on both backends.
"""

from __future__ import annotations

import json
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobforge import Forge
from tests.e2e.helpers import APP, cli_env, job_count, jobforge, ok

MISSING = "job_" + "0" * 32


def refused(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Assert a clean refusal; returns the error line."""
    assert result.returncode != 0, f"{result.args} succeeded:\n{result.stdout}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"{result.args}: expected one error line, got:\n{result.stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in line, f"{text!r} not in {line!r}"
    assert result.stdout == ""
    return line


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[str]:
    """A migrated SQLite database, empty."""
    Forge(sqlite_url).store.close()
    yield sqlite_url


def test_bad_payload(sqlite_db: str) -> None:
    cases = [
        (["--payload", "{bad"], "Payload is not valid JSON"),
        (["--payload", "[1, 2]"], "Payload must be a JSON object, got list"),
        (["--payload", '"text"'], "Payload must be a JSON object, got str"),
        (["--payload", "null", "--app", APP], "Payload must be a JSON object, got NoneType"),
    ]
    for args, expected in cases:
        refused(jobforge("enqueue", "echo", *args, db_url=sqlite_db), expected)
    assert job_count(sqlite_db) == 0


def test_payload_over_the_limit(db_url: str, forge: Forge) -> None:
    env = cli_env(db_url, JOBFORGE_MAX_PAYLOAD_BYTES="64")
    big = json.dumps({"text": "x" * 60})  # 71 bytes
    for app_args in ([], ["--app", APP]):
        refused(
            jobforge("enqueue", "echo", "--payload", big, *app_args, env=env),
            "71 bytes",
            "limit of 64 bytes",
        )
    assert job_count(db_url) == 0
    small = json.dumps({"text": "x" * 40})  # 51 bytes: under the limit, accepted
    ok(jobforge("enqueue", "echo", "--payload", small, "--app", APP, env=env))
    assert job_count(db_url) == 1


def test_unreadable_payload_limit_setting(sqlite_db: str) -> None:
    env = cli_env(sqlite_db, JOBFORGE_MAX_PAYLOAD_BYTES="lots")
    refused(jobforge("enqueue", "echo", env=env), "JOBFORGE_MAX_PAYLOAD_BYTES", "lots")
    assert job_count(sqlite_db) == 0


def test_unknown_job_type_with_app(sqlite_db: str) -> None:
    refused(
        jobforge("enqueue", "no_such_job", "--app", APP, db_url=sqlite_db),
        "Unknown job type 'no_such_job'",
        "echo",  # the known types are listed
    )
    # Brackets in a name are shown as typed, not swallowed as console markup.
    refused(
        jobforge("enqueue", "[bold]mail", "--app", APP, db_url=sqlite_db),
        "Unknown job type '[bold]mail'",
    )
    assert job_count(sqlite_db) == 0


def test_bad_app(sqlite_db: str) -> None:
    cases = [
        ("tests.apps.no_such_module:app", "No module named 'tests.apps.no_such_module'"),
        ("tests.apps.e2e:no_such_attr", "has no 'no_such_attr'"),
        ("tests.apps.e2e:NOT_A_FORGE", "'NOT_A_FORGE' is a str, not a Forge"),
        ("tests.apps.e2e", "expected module:attr"),
    ]
    for ref, expected in cases:
        refused(jobforge("enqueue", "echo", "--app", ref, db_url=sqlite_db), expected, ref)
    ref, expected = cases[2]
    refused(jobforge("worker", "--app", ref, "--burst", db_url=sqlite_db), expected, ref)
    assert job_count(sqlite_db) == 0


def test_invalid_status_filter(sqlite_db: str) -> None:
    refused(
        jobforge("job", "list", "--status", "done", db_url=sqlite_db),
        "Unknown status 'done'",
        "succeeded",  # the valid ones are listed
    )


def test_unknown_job_id(db_url: str, forge: Forge) -> None:
    forge.enqueue("echo", {})
    for command in ("show", "cancel", "retry"):
        line = refused(jobforge("job", command, MISSING, db_url=db_url), "Job not found: ")
        assert MISSING in line or str(uuid.UUID(MISSING[4:])) in line, line
    refused(jobforge("job", "show", "job_nope", db_url=db_url), "Invalid job id: 'job_nope'")
    [job] = forge.list_jobs()
    assert job.status == "queued" and job.attempts == 0


def test_cancel_or_retry_in_the_wrong_state(db_url: str, forge: Forge) -> None:
    job_id = forge.enqueue("echo", {})
    refused(jobforge("job", "retry", job_id, db_url=db_url), f"Cannot retry job {job_id}", "queued")
    ok(jobforge("worker", "--app", APP, "--burst", "--poll-interval", "0.1", db_url=db_url))
    refused(
        jobforge("job", "cancel", job_id, db_url=db_url),
        f"Cannot cancel job {job_id}",
        "it is succeeded",
    )
    job = forge.get_job(job_id)
    assert job is not None
    assert job.status == "succeeded" and job.attempts == 1 and job.result == {}
    assert job_count(db_url) == 1


# -- database URLs ------------------------------------------------------------------------
def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_malformed_database_url(tmp_path: Path, sqlite_db: str) -> None:
    cases = [
        ("mysql://x", ["Unsupported database URL 'mysql://x'"]),
        ("sqlite://relative", ["Malformed SQLite URL 'sqlite://relative'"]),
        ("sqlite:///:memory:", ["must name a file"]),
        ("sqlite:///x.db?cache=shared", ["Unknown SQLite URL option", "cache"]),
    ]
    before = set(tmp_path.iterdir())
    env = cli_env(sqlite_db)  # a good database in the environment, which --db overrides
    for url, expected in cases:
        refused(jobforge("enqueue", "echo", "--db", url, env=env, cwd=tmp_path), *expected)
    url, expected = cases[1]
    refused(jobforge("job", "list", "--db", url, env=env, cwd=tmp_path), *expected)
    refused(jobforge("db", "migrate", env=cli_env(url), cwd=tmp_path), *expected)  # via env
    refused(jobforge("worker", "--app", APP, "--db", url, env=env), *expected)
    assert set(tmp_path.iterdir()) == before  # no stray database files
    assert job_count(sqlite_db) == 0


def test_sqlite_in_a_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    url = f"sqlite:///{missing / 'jobs.db'}"
    for args in (["enqueue", "echo"], ["job", "show", MISSING]):
        refused(
            jobforge(*args, "--db", url, cwd=tmp_path), "Cannot open SQLite database", str(missing)
        )
    refused(jobforge("worker", "--app", APP, "--db", url), str(missing))
    assert not (tmp_path / "no").exists()


def test_postgres_on_a_closed_port() -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/jobforge"
    for args in (["enqueue", "echo"], ["job", "list", "--json"]):
        refused(jobforge(*args, "--db", url, timeout=30), "Cannot connect to PostgreSQL", "refused")
    refused(
        jobforge("worker", "--app", APP, "--db", url, timeout=30), "Cannot connect to PostgreSQL"
    )
