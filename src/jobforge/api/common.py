"""What every route needs: the Forge, tenant-checked lookups, and page cursors."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from fastapi import Request

from jobforge.api.auth import Caller
from jobforge.api.errors import ApiError, not_found
from jobforge.app import Forge
from jobforge.durable.records import RunRecord, parse_run_ref
from jobforge.errors import JobNotFound, ValidationError
from jobforge.jobs import Job, parse_job_ref
from jobforge.workflows.records import WorkflowRecord, parse_workflow_ref


def forge(request: Request) -> Forge:
    app: Forge = request.app.state.forge
    return app


def _parse(parser: object, ref: str, what: str) -> uuid.UUID:
    try:
        return parser(ref)  # type: ignore[operator, no-any-return]
    except ValidationError:
        raise not_found(what, ref) from None


def job_of(app: Forge, caller: Caller, ref: str) -> Job:
    """The caller's job, else 404 (also when it is another tenant's)."""
    job = app.store.get_job(_parse(parse_job_ref, ref, "job"))
    if job is None or not caller.owns(job.tenant_id):
        raise not_found("job", ref)
    return job


def workflow_of(app: Forge, caller: Caller, ref: str) -> WorkflowRecord:
    wf = app.get_workflow(str(_parse(parse_workflow_ref, ref, "workflow")))
    if wf is None or not caller.owns(wf.tenant_id):
        raise not_found("workflow", ref)
    return wf


def run_of(app: Forge, caller: Caller, ref: str) -> RunRecord:
    run_id = _parse(parse_run_ref, ref, "run")
    try:
        run = app.get_run(str(run_id))
    except JobNotFound:
        raise not_found("run", ref) from None
    if not caller.owns(run.tenant_id):
        raise not_found("run", ref)
    return run


def encode_cursor(created_at: datetime, id_: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{id_}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str | None) -> tuple[datetime, uuid.UUID] | None:
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        at, _, id_ = raw.partition("|")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("naive time")
        return when, uuid.UUID(id_)
    except ValueError:
        raise ApiError(422, "invalid", f"Invalid cursor: {text[:40]!r}") from None
