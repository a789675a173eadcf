"""The store side of dependency resolution: `DepsOps` over one open transaction.

deps.py decides; this module only reads and writes rows, with set-based statements
(one per kind of write per level), so a 2,000-wide fan-out costs a handful of queries.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jobforge.deps import (
    ChildState,
    EdgeKind,
    EdgeRow,
    EdgeStatus,
    FailurePolicy,
    ParentInfo,
    Settled,
    WorkflowState,
    WorkflowStatus,
)
from jobforge.jobs import JobStatus, as_uuid, readable_id

if TYPE_CHECKING:
    from jobforge.store.sql import Cursor, Rider, Row, SQLStore


def _rows_json(rows: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps(list(rows), default=str)


def _counts(counts: Mapping[uuid.UUID, int]) -> str:
    return _rows_json({"id": str(i), "n": n} for i, n in counts.items())


class SQLDepsOps:
    """`deps.DepsOps` bound to one cursor of one transaction."""

    def __init__(self, store: SQLStore, cur: Cursor) -> None:
        self.store = store
        self.cur = cur
        self.released: list[tuple[str, str]] = []  # (queue, type) of every job released
        # Statements to send right after the next resolve_edges, in its round trip (used once),
        # and how many jobs had been released when they were sent.
        self.rider: Rider | None = None
        self.released_before_rider: int | None = None
        # Pending edges read with their parent's outcome; good until an edge is written.
        self._known_edges: dict[uuid.UUID, list[EdgeRow]] = {}

    def _all(self, name: str, **params: Any) -> list[Row]:
        return list(self.store._run(self.cur, name, **params).fetchall())

    def _settled(self, row: Row) -> Settled:
        job_id = as_uuid(row["id"])
        return Settled(
            id=job_id,
            status=JobStatus(row["status"]),
            result=self.store._decode_json(row["result"]),
            started=row["started_at"] is not None,
            workflow_id=None if row["workflow_id"] is None else as_uuid(row["workflow_id"]),
            optional=bool(row["optional"]),
            label=row["name"] or readable_id(job_id),
            has_children=bool(row["has_children"]),
        )

    def lock_parents(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ParentInfo]:
        out: dict[uuid.UUID, ParentInfo] = {}
        for row in self._all("lock_jobs", ids=list(ids)):
            s = self._settled(row)
            out[s.id] = ParentInfo(
                s.id, s.status, s.result, s.started, s.workflow_id, s.optional, s.label,
                has_children=s.has_children, depth=int(row["depth"]),
                tenant_id=row["tenant_id"],
            )  # fmt: skip
        return out

    def know_edges(self, parent_id: uuid.UUID, edges: Sequence[Sequence[Any]]) -> None:
        """Pending edges of `parent_id` as [id, kind, condition, child_id], read already."""
        self._known_edges[parent_id] = [
            EdgeRow(as_uuid(e[0]), parent_id, as_uuid(e[3]), EdgeKind(e[1]), e[2]) for e in edges
        ]

    def pending_edges_from(self, parent_ids: Sequence[uuid.UUID]) -> list[EdgeRow]:
        found: list[EdgeRow] = []
        rest = []
        for p in parent_ids:
            edges = self._known_edges.pop(p, None)
            if edges is None:
                rest.append(p)
            else:
                found.extend(edges)
        if not rest:
            return found
        return found + [
            EdgeRow(
                as_uuid(r["id"]),
                as_uuid(r["parent_id"]),
                as_uuid(r["child_id"]),
                EdgeKind(r["kind"]),
                r["condition"],
            )
            for r in self._all("pending_edges_from", ids=rest)
        ]

    def resolve_edges(
        self, updates: Sequence[tuple[uuid.UUID, EdgeStatus, str]], counts: Mapping[uuid.UUID, int]
    ) -> list[ChildState]:
        self._known_edges.clear()
        rows = ({"id": str(i), "status": s.value, "resolved_by": by} for i, s, by in updates)
        edges = _rows_json(rows)
        rider, self.rider = self.rider, None
        # One statement where the dialect has writable CTEs (a step of every workflow hop).
        if "resolve_edges" in self.store.q:
            found = self.store._with_rider(
                self.cur, "resolve_edges", rider, edges=edges, rows=_counts(counts)
            )
        else:
            if updates:
                self.store._run(self.cur, "set_edges", rows=edges)
            found = self.store._with_rider(
                self.cur, "decrement_pending", rider, rows=_counts(counts)
            )
        children = self._children(found)
        if rider is not None:
            self.released_before_rider = len(self.released)
        return children

    def _children(self, rows: list[Row]) -> list[ChildState]:
        children = [
            ChildState(
                as_uuid(r["id"]),
                JobStatus(r["status"]),
                None if r["workflow_id"] is None else as_uuid(r["workflow_id"]),
                r["queue"],
            )
            for r in rows
        ]
        pairs = zip(rows, children, strict=True)
        self.released.extend((r["queue"], r["type"]) for r, c in pairs if c.released)
        return children

    def release(self, ids: Sequence[uuid.UUID]) -> set[str]:
        rows = self._all("release_jobs", ids=list(ids))
        self.released.extend((r["queue"], r["type"]) for r in rows)
        return {r["queue"] for r in rows}

    def skip(self, reasons: Mapping[uuid.UUID, str]) -> list[Settled]:
        rows = ({"id": str(i), "reason": f"skipped: {r}"} for i, r in reasons.items())
        skipped = [self._settled(r) for r in self._all("skip_jobs", rows=_rows_json(rows))]
        if skipped:
            self.cancel_edges_into([s.id for s in skipped], "skipped")
        return skipped

    def cancel_edges_into(self, ids: Sequence[uuid.UUID], by: str) -> None:
        self._known_edges.clear()
        self.store._run(self.cur, "cancel_edges_into", ids=list(ids), by=by)

    def workflows(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, WorkflowState]:
        wanted = list(ids)
        if not wanted:
            return {}
        return {
            as_uuid(r["id"]): WorkflowState(
                as_uuid(r["id"]), WorkflowStatus(r["status"]), FailurePolicy(r["failure_policy"])
            )
            for r in self._all("workflow_states", ids=wanted)
        }

    def fail_workflow_fast(self, workflow_id: uuid.UUID, reason: str) -> list[Settled]:
        self.store._run(self.cur, "fail_workflow", id=workflow_id, reason=reason)
        return self.cancel_workflow_jobs(workflow_id, f"cancelled: workflow failed fast ({reason})")

    def cancel_workflow_jobs(self, workflow_id: uuid.UUID, reason: str) -> list[Settled]:
        """Cancel the jobs not yet started; ask running ones to stop cooperatively."""
        self._known_edges.clear()
        rows = self._all("cancel_workflow_jobs", id=workflow_id, reason=reason)
        self.store._run(self.cur, "request_cancel_running", id=workflow_id)
        self.store._run(self.cur, "cancel_workflow_edges", id=workflow_id)
        return [self._settled(r) for r in rows]

    def pause_workflow(self, workflow_id: uuid.UUID, reason: str) -> None:
        self.store._run(self.cur, "pause_workflow", id=workflow_id, reason=reason)
        self.store._run(
            self.cur,
            "hold_workflow_jobs",
            id=workflow_id,
            reason=f"held: workflow paused, {reason}",
        )

    def complete_workflow_if_done(self, workflow_id: uuid.UUID) -> None:
        self.store._run(self.cur, "complete_workflow", id=workflow_id)

    def start_workflows(self, ids: Iterable[uuid.UUID]) -> None:
        """Mark workflows running when their first job starts (once per store, not per claim)."""
        seen = self.store.started_workflows
        wanted = [i for i in ids if i not in seen]
        if wanted:
            self.store._run(self.cur, "start_workflows", ids=wanted)
            if len(seen) > 10_000:
                seen.clear()
            seen.update(wanted)
