"""Read models for workflows and edges, as the API, CLI and graph export show them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobforge.jobs import iso, readable_id


def workflow_ref(workflow_id: uuid.UUID) -> str:
    """The readable `wf_<32 hex>` form of a workflow id."""
    return "wf_" + workflow_id.hex


def parse_workflow_ref(ref: str) -> uuid.UUID:
    from jobforge.errors import ValidationError

    text = ref.strip()
    if text.startswith("wf_"):
        text = text[3:]
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValidationError(f"Invalid workflow id: {ref!r}") from None


STAT_KEYS = ("waiting", "queued", "running", "succeeded", "failed", "skipped", "cancelled")


@dataclass(slots=True)
class EdgeRecord:
    id: uuid.UUID
    parent_id: uuid.UUID
    child_id: uuid.UUID
    kind: str
    condition: str | None
    status: str
    workflow_id: uuid.UUID | None
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "parent_id": readable_id(self.parent_id),
            "child_id": readable_id(self.child_id),
            "dependency_type": self.kind,
            "condition": self.condition,
            "status": self.status,
            "workflow_id": None if self.workflow_id is None else workflow_ref(self.workflow_id),
            "created_at": iso(self.created_at),
            "resolved_at": iso(self.resolved_at),
            "resolved_by": self.resolved_by,
        }


@dataclass(slots=True)
class WorkflowRecord:
    id: uuid.UUID
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
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def workflow_id(self) -> str:
        return workflow_ref(self.id)

    def stats(self) -> dict[str, Any]:
        """Totals by status; `queued` includes scheduled, `succeeded` partial successes."""
        c = self.counts
        out: dict[str, Any] = {"total": sum(c.values())}
        out.update(dict.fromkeys(STAT_KEYS, 0))
        for status, n in c.items():
            key = {"scheduled": "queued", "partial_success": "succeeded"}.get(status, status)
            out[key] = out.get(key, 0) + n
        done = sum(out[k] for k in ("succeeded", "failed", "skipped", "cancelled"))
        out["completion_percentage"] = (
            round(100.0 * done / out["total"], 1) if out["total"] else 0.0
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "workflow_id": self.workflow_id,
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "failure_policy": self.failure_policy,
            "priority": self.priority,
            "timeout": self.timeout,
            "metadata": self.metadata,
            "tenant_id": self.tenant_id,
            "trace_id": self.trace_id,
            "correlation_id": self.correlation_id,
            "reason": self.reason,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "completed_at": iso(self.completed_at),
            "stats": self.stats(),
        }
