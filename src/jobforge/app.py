"""Forge: the application object. Registry of job types, the store, and enqueueing."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

from jobforge import deps, schedules
from jobforge import registry as reg
from jobforge.batches import BATCH_TYPE, batch_definition
from jobforge.context import JobContext
from jobforge.deps import MissingDependency
from jobforge.durable.api import DurableRuns
from jobforge.durable.definitions import DurableRegistry
from jobforge.errors import ConfigError, JobNotFound, ValidationError
from jobforge.explain import Explanation, explain
from jobforge.jobs import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_QUEUE,
    Job,
    JobStatus,
    NewEdge,
    NewJob,
    gc_paused,
    new_id,
    parse_job_ref,
    readable_id,
    utcnow,
)
from jobforge.limits import Limit
from jobforge.resolve import Resolver
from jobforge.schedules import Schedule
from jobforge.store import graph
from jobforge.store import schedules as stored_schedules
from jobforge.store.base import ListParams
from jobforge.store.factory import open_store, resolve_url
from jobforge.store.sql import SQLStore
from jobforge.tasks import JobDefinition, JobOptions, JobSpec, default_options
from jobforge.workflows.build import build_rows
from jobforge.workflows.dag import Workflow
from jobforge.workflows.export import render
from jobforge.workflows.files import read_definition
from jobforge.workflows.records import (
    EdgeRecord,
    WorkflowRecord,
    parse_workflow_ref,
    workflow_ref,
)

P = ParamSpec("P")
R = TypeVar("R")

PAYLOAD_LIMIT_ENV = "JOBFORGE_MAX_PAYLOAD_BYTES"
DEFAULT_RETENTION = timedelta(days=7)


class Forge(DurableRuns):
    """A jobforge application: `Forge(url)`, `@app.job`, `app.enqueue(...)`.

    The store opens (and migrates) on first use, so importing an app module is cheap.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        max_payload_bytes: int | None = None,
        default_queue: str = DEFAULT_QUEUE,
        allow_unknown_types: bool = False,
        max_dependency_depth: int = deps.DEFAULT_MAX_DEPTH,
        retention: timedelta | float | None = DEFAULT_RETENTION,
    ) -> None:
        self.url = resolve_url(url)
        env_limit = os.environ.get(PAYLOAD_LIMIT_ENV)
        if not max_payload_bytes and env_limit:
            try:
                max_payload_bytes = int(env_limit)
            except ValueError:
                raise ConfigError(
                    f"{PAYLOAD_LIMIT_ENV} must be a whole number of bytes, got {env_limit!r}"
                ) from None
        self.max_payload_bytes = max_payload_bytes or DEFAULT_MAX_PAYLOAD_BYTES
        self.default_queue = default_queue
        self.allow_unknown_types = allow_unknown_types
        self.max_dependency_depth = max_dependency_depth
        # Finished jobs older than this are deleted by the workers; None keeps them all.
        self.retention = (
            timedelta(seconds=retention) if isinstance(retention, int | float) else retention
        )
        self.registry: dict[str, JobDefinition[Any, Any]] = {}
        # Handlers jobforge itself provides; every worker runs them, listings leave them out.
        self.builtins: dict[str, JobDefinition[Any, Any]] = {BATCH_TYPE: batch_definition(self)}
        self.schedules: dict[str, Schedule] = {}  # defined in code; workers store them
        self.limits: list[Limit] = []  # every worker of this app claims under them
        self.durable = DurableRegistry()  # @app.workflow: durable workflows by name and version
        self._validated = False
        self._store: SQLStore | None = None
        self._store_lock = threading.Lock()
        self.on_enqueue: list[Callable[[], None]] = []  # in-process worker wake-ups

    # -- store -------------------------------------------------------------------------
    @property
    def store(self) -> SQLStore:
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    self._store = open_store(self.url)
        return self._store

    def use_url(self, url: str) -> None:
        """Point the app at another database (the CLI's `--db`); only before first use."""
        if self._store is not None:
            self._store.close()
            self._store = None
        self.url = url

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- registry ------------------------------------------------------------------------
    @overload
    def job(self, func: Callable[Concatenate[JobContext, P], R]) -> JobDefinition[P, R]: ...

    @overload
    def job(
        self,
        func: None = None,
        *,
        name: str | None = None,
        queue: str | None = None,
        retries: int | None = None,
        timeout: float | None = None,
        priority: int | None = None,
        backoff: float | None = None,
        backoff_max: float | None = None,
        group: str | None = None,
        depends_on: Sequence[str] = (),
        description: str | None = None,
        defaults: dict[str, Any] | None = None,
        examples: Sequence[Any] = (),
        cron: str | None = None,
        timezone: str = "UTC",
    ) -> Callable[[Callable[Concatenate[JobContext, P], R]], JobDefinition[P, R]]: ...

    def job(self, func: Any = None, **options: Any) -> Any:
        """Register a handler, called as `handler(ctx, **payload)` by a worker."""

        def register(fn: Callable[Concatenate[JobContext, P], R]) -> JobDefinition[P, R]:
            settings = default_options()
            settings.update({k: v for k, v in options.items() if v is not None})
            cron, timezone = settings.pop("cron", None), settings.pop("timezone", "UTC")
            name = settings.pop("name", None) or fn.__name__
            queue = settings.pop("queue", None) or self.default_queue
            if name in self.registry or name in self.durable:
                raise ValidationError(f"Job type {name!r} is registered twice")
            if settings["retries"] < 0:
                raise ValidationError(f"retries must be >= 0 (job {name!r})")
            definition = JobDefinition(self, fn, name=name, queue=queue, **settings)
            reg.check_definition(definition)
            cron_schedule = None
            if cron is not None:  # checked before anything is registered
                cron_schedule = schedules.make(name, cron, job=name, timezone=timezone)
            self.registry[name] = definition
            self._validated = False
            if cron_schedule is not None:
                self._add_schedule(cron_schedule)
            return definition

        return register(func) if func is not None else register

    def definition(self, type_name: str) -> JobDefinition[Any, Any] | None:
        return self.registry.get(type_name) or self.builtins.get(type_name)

    def validate(self) -> None:
        """Check the whole registry: named dependencies exist, no cycle, fields right.

        Jobs may name dependencies registered after them, so this runs once everything is
        imported: when the CLI or a worker loads the app, and before any group enqueue.
        """
        if not self._validated:
            reg.validate(self.registry)
            self._check_schedules()
            self._validated = True

    def _check_schedules(self) -> None:
        for s in self.schedules.values():
            schedules.check_target(self, s)
            for dep in s.depends_on:
                if dep not in self.schedules:
                    raise MissingDependency(f"Schedule not found: {dep} (required by {s.name})")

    def limit(
        self,
        *,
        queue: str | None = None,
        type: str | None = None,
        max_running: int | None = None,
        max_started: int | None = None,
        per: float | None = None,
    ) -> Limit:
        """Cap a queue or a job type across all workers: at most `max_running` at once,
        at most `max_started` starts in any `per` seconds."""
        if (queue is None) == (type is None):
            raise ValidationError("A limit applies to one queue or one type")
        kind, name = ("queue", queue) if queue is not None else ("type", type)
        assert name is not None
        lim = Limit(kind, name, max_running, max_started, per)
        if any(other.scope == lim.scope for other in self.limits):
            raise ValidationError(f"{lim.scope} is limited twice")
        self.limits.append(lim)
        return lim

    # -- cron ------------------------------------------------------------------------------
    def schedule(
        self,
        name: str,
        cron: str,
        *,
        job: str | None = None,
        group: str | None = None,
        workflow_file: str | None = None,
        payload: dict[str, Any] | None = None,
        timezone: str = "UTC",
        depends_on: Sequence[str] = (),
        catch_up: bool = False,
    ) -> Schedule:
        """Run a job, a group or a workflow file on a cron schedule (5 fields, in `timezone`).

        Workers store code schedules when they start and fire each tick exactly once.
        `depends_on` names schedules whose same-day run each tick waits for; `catch_up`
        fires every tick missed while no worker ran (otherwise they collapse into one).
        """
        definition = None if workflow_file is None else read_definition(workflow_file)
        s = schedules.make(name, cron, job=job, group=group, workflow=definition,
                           payload=payload, timezone=timezone, depends_on=tuple(depends_on),
                           catch_up=catch_up)  # fmt: skip
        return self._add_schedule(s)

    def _add_schedule(self, s: Schedule) -> Schedule:
        if s.name in self.schedules:
            raise ValidationError(f"Schedule {s.name!r} is defined twice")
        self.schedules[s.name] = s
        self._validated = False
        return s

    def add_schedule(self, s: Schedule) -> Schedule:
        """Store a schedule (as the CLI does); refused if the name exists."""
        return stored_schedules.add(self.store, s)

    def list_schedules(self) -> list[Schedule]:
        return stored_schedules.list_all(self.store)

    def remove_schedule(self, name: str) -> None:
        stored_schedules.remove(self.store, name)

    def pause_schedule(self, name: str, paused: bool = True) -> Schedule:
        return stored_schedules.set_paused(self.store, name, paused)

    def schedule_runs(self, name: str, limit: int = 20) -> list[stored_schedules.ScheduleRun]:
        stored_schedules.get(self.store, name)
        return stored_schedules.runs(self.store, name, limit)

    def groups(self) -> dict[str, int]:
        """Each group with its number of jobs."""
        return reg.groups(self.registry)

    def group_jobs(self, group: str) -> list[JobDefinition[Any, Any]]:
        """A group's jobs, in registration order."""
        return [self.registry[n] for n in reg.members(self.registry, group)]

    def enqueue_group(
        self,
        group: str,
        params: dict[str, dict[str, Any]] | None = None,
        *,
        dry_run: bool = False,
        failure_policy: str = deps.FailurePolicy.FAIL_FAST,
        tenant_id: str | None = None,
    ) -> reg.GroupPlan:
        """A group's jobs and, transitively, the jobs they depend on, as one workflow.

        `params` overrides payload fields per job name. With `dry_run` nothing is written.
        """
        self.validate()
        return self._enqueue_plan(reg.plan(self.registry, group, params), dry_run,
                                  failure_policy, tenant_id)  # fmt: skip

    def enqueue_all(
        self,
        params: dict[str, dict[str, Any]] | None = None,
        *,
        dry_run: bool = False,
        failure_policy: str = deps.FailurePolicy.FAIL_FAST,
        tenant_id: str | None = None,
    ) -> reg.GroupPlan:
        """Every registered job as one workflow, ordered by their declared dependencies."""
        self.validate()
        return self._enqueue_plan(reg.plan(self.registry, None, params), dry_run,
                                  failure_policy, tenant_id)  # fmt: skip

    def _enqueue_plan(
        self, plan: reg.GroupPlan, dry_run: bool, failure_policy: str, tenant_id: str | None
    ) -> reg.GroupPlan:
        wf = plan.workflow(failure_policy)
        wf.tenant_id = tenant_id
        if dry_run:
            wf.validate(self.max_dependency_depth)
            plan.dry_run = True
        else:
            plan.workflow_id = self.enqueue_workflow(wf)
        return plan

    # -- enqueue -------------------------------------------------------------------------
    def enqueue(
        self,
        type: str,
        payload: dict[str, Any] | None = None,
        *,
        connection: Any = None,
        **options: Any,
    ) -> str:
        """Enqueue one job; returns its `job_…` id.

        With `connection=` (a psycopg or sqlite3 connection in an open transaction) the job
        is written inside that transaction and exists only if the caller commits.
        """
        spec = JobSpec(type, payload if payload is not None else {}, JobOptions(**options))
        return self.enqueue_many([spec], connection=connection)[0]

    def enqueue_many(self, specs: Iterable[JobSpec], *, connection: Any = None) -> list[str]:
        """Validate every job first, then write them all in one transaction."""
        rows: list[NewJob] = []
        edges: list[NewEdge] = []
        with gc_paused():
            resolve = self._resolver()
            for spec in specs:
                job = resolve(spec.type, spec.payload, spec.options)
                rows.append(job)
                if spec.options.depends_on:
                    edges.extend(self._edges(job, spec.options))
        store = self.store if connection is None else self.store.bound(connection)
        ids = store.insert_jobs(rows, edges, max_depth=self.max_dependency_depth)
        for wake in self.on_enqueue:
            wake()
        return [readable_id(i) for i in ids]

    def enqueue_batch(self, type: str, payloads: Iterable[dict[str, Any]], **options: Any) -> str:
        """One job over many items: each payload runs as its own job, in parallel.

        Returns the batch's job id. The batch ends once every item has ended: `succeeded`,
        `partial_success` if some items failed, `failed` if all did. Options apply to the
        items (the batch takes their queue, priority, tenant and trace ids).
        """
        opts = JobOptions(**options)
        if opts.unique_key is not None:
            raise ValidationError("unique_key is not supported for batches")
        now = utcnow()
        items: list[NewJob] = []
        edges: list[NewEdge] = []
        resolve = self._resolver(now)
        for index, payload in enumerate(payloads):
            item = resolve(type, payload, opts)
            item.name = str(index)  # its place in the batch
            items.append(item)
            edges.extend(self._edges(item, opts))
        if not items:
            raise ValidationError("A batch needs at least one item")
        batch_opts = JobOptions(
            queue=items[0].queue, priority=opts.priority, tenant_id=opts.tenant_id,
            trace_id=opts.trace_id, correlation_id=opts.correlation_id,
        )  # fmt: skip
        batch = resolve(BATCH_TYPE, {"type": type, "items": len(items)}, batch_opts)
        edges += [NewEdge(new_id(), i.id, batch.id, "sequential", "always") for i in items]
        self.store.insert_jobs([*items, batch], edges, max_depth=self.max_dependency_depth)
        for wake in self.on_enqueue:
            wake()
        return readable_id(batch.id)

    def batch_items(self, ref: str) -> list[Job]:
        """A batch's item jobs in payload order, with their own status, result and errors."""
        items = graph.parent_jobs(self.store, self._job_or_raise(ref).id)
        return sorted(items, key=lambda j: int(j.name or -1))

    async def enqueue_async(
        self, type: str, payload: dict[str, Any] | None = None, **options: Any
    ) -> str:
        return await asyncio.to_thread(self.enqueue, type, payload, **options)

    async def enqueue_many_async(self, specs: Sequence[JobSpec]) -> list[str]:
        return await asyncio.to_thread(self.enqueue_many, specs)

    def _edges(self, job: NewJob, options: JobOptions) -> list[NewEdge]:
        """Edges from existing jobs (by UUID or job_ id) to a new job, checked up front."""
        edges: list[NewEdge] = []
        for raw in options.depends_on or ():
            dep = deps.as_dependency(raw)
            kind, condition = deps.normalize_edge(dep.kind, dep.condition)
            try:
                parent = parse_job_ref(dep.parent)
            except ValidationError:
                raise deps.MissingDependency(
                    f"Dependency not found: {dep.parent} (required by {job.label})"
                ) from None
            if any(e.parent_id == parent for e in edges):
                raise deps.DependencyError(
                    f"Dependency {dep.parent} is listed twice (required by {job.label})"
                )
            edges.append(NewEdge(new_id(), parent, job.id, kind.value, condition))
        if options.dependency_timeout is not None and edges:
            job.dependency_deadline = job.created_at + timedelta(seconds=options.dependency_timeout)
        return edges

    def _resolver(
        self, now: datetime | None = None, defaults: Mapping[str, Any] | None = None
    ) -> Resolver:
        """Resolves the specs of one enqueue; `defaults` fill options left None (workflows)."""
        return Resolver(self, now, defaults or {})

    # -- inspection and control ------------------------------------------------------------
    def get_job(self, ref: str) -> Job | None:
        """A job by its UUID or `job_…` id."""
        return self.store.get_job(parse_job_ref(ref))

    def list_jobs(
        self,
        status: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        limit: int = 100,
        dependency_status: str | None = None,
        workflow: str | None = None,
    ) -> list[Job]:
        if status is not None and status not in {s.value for s in JobStatus}:
            names = ", ".join(s.value for s in JobStatus)
            raise ValidationError(f"Unknown status {status!r} (one of {names})")
        if dependency_status is not None and dependency_status not in {
            s.value for s in deps.DependencyStatus
        }:
            names = ", ".join(s.value for s in deps.DependencyStatus)
            raise ValidationError(
                f"Unknown dependency status {dependency_status!r} (one of {names})"
            )
        params = ListParams(
            status=status, queue=queue, type=type, dependency_status=dependency_status,
            workflow_id=parse_workflow_ref(workflow) if workflow else None, limit=limit,
        )  # fmt: skip
        return self.store.list_jobs(params)

    def job_parents_edges(self, jobs: Sequence[Job]) -> dict[uuid.UUID, list[EdgeRecord]]:
        """The edges from each job's parents, in one query."""
        return graph.edges_into_many(self.store, [j.id for j in jobs])

    def cancel_job(self, ref: str) -> Job:
        return self.store.cancel_job(parse_job_ref(ref))

    def retry_job(self, ref: str) -> Job:
        return self.store.retry_job(parse_job_ref(ref))

    # -- dependencies ----------------------------------------------------------------------
    def _job_or_raise(self, ref: str) -> Job:
        job = self.get_job(ref)
        if job is None:
            raise JobNotFound(f"Job not found: {ref}")
        return job

    def add_dependency(
        self, parent: str, child: str, type: str = "sequential", condition: str | None = None
    ) -> EdgeRecord:
        """Make `child` (not yet started) wait for `parent`; a cycle is refused."""
        return graph.add_edge(
            self.store, parse_job_ref(parent), parse_job_ref(child), type, condition,
            self.max_dependency_depth,
        )  # fmt: skip

    def remove_dependency(self, edge_id: str) -> None:
        try:
            edge_uuid = uuid.UUID(edge_id)
        except ValueError:
            raise ValidationError(f"Invalid dependency id: {edge_id!r}") from None
        graph.remove_edge(self.store, edge_uuid)

    def dependencies(self, ref: str) -> tuple[list[EdgeRecord], list[EdgeRecord]]:
        """(edges from the job's parents, edges to its children)."""
        return graph.job_edges(self.store, self._job_or_raise(ref).id)

    def check_dependencies(self, ref: str) -> dict[str, Any]:
        """Can this job run as far as its dependencies go?"""
        job = self._job_or_raise(ref)
        into, _ = graph.job_edges(self.store, job.id)
        pending = sum(1 for e in into if e.status == "pending")
        failed = sum(1 for e in into if e.status == "failed")
        return {
            "job_id": job.job_id,
            "can_execute": pending == 0 and failed == 0,
            "pending_dependencies": pending,
            "failed_dependencies": failed,
            "dependency_status": job.dependency_status,
        }

    def parents(self, ref: str) -> list[Job]:
        into, _ = self.dependencies(ref)
        return self._jobs([e.parent_id for e in into])

    def children(self, ref: str) -> list[Job]:
        _, out = self.dependencies(ref)
        return self._jobs([e.child_id for e in out])

    def ancestors(self, ref: str) -> list[Job]:
        return graph.related(self.store, self._job_or_raise(ref).id, "ancestors")

    def descendants(self, ref: str) -> list[Job]:
        return graph.related(self.store, self._job_or_raise(ref).id, "descendants")

    def _jobs(self, ids: Sequence[uuid.UUID]) -> list[Job]:
        found = (self.store.get_job(i) for i in ids)
        return [j for j in found if j is not None]

    def explain(self, ref: str) -> Explanation:
        """Why the job waits, was skipped, or is ready: each edge, its parent, what releases it."""
        job = self._job_or_raise(ref)
        into, _ = graph.job_edges(self.store, job.id)
        parents = {j.id: j for j in self._jobs([e.parent_id for e in into])}
        wf = graph.get_workflow(self.store, job.workflow_id) if job.workflow_id else None
        edges = [(e, parents[e.parent_id]) for e in into if e.parent_id in parents]
        return explain(job, edges, wf.status if wf else None)

    # -- workflows -------------------------------------------------------------------------
    def enqueue_workflow(self, wf: Workflow) -> str:
        """Validate, then write the workflow, its jobs and edges in one transaction."""
        with gc_paused():
            workflow, jobs, edges = build_rows(self, wf)
        self.store.insert_jobs(jobs, edges, workflow, max_depth=self.max_dependency_depth)
        for wake in self.on_enqueue:
            wake()
        return workflow_ref(workflow.id)

    def get_workflow(self, ref: str) -> WorkflowRecord | None:
        return graph.get_workflow(self.store, parse_workflow_ref(ref))

    def _workflow_or_raise(self, ref: str) -> WorkflowRecord:
        wf = self.get_workflow(ref)
        if wf is None:
            raise graph.WorkflowNotFound(f"Workflow not found: {ref}")
        return wf

    def list_workflows(self, status: str | None = None, limit: int = 50) -> list[WorkflowRecord]:
        if status is not None:
            deps.WorkflowStatus(status)
        return graph.list_workflows(self.store, status, limit)

    def workflow_jobs(self, ref: str) -> list[Job]:
        return graph.workflow_jobs(self.store, self._workflow_or_raise(ref).id)

    def workflow_edges(self, ref: str) -> list[EdgeRecord]:
        return graph.workflow_edges(self.store, self._workflow_or_raise(ref).id)

    def cancel_workflow(self, ref: str) -> WorkflowRecord:
        """Cancel jobs not yet started; running ones see `ctx.cancel_requested`."""
        graph.cancel_workflow(self.store, self._workflow_or_raise(ref).id)
        return self._workflow_or_raise(ref)

    def retry_workflow(self, ref: str) -> WorkflowRecord:
        """Re-run failed jobs and the skipped/cancelled ones downstream; keep successes."""
        graph.retry_workflow(self.store, self._workflow_or_raise(ref).id)
        return self._workflow_or_raise(ref)

    def resume_workflow(self, ref: str) -> WorkflowRecord:
        """Resume a paused (manual policy) workflow as under continue_on_failure."""
        graph.resume_workflow(self.store, self._workflow_or_raise(ref).id)
        return self._workflow_or_raise(ref)

    def workflow_graph(self, ref: str, format: str = "json") -> str:
        wf = self._workflow_or_raise(ref)
        return render(format, self.workflow_jobs(ref), self.workflow_edges(ref), wf.name)

    def job_graph(self, ref: str, format: str = "json") -> str:
        """A job's neighbourhood: its parents, itself and its children."""
        job = self._job_or_raise(ref)
        into, out = graph.job_edges(self.store, job.id)
        others = self._jobs([e.parent_id for e in into] + [e.child_id for e in out])
        return render(format, [*others[: len(into)], job, *others[len(into) :]], into + out)
