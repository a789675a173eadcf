"""What a handler receives as `ctx`: its job, and a way to report progress."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobforge.store.base import ProgressUpdate

if TYPE_CHECKING:
    from jobforge.jobs import Job

ProgressSink = Callable[[ProgressUpdate], None]


@dataclass
class JobContext:
    """Per-attempt context passed to a handler as its first argument."""

    job: Job
    _sink: ProgressSink | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("jobforge.job"))
    result_url: str | None = None  # set it to point at a large result stored elsewhere
    cancel_requested: bool = False  # set by the worker when the job's workflow is cancelled

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def attempt(self) -> int:
        return self.job.attempts

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    def progress(self, percent: int, message: str | None = None) -> None:
        """Record progress (0-100). Written behind, batched with the worker's other writes."""
        pct = max(0, min(100, int(percent)))
        if self._sink is not None and self.job.lease_token is not None:
            self._sink(ProgressUpdate(self.job.id, self.job.lease_token, pct, message))
