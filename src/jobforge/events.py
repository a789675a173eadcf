"""The change feed: what changed (a job, workflow or run reached a status), in commit order.

Database triggers write one event per change in the transaction that makes it, so the feed
misses nothing and a reader that resumes from its cursor sees each event exactly once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from jobforge.errors import ValidationError
from jobforge.jobs import iso, readable_id

KINDS = ("job", "workflow", "run")


class FeedCursor(NamedTuple):
    """A position in the feed: (transaction id, event id); tuples order like the feed."""

    txid: int
    id: int

    def __str__(self) -> str:
        return f"{self.txid}-{self.id}"

    @classmethod
    def parse(cls, text: str) -> FeedCursor:
        """The `Last-Event-ID` a client sends back."""
        txid, sep, id_ = text.strip().partition("-")
        if not sep or not txid.isdigit() or not id_.isdigit():
            raise ValidationError(f"Invalid event id: {text!r} (expected N-N)")
        return cls(int(txid), int(id_))


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a reader wants; None matches anything. Tenant 'default' owns untagged rows."""

    tenant: str | None = None
    kind: str | None = None
    object_id: uuid.UUID | None = None
    workflow_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Event:
    cursor: FeedCursor
    kind: str
    object_id: uuid.UUID
    workflow_id: uuid.UUID | None
    tenant_id: str | None
    status: str
    progress: int | None
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": str(self.cursor), "kind": self.kind}
        if self.kind == "job":
            out["job_id"] = readable_id(self.object_id)
            out["progress"] = self.progress
        elif self.kind == "run":
            out["run_id"] = "run_" + self.object_id.hex
        out["workflow_id"] = None if self.workflow_id is None else "wf_" + self.workflow_id.hex
        out["status"] = self.status
        out["at"] = iso(self.at)
        return out
