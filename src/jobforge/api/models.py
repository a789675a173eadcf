"""Request and response bodies, which are also the OpenAPI document's schemas."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Id = Field(min_length=1, max_length=100)
Ref = Annotated[str, Field(min_length=1, max_length=100)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ----------------------------------------------------------------------------
class DependencyIn(Strict):
    job_id: str = Id
    type: Literal["sequential", "parallel", "conditional"] = "sequential"
    condition: str | None = Field(None, max_length=2000)


class JobIn(Strict):
    type: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = Field(None, min_length=1, max_length=200)
    priority: int | None = Field(None, ge=-1_000_000, le=1_000_000)
    delay: float | None = Field(None, ge=0, le=366 * 86400, description="seconds")
    retries: int | None = Field(None, ge=0, le=1000)
    timeout: float | None = Field(None, gt=0, le=366 * 86400, description="seconds")
    depends_on: list[Ref | DependencyIn] | None = Field(None, max_length=1000)
    unique_key: str | None = Field(None, min_length=1, max_length=500)
    trace_id: str | None = Field(None, max_length=200)
    correlation_id: str | None = Field(None, max_length=200)


class EdgeIn(Strict):
    parent_job_id: str = Id
    child_job_id: str = Id
    dependency_type: Literal["sequential", "parallel", "conditional"] = "sequential"
    condition: str | None = Field(None, max_length=2000)


class CheckIn(Strict):
    job_id: str = Id


class GroupEnqueueIn(Strict):
    group: str = Field(min_length=1, max_length=200)
    dry_run: bool = False
    params: dict[str, dict[str, Any]] | None = None


class GroupEnqueueAllIn(Strict):
    dry_run: bool = False
    params: dict[str, dict[str, Any]] | None = None


# A workflow definition, as in the workflow files (src/jobforge/workflows/files.py checks its
# structure and names): typed here so that numbers are bounded and finite, as for JobIn.
Seconds = Field(None, gt=0, le=366 * 86400, allow_inf_nan=False, strict=True)
Name = Field(min_length=1, max_length=200)
EdgeType = Literal["sequential", "parallel", "conditional"]


def _finite(value: Any) -> Any:
    """Refuse NaN and infinities (Python's JSON reads them; a JSON column does not), and
    what is not JSON at all (the raw bytes of a body sent as another content type)."""
    try:
        json.dumps(value, allow_nan=False)
    except TypeError as exc:
        raise ValueError(str(exc)) from None  # a ValueError is reported as invalid input
    return value


JsonValue = Annotated[Any, AfterValidator(_finite)]


class WorkflowDependencyIn(Strict):
    job: str = Name
    type: EdgeType = "sequential"
    condition: str | None = Field(None, max_length=2000)


class WorkflowEdgeIn(Strict):
    from_: str = Field(alias="from", min_length=1, max_length=200)
    to: str = Name
    type: EdgeType = "sequential"
    condition: str | None = Field(None, max_length=2000)


class WorkflowJobIn(Strict):
    name: str | None = Field(None, min_length=1, max_length=200, description="or `id`")
    id: str | None = Field(None, min_length=1, max_length=200)
    type: str | None = Field(None, min_length=1, max_length=200, description="default: name")
    queue: str | None = Field(None, min_length=1, max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: int | None = Field(None, ge=-1_000_000, le=1_000_000, strict=True)
    retries: int | None = Field(None, ge=0, le=1000, strict=True)
    timeout: float | None = Seconds
    delay: float | None = Field(None, ge=0, le=366 * 86400, allow_inf_nan=False, strict=True)
    optional: bool = Field(False, strict=True)
    depends_on: list[str | WorkflowDependencyIn] = Field(default_factory=list, max_length=1000)
    dependency_timeout: float | None = Seconds


class WorkflowIn(Strict):
    name: str = Name
    description: str | None = Field(None, max_length=10_000)
    failure_policy: Literal["fail_fast", "continue_on_failure", "manual"] = "fail_fast"
    timeout: float | None = Seconds
    priority: int | None = Field(None, ge=-1_000_000, le=1_000_000, strict=True)
    retries: int | None = Field(None, ge=0, le=1000, strict=True)
    trace_id: str | None = Field(None, max_length=200)
    correlation_id: str | None = Field(None, max_length=200)
    tenant_id: str | None = Field(None, max_length=64, description="ignored: the key's tenant")
    metadata: Annotated[dict[str, Any], AfterValidator(_finite)] = Field(default_factory=dict)
    jobs: list[WorkflowJobIn] = Field(min_length=1)
    dependencies: list[WorkflowEdgeIn] = Field(default_factory=list, description="edges apart")


class RunStartIn(Strict):
    input: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(None, min_length=1, max_length=500)


# -- responses ---------------------------------------------------------------------------
class JobAccepted(BaseModel):
    job_id: str
    status: str
    created_at: datetime


class JobOut(BaseModel):
    job_id: str
    type: str
    queue: str
    status: str
    payload: dict[str, Any]
    priority: int
    scheduled_at: datetime
    attempts: int
    max_attempts: int
    timeout: float | None
    progress: int
    progress_message: str | None
    result: Any
    result_url: str | None
    errors: list[dict[str, Any]]
    tenant_id: str | None
    trace_id: str | None
    correlation_id: str | None
    worker_id: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    workflow_id: str | None
    name: str | None
    dependency_status: str
    pending_parents: int
    reason: str | None
    cancel_requested: bool
    unique_key: str | None


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class EdgeOut(BaseModel):
    id: str
    parent_id: str
    child_id: str
    dependency_type: str
    condition: str | None
    status: str
    workflow_id: str | None
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None


class CheckOut(BaseModel):
    job_id: str
    can_execute: bool
    pending_dependencies: int
    failed_dependencies: int
    dependency_status: str


class JobDependencies(BaseModel):
    job_id: str
    parents: list[EdgeOut]
    children: list[EdgeOut]


class WorkflowStats(BaseModel):
    model_config = ConfigDict(extra="allow")
    total: int
    completion_percentage: float


class WorkflowOut(BaseModel):
    workflow_id: str
    name: str
    description: str | None
    status: str
    failure_policy: str
    priority: int
    timeout: float | None
    metadata: dict[str, Any]
    tenant_id: str | None
    trace_id: str | None
    correlation_id: str | None
    reason: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    stats: WorkflowStats


class WorkflowCreated(BaseModel):
    workflow_id: str
    status: str


class WorkflowPage(BaseModel):
    workflows: list[WorkflowOut]
    next_cursor: str | None


class GroupOut(BaseModel):
    name: str
    jobs: int


class PlannedJobOut(BaseModel):
    name: str
    group: str | None
    reason: str = Field(description='"member" or "dependency of X"')
    depends_on: list[str]
    payload: dict[str, Any]


class GroupPlanOut(BaseModel):
    target: str
    dry_run: bool
    workflow_id: str | None
    jobs: list[PlannedJobOut]


class RunOut(BaseModel):
    run_id: str
    job_id: str
    name: str
    version: int
    input: Any
    output: Any
    status: str
    current_step: str | None
    error: dict[str, Any] | None
    idempotency_key: str | None
    deadline: datetime | None
    tenant_id: str | None
    trace_id: str | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    completed_at: datetime | None


class Health(BaseModel):
    status: Literal["ok"]
    database: str
    schema_version: int
