"""Request and response bodies, which are also the OpenAPI document's schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Id = Field(min_length=1, max_length=100)


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
    depends_on: list[str | DependencyIn] | None = Field(None, max_length=1000)
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
