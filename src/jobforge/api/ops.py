"""/health and /metrics (Prometheus text format, read from the database at each scrape)."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from jobforge.api.auth import Caller, requires
from jobforge.api.common import forge
from jobforge.api.errors import responses
from jobforge.api.models import Health
from jobforge.store import metrics as stored
from jobforge.store.sql import SQLStore

router = APIRouter(tags=["operations"])
QUEUED = ("queued", "scheduled")


@router.get("/health", response_model=Health, responses=responses(401))
def health(request: Request) -> dict[str, Any]:
    """The database answers and its schema is current (no key needed)."""
    store = forge(request).store
    return {
        "status": "ok",
        "database": store.url.split("://")[0],
        "schema_version": store.schema_version(),
    }


class StoreCollector(Collector):
    """Reads the counts at scrape time, so every API process reports the same numbers."""

    def __init__(self, store: SQLStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        snap = stored.snapshot(self._store)
        jobs = GaugeMetricFamily(
            "jobforge_jobs", "Jobs by queue and status", labels=["queue", "status"]
        )
        depth: dict[str, int] = {}
        for (queue, status), n in sorted(snap.jobs.items()):
            jobs.add_metric([queue, status], n)
            depth[queue] = depth.get(queue, 0) + (n if status in QUEUED else 0)
        yield jobs
        queue_depth = GaugeMetricFamily(
            "jobforge_queue_depth", "Jobs queued or scheduled, by queue", labels=["queue"]
        )
        for queue, n in sorted(depth.items()):
            queue_depth.add_metric([queue], n)
        yield queue_depth
        window = int(stored.WINDOW.total_seconds())
        finished = GaugeMetricFamily(
            "jobforge_jobs_finished_recent",
            f"Jobs finished in the last {window}s, by type and outcome",
            labels=["type", "status"],
        )
        for (type_, status), n in sorted(snap.finished.items()):
            finished.add_metric([type_, status], n)
        yield finished
        run = SummaryMetricFamily(
            "jobforge_job_run_seconds",
            f"Run time of the jobs finished in the last {window}s, by type",
            labels=["type"],
        )
        for type_, seconds in sorted(snap.run_seconds.items()):
            run.add_metric([type_], count_value=len(seconds), sum_value=sum(seconds))
        yield run
        p95 = GaugeMetricFamily(
            "jobforge_job_run_seconds_p95",
            f"95th percentile run time of the jobs finished in the last {window}s",
            labels=["type"],
        )
        for type_, seconds in sorted(snap.run_seconds.items()):
            p95.add_metric([type_], _p95(seconds))
        yield p95
        for name, counts, what in (("workflows", snap.workflows, "DAG workflows"),
                                   ("runs", snap.runs, "Durable workflow runs")):  # fmt: skip
            family = GaugeMetricFamily(f"jobforge_{name}", f"{what} by status", labels=["status"])
            for status, n in sorted(counts.items()):
                family.add_metric([status], n)
            yield family
        yield GaugeMetricFamily(
            "jobforge_workers", "Workers seen in the last minute", value=snap.workers
        )


def _p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


@router.get(
    "/metrics", response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
                     "description": "Prometheus text format"},
               **responses(401, 403)},
)  # fmt: skip
def metrics(request: Request, caller: Annotated[Caller, Depends(requires("admin"))]) -> Response:
    """Queue depths, jobs by status, recent run times and failures, workflows, runs, workers.

    Counts cover every tenant, so the key needs `admin`."""
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
