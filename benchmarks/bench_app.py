"""The app the benchmarks run: no-op jobs, sync and async.

`benchmarks/run.py` builds one per database with `build(url)`; the subprocess worker loads
the module-level `app` (`jobforge worker --app bench_app:app --db URL`, run from this folder).
"""

from __future__ import annotations

from jobforge import Forge, JobContext


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


app = build()
