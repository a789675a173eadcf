"""The app the end-to-end tests run in real worker processes (`--app tests.apps.e2e:app`).

Handlers leave evidence on disk (marker files, per-process logs) so a test in another
process can tell when a job started, how often it ran, and in which worker.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from jobforge import Forge, JobContext

app = Forge()  # the database comes from JOBFORGE_DATABASE_URL or --db

NOT_A_FORGE = "this is a string, not a Forge"

_lock = threading.Lock()


@app.job
def echo(ctx: JobContext, **payload: Any) -> dict[str, Any]:
    return payload


@app.job
def sleepy(
    ctx: JobContext, seconds: float, marker_dir: str, retry_seconds: float | None = None
) -> dict[str, Any]:
    """Write `<marker_dir>/<job_id>.<attempt>` on start, then sleep.

    Later attempts sleep `retry_seconds` when given, so a rescued job finishes quickly.
    """
    started = time.time()
    marker = Path(marker_dir) / f"{ctx.job_id}.{ctx.attempt}"
    marker.write_text(f"{os.getpid()} {started}\n")
    time.sleep(seconds if ctx.attempt == 1 or retry_seconds is None else retry_seconds)
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@app.job(retries=0)
def needs_file(ctx: JobContext, path: str) -> str:
    """Fails (for good: no retries) until the file at `path` exists."""
    if not Path(path).exists():
        raise RuntimeError(f"missing file {path}")
    return Path(path).read_text()


@app.job
def record(ctx: JobContext, out_dir: str) -> int:
    """Append this job's id to `<out_dir>/<pid>.log`: one line per run, per process."""
    line = f"{ctx.job_id} {ctx.attempt}\n"
    with _lock, open(Path(out_dir) / f"{os.getpid()}.log", "a") as f:
        f.write(line)
    return os.getpid()


@app.job
def stamp(ctx: JobContext) -> dict[str, float]:
    """The wall-clock time the handler started, to measure enqueue-to-start latency."""
    return {"started": time.time()}
