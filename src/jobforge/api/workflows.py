"""/workflows (DAGs of jobs) and /groups (named jobs of the app, enqueued as a workflow)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from jobforge.api.auth import Caller, requires
from jobforge.api.common import decode_cursor, encode_cursor, forge, workflow_of
from jobforge.api.errors import responses
from jobforge.api.models import (
    GroupEnqueueAllIn,
    GroupEnqueueIn,
    GroupOut,
    GroupPlanOut,
    WorkflowCreated,
    WorkflowIn,
    WorkflowOut,
    WorkflowPage,
    WorkflowStats,
)
from jobforge.deps import WorkflowStatus
from jobforge.registry import GroupPlan
from jobforge.store import graph
from jobforge.workflows.files import workflow_from_dict

router = APIRouter(tags=["workflows"])
Reader = Annotated[Caller, Depends(requires("workflows:read"))]
Writer = Annotated[Caller, Depends(requires("workflows:write"))]

_GRAPH_CONTENT = {
    "text/plain": {"schema": {"type": "string"}},
    "application/json": {"schema": {"type": "object"}},
    "image/svg+xml": {"schema": {"type": "string"}},
}


@router.post(
    "/workflows", status_code=201, response_model=WorkflowCreated,
    responses=responses(400, 401, 403, 413, 422),
)  # fmt: skip
def create_workflow(
    request: Request,
    caller: Writer,
    definition: Annotated[WorkflowIn, Body(description="as in a workflow file (JSON)")],
) -> dict[str, Any]:
    """Validate and enqueue a workflow: its jobs and edges in one transaction."""
    app = forge(request)
    fields = definition.model_dump(by_alias=True, exclude_unset=True)  # what was sent
    wf = workflow_from_dict(fields, "request body")
    if caller.tenant is not None:
        wf.tenant_id = caller.tenant
    ref = app.enqueue_workflow(wf)
    return {"workflow_id": ref, "status": workflow_of(app, caller, ref).status}


@router.get("/workflows", response_model=WorkflowPage, responses=responses(401, 403, 422))
def list_workflows(
    request: Request,
    caller: Reader,
    status: WorkflowStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """Newest first; `next_cursor` fetches the following page."""
    found = graph.list_workflows(
        forge(request).store, None if status is None else status.value, limit,
        tenant=caller.tenant, before=decode_cursor(cursor),
    )  # fmt: skip
    last = found[-1] if len(found) == limit else None
    return {
        "workflows": [w.to_dict() for w in found],
        "next_cursor": None if last is None else encode_cursor(last.created_at, last.id),
    }


@router.get(
    "/workflows/{workflow_id}", response_model=WorkflowOut, responses=responses(401, 403, 404)
)
def get_workflow(workflow_id: str, request: Request, caller: Reader) -> dict[str, Any]:
    return workflow_of(forge(request), caller, workflow_id).to_dict()


@router.get(
    "/workflows/{workflow_id}/stats",
    response_model=WorkflowStats,
    responses=responses(401, 403, 404),
)
def workflow_stats(workflow_id: str, request: Request, caller: Reader) -> dict[str, Any]:
    """Jobs by status and the share finished."""
    return workflow_of(forge(request), caller, workflow_id).stats()


@router.get(
    "/workflows/{workflow_id}/graph", response_class=Response,
    responses={200: {"content": _GRAPH_CONTENT, "description": "The graph"},
               **responses(401, 403, 404, 422)},
)  # fmt: skip
def workflow_graph(
    workflow_id: str,
    request: Request,
    caller: Reader,
    format: Literal["dot", "mermaid", "json", "svg"] = "json",
) -> Response:
    """The workflow as Graphviz DOT, Mermaid (text), JSON (nodes and edges) or SVG (a
    picture, up to 2,000 jobs)."""
    app = forge(request)
    wf = workflow_of(app, caller, workflow_id)
    text = app.workflow_graph(wf.workflow_id, format)
    if format == "json":
        return Response(text, media_type="application/json")
    if format == "svg":
        return Response(text, media_type="image/svg+xml")
    return PlainTextResponse(text)


def _control(verb: str, workflow_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    app = forge(request)
    wf = workflow_of(app, caller, workflow_id)
    action = {"cancel": app.cancel_workflow, "retry": app.retry_workflow,
              "resume": app.resume_workflow}[verb]  # fmt: skip
    return action(wf.workflow_id).to_dict()


_CONTROL = {"response_model": WorkflowOut, "responses": responses(401, 403, 404, 409)}


@router.post("/workflows/{workflow_id}/cancel", **_CONTROL)  # type: ignore[arg-type]
def cancel_workflow(workflow_id: str, request: Request, caller: Writer) -> dict[str, Any]:
    """Cancel the jobs not yet started; running ones see a cancel request."""
    return _control("cancel", workflow_id, request, caller)


@router.post("/workflows/{workflow_id}/retry", **_CONTROL)  # type: ignore[arg-type]
def retry_workflow(workflow_id: str, request: Request, caller: Writer) -> dict[str, Any]:
    """Re-run failed jobs and the skipped or cancelled ones below them; keep successes."""
    return _control("retry", workflow_id, request, caller)


@router.post("/workflows/{workflow_id}/resume", **_CONTROL)  # type: ignore[arg-type]
def resume_workflow(workflow_id: str, request: Request, caller: Writer) -> dict[str, Any]:
    """Go on with a workflow paused by its failure policy."""
    return _control("resume", workflow_id, request, caller)


# -- groups ------------------------------------------------------------------------------
@router.get(
    "/groups", response_model=list[GroupOut], tags=["groups"], responses=responses(401, 403)
)
def list_groups(request: Request, caller: Reader) -> list[dict[str, Any]]:
    """The app's job groups, with their number of jobs."""
    return [{"name": g, "jobs": n} for g, n in forge(request).groups().items()]


def _plan(plan: GroupPlan) -> JSONResponse:
    return JSONResponse(plan.to_dict(), status_code=200 if plan.dry_run else 201)


_PLAN = {
    "response_model": GroupPlanOut,
    "tags": ["groups"],
    "responses": {
        201: {"model": GroupPlanOut, "description": "Enqueued as one workflow"},
        **responses(400, 401, 403, 422),
    },
}


@router.post("/groups/enqueue", **_PLAN)  # type: ignore[arg-type]
def enqueue_group(body: GroupEnqueueIn, request: Request, caller: Writer) -> JSONResponse:
    """A group's jobs plus what they depend on, as one workflow (200 and nothing written
    with `dry_run`)."""
    app = forge(request)
    plan = app.enqueue_group(body.group, body.params, dry_run=body.dry_run,
                             tenant_id=caller.tenant)  # fmt: skip
    return _plan(plan)


@router.post("/groups/enqueue-all", **_PLAN)  # type: ignore[arg-type]
def enqueue_all(body: GroupEnqueueAllIn, request: Request, caller: Writer) -> JSONResponse:
    """Every registered job as one workflow, in dependency order."""
    app = forge(request)
    return _plan(app.enqueue_all(body.params, dry_run=body.dry_run, tenant_id=caller.tenant))
