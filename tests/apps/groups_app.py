"""A registry with groups for the group tests (`--app tests.apps.groups_app:app`).

Three groups and one job without a group, with dependencies across groups: a chain
`extract -> clean`, a diamond `clean -> (match-scores, rank-scores) -> feed-build`, and the
chain goes on `feed-build -> feed-publish`. `audit` stands alone.

Each handler sleeps a little (SLEEP, or $GROUPS_APP_SLEEP seconds) so that jobs which may run
at once do overlap and, when $GROUPS_APP_OUT names a directory, writes one file per run there:
`name start end pid`, the wall-clock times the handler started and finished, for order checks
across processes.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from jobforge import Forge, JobContext

OUT_ENV = "GROUPS_APP_OUT"
SLEEP_ENV = "GROUPS_APP_SLEEP"  # seconds each handler sleeps, when set
SLEEP = 0.2

# name -> (group, depends_on)
SHAPE: dict[str, tuple[str | None, list[str]]] = {
    "extract": ("ingest", []),
    "clean": ("ingest", ["extract"]),
    "match-scores": ("scoring", ["clean"]),
    "rank-scores": ("scoring", ["clean"]),
    "feed-build": ("feed", ["match-scores", "rank-scores"]),
    "feed-publish": ("feed", ["feed-build"]),
    "audit": (None, []),
}


def _handler(name: str) -> Any:
    def handler(ctx: JobContext, **payload: Any) -> dict[str, Any]:
        started = time.time()
        time.sleep(float(os.environ.get(SLEEP_ENV, SLEEP)))
        ended = time.time()
        out = os.environ.get(OUT_ENV)
        if out:
            path = Path(out) / f"{name}.{uuid.uuid4().hex}"
            path.write_text(f"{name} {started!r} {ended!r} {os.getpid()}\n")
        return {"job": name, "payload": payload}

    handler.__name__ = name.replace("-", "_")
    return handler


def register(app: Forge) -> Forge:
    """Register the jobs of SHAPE on `app` (registration order = SHAPE's order)."""
    for name, (group, depends_on) in SHAPE.items():
        extra: dict[str, Any] = {}
        if name == "match-scores":
            extra = {
                "description": "Score every match.",
                "defaults": {"batchSize": 100},
                "examples": [{"batchSize": 10}],
            }
        if name == "feed-build":
            extra = {"defaults": {"batchSize": 50, "locale": "en"}}
        app.job(name=name, group=group, depends_on=depends_on, retries=0, **extra)(_handler(name))
    return app


app = register(Forge())  # the database comes from JOBFORGE_DATABASE_URL or --db
