"""/dependencies: add, check, list and remove edges between existing jobs."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from jobforge.api.auth import Caller, requires
from jobforge.api.common import forge, job_of
from jobforge.api.errors import not_found, responses
from jobforge.api.jobs import job_out
from jobforge.api.models import CheckIn, CheckOut, EdgeIn, EdgeOut, JobDependencies, JobOut
from jobforge.store import graph

router = APIRouter(tags=["dependencies"])
Reader = Annotated[Caller, Depends(requires("dependencies:read"))]
Writer = Annotated[Caller, Depends(requires("dependencies:write"))]


@router.post(
    "/dependencies", status_code=201, response_model=EdgeOut,
    responses=responses(400, 401, 403, 404, 409, 422),
)  # fmt: skip
def add_dependency(body: EdgeIn, request: Request, caller: Writer) -> dict[str, Any]:
    """Make a job that has not started wait for another; cycles are refused (422)."""
    app = forge(request)
    parent = job_of(app, caller, body.parent_job_id)
    child = job_of(app, caller, body.child_job_id)
    edge = app.add_dependency(parent.job_id, child.job_id, body.dependency_type, body.condition)
    return edge.to_dict()


@router.post(
    "/dependencies/check", response_model=CheckOut, responses=responses(400, 401, 403, 404, 422)
)
def check(body: CheckIn, request: Request, caller: Reader) -> dict[str, Any]:
    app = forge(request)
    return app.check_dependencies(job_of(app, caller, body.job_id).job_id)


@router.get(
    "/dependencies/job/{job_id}", response_model=JobDependencies, responses=responses(401, 403, 404)
)
def job_dependencies(job_id: str, request: Request, caller: Reader) -> dict[str, Any]:
    """The edges into the job (from its parents) and out of it (to its children)."""
    app = forge(request)
    job = job_of(app, caller, job_id)
    into, out = app.dependencies(job.job_id)
    return {
        "job_id": job.job_id,
        "parents": [e.to_dict() for e in into],
        "children": [e.to_dict() for e in out],
    }


@router.get(
    "/dependencies/job/{job_id}/parents",
    response_model=list[JobOut],
    responses=responses(401, 403, 404),
)
def parents(job_id: str, request: Request, caller: Reader) -> list[dict[str, Any]]:
    app = forge(request)
    return [job_out(j) for j in app.parents(job_of(app, caller, job_id).job_id)]


@router.get(
    "/dependencies/job/{job_id}/children",
    response_model=list[JobOut],
    responses=responses(401, 403, 404),
)
def children(job_id: str, request: Request, caller: Reader) -> list[dict[str, Any]]:
    app = forge(request)
    return [job_out(j) for j in app.children(job_of(app, caller, job_id).job_id)]


@router.delete(
    "/dependencies/{dependency_id}", status_code=204, responses=responses(401, 403, 404, 409)
)
def remove_dependency(dependency_id: str, request: Request, caller: Writer) -> Response:
    """Remove an edge into a job not yet started; the job is released if it was the last."""
    app = forge(request)
    try:
        edge = graph.get_edge(app.store, uuid.UUID(dependency_id))
    except ValueError:
        edge = None
    child = None if edge is None else app.store.get_job(edge.child_id)
    if edge is None or child is None or not caller.owns(child.tenant_id):
        raise not_found("dependency", dependency_id)
    app.remove_dependency(str(edge.id))
    return Response(status_code=204)
