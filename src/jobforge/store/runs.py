"""Store verbs for durable runs: the run record, its steps, its events; each one transaction.

A run and the job that drives it share one id. Step writes are fenced by the job's lease
token, so a worker that lost its claim can never record a step over the one that took over.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobforge.durable.records import (
    RUN_FINISHED,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    run_ref,
)
from jobforge.errors import InvalidTransition, JobNotFound
from jobforge.jobs import RETRYABLE, NewJob, as_uuid, utcnow

if TYPE_CHECKING:
    from jobforge.store.sql import Cursor, Row, SQLStore


class RunNotFound(JobNotFound):
    """No such durable run."""

    code = "run_not_found"


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _record(store: SQLStore, r: Row) -> RunRecord:
    t = store._time
    return RunRecord(
        id=as_uuid(r["id"]),
        name=r["name"],
        version=r["version"],
        input=store._decode_json(r["input"]),
        output=store._decode_json(r["output"]),
        status=RunStatus(r["status"]),
        current_step=r["current_step"],
        error=store._decode_json(r["error"]),
        idempotency_key=r["idempotency_key"],
        deadline=t(r["deadline"]),
        tenant_id=r["tenant_id"],
        trace_id=r["trace_id"],
        created_at=t(r["created_at"]),  # type: ignore[arg-type]
        started_at=t(r["started_at"]),
        updated_at=t(r["updated_at"]),  # type: ignore[arg-type]
        completed_at=t(r["completed_at"]),
    )


def _step(store: SQLStore, r: Row) -> StepRecord:
    return StepRecord(
        name=r["name"],
        status=StepStatus(r["status"]),
        seq=r["seq"],
        input=store._decode_json(r["input"]),
        result=store._decode_json(r["result"]),
        error=store._decode_json(r["error"]),
        attempts=r["attempts"],
        started_at=store._time(r["started_at"]),
        completed_at=store._time(r["completed_at"]),
    )


def _insert_run(store: SQLStore, cur: Cursor, run_id: uuid.UUID, **fields: Any) -> Any:
    return store._run(
        cur, "insert_run", id=run_id, input=json.dumps(fields.pop("input")), **fields
    ).fetchone()


def create(
    store: SQLStore, job: NewJob, name: str, version: int, input: Any,
    idempotency_key: str | None, deadline: datetime | None, max_depth: int,
) -> uuid.UUID:  # fmt: skip
    """A run and its job in one transaction; a known idempotency key gives the existing run."""
    with store._tx() as cur:
        fresh = _insert_run(
            store, cur, job.id, name=name, version=version, input=input,
            idempotency_key=idempotency_key, deadline=deadline, tenant_id=job.tenant_id,
            trace_id=job.trace_id,
        )  # fmt: skip
        if fresh is None:
            return as_uuid(store._run(cur, "run_by_key", key=idempotency_key).fetchone()["id"])
        store._insert_new(cur, [job], [], None, max_depth)
    return job.id


def adopt(
    store: SQLStore, run_id: uuid.UUID, name: str, version: int, input: Any,
    deadline: datetime | None, tenant_id: str | None, trace_id: str | None,
) -> RunRecord:  # fmt: skip
    """The run of a job enqueued as a DAG node, created on its first execution."""
    with store._tx() as cur:
        if store._run(cur, "get_run", id=run_id).fetchone() is None:
            _insert_run(
                store, cur, run_id, name=name, version=version, input=input,
                idempotency_key=None, deadline=deadline, tenant_id=tenant_id, trace_id=trace_id,
            )  # fmt: skip
    return get(store, run_id)


def find(store: SQLStore, run_id: uuid.UUID) -> RunRecord | None:
    rows = store._select("get_run", id=run_id)
    return _record(store, rows[0]) if rows else None


def get(store: SQLStore, run_id: uuid.UUID) -> RunRecord:
    run = find(store, run_id)
    if run is None:
        raise RunNotFound(f"Run not found: {run_ref(run_id)}")
    return run


def list_runs(
    store: SQLStore, status: str | None, limit: int, tenant: str | None = None
) -> list[RunRecord]:
    rows = store._select("list_runs", status=status, limit=limit, tenant=tenant)
    return [_record(store, r) for r in rows]


def steps(store: SQLStore, run_id: uuid.UUID) -> list[StepRecord]:
    return [_step(store, r) for r in store._select("run_steps", id=run_id)]


def save_step(
    store: SQLStore, run_id: uuid.UUID, token: str, step: StepRecord
) -> tuple[bool, bool]:
    """Record a step while this worker's claim holds: (saved, cancel requested?). Not saved:
    the run was taken from this worker. The cancel request comes back with the write, so a
    running run sees `cancel_run` at its next step without a read of its own."""
    with store._autocommit() as cur:  # one statement: one round trip, one commit
        saved = store._run(
            cur, "save_step", run_id=run_id, token=token, name=step.name,
            status=step.status.value, seq=step.seq, input=_json(step.input),
            result=_json(step.result), error=_json(step.error), attempts=step.attempts,
            started_at=step.started_at, completed_at=step.completed_at,
        ).fetchone()  # fmt: skip
    return (False, False) if saved is None else (True, bool(saved["cancel_requested"]))


def set_status(
    store: SQLStore,
    run_id: uuid.UUID,
    token: str,
    status: RunStatus,
    *,
    current_step: str | None = None,
    output: Any = None,
    error: dict[str, Any] | None = None,
) -> bool:
    """Write the run's status while this worker's claim (`token`) holds; False if not."""
    finished = status in RUN_FINISHED
    with store._autocommit() as cur:  # one statement
        row = store._run(
            cur, "set_run", id=run_id, token=token, status=status.value,
            current_step=current_step, output=_json(output), error=_json(error),
            completed_at=utcnow() if finished else None,
        ).fetchone()  # fmt: skip
    return row is not None


def event(store: SQLStore, run_id: uuid.UUID, name: str) -> tuple[bool, Any]:
    """(sent?, data) of the run's event `name`."""
    rows = store._select("get_event", run_id=run_id, name=name)
    return (True, store._decode_json(rows[0]["data"])) if rows else (False, None)


def send_event(store: SQLStore, run_id: uuid.UUID, name: str, data: Any) -> None:
    """Store the event and make a parked run due now, in one transaction."""
    get(store, run_id)
    with store._tx() as cur:
        store._lock_keys(cur, [f"run:{run_id}"])  # see rewake_parked_run
        store._run(cur, "put_event", run_id=run_id, name=name, data=_json(data))
        _wake(store, cur, run_id)


def wake(store: SQLStore, run_id: uuid.UUID) -> None:
    with store._tx() as cur:
        _wake(store, cur, run_id)


def _wake(store: SQLStore, cur: Cursor, run_id: uuid.UUID) -> None:
    row = store._run(cur, "wake_job", id=run_id).fetchone()
    if row is not None:
        store._notify(cur, {row["queue"]})


def request_cancel(store: SQLStore, run_id: uuid.UUID) -> None:
    """Ask the run to compensate and end `cancelled` at its next step boundary."""
    with store._tx() as cur:
        store._lock_keys(cur, [f"run:{run_id}"])  # see rewake_parked_run
        row = store._run(cur, "request_run_cancel", id=run_id).fetchone()
        if row is None:
            raise InvalidTransition(f"Cannot cancel run {run_ref(run_id)}: it is not active")
        store._notify(cur, {row["queue"]})


def retry(store: SQLStore, run_id: uuid.UUID) -> None:
    """Run again from the failed step: completed steps keep their results (the job retried,
    the other steps forgotten and the run reset, in one transaction)."""

    def reset(cur: Cursor) -> None:
        store._run(cur, "reset_steps", id=run_id)
        store._run(cur, "clear_cancel_request", id=run_id)
        store._run(cur, "reset_run", id=run_id)

    store._transition("retry_job", run_id, RETRYABLE, also=reset)
