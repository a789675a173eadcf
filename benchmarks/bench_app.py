"""The app the benchmarks run: no-op jobs, sync and async.

`benchmarks/run.py` builds one per database with `build(url)`; the subprocess worker loads
the module-level `app` (`jobforge worker --app bench_app:app --db URL`, run from this folder).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from jobforge import Forge, JobContext


class Databases(Protocol):
    """What `fresh` needs of a benchmark backend."""

    def new_url(self) -> str: ...

    def drop(self, url: str) -> None: ...


def build(url: str | None = None) -> Forge:
    """A Forge on `url` (None: $JOBFORGE_DATABASE_URL) with the benchmark's job types."""
    app = Forge(url)

    @app.job(retries=0)
    def noop(ctx: JobContext, i: int = 0) -> None:
        """Does nothing: the cost measured is jobforge's own."""

    @app.job(retries=0)
    async def noop_async(ctx: JobContext, i: int = 0) -> None:
        """The same on the event loop: no hop to a handler thread."""

    return app


@contextmanager
def fresh(backend: Databases) -> Iterator[tuple[str, Forge]]:
    """A new empty, migrated database and the benchmark app on it."""
    url = backend.new_url()
    forge = build(url)
    forge.store  # noqa: B018 - create and migrate outside the timings
    try:
        yield url, forge
    finally:
        forge.close()
        backend.drop(url)


app = build()
