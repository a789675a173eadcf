"""The named-query file parser and the migration loader."""

from __future__ import annotations

import re
import sqlite3
import sys
import uuid
from pathlib import Path

import pytest

from jobforge.store.migrate import load_migrations
from jobforge.store.queries import load_queries, parse_queries
from jobforge.store.sqlite.store import iter_statements

SAMPLE = """\
-- A file header comment, before any name: ignored.
-- It may span lines.

-- name: first
SELECT 1

-- name: second
-- A comment inside a query belongs to its body.
SELECT *
FROM t
WHERE a = :a;

--   name:   third \t
UPDATE t SET a = 1
"""


def test_parse_queries_splits_on_name_lines() -> None:
    q = parse_queries(SAMPLE)
    assert list(q) == ["first", "second", "third"]
    assert q["first"] == "SELECT 1"
    assert q["second"] == (
        "-- A comment inside a query belongs to its body.\nSELECT *\nFROM t\nWHERE a = :a;"
    )
    assert q["third"] == "UPDATE t SET a = 1"


def test_parse_queries_header_text_never_becomes_a_query() -> None:
    q = parse_queries(SAMPLE)
    assert all("header comment" not in body for body in q.values())


def test_parse_queries_needs_name_at_line_start() -> None:
    q = parse_queries("-- name: a\nSELECT '-- name: b' AS x\n  -- name: c\nSELECT 2\n")
    assert list(q) == ["a"]
    assert "SELECT 2" in q["a"]


def test_parse_queries_empty_text() -> None:
    assert parse_queries("") == {}
    assert parse_queries("-- only a comment\n") == {}


def test_parse_queries_empty_body() -> None:
    assert parse_queries("-- name: empty\n-- name: full\nSELECT 1") == {
        "empty": "",
        "full": "SELECT 1",
    }


VERBS = {
    "insert_job",
    "claim_jobs",
    "finish_many",
    "set_progress",
    "extend_leases",
    "touch_worker",
    "release_job",
    "rescue_expired",
    "cancel_job",
    "retry_job",
    "get_job",
    "list_jobs",
    "next_due_at",
    "register_worker",
    "unregister_worker",
    "prune_workers",
}


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_shipped_query_files_define_every_verb(dialect: str) -> None:
    q = load_queries(f"jobforge.store.{dialect}")
    assert set(q) >= VERBS
    assert all(body.strip() for body in q.values())
    # Every name is defined once (a duplicate would silently replace the first).
    from importlib import resources

    text = resources.files(f"jobforge.store.{dialect}").joinpath("queries.sql").read_text()
    names = re.findall(r"^--\s*name:\s*(\w+)", text, re.MULTILINE)
    assert len(names) == len(set(names))


def test_dialects_define_the_same_verbs() -> None:
    sqlite = set(load_queries("jobforge.store.sqlite"))
    postgres = set(load_queries("jobforge.store.postgres"))
    # LISTEN/NOTIFY, COPY, plan settings, advisory locks and writable CTEs exist only on
    # PostgreSQL.
    assert postgres - sqlite == {
        "resolve_edges",
        "notify",
        "copy_jobs",
        "copy_edges",
        "column_types",
        "sort_off",
        "sort_on",
        "lock_keys",
    }
    # SQLite finds the rows an insert just wrote by their rowids, and resolves edges in two
    # statements where PostgreSQL uses one (resolve_edges, a writable CTE).
    assert sqlite - postgres == {"last_rowid", "set_edges", "decrement_pending"}


# -- migrations ----------------------------------------------------------------------------


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Build an importable package holding the given files; returns its name."""

    def build(files: dict[str, str]) -> str:
        name = "fake_migrations_" + uuid.uuid4().hex[:8]
        pkg = tmp_path / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        for filename, text in files.items():
            (pkg / filename).write_text(text)
        monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates import caches
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    return build


def test_migrations_load_in_version_order(make_package) -> None:
    pkg = make_package(
        {
            "0003_third.sql": "C",
            "0001_first.sql": "A",
            "0002_second.sql": "B",
            "README.md": "not a migration",
            "0004-bad-name.sql": "ignored: dash, not underscore",
            "4_short.sql": "ignored: version needs four digits",
            "0005_notsql.txt": "ignored: not .sql",
        }
    )
    migs = load_migrations(pkg)
    assert [(m.version, m.name, m.sql) for m in migs] == [
        (1, "first", "A"),
        (2, "second", "B"),
        (3, "third", "C"),
    ]


def test_versions_sort_numerically_not_by_name(make_package) -> None:
    files = {f"{n:04d}_m{n}.sql": str(n) for n in range(1, 12)}
    migs = load_migrations(make_package(files))
    assert [m.version for m in migs] == list(range(1, 12))
    assert [m.sql for m in migs] == [str(n) for n in range(1, 12)]


def test_gap_in_versions_is_refused(make_package) -> None:
    pkg = make_package({"0001_a.sql": "A", "0003_c.sql": "C"})
    with pytest.raises(RuntimeError, match=f"migration 0003 out of sequence in {pkg}"):
        load_migrations(pkg)


def test_must_start_at_one(make_package) -> None:
    with pytest.raises(RuntimeError, match="migration 0002 out of sequence"):
        load_migrations(make_package({"0002_b.sql": "B"}))


def test_duplicate_version_is_refused(make_package) -> None:
    pkg = make_package({"0001_a.sql": "A", "0001_again.sql": "A2", "0002_b.sql": "B"})
    with pytest.raises(RuntimeError, match="out of sequence"):
        load_migrations(pkg)


def test_no_migrations() -> None:
    assert load_migrations("jobforge.store") == []


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_shipped_migrations(dialect: str) -> None:
    migs = load_migrations(f"jobforge.store.{dialect}.migrations")
    assert [m.version for m in migs] == list(range(1, len(migs) + 1))
    assert migs[0].name == "initial"
    assert "CREATE TABLE jobforge_jobs" in migs[0].sql


def test_iter_statements_splits_on_complete_statements() -> None:
    script = "-- header\nCREATE TABLE a (x int);\n\n-- note\nCREATE INDEX i ON a (x);\n-- end\n"
    assert list(iter_statements(script)) == [
        "-- header\nCREATE TABLE a (x int);",
        "-- note\nCREATE INDEX i ON a (x);",
    ]


def test_iter_statements_keeps_a_trigger_body_whole() -> None:
    script = (
        "CREATE TRIGGER t AFTER UPDATE ON a BEGIN\n"
        "    INSERT INTO b VALUES (1);\n"
        "    INSERT INTO b VALUES (2);\n"
        "END;\n"
        "CREATE INDEX i ON a (x);\n"
    )
    statements = list(iter_statements(script))
    assert len(statements) == 2
    assert statements[0].startswith("CREATE TRIGGER") and statements[0].endswith("END;")


def test_iter_statements_refuses_an_unfinished_statement() -> None:
    with pytest.raises(RuntimeError, match="incomplete statement"):
        list(iter_statements("CREATE TABLE a (x int);\nCREATE TABLE b (y int)\n"))


def test_shipped_sqlite_migration_splits_into_statements() -> None:
    mig = load_migrations("jobforge.store.sqlite.migrations")[0]
    statements = list(iter_statements(mig.sql))
    assert sum("CREATE TABLE" in s for s in statements) == 2
    assert all(sqlite3.complete_statement(s) for s in statements)
