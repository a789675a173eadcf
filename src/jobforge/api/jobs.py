"""/jobs: enqueue, read, list, cancel and retry jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from jobforge.api.auth import Caller, requires
from jobforge.api.common import decode_cursor, encode_cursor, forge, job_of, workflow_of
from jobforge.api.errors import responses
from jobforge.api.models import DependencyIn, JobAccepted, JobIn, JobOut, JobPage
from jobforge.app import Forge
from jobforge.errors import UnknownJobType
from jobforge.jobs import JobStatus
from jobforge.store.base import ListParams

router = APIRouter(tags=["jobs"])
Reader = Annotated[Caller, Depends(requires("jobs:read"))]
Writer = Annotated[Caller, Depends(requires("jobs:write"))]


def job_out(job: Any) -> dict[str, Any]:
    return dict(job.to_dict())


def _parents(app: Forge, caller: Caller, deps: list[str | DependencyIn]) -> list[dict[str, Any]]:
    """Each parent must be the caller's job: another tenant's is reported as not found."""
    out: list[dict[str, Any]] = []
    for d in deps:
        dep = DependencyIn(job_id=d, condition=None) if isinstance(d, str) else d
        parent = job_of(app, caller, dep.job_id)
        out.append({"job": parent.job_id, "type": dep.type, "condition": dep.condition})
    return out


@router.post(
    "/jobs", status_code=202, response_model=JobAccepted,
    responses=responses(400, 401, 403, 404, 413, 422),
)  # fmt: skip
def enqueue_job(body: JobIn, request: Request, caller: Writer) -> dict[str, Any]:
    """Enqueue a job; with `unique_key`, an unfinished job holding the key is returned."""
    app = forge(request)
    if body.type in app.builtins:  # a batch or a durable run is more than one job row
        raise UnknownJobType(
            f"Job type {body.type!r} is built in: use POST /runs/{{name}}/start for durable"
            " workflows"
        )
    ref = app.enqueue(
        body.type, body.payload, queue=body.queue, priority=body.priority, delay=body.delay,
        retries=body.retries, timeout=body.timeout, unique_key=body.unique_key,
        trace_id=body.trace_id, correlation_id=body.correlation_id, tenant_id=caller.tenant,
        depends_on=_parents(app, caller, body.depends_on or []) or None,
    )  # fmt: skip
    job = job_of(app, caller, ref)
    return {"job_id": job.job_id, "status": job.status.value, "created_at": job.created_at}


@router.get("/jobs/{job_id}", response_model=JobOut, responses=responses(401, 403, 404))
def get_job(job_id: str, request: Request, caller: Reader) -> dict[str, Any]:
    return job_out(job_of(forge(request), caller, job_id))


@router.get("/jobs", response_model=JobPage, responses=responses(401, 403, 404, 422))
def list_jobs(
    request: Request,
    caller: Reader,
    status: JobStatus | None = None,
    queue: Annotated[str | None, Query(max_length=200)] = None,
    type: Annotated[str | None, Query(max_length=200)] = None,
    workflow_id: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """Newest first; `next_cursor` fetches the following page."""
    app = forge(request)
    wf = None if workflow_id is None else workflow_of(app, caller, workflow_id).id
    params = ListParams(
        status=None if status is None else status.value, queue=queue, type=type,
        workflow_id=wf, tenant=caller.tenant, before=decode_cursor(cursor), limit=limit,
    )  # fmt: skip
    jobs = app.store.list_jobs(params)
    last = jobs[-1] if len(jobs) == limit else None
    return {
        "jobs": [job_out(j) for j in jobs],
        "next_cursor": None if last is None else encode_cursor(last.created_at, last.id),
    }


@router.post(
    "/jobs/{job_id}/cancel", response_model=JobOut, responses=responses(401, 403, 404, 409)
)
def cancel_job(job_id: str, request: Request, caller: Writer) -> dict[str, Any]:
    app = forge(request)
    job = job_of(app, caller, job_id)
    return job_out(app.store.cancel_job(job.id))


@router.post("/jobs/{job_id}/retry", response_model=JobOut, responses=responses(401, 403, 404, 409))
def retry_job(job_id: str, request: Request, caller: Writer) -> dict[str, Any]:
    app = forge(request)
    job = job_of(app, caller, job_id)
    return job_out(app.store.retry_job(job.id))
