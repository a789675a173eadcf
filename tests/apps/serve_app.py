"""The app behind the HTTP API end-to-end tests (`--app tests.apps.serve_app:app`).

Plain jobs whose outcome a test can check from another process, and the durable workflows
of `tests.apps.durable_app` (`greet`, `approval`, ...) so that runs can be started over HTTP.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jobforge import Forge, JobContext
from tests.apps.durable_app import register

app = Forge()  # the database comes from JOBFORGE_DATABASE_URL or --db
register(app)


@app.job
def echo(ctx: JobContext, **payload: Any) -> dict[str, Any]:
    return payload


@app.job(retries=0)
def step(ctx: JobContext, name: str, log: str) -> dict[str, Any]:
    """Append `name` to the file `log` (one line per run), so a test sees the run order."""
    with open(log, "a") as f:
        f.write(name + "\n")
    return {"step": name, "started": time.time()}


@app.job(retries=0)
def wait_for_file(ctx: JobContext, path: str, limit: float = 30.0) -> str:
    """Run until the file at `path` exists (a test holds a job `running` this way)."""
    deadline = time.monotonic() + limit
    while not Path(path).exists():
        if time.monotonic() > deadline or ctx.cancel_requested:
            raise TimeoutError(f"no file {path} within {limit}s")
        time.sleep(0.02)
    return Path(path).read_text()
