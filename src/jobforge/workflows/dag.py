"""Workflow builder: named jobs and the edges between them, validated as one graph.

`Workflow("etl").add(extract.spec(...)).then(load.spec(...))`, `.parallel([...])` for a
fan-out whose next `.then()` is a barrier, or explicit `depends_on` for any DAG. All rules
about edges are delegated to deps.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobforge import deps
from jobforge.errors import ValidationError
from jobforge.tasks import JobDefinition, JobOptions, JobSpec


@dataclass
class WorkflowJob:
    """One job of a workflow, known by its `name` within it."""

    name: str
    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    depends_on: list[deps.Dependency] = field(default_factory=list)
    options: JobOptions = field(default_factory=JobOptions)
    optional: bool = False  # its failure does not fail the workflow


JobLike = JobSpec | JobDefinition[Any, Any] | WorkflowJob


@dataclass
class Workflow:
    """A DAG of jobs enqueued together by `app.enqueue_workflow(wf)`."""

    name: str
    description: str | None = None
    failure_policy: str = deps.FailurePolicy.FAIL_FAST
    timeout: float | None = None
    priority: int | None = None
    retries: int | None = None  # default retry policy for its jobs
    trace_id: str | None = None
    correlation_id: str | None = None
    tenant_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    jobs: dict[str, WorkflowJob] = field(default_factory=dict)
    _cursor: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        try:
            self.failure_policy = deps.FailurePolicy(self.failure_policy)
        except ValueError:
            names = ", ".join(p.value for p in deps.FailurePolicy)
            raise ValidationError(
                f"Invalid failure_policy {self.failure_policy!r} (expected {names})"
            ) from None

    # -- building ----------------------------------------------------------------------------
    def add(
        self,
        job: JobLike,
        *,
        name: str | None = None,
        depends_on: Iterable[Any] = (),
        optional: bool = False,
        **payload: Any,
    ) -> Workflow:
        """Add a job (no implicit parents); it becomes what `.then()` follows."""
        added = self._add(job, name, list(depends_on), optional, payload)
        self._cursor = [added.name]
        return self

    def then(self, job: JobLike, *, name: str | None = None, optional: bool = False,
             **payload: Any) -> Workflow:  # fmt: skip
        """Add a job that waits for every job added by the previous step."""
        added = self._add(job, name, list(self._cursor), optional, payload)
        self._cursor = [added.name]
        return self

    def parallel(self, jobs: Sequence[JobLike]) -> Workflow:
        """Add jobs that each wait for the previous step; the next `.then()` waits for all."""
        parents = list(self._cursor)
        self._cursor = [self._add(j, None, parents, False, {}).name for j in jobs]
        return self

    def _add(
        self,
        job: JobLike,
        name: str | None,
        depends_on: list[Any],
        optional: bool,
        payload: dict[str, Any],
    ) -> WorkflowJob:
        base = _as_workflow_job(job)
        if name is None:
            name = base.name if isinstance(job, WorkflowJob) else self._free_name(base.type)
        if name in self.jobs:
            raise ValidationError(f"Duplicate job name {name!r} in workflow {self.name!r}")
        wj = WorkflowJob(
            name=name,
            type=base.type,
            payload={**base.payload, **payload} if payload else base.payload,
            depends_on=base.depends_on + [deps.as_dependency(d) for d in depends_on],
            options=base.options,
            optional=base.optional or optional,
        )
        self.jobs[name] = wj
        return wj

    def _free_name(self, base: str) -> str:
        if base not in self.jobs:
            return base
        n = 2
        while f"{base}_{n}" in self.jobs:
            n += 1
        return f"{base}_{n}"

    # -- checking ------------------------------------------------------------------------------
    def validate(self, max_depth: int = deps.DEFAULT_MAX_DEPTH) -> None:
        """Check edges, missing parents, cycles and depth before anything is written."""
        if not self.jobs:
            raise ValidationError(f"Workflow {self.name!r} has no jobs")
        for wj in self.jobs.values():
            for d in wj.depends_on:
                deps.normalize_edge(d.kind, d.condition)
        deps.check_graph(
            {n: [d.parent for d in wj.depends_on] for n, wj in self.jobs.items()}, max_depth
        )


def _as_workflow_job(job: JobLike) -> WorkflowJob:
    if isinstance(job, WorkflowJob):
        return job
    if isinstance(job, JobDefinition):
        return WorkflowJob(name=job.name, type=job.name, options=job._options)
    if isinstance(job, JobSpec):
        return WorkflowJob(
            name=job.type, type=job.type, payload=dict(job.payload), options=job.options
        )
    raise ValidationError(f"Cannot add {job!r} to a workflow: expected a job or job spec")
