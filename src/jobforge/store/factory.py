"""Build a store from a database URL; drivers are imported only when used."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

from jobforge.errors import DatabaseURLError
from jobforge.store.sql import SQLStore

DEFAULT_URL = "sqlite:///jobforge.db"
ENV_VAR = "JOBFORGE_DATABASE_URL"


def resolve_url(url: str | None) -> str:
    """The explicit URL, else $JOBFORGE_DATABASE_URL, else a SQLite file in the cwd."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_URL


def open_store(url: str | None = None, migrate: bool = True) -> SQLStore:
    """Open (and by default migrate) the store that `url` names."""
    url = resolve_url(url)
    store = _build(url)
    if migrate:
        store.migrate()
    return store


def _build(url: str) -> SQLStore:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        return _sqlite(url)
    if scheme in ("postgresql", "postgres"):
        from jobforge.store.postgres.store import PostgresStore

        return PostgresStore(url)
    raise DatabaseURLError(
        f"Unsupported database URL {url!r}: expected sqlite:///path.db or postgresql://..."
    )


def _sqlite(url: str) -> SQLStore:
    from jobforge.store.sqlite.store import SQLiteStore

    parts = urlsplit(url)
    if not url.startswith("sqlite:///") or parts.netloc:
        raise DatabaseURLError(
            f"Malformed SQLite URL {url!r}: expected sqlite:///relative.db or sqlite:////abs.db"
        )
    path = parts.path[1:]
    if not path or path == ":memory:":
        raise DatabaseURLError(f"SQLite URL {url!r} must name a file (in-memory is not shared)")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    sync = options.pop("synchronous", "FULL").upper()
    if sync not in ("FULL", "NORMAL", "EXTRA", "OFF"):
        raise DatabaseURLError(f"Invalid synchronous={sync!r} in {url!r}")
    if options:
        raise DatabaseURLError(f"Unknown SQLite URL option(s) {sorted(options)} in {url!r}")
    return SQLiteStore(url, path, synchronous=sync)
