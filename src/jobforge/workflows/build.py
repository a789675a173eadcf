"""Turn a validated `Workflow` into rows: one workflow, its jobs and its edges."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from jobforge import deps
from jobforge.jobs import NewEdge, NewJob, NewWorkflow, new_id, utcnow
from jobforge.tasks import JobSpec
from jobforge.workflows.dag import Workflow

if TYPE_CHECKING:
    from jobforge.app import Forge


def build_rows(app: Forge, wf: Workflow) -> tuple[NewWorkflow, list[NewJob], list[NewEdge]]:
    """Validate the graph, apply workflow defaults to each job, resolve names to ids."""
    wf.validate(app.max_dependency_depth)
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
        tenant_id=wf.tenant_id,
        trace_id=wf.trace_id,
        correlation_id=wf.correlation_id,
        created_at=now,
    )
    jobs: dict[str, NewJob] = {}
    defaults: dict[str, Any] = {
        key: value
        for key, value in (
            ("priority", wf.priority),
            ("retries", wf.retries),
            ("tenant_id", wf.tenant_id),
            ("trace_id", wf.trace_id),
            ("correlation_id", wf.correlation_id),
        )
        if value is not None
    }
    resolve = app._resolver(now, defaults)
    for name, wj in wf.jobs.items():
        o = wj.options
        job = resolve(JobSpec(wj.type, wj.payload, o), name)
        job.workflow_id = workflow.id
        job.name = name
        job.optional = wj.optional
        if o.dependency_timeout is not None and wj.depends_on:
            job.dependency_deadline = now + timedelta(seconds=o.dependency_timeout)
        jobs[name] = job
    edges = []
    for name, wj in wf.jobs.items():
        for d in wj.depends_on:
            kind, condition = deps.normalize_edge(d.kind, d.condition)
            edges.append(
                NewEdge(
                    new_id(), jobs[d.parent].id, jobs[name].id, kind.value, condition, workflow.id
                )
            )
    return workflow, list(jobs.values()), edges
