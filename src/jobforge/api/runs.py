"""/runs: start durable workflow runs, read them, cancel, resume, send events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request

from jobforge.api.auth import Caller, requires
from jobforge.api.common import forge, run_of
from jobforge.api.errors import responses
from jobforge.api.models import JsonValue, RunOut, RunStartIn
from jobforge.durable.records import RunRecord

router = APIRouter(tags=["runs"])
Reader = Annotated[Caller, Depends(requires("workflows:read"))]
Writer = Annotated[Caller, Depends(requires("workflows:write"))]
Name = Annotated[str, Path(min_length=1, max_length=200)]


def _scoped(caller: Caller, key: str | None) -> str | None:
    """Idempotency keys are per tenant: another tenant's run is never returned. (The default
    tenant's too: unprefixed, its keys could name a prefixed key of another tenant.)"""
    return key if key is None or caller.tenant is None else f"{caller.tenant}:{key}"


def run_out(caller: Caller, run: RunRecord) -> dict[str, Any]:
    out = run.to_dict()
    key = out["idempotency_key"]
    if caller.tenant is not None and key is not None:
        out["idempotency_key"] = key.removeprefix(f"{caller.tenant}:")
    return out


@router.post(
    "/runs/{name}/start", status_code=201, response_model=RunOut,
    responses=responses(400, 401, 403, 413, 422),
)  # fmt: skip
def start_run(name: Name, body: RunStartIn, request: Request, caller: Writer) -> dict[str, Any]:
    """Start a run of the durable workflow `name`; a repeated idempotency key returns the
    first run."""
    app = forge(request)
    key = _scoped(caller, body.idempotency_key)
    ref = app.start_workflow(name, body.input, idempotency_key=key, tenant_id=caller.tenant)
    return run_out(caller, run_of(app, caller, ref))


@router.get("/runs/{run_id}", response_model=RunOut, responses=responses(401, 403, 404))
def get_run(run_id: str, request: Request, caller: Reader) -> dict[str, Any]:
    return run_out(caller, run_of(forge(request), caller, run_id))


@router.post(
    "/runs/{run_id}/cancel", response_model=RunOut, responses=responses(401, 403, 404, 409)
)
def cancel_run(run_id: str, request: Request, caller: Writer) -> dict[str, Any]:
    """Roll the run back: its compensations run, latest first; it ends `cancelled`."""
    app = forge(request)
    return run_out(caller, app.cancel_run(run_of(app, caller, run_id).run_id))


@router.post(
    "/runs/{run_id}/resume", response_model=RunOut, responses=responses(401, 403, 404, 409)
)
def resume_run(run_id: str, request: Request, caller: Writer) -> dict[str, Any]:
    """Make a sleeping or waiting run due now."""
    app = forge(request)
    return run_out(caller, app.resume_run(run_of(app, caller, run_id).run_id))


@router.post(
    "/runs/{run_id}/events/{name}", status_code=202, response_model=RunOut,
    responses=responses(400, 401, 403, 404, 409, 413, 422),
)  # fmt: skip
def send_event(
    run_id: str,
    name: Name,
    request: Request,
    caller: Writer,
    data: Annotated[JsonValue, Body()] = None,
) -> dict[str, Any]:
    """Deliver the JSON body to the run's `wait_for_event(name)` and wake it."""
    app = forge(request)
    run = run_of(app, caller, run_id)
    app.send_event(run.run_id, name, data)
    return run_out(caller, app.get_run(run.run_id))
