"""Store reads for `/metrics`: counts by status and recent run times, one read each."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from jobforge.jobs import utcnow

if TYPE_CHECKING:
    from jobforge.store.sql import SQLStore

WINDOW = timedelta(minutes=5)  # "recent": run times and outcomes of jobs finished since
WORKER_SEEN = timedelta(minutes=1)


@dataclass
class Snapshot:
    jobs: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, status) -> n
    run_seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    finished: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    workflows: dict[str, int] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)
    workers: int = 0


def snapshot(store: SQLStore) -> Snapshot:
    now = utcnow()
    snap = Snapshot()
    with store._autocommit() as cur:
        for r in store._run(cur, "metrics_jobs").fetchall():
            snap.jobs[(r["queue"], r["status"])] = int(r["n"])
        for r in store._run(cur, "metrics_finished", since=now - WINDOW).fetchall():
            snap.finished[(r["type"], r["status"])] += 1
            snap.run_seconds[r["type"]].append(max(0.0, float(r["seconds"])))
        snap.workflows = {r["status"]: int(r["n"]) for r in store._run(cur, "metrics_workflows")}
        snap.runs = {r["status"]: int(r["n"]) for r in store._run(cur, "metrics_runs")}
        seen = store._run(cur, "metrics_workers", since=now - WORKER_SEEN).fetchone()
        snap.workers = int(seen["n"])
    return snap
