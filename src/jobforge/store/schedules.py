"""Store verbs for cron schedules and their runs; each one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobforge.errors import JobNotFound, ValidationError
from jobforge.jobs import as_uuid, iso, utcnow
from jobforge.schedules import Rows, Schedule

if TYPE_CHECKING:
    from jobforge.store.sql import Row, SQLStore


class ScheduleNotFound(JobNotFound):
    """No such schedule."""

    code = "schedule_not_found"


@dataclass(frozen=True, slots=True)
class ScheduleRun:
    """One fired tick: what it enqueued, or why it enqueued nothing."""

    schedule: str
    tick: datetime
    job_id: uuid.UUID | None
    workflow_id: uuid.UUID | None
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "tick": iso(self.tick),
            "job_id": None if self.job_id is None else "job_" + self.job_id.hex,
            "workflow_id": None if self.workflow_id is None else "wf_" + self.workflow_id.hex,
            "note": self.note,
        }


def _schedule(store: SQLStore, r: Row) -> Schedule:
    return Schedule(
        name=r["name"],
        cron=r["cron"],
        target_kind=r["target_kind"],
        target=r["target"],
        payload=store._decode_json(r["payload"]),
        timezone=r["timezone"],
        depends_on=tuple(store._decode_json(r["depends_on"])),
        catch_up=bool(r["catch_up"]),
        paused=bool(r["paused"]),
        source=r["source"],
        next_run_at=store._time(r["next_run_at"]),
        last_run_at=store._time(r["last_run_at"]),
    )


def _run_record(store: SQLStore, r: Row) -> ScheduleRun:
    return ScheduleRun(
        schedule=r["schedule"],
        tick=store._time(r["tick"]),  # type: ignore[arg-type]
        job_id=None if r["job_id"] is None else as_uuid(r["job_id"]),
        workflow_id=None if r["workflow_id"] is None else as_uuid(r["workflow_id"]),
        note=r["note"],
    )


def sync(store: SQLStore, schedules: list[Schedule]) -> None:
    """Store the app's code-defined schedules, keeping each one's next tick if unchanged."""
    now = utcnow()
    with store._tx() as cur:
        for s in schedules:
            store._run(cur, "sync_schedule", **s.params(now))


def add(store: SQLStore, s: Schedule) -> Schedule:
    """A new schedule; an existing name is refused."""
    with store._tx() as cur:
        for dep in s.depends_on:
            if store._run(cur, "get_schedule", name=dep).fetchone() is None:
                raise ScheduleNotFound(f"Schedule not found: {dep} (required by {s.name})")
        if store._run(cur, "insert_schedule", **s.params(utcnow())).fetchone() is None:
            raise ValidationError(f"Schedule {s.name!r} already exists")
    return get(store, s.name)


def get(store: SQLStore, name: str) -> Schedule:
    rows = store._select("get_schedule", name=name)
    if not rows:
        raise ScheduleNotFound(f"Schedule not found: {name}")
    return _schedule(store, rows[0])


def list_all(store: SQLStore) -> list[Schedule]:
    return [_schedule(store, r) for r in store._select("list_schedules")]


def remove(store: SQLStore, name: str) -> None:
    with store._tx() as cur:
        if store._run(cur, "delete_schedule", name=name).fetchone() is None:
            raise ScheduleNotFound(f"Schedule not found: {name}")


def set_paused(store: SQLStore, name: str, paused: bool) -> Schedule:
    """Pause or resume; a resumed schedule starts at its next tick from now (no backlog)."""
    s = get(store, name)
    next_run = s.next_run_at if paused else s.next_after(utcnow())
    with store._tx() as cur:
        found = store._run(cur, "pause_schedule", name=name, paused=paused, next_run_at=next_run)
        if found.fetchone() is None:
            raise ScheduleNotFound(f"Schedule not found: {name}")
    return get(store, name)


def due(store: SQLStore, now: datetime) -> list[Schedule]:
    return [_schedule(store, r) for r in store._select("due_schedules", now=now)]


def runs(store: SQLStore, name: str, limit: int = 20) -> list[ScheduleRun]:
    return [_run_record(store, r) for r in store._select("schedule_runs", name=name, limit=limit)]


def last_run(store: SQLStore, name: str, since: datetime, until: datetime) -> ScheduleRun | None:
    """The latest run of `name` between two moments that enqueued something."""
    found = store._select("last_schedule_run", name=name, since=since, until=until)
    return _run_record(store, found[0]) if found else None


def fire(
    store: SQLStore,
    s: Schedule,
    tick: datetime,
    next_run_at: datetime,
    rows: Rows | None,
    note: str | None,
    max_depth: int,
) -> bool:
    """Record the tick, move the schedule on and write its rows, all in one transaction.

    Returns False (and writes nothing) if another worker fired this tick first.
    """
    with store._tx() as cur:
        won = store._run(
            cur, "insert_schedule_run", schedule=s.name, tick=tick, note=note,
            job_id=rows.job_id if rows else None, workflow_id=rows.workflow_id if rows else None,
        ).fetchone()  # fmt: skip
        if won is None:
            return False
        store._run(cur, "advance_schedule", name=s.name, tick=tick, next_run_at=next_run_at)
        if rows is not None:
            store._insert_new(cur, rows.jobs, rows.edges, rows.workflow, max_depth)
    return True
