"""Maintenance service: fire due cron ticks. Every worker runs it; each tick fires once."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from jobforge.errors import ValidationError
from jobforge.jobs import utcnow
from jobforge.schedules import Rows, Schedule, build, can_fire, day_start
from jobforge.store import graph
from jobforge.store import schedules as stored

if TYPE_CHECKING:
    from jobforge.app import Forge

log = logging.getLogger("jobforge.scheduler")


class Scheduler:
    """`start()` stores the app's schedules; `run_due()` fires what is due, oldest first."""

    def __init__(self, app: Forge) -> None:
        self.app = app

    def start(self) -> None:
        if self.app.schedules:
            stored.sync(self.app.store, list(self.app.schedules.values()))

    def run_due(self, now: datetime | None = None) -> int:
        """Fire every due tick this app can build; returns how many enqueued something."""
        now = now or utcnow()
        fired = 0
        for s in stored.due(self.app.store, now):
            if can_fire(self.app, s):
                fired += self._fire(s, now)
        return fired

    def _fire(self, s: Schedule, now: datetime) -> int:
        ticks, following = s.due_ticks(now)
        fired = 0
        for i, tick in enumerate(ticks):
            next_run = ticks[i + 1] if i + 1 < len(ticks) else following
            rows, note = self._rows(s, tick)
            won = stored.fire(self.app.store, s, tick, next_run, rows, note,
                              self.app.max_dependency_depth)  # fmt: skip
            if won and rows is not None:
                fired += 1
                log.info("schedule %s fired its %s tick", s.name, tick.isoformat())
            elif won:
                log.warning("schedule %s: %s", s.name, note)
        return fired

    def _rows(self, s: Schedule, tick: datetime) -> tuple[Rows | None, str | None]:
        """The tick's rows, or why it enqueues nothing (that is recorded, not retried)."""
        parents: list[uuid.UUID] = []
        since = day_start(s, tick)
        for dep in s.depends_on:
            run = stored.last_run(self.app.store, dep, since, tick)
            if run is None:
                return None, f"not run: no run of {dep} on {since.date().isoformat()}"
            if run.job_id is not None:
                parents.append(run.job_id)
            elif run.workflow_id is not None:
                parents += [j.id for j in graph.workflow_jobs(self.app.store, run.workflow_id)]
        try:
            return build(self.app, s, tick, parents), None
        except ValidationError as exc:
            return None, f"not run: {exc}"
