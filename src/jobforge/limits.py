"""Concurrency and rate limits per queue or job type, holding across every worker.

A limit caps how many jobs of its scope run at once (`max_running`) and how many start in
any sliding window of `per` seconds (`max_started`). The store checks both while claiming,
in the claim's transaction and under a per-scope lock, from the database's own counts: the
jobs running now and a log of recent starts. Workers of one app share its limits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from jobforge.errors import ValidationError

MAX_WINDOW = 24 * 3600.0  # starts older than this are pruned


@dataclass(frozen=True, slots=True)
class Limit:
    """`Limit("queue", "emails", max_running=5, max_started=100, per=60.0)`."""

    kind: str  # "queue" or "type"
    name: str
    max_running: int | None = None
    max_started: int | None = None
    per: float | None = None  # seconds

    def __post_init__(self) -> None:
        if self.kind not in ("queue", "type"):
            raise ValidationError(f"A limit applies to a queue or a type, not {self.kind!r}")
        if self.max_running is None and self.max_started is None:
            raise ValidationError(f"Limit on {self.scope}: give max_running or max_started")
        if self.max_running is not None and self.max_running < 1:
            raise ValidationError(f"Limit on {self.scope}: max_running must be >= 1")
        if self.max_started is not None:
            if self.max_started < 1:
                raise ValidationError(f"Limit on {self.scope}: max_started must be >= 1")
            if self.per is None or not 0 < self.per <= MAX_WINDOW:
                raise ValidationError(
                    f"Limit on {self.scope}: max_started needs per= seconds (0 < per <= 86400)"
                )

    @property
    def scope(self) -> str:
        return f"{self.kind}:{self.name}"

    def budget(self, running: int, started: int) -> int:
        """How many more may start now, given the scope's running jobs and recent starts."""
        room = [
            cap - used
            for cap, used in ((self.max_running, running), (self.max_started, started))
            if cap is not None
        ]
        return max(0, min(room))


def scopes_of(job_type: str, queue: str) -> tuple[str, str]:
    return f"type:{job_type}", f"queue:{queue}"


def pick(
    candidates: Iterable[tuple[object, str, str]], budgets: Mapping[str, int], slots: int
) -> list[object]:
    """Candidates (id, type, queue) in run order, taken while every limit they fall under
    has budget left; jobs under no limit are always taken."""
    left = dict(budgets)
    chosen: list[object] = []
    for job_id, job_type, queue in candidates:
        if len(chosen) >= slots:
            break
        mine = [s for s in scopes_of(job_type, queue) if s in left]
        if all(left[s] > 0 for s in mine):
            for s in mine:
                left[s] -= 1
            chosen.append(job_id)
    return chosen
