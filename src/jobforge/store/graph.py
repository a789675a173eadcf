"""Store verbs for workflows and the dependency graph: read models, edits, retry/resume.

Module functions over a `SQLStore`, each one transaction; resolution itself is deps.py's.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobforge import deps
from jobforge.errors import InvalidTransition, JobNotFound, ValidationError
from jobforge.jobs import Job, JobStatus, NewEdge, as_uuid, new_id, readable_id
from jobforge.store.deps_ops import SQLDepsOps
from jobforge.store.sql import before_params
from jobforge.workflows.records import EdgeRecord, WorkflowRecord, workflow_ref

if TYPE_CHECKING:
    from jobforge.store.sql import Row, SQLStore


class WorkflowNotFound(JobNotFound):
    """No such workflow."""

    code = "workflow_not_found"


class EdgeNotFound(JobNotFound):
    """No such dependency."""

    code = "dependency_not_found"


def edge_record(store: SQLStore, r: Row) -> EdgeRecord:
    return EdgeRecord(
        id=as_uuid(r["id"]),
        parent_id=as_uuid(r["parent_id"]),
        child_id=as_uuid(r["child_id"]),
        kind=r["kind"],
        condition=r["condition"],
        status=r["status"],
        workflow_id=None if r["workflow_id"] is None else as_uuid(r["workflow_id"]),
        created_at=store._time(r["created_at"]),  # type: ignore[arg-type]
        resolved_at=store._time(r["resolved_at"]),
        resolved_by=r["resolved_by"],
    )


def _workflow_record(store: SQLStore, r: Row, counts: dict[str, int]) -> WorkflowRecord:
    return WorkflowRecord(
        id=as_uuid(r["id"]),
        name=r["name"],
        description=r["description"],
        status=r["status"],
        failure_policy=r["failure_policy"],
        priority=r["priority"],
        timeout=r["timeout"],
        metadata=store._decode_json(r["metadata"]) or {},
        tenant_id=r["tenant_id"],
        trace_id=r["trace_id"],
        correlation_id=r["correlation_id"],
        reason=r["cancel_reason"],
        created_at=store._time(r["created_at"]),  # type: ignore[arg-type]
        updated_at=store._time(r["updated_at"]),  # type: ignore[arg-type]
        completed_at=store._time(r["completed_at"]),
        counts=counts,
    )


# -- reads ------------------------------------------------------------------------------------
def get_workflow(store: SQLStore, workflow_id: uuid.UUID) -> WorkflowRecord | None:
    with store._autocommit() as cur:
        row = store._run(cur, "get_workflow", id=workflow_id).fetchone()
        if row is None:
            return None
        counts = {
            r["status"]: int(r["n"])
            for r in store._run(cur, "workflow_counts", id=workflow_id).fetchall()
        }
    return _workflow_record(store, row, counts)


def list_workflows(
    store: SQLStore,
    status: str | None,
    limit: int,
    tenant: str | None = None,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[WorkflowRecord]:
    with store._autocommit() as cur:
        rows = store._run(
            cur, "list_workflows", status=status, limit=limit, tenant=tenant,
            **before_params(before),
        ).fetchall()  # fmt: skip
        out = []
        for row in rows:
            counts = {
                r["status"]: int(r["n"])
                for r in store._run(cur, "workflow_counts", id=row["id"]).fetchall()
            }
            out.append(_workflow_record(store, row, counts))
    return out


def workflow_jobs(store: SQLStore, workflow_id: uuid.UUID) -> list[Job]:
    return [store._job(r) for r in store._select("workflow_jobs", id=workflow_id)]


def workflow_edges(store: SQLStore, workflow_id: uuid.UUID) -> list[EdgeRecord]:
    return [edge_record(store, r) for r in store._select("workflow_edges", id=workflow_id)]


def job_edges(store: SQLStore, job_id: uuid.UUID) -> tuple[list[EdgeRecord], list[EdgeRecord]]:
    """(edges from its parents, edges to its children)."""
    with store._autocommit() as cur:
        into = store._run(cur, "edges_into", id=job_id).fetchall()
        out = store._run(cur, "edges_from", id=job_id).fetchall()
    return [edge_record(store, r) for r in into], [edge_record(store, r) for r in out]


def edges_into_many(store: SQLStore, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[EdgeRecord]]:
    """Edges from their parents, for many jobs at once (one query)."""
    out: dict[uuid.UUID, list[EdgeRecord]] = {i: [] for i in ids}
    if ids:
        for r in store._select("edges_into_many", ids=ids):
            e = edge_record(store, r)
            out[e.child_id].append(e)
    return out


def parent_jobs(store: SQLStore, job_id: uuid.UUID) -> list[Job]:
    """Every job the given job depends on (a batch's items), in one query."""
    return [store._job(r) for r in store._select("parent_jobs", id=job_id)]


def related(store: SQLStore, job_id: uuid.UUID, direction: str) -> list[Job]:
    """All ancestors ("ancestors") or descendants ("descendants") of a job."""
    return [store._job(r) for r in store._select(direction, id=job_id)]


# -- edits of the graph --------------------------------------------------------------------
def add_edge(
    store: SQLStore,
    parent_id: uuid.UUID,
    child_id: uuid.UUID,
    kind: str,
    condition: str | None,
    max_depth: int = deps.DEFAULT_MAX_DEPTH,
) -> EdgeRecord:
    """Add an edge between existing jobs; the child must not have started.

    The depth limit is checked for the child; its own descendants keep the depth they
    were created with.
    """
    k, cond = deps.normalize_edge(kind, condition)
    if parent_id == child_id:
        ref = readable_id(parent_id)
        raise deps.CycleError(f"Circular dependency detected: {ref} -> {ref}")
    edge_id = new_id()
    with store._tx() as cur:
        ops = SQLDepsOps(store, cur)
        found = ops.lock_parents([parent_id, child_id])
        parent, child = found.get(parent_id), found.get(child_id)
        if child is None:
            raise JobNotFound(f"Job not found: {readable_id(child_id)}")
        if parent is None:
            raise deps.MissingDependency(
                f"Dependency not found: {readable_id(parent_id)} (required by {child.label})"
            )
        if parent.depth + 1 > max_depth:
            raise deps.DependencyError(
                f"Dependency depth limit exceeded: {child.label} would be {parent.depth + 1}"
                f" levels deep (limit {max_depth})"
            )
        if child.started or child.status.is_terminal:
            raise InvalidTransition(
                f"Cannot add a dependency to {child.label}: it is {child.status.value}"
            )
        if parent.tenant_id != child.tenant_id:
            raise ValidationError("A dependency cannot link jobs of two tenants")
        if store._run(cur, "is_ancestor", id=parent_id, ancestor=child_id).fetchone():
            raise deps.CycleError(
                f"Circular dependency detected: {child.label} -> ... -> {parent.label}"
                f" -> {child.label}"
            )
        if store._run(cur, "edge_between", parent=parent_id, child=child_id).fetchone():
            raise deps.DuplicateDependency(f"{child.label} already depends on {parent.label}")
        edge = NewEdge(edge_id, parent_id, child_id, k.value, cond, child.workflow_id)
        store._insert_many(cur, "edges", store._edge_rows([edge], {}))
        store._run(cur, "add_pending_parent", id=child_id, depth=parent.depth + 1)
        parallel = [parent_id] if k == deps.EdgeKind.PARALLEL else []
        store._run(cur, "mark_parents", ids=[parent_id], parallel=parallel)
        if parent.started or parent.status.is_terminal:
            parent = replace(parent, has_children=True)
            store._notify(cur, deps.settle(ops, [parent], apply_policies=False))
        row = store._run(cur, "get_edge", id=edge_id).fetchone()
    return edge_record(store, row)


def get_edge(store: SQLStore, edge_id: uuid.UUID) -> EdgeRecord | None:
    rows = store._select("get_edge", id=edge_id)
    return edge_record(store, rows[0]) if rows else None


def remove_edge(store: SQLStore, edge_id: uuid.UUID) -> None:
    """Remove an edge into a job not yet started; the job is released if it was the last."""
    with store._tx() as cur:
        row = store._run(cur, "get_edge", id=edge_id).fetchone()
        if row is None:
            raise EdgeNotFound(f"Dependency not found: {edge_id}")
        edge = edge_record(store, row)
        child = store._run(cur, "get_job", id=edge.child_id).fetchone()
        status = JobStatus(child["status"])
        if status not in (JobStatus.WAITING, JobStatus.QUEUED, JobStatus.SCHEDULED):
            raise InvalidTransition(
                f"Cannot remove a dependency of {store._job(child).job_id}: it is {status.value}"
            )
        store._run(cur, "delete_edge", id=edge_id)
        if edge.status == deps.EdgeStatus.PENDING:
            children = SQLDepsOps(store, cur).resolve_edges([], {edge.child_id: 1})
            store._notify(cur, {c.queue for c in children if c.released})


# -- workflow control ------------------------------------------------------------------------
def _require(store: SQLStore, cur: Any, workflow_id: uuid.UUID) -> str:
    row = store._run(cur, "get_workflow", id=workflow_id).fetchone()
    if row is None:
        raise WorkflowNotFound(f"Workflow not found: {workflow_ref(workflow_id)}")
    return str(row["status"])


def cancel_workflow(store: SQLStore, workflow_id: uuid.UUID, reason: str = "cancelled") -> None:
    with store._tx() as cur:
        status = _require(store, cur, workflow_id)
        if status not in deps.WORKFLOW_ACTIVE:
            raise InvalidTransition(
                f"Cannot cancel workflow {workflow_ref(workflow_id)}: it is {status}"
            )
        store._run(
            cur, "set_workflow_status", id=workflow_id, status="cancelled", reason=reason,
            completed_at=None,
        )  # fmt: skip
        ops = SQLDepsOps(store, cur)
        cancelled = ops.cancel_workflow_jobs(workflow_id, f"cancelled: {reason}")
        store._notify(cur, deps.settle(ops, cancelled, apply_policies=False))


def resume_workflow(store: SQLStore, workflow_id: uuid.UUID) -> None:
    """A paused workflow goes on as under continue_on_failure."""
    with store._tx() as cur:
        status = _require(store, cur, workflow_id)
        if status != deps.WorkflowStatus.PAUSED:
            raise InvalidTransition(
                f"Cannot resume workflow {workflow_ref(workflow_id)}: it is {status}, not paused"
            )
        _resume(store, cur, workflow_id, propagate=True)


def _resume(store: SQLStore, cur: Any, workflow_id: uuid.UUID, propagate: bool) -> None:
    store._run(
        cur, "set_workflow_status", id=workflow_id, status="running", reason=None,
        completed_at=None,
    )  # fmt: skip
    ops = SQLDepsOps(store, cur)
    wake: set[str] = set()
    if propagate:
        failed = [ops._settled(r) for r in store._run(
            cur, "failed_jobs_of_workflow", id=workflow_id).fetchall()]  # fmt: skip
        wake |= deps.settle(ops, failed, apply_policies=False)
    held = [as_uuid(r["id"]) for r in store._run(cur, "held_jobs", id=workflow_id).fetchall()]
    if held:
        wake |= ops.release(held)
    ops.complete_workflow_if_done(workflow_id)
    store._notify(cur, wake)


def retry_workflow(store: SQLStore, workflow_id: uuid.UUID) -> int:
    """Re-run failed jobs and the skipped/cancelled ones after them; keep successes.

    Returns how many jobs will run again.
    """
    with store._tx() as cur:
        status = _require(store, cur, workflow_id)
        if status in (deps.WorkflowStatus.PENDING, deps.WorkflowStatus.RUNNING):
            raise InvalidTransition(
                f"Cannot retry workflow {workflow_ref(workflow_id)}: it is still {status}"
            )
        reset = store._run(cur, "reset_workflow_jobs", id=workflow_id).fetchall()
        ids = [as_uuid(r["id"]) for r in reset]
        if not ids:
            raise InvalidTransition(
                f"Cannot retry workflow {workflow_ref(workflow_id)}: no failed, cancelled"
                " or skipped job"
            )
        store._run(
            cur, "set_workflow_status", id=workflow_id, status="running", reason=None,
            completed_at=None,
        )  # fmt: skip
        store._run(cur, "reset_edges_into", ids=ids)
        ops = SQLDepsOps(store, cur)
        roots = [as_uuid(r["id"]) for r in reset if int(r["pending_parents"]) == 0]
        wake = ops.release(roots) if roots else set()
        kept = [as_uuid(r["id"]) for r in store._run(cur, "kept_parents", ids=ids).fetchall()]
        if kept:
            parents = ops.lock_parents(kept)
            wake |= deps.settle(ops, list(parents.values()), apply_policies=False)
        store._notify(cur, wake)
    return len(ids)


def retry_failed_job_in_workflow(store: SQLStore, cur: Any, job: Job) -> None:
    """Retrying the failed job of a paused workflow resumes it (without skipping anything)."""
    if job.workflow_id is None:
        return
    row = store._run(cur, "get_workflow", id=job.workflow_id).fetchone()
    if row is not None and row["status"] in ("paused", "failed"):
        _resume(store, cur, job.workflow_id, propagate=False)


def expire(store: SQLStore) -> int:
    """Fail jobs past their dependency deadline and workflows past their timeout."""
    with store._tx() as cur:
        ops = SQLDepsOps(store, cur)
        rows = store._run(cur, "expire_waiting").fetchall()
        wake = deps.settle(ops, [ops._settled(r) for r in rows]) if rows else set()
        overdue = [as_uuid(r["id"]) for r in store._run(cur, "overdue_workflows").fetchall()]
        for wf in overdue:
            store._run(
                cur, "set_workflow_status", id=wf, status="failed", reason="workflow timed out",
                completed_at=None,
            )  # fmt: skip
            cancelled = ops.cancel_workflow_jobs(wf, "cancelled: workflow timed out")
            wake |= deps.settle(ops, cancelled, apply_policies=False)
        store._notify(cur, wake)
    return len(rows) + len(overdue)
