"""The end-to-end app (`tests.apps.e2e`) plus a job that runs until it is asked to stop.

`--app tests.apps.wf_app:app` gives every e2e job type and `until_cancelled`, for testing
`workflow cancel` against a job that is certainly still running when the cancel lands.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jobforge import JobContext
from tests.apps.e2e import app

__all__ = ["app"]


@app.job(retries=0)
def until_cancelled(ctx: JobContext, marker_dir: str, limit: float = 30.0) -> dict[str, Any]:
    """Write `<marker_dir>/<job_id>` on start, then wait for `ctx.cancel_requested`."""
    (Path(marker_dir) / ctx.job_id).write_text("started\n")
    deadline = time.monotonic() + limit
    while not ctx.cancel_requested:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no cancel request within {limit}s")
        time.sleep(0.02)
    return {"stopped": "cancel requested"}
