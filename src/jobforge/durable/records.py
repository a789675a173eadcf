"""What is stored about a durable run and its steps, and the statuses they go through."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from jobforge.errors import ValidationError
from jobforge.jobs import iso


class RunStatus(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    WAITING = "waiting"  # parked by a sleep or an event wait: no worker slot held
    COMPLETED = "completed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATED = "compensated"
    SKIPPED = "skipped"  # an optional step that failed: recorded, and the run went on


RUN_FINISHED = frozenset(
    {RunStatus.COMPLETED, RunStatus.COMPENSATED, RunStatus.FAILED, RunStatus.CANCELLED}
)


def run_ref(run_id: uuid.UUID) -> str:
    return "run_" + run_id.hex


def parse_run_ref(ref: str) -> uuid.UUID:
    """`run_…`, or the driving job's `job_…` id, or the bare UUID."""
    text = ref.strip()
    for prefix in ("run_", "job_"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValidationError(f"Invalid run id: {ref!r}") from None


@dataclass(frozen=True, slots=True)
class StepRecord:
    name: str
    status: StepStatus
    seq: int
    input: Any
    result: Any
    error: dict[str, Any] | None
    attempts: int
    started_at: datetime | None
    completed_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "seq": self.seq,
            "input": self.input,
            "result": self.result,
            "error": self.error,
            "attempts": self.attempts,
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
        }


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: uuid.UUID
    name: str
    version: int
    input: Any
    output: Any
    status: RunStatus
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

    @property
    def run_id(self) -> str:
        return run_ref(self.id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "job_id": "job_" + self.id.hex,
            "name": self.name,
            "version": self.version,
            "input": self.input,
            "output": self.output,
            "status": self.status.value,
            "current_step": self.current_step,
            "error": self.error,
            "idempotency_key": self.idempotency_key,
            "deadline": iso(self.deadline),
            "tenant_id": self.tenant_id,
            "trace_id": self.trace_id,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "updated_at": iso(self.updated_at),
            "completed_at": iso(self.completed_at),
        }
