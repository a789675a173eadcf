"""The storage verbs, written once over named queries; each dialect supplies its driver.

A backend subclass owns connections, transactions, parameter adaptation and row decoding;
the verbs below contain no dialect branches.
"""

from __future__ import annotations

import copy
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from typing import Any, LiteralString

from jobforge import deps
from jobforge.errors import InvalidTransition, JobNotFound
from jobforge.jobs import (
    CANCELLABLE,
    RETRYABLE,
    Job,
    JobStatus,
    NewEdge,
    NewJob,
    NewWorkflow,
    as_uuid,
    gc_paused,
    iso,
    readable_id,
    utcnow,
)
from jobforge.store import graph, limited
from jobforge.store.base import (
    ClaimParams,
    Listener,
    ListParams,
    Outcome,
    ProgressUpdate,
    RescueResult,
    WorkerInfo,
)
from jobforge.store.deps_ops import SQLDepsOps

Row = Any
# Sends statements and returns what reads their results once they are in.
Rider = Callable[[], Callable[[], object]]
Cursor = Any


def _same(value: Any) -> Any:
    return value


class SQLStore(ABC):
    """Shared implementation of the `Store` protocol."""

    supports_listen = False
    unique_violation: type[Exception] = Exception  # the driver's, set by each backend

    def __init__(self, url: str, queries: dict[str, LiteralString]) -> None:
        self.url = url
        self.q = queries
        self._external: Any = None  # a caller's connection, set by bound()
        # Workflows this process already marked running: later claims skip that update.
        self.started_workflows: set[uuid.UUID] = set()

    # -- driver hooks -------------------------------------------------------------
    @abstractmethod
    def _tx(self) -> AbstractContextManager[Cursor]:
        """A cursor inside one write transaction, committed on success."""

    @abstractmethod
    def _autocommit(self) -> AbstractContextManager[Cursor]:
        """A cursor whose statements are each their own transaction: reads (no write lock
        held between them) and single-statement writes."""

    @abstractmethod
    def _adapt(self, params: dict[str, Any]) -> dict[str, Any]:
        """Turn Python values (UUID, datetime, list) into what the driver binds."""

    @abstractmethod
    def _job(self, row: Row) -> Job:
        """Decode one `jobforge_jobs` row."""

    @abstractmethod
    def migrate(self) -> int: ...

    @abstractmethod
    def schema_version(self) -> int: ...

    @abstractmethod
    def listener(self) -> Listener: ...

    @abstractmethod
    def feed_listener(self) -> Listener: ...

    @abstractmethod
    def close(self) -> None: ...

    def _notify(self, cur: Cursor, queues: set[str]) -> None:  # noqa: B027 - optional hook
        """Tell listening workers that jobs became runnable (no-op where unsupported)."""

    # -- helpers -----------------------------------------------------------------
    def _run(self, cur: Cursor, query: str, /, **params: Any) -> Cursor:
        params.setdefault("now", utcnow())
        cur.execute(self.q[query], self._adapt(params))
        return cur

    def _select(self, query: str, /, **params: Any) -> list[Row]:
        with self._autocommit() as cur:
            return list(self._run(cur, query, **params).fetchall())

    def bound(self, connection: Any) -> SQLStore:
        """This store, running every verb inside `connection`'s open transaction."""
        clone = copy.copy(self)
        clone._external = connection
        return clone

    def _insert_many(self, cur: Cursor, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert rows of `jobs` or `edges` (drivers may use a faster bulk path)."""
        cur.executemany(self.q["insert_job" if table == "jobs" else "insert_edge"], rows)

    # -- positional rows for bulk inserts --------------------------------------------
    # How the driver takes a (non-None) id and time: plain callables, no per-value checks.
    _id_value: Callable[[uuid.UUID], Any] = staticmethod(_same)
    _time_value: Callable[[datetime], Any] = staticmethod(_same)

    def _id_map(self, jobs: Sequence[NewJob]) -> dict[int, Any]:
        """Driver values of the jobs' ids and workflow ids, keyed by object identity.

        A workflow's rows repeat the same UUID objects (its id on every row, each job's id
        on its edges): each is converted once, not 400,000 more times per 100,000 jobs.
        The jobs hold the objects, so no identity is reused while the map is in use.
        """
        i = self._id_value
        out = {id(j.id): i(j.id) for j in jobs}
        for w in {id(j.workflow_id): j.workflow_id for j in jobs}.values():
            if w is not None:
                out[id(w)] = i(w)
        return out

    def _job_rows(self, jobs: Sequence[NewJob], ids: dict[int, Any]) -> list[tuple[Any, ...]]:
        """Jobs' values in the column order of `insert_job` and `copy_jobs`.

        Positional: SQLite binds a tuple at about half the cost of named parameters.
        """
        t = self._time_value
        return [
            (
                ids[id(j.id)], j.type, j.queue, j.status.value, j.payload_json, j.priority,
                t(j.scheduled_at), j.max_attempts, j.timeout, j.tenant_id, j.trace_id,
                j.correlation_id, j.retry_backoff, j.retry_backoff_max, t(j.created_at),
                None if j.workflow_id is None else ids[id(j.workflow_id)], j.name, j.optional,
                None if j.dependency_deadline is None else t(j.dependency_deadline),
                j.dependency_status, j.pending_parents, j.depth, j.has_parallel_children,
                j.has_children, j.unique_key, t(j.created_at),
            )
            for j in jobs
        ]  # fmt: skip

    def _edge_rows(self, edges: Sequence[NewEdge], ids: dict[int, Any]) -> list[tuple[Any, ...]]:
        """Edges' values in the column order of `insert_edge` and `copy_edges`.

        `ids` (from `_id_map`) has the new jobs' ids; parents outside them are converted here.
        """
        i = self._id_value
        now = self._time_value(utcnow())
        return [
            (
                i(e.id), ids.get(id(e.parent_id)) or i(e.parent_id),
                ids.get(id(e.child_id)) or i(e.child_id), e.kind, e.condition,
                None if e.workflow_id is None else ids.get(id(e.workflow_id)) or i(e.workflow_id),
                now,
            )
            for e in edges
        ]  # fmt: skip

    # -- jobs ----------------------------------------------------------------------
    def insert_jobs(
        self,
        jobs: Sequence[NewJob],
        edges: Sequence[NewEdge] = (),
        workflow: NewWorkflow | None = None,
        max_depth: int = deps.DEFAULT_MAX_DEPTH,
    ) -> list[uuid.UUID]:
        """Write jobs, their edges and their workflow in one transaction; return the job ids.

        Parents outside the batch are read under a share lock first, so a parent cannot
        finish unseen while its new child is written; parents that already started or
        finished are settled at once against the new edges. A job whose `unique_key` an
        unfinished job holds is not written: its id in the result is that job's.
        """
        if not jobs:
            return []
        if any(j.unique_key for j in jobs):  # the keys must be locked before deciding
            with self._tx() as cur:
                same = self._dedupe(cur, jobs)
                kept = [j for j in jobs if j.id not in same]
                if kept:
                    edges = [e for e in edges if e.child_id not in same]
                    self._insert_new(cur, kept, edges, workflow, max_depth)
            return [same.get(j.id, j.id) for j in jobs]
        rows = None
        if not edges or not ({e.parent_id for e in edges} - {j.id for j in jobs}):
            # Nothing to lock: plan and build the rows before taking the write lock.
            with gc_paused():
                if edges:
                    deps.plan_insert(jobs, edges, {}, max_depth)
                ids = self._id_map(jobs)
                rows = self._job_rows(jobs, ids), self._edge_rows(edges, ids)
        with self._tx() as cur:
            self._insert_new(cur, jobs, edges, workflow, max_depth, rows)
        return [j.id for j in jobs]

    def _insert_new(
        self,
        cur: Cursor,
        jobs: Sequence[NewJob],
        edges: Sequence[NewEdge],
        workflow: NewWorkflow | None,
        max_depth: int,
        rows: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]] | None = None,
    ) -> None:
        """Write new jobs and edges in the caller's transaction (`rows`: already planned)."""
        ops = SQLDepsOps(self, cur)
        existing: dict[uuid.UUID, deps.ParentInfo] = {}
        ready_parents: list[deps.Settled] = []
        if rows is None:
            outside = sorted({e.parent_id for e in edges} - {j.id for j in jobs})
            if outside:
                existing = ops.lock_parents(outside)
            if edges:
                ready_parents = deps.plan_insert(jobs, edges, existing, max_depth)
            ids = self._id_map(jobs)
            rows = self._job_rows(jobs, ids), self._edge_rows(edges, ids)
        if workflow is not None:
            self._run(cur, "insert_workflow", **workflow.params())
        self._insert_many(cur, "jobs", rows[0])
        if workflow is None and len(jobs) < ANNOUNCED_BATCH:
            self._announce_jobs(cur, jobs)
        if edges:
            self._insert_many(cur, "edges", rows[1])
            if existing:
                parallel = [e.parent_id for e in edges if e.kind == "parallel"]
                self._run(cur, "mark_parents", ids=list(existing), parallel=parallel)
        wake = {j.queue for j in jobs if j.status != JobStatus.WAITING}
        if ready_parents:
            wake |= deps.settle(ops, ready_parents, apply_policies=False)
        # Delayed jobs notify too: an idle worker then re-reads the next due time.
        self._notify(cur, wake)

    def _announce_jobs(self, cur: Cursor, jobs: Sequence[NewJob]) -> None:
        """Write the change feed's "created" events of jobs just inserted by this cursor, from
        the values at hand (looking the rows up again costs a quarter of a bulk insert)."""
        self._run(
            cur, "job_created_events", ids=[j.id for j in jobs],
            tenants=[j.tenant_id for j in jobs], statuses=[j.status.value for j in jobs],
            ats=[j.created_at for j in jobs],
        )  # fmt: skip

    def _dedupe(self, cur: Cursor, jobs: Sequence[NewJob]) -> dict[uuid.UUID, uuid.UUID]:
        """New job id -> the unfinished job of its tenant already holding its unique key (or
        an earlier job of this batch with the same tenant and key)."""
        keys = sorted({j.unique_key for j in jobs if j.unique_key})
        scoped = sorted({f"{j.tenant_id or ''}:{j.unique_key}" for j in jobs if j.unique_key})
        self._lock_keys(cur, ["unique:" + k for k in scoped])
        rows = self._run(cur, "find_unique_jobs", keys=keys).fetchall()
        held = {(r["tenant_id"], r["unique_key"]): as_uuid(r["id"]) for r in rows}
        same: dict[uuid.UUID, uuid.UUID] = {}
        for j in jobs:
            if j.unique_key is None:
                continue
            key = (j.tenant_id, j.unique_key)
            if key in held:
                same[j.id] = held[key]
            else:
                held[key] = j.id
        return same

    def _lock_keys(self, cur: Cursor, keys: list[str]) -> None:  # noqa: B027 - optional hook
        """Lock names until commit, e.g. unique keys (SQLite's write lock already does)."""

    def claim_jobs(self, params: ClaimParams) -> list[Job]:
        with self._tx() as cur:
            return self._claim(cur, params)

    def _claim(self, cur: Cursor, params: ClaimParams) -> list[Job]:
        claim = _claim_args(params)
        if params.limits:
            rows = limited.claim(self, cur, claim, params.limits)
        else:
            rows = self._claim_rows(cur, claim)
        return self._claimed(cur, rows)

    def _claimed(self, cur: Cursor, rows: list[Row]) -> list[Job]:
        """The jobs of claimed rows, with the consequences of their start recorded."""
        if any(r["has_parallel_children"] or r["workflow_id"] is not None for r in rows):
            self._on_started(cur, rows)
        jobs = [self._job(r) for r in rows]
        # RETURNING gives no order; hand jobs out in run order.
        jobs.sort(key=lambda j: (-j.priority, j.scheduled_at))
        return jobs

    def _with_rider(self, cur: Cursor, query: str, rider: Rider | None, **params: Any) -> list[Row]:
        """Run `query`, then send the rider's statements (more of this transaction); a
        driver that can pipeline sends them all in one round trip."""
        rows = list(self._run(cur, query, **params).fetchall())
        if rider is not None:
            rider()()
        return rows

    def _claim_rows(self, cur: Cursor, params: dict[str, Any]) -> list[Row]:
        """Run the claim query (a driver may wrap it, e.g. to pin its plan)."""
        return self._send_claim(cur, params)()

    def _send_claim(self, cur: Cursor, params: dict[str, Any]) -> Callable[[], list[Row]]:
        """Send the claim; the returned function reads its rows (later, when pipelined)."""
        rows = list(self._run(cur, "claim_jobs", **params).fetchall())
        return lambda: rows

    def _on_started(self, cur: Cursor, rows: Sequence[Row]) -> None:
        """In the claim's transaction: release parallel children, mark workflows running."""
        ops = SQLDepsOps(self, cur)
        ops.start_workflows({as_uuid(r["workflow_id"]) for r in rows if r["workflow_id"]})
        started = [ops._settled(r) for r in rows if r["has_parallel_children"]]
        if started:
            self._notify(cur, deps.settle(ops, started))

    def finish_jobs(
        self, outcomes: Sequence[Outcome], progress: Sequence[ProgressUpdate] = ()
    ) -> list[uuid.UUID]:
        """Record many attempt outcomes in one transaction; returns the ids that applied."""
        with self._tx() as cur:
            ops = SQLDepsOps(self, cur)
            applied = self._finish(cur, ops, outcomes, progress)
            self._notify(cur, {queue for queue, _ in ops.released})
        return applied

    def finish_and_claim(
        self,
        outcomes: Sequence[Outcome],
        progress: Sequence[ProgressUpdate],
        claim: ClaimParams | None,
    ) -> tuple[list[uuid.UUID], list[Job]]:
        """Record outcomes, then claim more jobs, in one transaction (one commit).

        The children those outcomes released are claimed at once by the worker that
        finished their parent: a chain advances without a second commit or a wake-up.
        """
        with self._tx() as cur:
            ops = SQLDepsOps(self, cur)
            early: list[list[Row]] = []
            if claim is not None and claim.limit > 0 and not claim.limits:
                # The claim rides with the statement that releases the outcomes' children:
                # a chain's next job is taken in the same round trip as it is released.
                args = _claim_args(claim)

                def ride() -> Callable[[], None]:
                    read = self._send_claim(cur, args)
                    return lambda: early.append(read())

                ops.rider = ride
            applied = self._finish(cur, ops, outcomes, progress)
            if claim is None or claim.limit <= 0:
                claimed = []
            elif early:
                claimed = self._claimed(cur, early[0])
                # Jobs a skip cascade released after the claim: claim again, if it fell short.
                later = len(ops.released) > (ops.released_before_rider or 0)
                if later and len(claimed) < claim.limit:
                    more = replace(claim, limit=claim.limit - len(claimed))
                    claimed += self._claim(cur, more)
            else:
                claimed = self._claim(cur, claim)
            self._notify(cur, _others_to_wake(ops.released, claim, len(claimed)))
        return applied, claimed

    def _finish(
        self,
        cur: Cursor,
        ops: SQLDepsOps,
        outcomes: Sequence[Outcome],
        progress: Sequence[ProgressUpdate],
    ) -> list[uuid.UUID]:
        """Record outcomes and settle their children; `ops.released` says what was released."""
        applied: list[uuid.UUID] = []
        settled: list[deps.Settled] = []
        for p in progress:
            self._run(
                cur, "set_progress", id=p.id, token=p.lease_token, progress=p.progress,
                message=p.message,
            )  # fmt: skip
        parked = [o for o in outcomes if o.parks_run]
        if parked:  # ordered against send_event / cancel on the same run, see rewake
            self._lock_keys(cur, sorted(f"run:{o.id}" for o in parked))
        i, t = self._id_value, self._time_value
        rows = [
            {
                "id": i(o.id),
                "token": o.lease_token,
                "status": o.status.value,
                "result": o.result_json,
                "errors": None if o.errors is None else json.dumps(o.errors),
                "scheduled_at": None if o.scheduled_at is None else t(o.scheduled_at),
                "attempt_delta": o.attempt_delta,
                "progress": o.progress,
                "result_url": o.result_url,
                "terminal": o.status.is_terminal,
            }
            for o in outcomes
        ]
        if rows:
            for row in self._run(cur, "finish_many", rows=json.dumps(rows, default=str)).fetchall():
                applied.append(as_uuid(row["id"]))
                # Only a job something waits on, or one in a workflow, has consequences.
                if (row["has_children"] or row["workflow_id"]) and JobStatus(
                    row["status"]
                ).is_terminal:
                    done = ops._settled(row)
                    if row["pending_edges"] is not None:
                        ops.know_edges(done.id, self._decode_json(row["pending_edges"]))
                    settled.append(done)
        if settled:
            deps.settle(ops, settled)
        for o in parked:
            row = self._run(cur, "rewake_parked_run", id=o.id, event=o.wait_event).fetchone()
            if row is not None:
                self._notify(cur, {row["queue"]})
        return applied

    def heartbeat(self, worker_id: str, lease_seconds: float) -> dict[uuid.UUID, bool]:
        """Extend the leases of this worker's jobs.

        Returns the ids it still holds, each with whether cancellation was requested.
        """
        with self._tx() as cur:
            self._run(cur, "touch_worker", worker_id=worker_id)
            rows = self._run(
                cur, "extend_leases", worker_id=worker_id, lease_seconds=lease_seconds
            ).fetchall()
        return {as_uuid(r["id"]): bool(r["cancel_requested"]) for r in rows}

    def release_jobs(self, claims: Sequence[tuple[uuid.UUID, str]]) -> int:
        queues: set[str] = set()
        released = 0
        with self._tx() as cur:
            for job_id, token in claims:
                row = self._run(cur, "release_job", id=job_id, token=token).fetchone()
                if row is not None:
                    released += 1
                    queues.add(row["queue"])
            self._notify(cur, queues)
        return released

    def rescue_expired(self) -> RescueResult:
        now = utcnow()
        with self._tx() as cur:
            rows = self._run(cur, "rescue_expired", now=now, now_iso=iso(now)).fetchall()
            result = RescueResult()
            for r in rows:
                target = result.failed if r["status"] == JobStatus.FAILED else result.requeued
                target.append(as_uuid(r["id"]))
            wake = {r["queue"] for r in rows if r["status"] == JobStatus.QUEUED}
            ops = SQLDepsOps(self, cur)
            dead = [ops._settled(r) for r in rows if r["status"] == JobStatus.FAILED]
            if dead:
                wake |= deps.settle(ops, dead)
            self._notify(cur, wake)
        return result

    def _transition(
        self,
        name: str,
        job_id: uuid.UUID,
        allowed: frozenset[JobStatus],
        also: Callable[[Cursor], None] | None = None,
    ) -> Job:
        """Cancel or retry one job, with the consequences for its graph (and `also`, e.g. a
        run's records) in the same transaction."""
        with self._tx() as cur:
            row = self._run(cur, name, id=job_id).fetchone()
            if row is None:
                current = self._run(cur, "get_job", id=job_id).fetchone()
                if current is None:
                    raise JobNotFound(f"Job not found: {readable_id(job_id)}")
                job = self._job(current)
                verb = name.split("_")[0]
                names = ", ".join(sorted(s.value for s in allowed))
                raise InvalidTransition(
                    f"Cannot {verb} job {job.job_id}: it is {job.status.value}"
                    f" (allowed from {names})"
                )
            job = self._job(row)
            wake = {job.queue} if job.status == JobStatus.QUEUED else set()
            if job.status == JobStatus.QUEUED:
                graph.retry_failed_job_in_workflow(self, cur, job)
            if job.status.is_terminal:
                ops = SQLDepsOps(self, cur)
                ops.cancel_edges_into([job.id], "cancelled")
                wake |= deps.settle(ops, [ops._settled(row)])
            if also is not None:
                also(cur)
            self._notify(cur, wake)
            return job

    def cancel_job(self, job_id: uuid.UUID) -> Job:
        return self._transition("cancel_job", job_id, CANCELLABLE)

    def retry_job(self, job_id: uuid.UUID) -> Job:
        try:
            return self._transition("retry_job", job_id, RETRYABLE)
        except self.unique_violation:  # the whole transaction was rolled back
            job = self.get_job(job_id)
            key = job.unique_key if job else None
            raise InvalidTransition(
                f"Cannot retry job {readable_id(job_id)}: an unfinished job holds its unique"
                f" key {key!r}"
            ) from None

    def get_job(self, job_id: uuid.UUID) -> Job | None:
        rows = self._select("get_job", id=job_id)
        return self._job(rows[0]) if rows else None

    def list_jobs(self, params: ListParams) -> list[Job]:
        rows = self._select(
            "list_jobs", status=params.status, queue=params.queue, type=params.type,
            dependency_status=params.dependency_status, workflow_id=params.workflow_id,
            tenant=params.tenant, limit=params.limit, **before_params(params.before),
        )  # fmt: skip
        return [self._job(r) for r in rows]

    def next_due_at(self, types: Sequence[str], queues: Sequence[str] | None) -> datetime | None:
        rows = self._select(
            "next_due_at", types=list(types), queues=list(queues) if queues else None
        )
        return self._time(rows[0]["due"]) if rows else None

    def _time(self, value: Any) -> datetime | None:
        return value  # type: ignore[no-any-return]

    def _decode_json(self, value: Any) -> Any:
        """JSON columns: text on SQLite, already decoded on PostgreSQL."""
        return value

    def expire_overdue(self) -> int:
        """Fail jobs waiting past their dependency timeout and workflows past theirs."""
        return graph.expire(self)

    # -- workers -------------------------------------------------------------------
    def register_worker(self, info: WorkerInfo) -> None:
        with self._tx() as cur:
            self._run(cur, "prune_workers", max_age=3600.0)
            self._run(
                cur,
                "register_worker",
                id=info.id,
                hostname=info.hostname,
                pid=info.pid,
                queues=",".join(info.queues) if info.queues else None,
                concurrency=info.concurrency,
            )

    def unregister_worker(self, worker_id: str) -> None:
        with self._tx() as cur:
            self._run(cur, "unregister_worker", worker_id=worker_id)


# The change feed reports a job's creation when it is enqueued alone or in a small batch. A
# workflow's jobs are announced by the workflow's own event, and a bulk enqueue's jobs show
# from their first change: one event per row cost bulk enqueues a fifth of their speed.
ANNOUNCED_BATCH = 200


def before_params(before: tuple[datetime, uuid.UUID] | None) -> dict[str, Any]:
    """The keyset-pagination parameters of list queries (newest first)."""
    at, id_ = before if before is not None else (None, None)
    return {"before_at": at, "before_id": id_}


def _claim_args(params: ClaimParams) -> dict[str, Any]:
    """The claim query's parameters, with a new lease token."""
    return {
        "worker_id": params.worker_id,
        "token": uuid.uuid4().hex,
        "types": list(params.types),
        "queues": list(params.queues) if params.queues else None,
        "limit": params.limit,
        "lease_seconds": params.lease_seconds,
    }


def _others_to_wake(
    released: list[tuple[str, str]], claim: ClaimParams | None, claimed: int
) -> set[str]:
    """Queues to notify after a finish-and-claim: none when this worker took them all.

    If the claim came back short, nothing it could run is left queued, so its own released
    jobs need no wake-up (its fetch loop would only find nothing). Jobs of other types or
    queues, or a full claim (there may be more), still wake everyone.
    """
    if claim is None or claimed >= claim.limit:
        return {queue for queue, _ in released}
    types = set(claim.types)
    return {
        queue
        for queue, type_name in released
        if type_name not in types or (claim.queues is not None and queue not in claim.queues)
    }
