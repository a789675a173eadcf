"""Why is this job waiting, or why was it skipped? One screen, from its edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobforge.deps import SUCCESS, EdgeKind
from jobforge.jobs import Job, JobStatus, iso
from jobforge.workflows.records import EdgeRecord


@dataclass
class EdgeExplanation:
    parent: Job
    edge: EdgeRecord
    state: str  # "satisfied", "blocking", "failed" or "cancelled"
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "parent_id": self.parent.job_id,
            "parent_name": self.parent.name or self.parent.type,
            "parent_status": self.parent.status.value,
            "dependency_type": self.edge.kind,
            "condition": self.edge.condition,
            "edge_status": self.edge.status,
            "state": self.state,
            "detail": self.detail,
        }


@dataclass
class Explanation:
    job: Job
    summary: str
    edges: list[EdgeExplanation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job.job_id,
            "name": self.job.name,
            "status": self.job.status.value,
            "dependency_status": self.job.dependency_status,
            "summary": self.summary,
            "dependencies": [e.to_dict() for e in self.edges],
        }

    def text(self) -> str:
        marks = {"satisfied": "✓", "blocking": "…", "failed": "✗", "cancelled": "-"}
        lines = [f"{self.job.job_id} ({self.job.name or self.job.type}): {self.summary}"]
        for e in self.edges:
            p = e.parent
            lines.append(
                f"  {marks[e.state]} {p.name or p.type} {p.job_id} is {p.status.value}"
                f" — {e.edge.kind}"
                + (f" [{e.edge.condition}]" if e.edge.condition else "")
                + f": {e.detail}"
            )
        return "\n".join(lines)


def _what_releases(edge: EdgeRecord, parent: Job) -> str:
    if edge.kind == EdgeKind.PARALLEL:
        return "released when the parent starts"
    if edge.kind == EdgeKind.CONDITIONAL:
        return f"released when the parent succeeds and {edge.condition!r} holds for its result"
    cond = edge.condition or "succeeded"
    if cond == "always":
        return "released when the parent finishes, whatever the outcome"
    return f"released when the parent ends {cond}"


def explain(
    job: Job, parents: list[tuple[EdgeRecord, Job]], workflow_status: str | None = None
) -> Explanation:
    out: list[EdgeExplanation] = []
    for edge, parent in parents:
        if edge.status == "resolved":
            state, detail = "satisfied", f"satisfied at {iso(edge.resolved_at)}"
        elif edge.status == "failed":
            state, detail = (
                "failed",
                "can no longer hold: "
                + (
                    "the parent did not succeed"
                    if parent.status not in SUCCESS
                    else "the condition is false for the parent's result"
                ),
            )
        elif edge.status == "cancelled":
            state, detail = "cancelled", f"cancelled ({edge.resolved_by})"
        else:
            state, detail = "blocking", _what_releases(edge, parent)
        out.append(EdgeExplanation(parent, edge, state, detail))
    summary = _summary(job, out)
    if workflow_status == "paused" and job.status == JobStatus.WAITING:
        summary += (
            " — its workflow is paused after a failure: resume it, retry the failed job,"
            " or cancel it"
        )
    return Explanation(job, summary, out)


def _summary(job: Job, edges: list[EdgeExplanation]) -> str:
    blocking = [e for e in edges if e.state == "blocking"]
    if job.status == JobStatus.WAITING:
        if job.reason and job.reason.startswith("held"):
            return f"waiting — {job.reason}"
        if not blocking:
            return "waiting — all dependencies are satisfied; it is held by its workflow"
        return f"waiting for {len(blocking)} of {len(edges)} dependencies"
    if job.status == JobStatus.SKIPPED:
        reason = (job.reason or "a dependency can no longer hold").removeprefix("skipped: ")
        return f"skipped — {reason}"
    if job.status in (JobStatus.QUEUED, JobStatus.SCHEDULED):
        due = f" (due {iso(job.scheduled_at)})" if job.status == JobStatus.SCHEDULED else ""
        deps_note = "dependencies satisfied; " if edges else "no dependencies; "
        return f"{job.status.value}{due} — {deps_note}ready for a worker on queue {job.queue!r}"
    if job.reason:
        return f"{job.status.value} — {job.reason}"
    return job.status.value
