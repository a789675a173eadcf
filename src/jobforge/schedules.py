"""Cron schedules: when a schedule's ticks fall, and what each tick enqueues.

Cron expressions are parsed by `croniter` (5 fields) in the schedule's IANA timezone, so
"0 2 * * *" in Europe/Paris follows daylight saving time. Workers fire due ticks (see
worker/scheduler.py); the store makes each tick fire exactly once across all of them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jobforge import registry as reg
from jobforge.errors import UnknownJobType, ValidationError
from jobforge.jobs import NewEdge, NewJob, NewWorkflow, iso, new_id
from jobforge.tasks import JobOptions
from jobforge.workflows.build import build_rows
from jobforge.workflows.dag import Workflow
from jobforge.workflows.files import workflow_from_dict

if TYPE_CHECKING:
    from jobforge.app import Forge

TARGET_KINDS = ("job", "group", "workflow")
MAX_CATCH_UP = 1000  # ticks fired per schedule per pass when catching up


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron schedule: on each tick, enqueue a job, a group, or a workflow definition."""

    name: str
    cron: str
    target_kind: str  # job, group or workflow
    target: str  # the job type, the group, or the workflow's name
    payload: dict[str, Any] = field(default_factory=dict)  # payload, group params, or definition
    timezone: str = "UTC"
    depends_on: tuple[str, ...] = ()  # schedules whose same-day run each tick waits for
    catch_up: bool = False  # fire every missed tick, not only the latest
    paused: bool = False
    source: str = "code"
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None

    def check(self) -> None:
        """Refuse a bad name, cron expression, timezone or target before anything is stored."""
        if not reg.NAME_RE.match(self.name):
            raise ValidationError(f"Invalid schedule name {self.name!r}")
        zone(self.timezone)
        parse_cron(self.cron)
        if self.target_kind not in TARGET_KINDS:
            raise ValidationError(f"Invalid schedule target {self.target_kind!r}")
        if self.name in self.depends_on:
            raise ValidationError(f"Schedule {self.name!r} cannot depend on itself")

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`. When clocks go back, a wall-clock time
        that comes round again (02:00 twice) fires once, unless the hour field is `*`."""
        from croniter import croniter  # on first use: it pulls in dateutil (0.1 s)

        local = moment.astimezone(zone(self.timezone))
        it = croniter(self.cron, local)
        tick: datetime = it.get_next(datetime)
        if self.cron.split()[1] != "*":
            while tick.replace(tzinfo=None) <= local.replace(tzinfo=None):
                tick = it.get_next(datetime)
        return tick

    def due_ticks(self, now: datetime) -> tuple[list[datetime], datetime]:
        """The ticks to fire at `now` and the tick after them.

        Missed ticks (a worker was down) collapse into the latest one unless `catch_up`,
        which fires each of them in order (at most MAX_CATCH_UP per pass).
        """
        from croniter import croniter

        assert self.next_run_at is not None
        if not self.catch_up:
            latest = croniter(self.cron, (now + timedelta(microseconds=1)).astimezone(
                zone(self.timezone))).get_prev(datetime)  # fmt: skip
            latest = max(latest, self.next_run_at)
            return [latest], self.next_after(latest)
        ticks = [self.next_run_at]
        following = self.next_after(self.next_run_at)
        while following <= now and len(ticks) < MAX_CATCH_UP:
            ticks.append(following)
            following = self.next_after(following)
        return ticks, following

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cron": self.cron,
            "timezone": self.timezone,
            "target_kind": self.target_kind,
            "target": self.target,
            "payload": self.payload,
            "depends_on": list(self.depends_on),
            "catch_up": self.catch_up,
            "paused": self.paused,
            "source": self.source,
            "next_run_at": iso(self.next_run_at),
            "last_run_at": iso(self.last_run_at),
        }

    def params(self, now: datetime) -> dict[str, Any]:
        """Row parameters for the store (the next tick counted from `now`)."""
        return {
            "name": self.name,
            "cron": self.cron,
            "timezone": self.timezone,
            "target_kind": self.target_kind,
            "target": self.target,
            "payload": json.dumps(self.payload),
            "depends_on": json.dumps(list(self.depends_on)),
            "catch_up": self.catch_up,
            "source": self.source,
            "next_run_at": self.next_after(now),
            "now": now,
        }


def parse_cron(expr: str) -> str:
    fields = expr.split()
    from croniter import croniter

    if len(fields) != 5 or not croniter.is_valid(expr):
        raise ValidationError(
            f"Invalid cron expression {expr!r}: expected 5 fields"
            " (minute hour day-of-month month day-of-week)"
        )
    return expr


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"Unknown timezone {name!r}") from None


def make(
    name: str,
    cron: str,
    *,
    job: str | None = None,
    group: str | None = None,
    workflow: dict[str, Any] | None = None,
    payload: dict[str, Any] | None = None,
    timezone: str = "UTC",
    depends_on: tuple[str, ...] | list[str] = (),
    catch_up: bool = False,
    source: str = "code",
) -> Schedule:
    """A checked schedule for exactly one of `job`, `group` or `workflow` (a definition)."""
    given = [k for k, v in (("job", job), ("group", group), ("workflow", workflow)) if v]
    if len(given) != 1:
        raise ValidationError("A schedule needs exactly one target: a job, a group or a workflow")
    kind = given[0]
    if kind == "workflow":
        assert workflow is not None
        target = workflow_from_dict(workflow, f"schedule {name!r}").name
        body: dict[str, Any] = workflow
    else:
        target = str(job or group)
        body = dict(payload or {})
    sched = Schedule(name, cron, kind, target, body, timezone, tuple(depends_on),
                     catch_up, source=source)  # fmt: skip
    sched.check()
    return sched


def check_target(app: Forge, s: Schedule) -> None:
    """Refuse a schedule whose job type, group or group params this app does not have."""
    if s.target_kind == "job" and s.target not in app.registry:
        raise UnknownJobType(f"Unknown job type {s.target!r} (schedule {s.name!r})")
    if s.target_kind == "group":
        reg.plan(app.registry, s.target, s.payload)


def can_fire(app: Forge, s: Schedule) -> bool:
    """Whether this app knows the target (a worker leaves others to the workers that do)."""
    if s.target_kind == "job":
        return s.target in app.registry or app.allow_unknown_types
    if s.target_kind == "group":
        return s.target in app.groups()
    types = {j.get("type") for j in s.payload.get("jobs", []) if isinstance(j, dict)}
    return types <= set(app.registry) or app.allow_unknown_types


@dataclass(slots=True)
class Rows:
    """What one tick writes."""

    jobs: list[NewJob]
    edges: list[NewEdge]
    workflow: NewWorkflow | None

    @property
    def job_id(self) -> uuid.UUID | None:
        return self.jobs[0].id if self.workflow is None else None

    @property
    def workflow_id(self) -> uuid.UUID | None:
        return None if self.workflow is None else self.workflow.id


def build(app: Forge, s: Schedule, tick: datetime, parents: list[uuid.UUID]) -> Rows:
    """The rows of one tick; `parents` (the same-day runs it depends on) gate its start."""
    if s.target_kind == "job":
        job = app._resolver()(s.target, s.payload, JobOptions())
        roots = [job]
        rows = Rows([job], [], None)
    else:
        wf = _workflow(app, s)
        wf.metadata = {**wf.metadata, "schedule": s.name, "tick": iso(tick)}
        workflow, jobs, edges = build_rows(app, wf)
        has_parent = {e.child_id for e in edges}
        roots = [j for j in jobs if j.id not in has_parent]
        rows = Rows(jobs, edges, workflow)
    rows.edges += [
        NewEdge(new_id(), p, r.id, "sequential", "succeeded") for p in parents for r in roots
    ]
    return rows


def _workflow(app: Forge, s: Schedule) -> Workflow:
    if s.target_kind == "workflow":
        return workflow_from_dict(s.payload, f"schedule {s.name!r}")
    return reg.plan(app.registry, s.target, s.payload).workflow()


def day_start(s: Schedule, tick: datetime) -> datetime:
    """Midnight of the tick's day in the schedule's timezone: "the same day's run"."""
    local = tick.astimezone(zone(s.timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)
