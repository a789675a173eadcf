"""The storage interface: domain verbs, each one transaction, shared by every backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from jobforge.jobs import Job, JobStatus, NewEdge, NewJob, NewWorkflow
from jobforge.limits import Limit


@dataclass(frozen=True, slots=True)
class ClaimParams:
    """Claim up to `limit` runnable jobs of `types` (and `queues`, None = all) for a worker."""

    worker_id: str
    types: Sequence[str]
    queues: Sequence[str] | None
    limit: int
    lease_seconds: float
    limits: Sequence[Limit] = ()  # concurrency/rate limits that apply to these types


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one attempt, written only while the claim (`lease_token`) still holds."""

    id: uuid.UUID
    lease_token: str
    status: JobStatus
    result_json: str | None = None
    errors: list[dict[str, Any]] | None = None  # the job's whole new error list
    scheduled_at: datetime | None = None  # next run, for retries and snoozes
    attempt_delta: int = 0  # -1 gives back the attempt (snooze)
    progress: int | None = None
    result_url: str | None = None
    parks_run: bool = False  # a durable run parked by a sleep or an event wait
    wait_event: str | None = None  # the event it waits for: sent meanwhile, it is due at once


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    id: uuid.UUID
    lease_token: str
    progress: int
    message: str | None


@dataclass(frozen=True, slots=True)
class ListParams:
    status: str | None = None
    queue: str | None = None
    type: str | None = None
    dependency_status: str | None = None
    workflow_id: uuid.UUID | None = None
    tenant: str | None = None  # 'default' also matches jobs enqueued without a tenant
    before: tuple[datetime, uuid.UUID] | None = None  # keyset page: older than (created_at, id)
    limit: int = 100


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    hostname: str
    pid: int
    queues: Sequence[str] | None
    concurrency: int


@dataclass(frozen=True, slots=True)
class RescueResult:
    requeued: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)


class Listener(Protocol):
    """Calls `on_wake` whenever jobs may have become runnable (possibly spuriously)."""

    def start(self, on_wake: Callable[[], None]) -> None: ...

    def stop(self) -> None: ...


class Store(Protocol):
    """Every method is one transaction; `bound()` runs them inside the caller's own."""

    url: str
    supports_listen: bool

    def migrate(self) -> int: ...

    def schema_version(self) -> int: ...

    def insert_jobs(
        self,
        jobs: Sequence[NewJob],
        edges: Sequence[NewEdge] = (),
        workflow: NewWorkflow | None = None,
        max_depth: int = ...,
    ) -> list[uuid.UUID]: ...

    def claim_jobs(self, params: ClaimParams) -> list[Job]: ...

    def finish_jobs(
        self, outcomes: Sequence[Outcome], progress: Sequence[ProgressUpdate] = ()
    ) -> list[uuid.UUID]: ...

    def finish_and_claim(
        self,
        outcomes: Sequence[Outcome],
        progress: Sequence[ProgressUpdate],
        claim: ClaimParams | None,
    ) -> tuple[list[uuid.UUID], list[Job]]: ...

    def expire_overdue(self) -> int: ...

    def heartbeat(self, worker_id: str, lease_seconds: float) -> dict[uuid.UUID, bool]: ...

    def release_jobs(self, claims: Sequence[tuple[uuid.UUID, str]]) -> int: ...

    def rescue_expired(self) -> RescueResult: ...

    def cancel_job(self, job_id: uuid.UUID) -> Job: ...

    def retry_job(self, job_id: uuid.UUID) -> Job: ...

    def get_job(self, job_id: uuid.UUID) -> Job | None: ...

    def list_jobs(self, params: ListParams) -> list[Job]: ...

    def next_due_at(
        self, types: Sequence[str], queues: Sequence[str] | None
    ) -> datetime | None: ...

    def register_worker(self, info: WorkerInfo) -> None: ...

    def unregister_worker(self, worker_id: str) -> None: ...

    def bound(self, connection: Any) -> Store: ...

    def listener(self) -> Listener: ...

    def close(self) -> None: ...
