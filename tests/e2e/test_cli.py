"""The command line against a real database: enqueue, inspect, control, migrate."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobforge import Forge
from jobforge.store.migrate import load_migrations
from tests.conftest import with_dbname
from tests.e2e.helpers import APP, cli_env, jobforge, ok, sql

JOB_ID = re.compile(r"^job_[0-9a-f]{32}$")
FIELDS = {
    "id", "job_id", "type", "queue", "status", "priority", "payload", "result", "errors",
    "progress", "attempts", "created_at", "started_at", "completed_at",
}  # fmt: skip


def utc(value: Any) -> datetime:
    """An ISO 8601 UTC timestamp ('...Z'), close to now."""
    assert isinstance(value, str) and value.endswith("Z"), value
    when = datetime.fromisoformat(value)
    assert when.utcoffset() == timedelta(0)
    assert abs(when - datetime.now(UTC)) < timedelta(minutes=5), value
    return when


def enqueue(db_url: str, *args: str) -> str:
    job_id = ok(jobforge("enqueue", *args, db_url=db_url)).strip()
    assert JOB_ID.match(job_id), job_id
    return job_id


def show(db_url: str, ref: str) -> dict[str, Any]:
    data = json.loads(ok(jobforge("job", "show", ref, "--json", db_url=db_url)))
    assert isinstance(data, dict)
    return data


def list_jobs(db_url: str, *filters: str) -> list[dict[str, Any]]:
    data = json.loads(ok(jobforge("job", "list", "--json", *filters, db_url=db_url)))
    assert isinstance(data, list)
    return data


def run_burst(db_url: str) -> None:
    """A worker that runs every runnable job, then exits."""
    ok(jobforge("worker", "--app", APP, "--burst", "--poll-interval", "0.1", db_url=db_url))


def test_enqueue_show_list_tables_and_run(db_url: str, forge: Forge) -> None:
    a = enqueue(
        db_url, "echo", "--payload", '{"n": 1, "word": "héllo"}', "--queue", "q1",
        "--priority", "7", "--delay", "0",
    )  # fmt: skip
    b = enqueue(db_url, "stamp", "--queue", "q2", "--app", APP)
    later = enqueue(db_url, "echo", "--delay", "120", "--queue", "q1")

    # show, by job_ id and by UUID
    shown = show(db_url, a)
    assert show(db_url, str(uuid.UUID(a[4:]))) == shown
    assert set(shown) >= FIELDS
    assert shown["id"] == str(uuid.UUID(a[4:]))
    assert shown["job_id"] == a
    assert shown["type"] == "echo"
    assert shown["queue"] == "q1"
    assert shown["status"] == "queued"
    assert shown["priority"] == 7
    assert shown["payload"] == {"n": 1, "word": "héllo"}
    assert shown["result"] is None
    assert shown["errors"] == []
    assert shown["progress"] == 0
    assert shown["attempts"] == 0
    utc(shown["created_at"])
    assert shown["started_at"] is None
    assert shown["completed_at"] is None

    # list, newest first, and its filters
    everything = list_jobs(db_url)
    assert [j["job_id"] for j in everything] == [later, b, a]
    for item in everything:
        assert set(item) >= FIELDS
    delayed = everything[0]
    assert delayed["status"] == "scheduled"
    wait = utc(delayed["scheduled_at"]) - utc(delayed["created_at"])
    assert timedelta(seconds=119) <= wait <= timedelta(seconds=121)
    assert {j["job_id"] for j in list_jobs(db_url, "--queue", "q1")} == {a, later}
    assert {j["job_id"] for j in list_jobs(db_url, "--type", "stamp")} == {b}
    assert {j["job_id"] for j in list_jobs(db_url, "--status", "scheduled")} == {later}

    # tables without --json
    wide = cli_env(db_url, COLUMNS="250")
    table = ok(jobforge("job", "list", env=wide))
    assert not table.lstrip().startswith(("[", "{"))
    row = next(line for line in table.splitlines() if a in line)
    assert "echo" in row and "q1" in row and "queued" in row
    assert any(later in line and "scheduled" in line for line in table.splitlines())
    detail = ok(jobforge("job", "show", b, env=wide))
    with pytest.raises(json.JSONDecodeError):
        json.loads(detail)
    fields = {line.split()[0]: line.split()[1:] for line in detail.splitlines() if line.strip()}
    assert fields["job_id"] == [b]
    assert fields["status"] == ["queued"]
    assert fields["queue"] == ["q2"]

    # a worker runs what is due, and leaves the delayed job alone
    run_burst(db_url)
    done = show(db_url, a)
    assert done["status"] == "succeeded"
    assert done["result"] == {"n": 1, "word": "héllo"}
    assert done["attempts"] == 1
    assert done["progress"] == 100
    assert done["errors"] == []
    assert utc(done["created_at"]) <= utc(done["started_at"]) <= utc(done["completed_at"])
    stamped = forge.get_job(b)
    assert stamped is not None and stamped.status == "succeeded"
    assert stamped.result["started"] >= stamped.created_at.timestamp()
    not_due = forge.get_job(later)
    assert not_due is not None and not_due.status == "scheduled" and not_due.attempts == 0


def test_cancel_and_retry(db_url: str, forge: Forge, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    failing = enqueue(
        db_url, "needs_file", "--app", APP, "--payload", json.dumps({"path": str(flag)})
    )
    doomed = enqueue(db_url, "echo", "--delay", "0.5")

    out = ok(jobforge("job", "cancel", doomed, db_url=db_url))
    assert out.split() == [doomed, "cancelled"]

    run_burst(db_url)
    cancelled = forge.get_job(doomed)
    assert cancelled is not None
    assert cancelled.status == "cancelled"  # and it never ran
    assert cancelled.attempts == 0 and cancelled.completed_at is not None
    failed = forge.get_job(failing)
    assert failed is not None
    assert failed.status == "failed"
    assert failed.attempts == 1
    assert [e["type"] for e in failed.errors] == ["RuntimeError"]
    assert "missing file" in failed.errors[0]["message"]

    flag.write_text("now it exists")
    requeued = json.loads(
        ok(jobforge("job", "retry", str(uuid.UUID(failing[4:])), "--json", db_url=db_url))
    )
    assert requeued["job_id"] == failing
    assert requeued["status"] == "queued"
    assert requeued["attempts"] == 0
    assert requeued["completed_at"] is None

    run_burst(db_url)
    done = forge.get_job(failing)
    assert done is not None
    assert done.status == "succeeded"
    assert done.result == "now it exists"
    assert done.attempts == 1
    assert [e["type"] for e in done.errors] == ["RuntimeError"]  # history is kept


# -- db migrate -------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    server = request.getfixturevalue("pg_server_url")
    name = "jf_empty_" + uuid.uuid4().hex[:8]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield with_dbname(server, name)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_db_migrate(empty_db_url: str) -> None:
    dialect = "sqlite" if empty_db_url.startswith("sqlite") else "postgres"
    latest = len(load_migrations(f"jobforge.store.{dialect}.migrations"))
    first = ok(jobforge("db", "migrate", "--db", empty_db_url))
    assert first.strip() == f"schema at version {latest} (was 0)"
    assert sql(empty_db_url, "SELECT max(version) FROM jobforge_migrations") == [(latest,)]
    assert sql(empty_db_url, "SELECT count(*) FROM jobforge_jobs") == [(0,)]
    again = ok(jobforge("db", "migrate", db_url=empty_db_url))  # via the environment
    assert again.strip() == f"schema at version {latest} (was {latest})"
    assert sql(empty_db_url, "SELECT count(*) FROM jobforge_migrations") == [(latest,)]
