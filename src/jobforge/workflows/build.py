"""Turn a `Workflow` into rows: one workflow, its jobs and its edges."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from jobforge import deps
from jobforge.errors import ValidationError
from jobforge.jobs import NewEdge, NewJob, NewWorkflow, new_id, new_ids, untagged, utcnow
from jobforge.workflows.dag import Workflow

if TYPE_CHECKING:
    from jobforge.app import Forge


def build_rows(app: Forge, wf: Workflow) -> tuple[NewWorkflow, list[NewJob], list[NewEdge]]:
    """Apply workflow defaults to each job, check each edge, resolve names to ids.

    Cycles, self-dependencies and the depth limit are checked once, on the ids, by
    `deps.plan_insert` when the rows are written (before anything is).
    """
    if not wf.jobs:
        raise ValidationError(f"Workflow {wf.name!r} has no jobs")
    now = utcnow()
    workflow = NewWorkflow(
        id=new_id(),
        name=wf.name,
        description=wf.description,
        failure_policy=deps.FailurePolicy(wf.failure_policy).value,
        priority=wf.priority or 0,
        timeout=wf.timeout,
        deadline=None if wf.timeout is None else now + timedelta(seconds=wf.timeout),
        metadata_json=json.dumps(wf.metadata),
        tenant_id=untagged(wf.tenant_id),
        trace_id=wf.trace_id,
        correlation_id=wf.correlation_id,
        created_at=now,
    )
    defaults: dict[str, Any] = {
        key: value
        for key, value in (
            ("priority", wf.priority),
            ("retries", wf.retries),
            ("tenant_id", untagged(wf.tenant_id)),
            ("trace_id", wf.trace_id),
            ("correlation_id", wf.correlation_id),
        )
        if value is not None
    }
    # Each edge as (child, parent, kind, condition), checked before any job is resolved.
    edges: list[tuple[str, str, str, str | None]] = []
    for name, wj in wf.jobs.items():
        for d in wj.depends_on:
            kind, condition = deps.normalize_edge(d.kind, d.condition)
            if d.parent not in wf.jobs:
                raise deps.MissingDependency(
                    f"Dependency not found: {d.parent} (required by {name})"
                )
            edges.append((name, d.parent, kind.value, condition))
    jobs: dict[str, NewJob] = {}
    resolve = app._resolver(now, defaults)
    for name, wj in wf.jobs.items():
        o = wj.options
        if o.unique_key is not None:
            raise ValidationError(
                f"Workflow job {name!r}: unique_key is not supported in workflows"
            )
        job = resolve(wj.type, wj.payload, o, name)
        job.workflow_id = workflow.id
        job.name = name
        job.optional = wj.optional
        if o.dependency_timeout is not None and wj.depends_on:
            job.dependency_deadline = now + timedelta(seconds=o.dependency_timeout)
        jobs[name] = job
    wf_id = workflow.id
    rows = [
        NewEdge(edge_id, jobs[parent].id, jobs[child].id, kind, condition, wf_id)
        for edge_id, (child, parent, kind, condition) in zip(
            new_ids(len(edges)), edges, strict=True
        )
    ]
    return workflow, list(jobs.values()), rows
