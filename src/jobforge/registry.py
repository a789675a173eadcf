"""The job registry as a graph: groups, named dependencies between job types, closures.

`@app.job(group="feed", depends_on=["match-scores"])` declares that a job type needs others to
have run first. Nothing here touches the database: it validates the registry and plans which
jobs a group (or everything) enqueues, and why each one is included.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobforge import deps
from jobforge.errors import ValidationError
from jobforge.workflows.dag import Workflow, WorkflowJob

if TYPE_CHECKING:
    from jobforge.tasks import JobDefinition

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")
MEMBER = "member"


class GroupNotFound(ValidationError):
    """Group not found."""

    code = "group_not_found"


@dataclass(frozen=True, slots=True)
class PlannedJob:
    """One job a group enqueue includes, with why it is there."""

    name: str
    group: str | None
    reason: str  # "member" or "dependency of X"
    depends_on: tuple[str, ...]
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "reason": self.reason,
            "depends_on": list(self.depends_on),
            "payload": self.payload,
        }


@dataclass(slots=True)
class GroupPlan:
    """What `enqueue_group`/`enqueue_all` enqueue (or would, on a dry run), in run order."""

    target: str  # the group's name, or "all"
    jobs: list[PlannedJob]
    dry_run: bool = False
    workflow_id: str | None = None  # set once written
    reasons: dict[str, str] = field(default_factory=dict)

    def workflow(self, failure_policy: str = deps.FailurePolicy.FAIL_FAST) -> Workflow:
        """The plan as a workflow: one job per planned job, edges from the registry."""
        wf = Workflow(
            "all" if self.target == "all" else f"group:{self.target}",
            failure_policy=failure_policy,
            metadata={"group": self.target, "included": self.reasons},
        )
        for job in self.jobs:
            wf.add(WorkflowJob(job.name, job.name, job.payload), depends_on=job.depends_on)
        return wf

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "dry_run": self.dry_run,
            "workflow_id": self.workflow_id,
            "jobs": [j.to_dict() for j in self.jobs],
        }


def check_definition(d: JobDefinition[Any, Any]) -> None:
    """The fields one registration must have right; raises naming the job and the field."""
    if not isinstance(d.name, str) or not NAME_RE.match(d.name):
        raise ValidationError(
            f"Invalid job name {d.name!r}: use letters, digits, '_', '-', '.' or ':'"
        )
    if d.group is not None and (not isinstance(d.group, str) or not NAME_RE.match(d.group)):
        raise ValidationError(f"Invalid group {d.group!r} for job {d.name!r}")
    if isinstance(d.depends_on, str) or not all(isinstance(p, str) and p for p in d.depends_on):
        raise ValidationError(f"depends_on of job {d.name!r} must be job names")
    if not isinstance(d.defaults, Mapping):
        raise ValidationError(f"defaults of job {d.name!r} must be a JSON object")
    try:
        json.dumps(d.defaults, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"defaults of job {d.name!r} are not JSON: {exc}") from None
    if not isinstance(d.examples, Sequence) or isinstance(d.examples, str):
        raise ValidationError(f"examples of job {d.name!r} must be a list")


def validate(registry: Mapping[str, JobDefinition[Any, Any]]) -> None:
    """Every field right, every named dependency registered, no cycle."""
    for d in registry.values():
        check_definition(d)
    deps.check_graph({name: list(d.depends_on) for name, d in registry.items()})


def groups(registry: Mapping[str, JobDefinition[Any, Any]]) -> dict[str, int]:
    """Each group with its number of jobs, by name."""
    counts: dict[str, int] = {}
    for d in registry.values():
        if d.group is not None:
            counts[d.group] = counts.get(d.group, 0) + 1
    return dict(sorted(counts.items()))


def members(registry: Mapping[str, JobDefinition[Any, Any]], group: str) -> list[str]:
    names = [n for n, d in registry.items() if d.group == group]
    if not names:
        known = ", ".join(groups(registry)) or "none registered"
        raise GroupNotFound(f"Group not found: {group} (known: {known})")
    return names


def plan(
    registry: Mapping[str, JobDefinition[Any, Any]],
    group: str | None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> GroupPlan:
    """A group's members plus, transitively, what they depend on (or every job if None)."""
    validate(registry)
    roots = list(registry) if group is None else members(registry, group)
    reasons = dict.fromkeys(roots, MEMBER)
    queue = list(roots)
    while queue:  # breadth first: the nearest member that needs a job names it
        name = queue.pop(0)
        for parent in registry[name].depends_on:
            if parent not in reasons:
                reasons[parent] = f"dependency of {name}"
                queue.append(parent)
    params = params or {}
    unknown = sorted(set(params) - set(reasons))
    if unknown:
        raise ValidationError(
            f"Parameters given for {', '.join(unknown)}, not part of {group or 'all'}"
        )
    jobs = [
        PlannedJob(
            name=name,
            group=registry[name].group,
            reason=reasons[name],
            depends_on=tuple(registry[name].depends_on),
            payload={**registry[name].defaults, **params.get(name, {})},
        )
        for name in run_order(registry, reasons)
    ]
    return GroupPlan(group or "all", jobs, reasons=reasons)


def run_order(
    registry: Mapping[str, JobDefinition[Any, Any]], names: Mapping[str, Any]
) -> list[str]:
    """`names` parents first, otherwise in registration order (the graph is known acyclic)."""
    done: set[str] = set()
    order: list[str] = []
    pending = [n for n in registry if n in names]
    while pending:
        rest = []
        for n in pending:
            if all(p in done for p in registry[n].depends_on):
                done.add(n)
                order.append(n)
            else:
                rest.append(n)
        pending = rest
    return order
