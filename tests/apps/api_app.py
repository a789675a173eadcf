"""A small registry for the in-process HTTP API tests (tests/integration/test_api_*.py):
plain jobs, groups with a dependency across groups, and a durable workflow that waits for an
event.

Groups: `ingest` = fetch -> parse; `publish` = render (depends on parse, in `ingest`).
`approval` (durable) records a step, then waits for the event `approved` and returns who
approved it.
"""

from __future__ import annotations

from typing import Any

from jobforge import Forge, JobContext


def register(app: Forge) -> Forge:
    """Register the API test jobs and workflows on `app`."""

    @app.job(retries=0)
    def add(ctx: JobContext, a: int, b: int) -> dict[str, int]:
        ctx.progress(50, "half way")
        return {"sum": a + b}

    @app.job(retries=0)
    def fail(ctx: JobContext, message: str = "boom") -> None:
        raise RuntimeError(message)

    @app.job(name="fetch", group="ingest", retries=0)
    def fetch(ctx: JobContext, /, **payload: Any) -> dict[str, Any]:
        return {"fetched": payload}

    @app.job(name="parse", group="ingest", depends_on=["fetch"], retries=0)
    def parse(ctx: JobContext, /, **payload: Any) -> str:
        return "parsed"

    @app.job(name="render", group="publish", depends_on=["parse"], retries=0,
             defaults={"format": "html"})  # fmt: skip
    def render(ctx: JobContext, /, **payload: Any) -> dict[str, Any]:
        return payload

    @app.workflow(name="approval")
    def approval(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
        ctx.step("prepare", lambda: "ready").run()
        data = ctx.wait_for_event("approved", timeout=3600)
        return {"approved_by": data["by"], "input": input}

    return app
