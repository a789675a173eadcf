"""THE dependency logic: edge rules, graph validation, and release/skip on a parent's change.

Everything that decides whether a job may run lives here. The store calls `settle()` inside
the same transaction that changes a parent's state, through the narrow `DepsOps` interface;
the work done is proportional to that parent's children, never a scan over all jobs. One
rule is applied by the store, as `DepsOps.resolve_edges` states it: a child whose last
pending edge resolves is released by the statement that counts it (so that concurrent
parents cannot both miss it, and a hop costs one statement less).
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

from jobforge.conditions import compile_condition, evaluate
from jobforge.errors import ValidationError
from jobforge.jobs import JobStatus, NewEdge, NewJob, readable_id

DEFAULT_MAX_DEPTH = 10_000


class EdgeKind(StrEnum):
    SEQUENTIAL = "sequential"  # the child runs once the parent finished and the condition holds
    CONDITIONAL = "conditional"  # a CEL expression over the parent's result
    PARALLEL = "parallel"  # the child may start as soon as the parent has started


class EdgeStatus(StrEnum):
    PENDING = "pending"
    RESOLVED = "resolved"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DependencyStatus(StrEnum):
    NONE = "none"
    WAITING = "waiting"
    SATISFIED = "satisfied"
    FAILED = "failed"


class FailurePolicy(StrEnum):
    FAIL_FAST = "fail_fast"
    CONTINUE = "continue_on_failure"
    MANUAL = "manual"


class WorkflowStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


SEQUENTIAL_CONDITIONS = ("succeeded", "failed", "always")
SUCCESS = frozenset({JobStatus.SUCCEEDED, JobStatus.PARTIAL_SUCCESS})
WORKFLOW_ACTIVE = frozenset({WorkflowStatus.PENDING, WorkflowStatus.RUNNING, WorkflowStatus.PAUSED})


class DependencyError(ValidationError):
    """Invalid dependency."""

    code = "bad_dependency"


class CycleError(DependencyError):
    """Circular dependency."""

    code = "circular_dependency"


class MissingDependency(DependencyError):
    """Dependency not found."""

    code = "dependency_not_found"


class DuplicateDependency(DependencyError):
    """The job already depends on that parent: one edge per pair of jobs."""

    code = "duplicate_dependency"
    http_status = 409


@dataclass(frozen=True, slots=True)
class Dependency:
    """An edge as a user writes it: the parent (a job id, or a name inside a workflow)."""

    parent: str
    kind: str = EdgeKind.SEQUENTIAL
    condition: str | None = None


def normalize_edge(kind: str, condition: str | None) -> tuple[EdgeKind, str | None]:
    """Check an edge's kind and condition before anything is written."""
    if condition is not None and not isinstance(condition, str):
        raise DependencyError(f"Invalid condition {condition!r}: expected a string")
    if not isinstance(kind, str):
        names = ", ".join(e.value for e in EdgeKind)
        raise DependencyError(f"Invalid dependency type {kind!r} (expected {names})")
    return _normalize_edge(kind, condition)


@functools.lru_cache(maxsize=1024)
def _normalize_edge(kind: str, condition: str | None) -> tuple[EdgeKind, str | None]:
    """Cached: a 100,000-edge workflow repeats a few (kind, condition) pairs, and a
    conditional edge compiles its expression."""
    try:
        k = EdgeKind(kind)
    except ValueError:
        names = ", ".join(e.value for e in EdgeKind)
        raise DependencyError(f"Invalid dependency type {kind!r} (expected {names})") from None
    if k == EdgeKind.SEQUENTIAL:
        cond = condition or "succeeded"
        if cond not in SEQUENTIAL_CONDITIONS:
            raise DependencyError(
                f"Invalid condition {cond!r} for a sequential dependency"
                " (expected succeeded, failed or always; use type conditional for expressions)"
            )
        return k, cond
    if k == EdgeKind.CONDITIONAL:
        if not condition:
            raise DependencyError("A conditional dependency needs a condition expression")
        compile_condition(condition)
        return k, condition
    return k, None


def as_dependency(value: Any) -> Dependency:
    """Accept a job id / name string, a Dependency, or a mapping {job, type, condition}."""
    if isinstance(value, Dependency):
        return value
    if isinstance(value, str):
        return Dependency(value)
    if isinstance(value, Mapping):
        parent = value.get("job") or value.get("parent") or value.get("from")
        if not isinstance(parent, str) or not parent:
            raise DependencyError(f"Dependency {dict(value)!r} names no parent job ('job')")
        kind = value.get("type") or value.get("dependency_type") or EdgeKind.SEQUENTIAL
        return Dependency(parent, str(kind), value.get("condition"))
    raise DependencyError(f"Invalid dependency {value!r}")


# -- graph validation ----------------------------------------------------------------------
def check_graph(parents: Mapping[str, Sequence[str]], max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """Validate a whole graph given as {node: [parent, ...]}; raise naming the problem.

    Missing parents, self-dependencies, cycles (with their path) and a depth over the limit.
    Iterative (Kahn's algorithm), so 100,000-node graphs need no recursion.
    """
    for node, ps in parents.items():
        for p in ps:
            if p == node:
                raise CycleError(f"Circular dependency detected: {node} -> {node}")
            if p not in parents:
                raise MissingDependency(f"Dependency not found: {p} (required by {node})")
    indegree = {node: len(ps) for node, ps in parents.items()}
    children: dict[str, list[str]] = defaultdict(list)
    for node, ps in parents.items():
        for p in ps:
            children[p].append(node)
    depth = dict.fromkeys(parents, 0)
    ready = [n for n, d in indegree.items() if d == 0]
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for child in children[node]:
            depth[child] = max(depth[child], depth[node] + 1)
            if depth[child] > max_depth:
                raise DependencyError(
                    f"Dependency depth limit exceeded: {child} is {depth[child]} levels deep"
                    f" (limit {max_depth})"
                )
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if seen < len(parents):
        cycle = find_cycle({n: ps for n, ps in parents.items() if indegree[n] > 0})
        raise CycleError("Circular dependency detected: " + " -> ".join(cycle))


def find_cycle(parents: Mapping[str, Sequence[str]]) -> list[str]:
    """A cycle among nodes known to contain one, as [a, b, ..., a] in dependency order."""
    remaining = set(parents)
    for start in parents:
        path: list[str] = []
        on_path: dict[str, int] = {}
        node: str | None = start
        # Every remaining node has a remaining parent, so walking parents must loop.
        while node is not None and node not in on_path:
            on_path[node] = len(path)
            path.append(node)
            node = next((p for p in parents[node] if p in remaining), None)
        if node is not None:
            loop = [*path[on_path[node] :], node]
            loop.reverse()  # parents first: a -> b means b depends on a
            return loop
    raise AssertionError("no cycle found")


# -- resolution ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Settled:
    """A job whose change of state may release or skip its children."""

    id: uuid.UUID
    status: JobStatus
    result: Any
    started: bool
    workflow_id: uuid.UUID | None
    optional: bool
    label: str  # the name people know it by, for reasons
    has_children: bool = True  # False: nothing waits on it, so settling it reads no edges

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal


@dataclass(frozen=True, slots=True)
class EdgeRow:
    id: uuid.UUID
    parent_id: uuid.UUID
    child_id: uuid.UUID
    kind: EdgeKind
    condition: str | None


@dataclass(frozen=True, slots=True)
class ChildState:
    id: uuid.UUID
    status: JobStatus
    workflow_id: uuid.UUID | None
    queue: str

    @property
    def released(self) -> bool:
        """Did the statement that took its edges off release it (see `DepsOps`)?"""
        return self.status in (JobStatus.QUEUED, JobStatus.SCHEDULED)


@dataclass(frozen=True, slots=True)
class WorkflowState:
    id: uuid.UUID
    status: WorkflowStatus
    failure_policy: FailurePolicy


class DepsOps(Protocol):
    """What dependency resolution needs from the store, inside one transaction."""

    def pending_edges_from(self, parent_ids: Sequence[uuid.UUID]) -> list[EdgeRow]: ...

    def resolve_edges(
        self, updates: Sequence[tuple[uuid.UUID, EdgeStatus, str]], counts: Mapping[uuid.UUID, int]
    ) -> list[ChildState]:
        """Write edge verdicts, then take `counts` resolved edges off each waiting child's
        pending count and, in the same statement, release each child whose count reaches
        zero (the counter rule), unless its workflow is paused: it then stays waiting, held,
        until resumed.

        The rule is applied where the count changes so that a level of a graph costs one
        statement, and so that of two parents finishing at once exactly one releases."""
        ...

    def release(self, ids: Sequence[uuid.UUID]) -> set[str]: ...

    def skip(self, reasons: Mapping[uuid.UUID, str]) -> list[Settled]: ...

    def workflows(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, WorkflowState]: ...

    def fail_workflow_fast(self, workflow_id: uuid.UUID, reason: str) -> list[Settled]: ...

    def pause_workflow(self, workflow_id: uuid.UUID, reason: str) -> None: ...

    def complete_workflow_if_done(self, workflow_id: uuid.UUID) -> None: ...


def verdict(edge: EdgeRow, parent: Settled) -> bool | None:
    """Does the edge hold (True), can it never hold (False), or is it undecided (None)?"""
    if edge.kind == EdgeKind.PARALLEL:
        if parent.started:
            return True
        return False if parent.is_terminal else None
    if not parent.is_terminal:
        return None
    if edge.kind == EdgeKind.CONDITIONAL:
        return parent.status in SUCCESS and evaluate(edge.condition or "false", parent.result)
    if edge.condition == "always":
        return True
    if edge.condition == "failed":
        return parent.status not in SUCCESS
    return parent.status in SUCCESS


def skip_reason(edge: EdgeRow, parent: Settled) -> str:
    if edge.kind == EdgeKind.PARALLEL:
        return f"parent {parent.label} ended {parent.status.value} without starting"
    if edge.kind == EdgeKind.CONDITIONAL:
        if parent.status not in SUCCESS:
            return f"parent {parent.label} ended {parent.status.value}"
        return f"condition {edge.condition!r} on parent {parent.label}'s result is false"
    return f"parent {parent.label} ended {parent.status.value}; the edge requires {edge.condition}"


def settle(ops: DepsOps, changed: Sequence[Settled], apply_policies: bool = True) -> set[str]:
    """Apply the consequences of jobs starting or finishing; returns queues to wake.

    Runs inside the transaction that changed the jobs. Skips cascade breadth-first, each
    level costing one query per kind of write, however wide the level is.
    """
    wake: set[str] = set()
    touched = {c.workflow_id for c in changed if c.workflow_id}
    failures = [c for c in changed if c.status == JobStatus.FAILED and not c.optional]
    # Policies only matter for failures: successes cost no workflow lookup.
    workflows = ops.workflows({c.workflow_id for c in failures if c.workflow_id})
    frontier: list[Settled] = []
    for job in changed:
        wf = workflows.get(job.workflow_id) if job.workflow_id else None
        if apply_policies and wf and job.status == JobStatus.FAILED and not job.optional:
            if wf.status in (WorkflowStatus.PENDING, WorkflowStatus.RUNNING):
                if wf.failure_policy == FailurePolicy.MANUAL:
                    ops.pause_workflow(wf.id, f"job {job.label} failed")
                    workflows[wf.id] = replace(wf, status=WorkflowStatus.PAUSED)
                    continue  # a person decides: resume, retry or cancel
                if wf.failure_policy == FailurePolicy.FAIL_FAST:
                    workflows[wf.id] = replace(wf, status=WorkflowStatus.FAILED)
                    frontier.extend(ops.fail_workflow_fast(wf.id, f"job {job.label} failed"))
            elif wf.status == WorkflowStatus.PAUSED:
                continue
        frontier.append(job)
    busy: set[uuid.UUID] = set()  # workflows that just released a job: certainly not done
    waiting: set[uuid.UUID] = set()  # workflows with a child still waiting after this level
    skips = False
    while frontier:
        frontier = _settle_level(ops, frontier, wake, busy, waiting)
        skips = skips or bool(frontier)
        touched |= {s.workflow_id for s in frontier if s.workflow_id}
    if not skips:  # a waiting child could only have been skipped since: it still waits
        busy |= waiting
    for wf_id in touched - busy:
        ops.complete_workflow_if_done(wf_id)
    return wake


def _settle_level(
    ops: DepsOps,
    frontier: Sequence[Settled],
    wake: set[str],
    busy: set[uuid.UUID],
    waiting: set[uuid.UUID],
) -> list[Settled]:
    parents = {p.id: p for p in frontier if p.has_children}
    if not parents:
        return []
    updates: list[tuple[uuid.UUID, EdgeStatus, str]] = []
    resolved: Counter[uuid.UUID] = Counter()
    doomed: dict[uuid.UUID, str] = {}
    for edge in ops.pending_edges_from(list(parents)):
        parent = parents[edge.parent_id]
        holds = verdict(edge, parent)
        if holds is None:
            continue
        updates.append((edge.id, EdgeStatus.RESOLVED if holds else EdgeStatus.FAILED, parent.label))
        if holds:
            resolved[edge.child_id] += 1
        else:
            doomed.setdefault(edge.child_id, skip_reason(edge, parent))
    if not updates:
        return []
    for child in doomed:
        resolved.pop(child, None)
    # Skips cancel every pending edge into a skipped child, and then resolve_edges writes
    # this level's edges over that: the same end state as writing them first.
    skipped = ops.skip(doomed) if doomed else []
    for state in ops.resolve_edges(updates, resolved):
        if state.released:
            wake.add(state.queue)
        if state.workflow_id:
            (busy if state.released else waiting).add(state.workflow_id)
    return skipped


# -- planning new jobs and edges ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ParentInfo(Settled):
    """An existing job that new edges point from (read under a share lock)."""

    depth: int = 0
    tenant_id: str | None = None


def plan_insert(
    jobs: Sequence[NewJob],
    edges: Sequence[NewEdge],
    existing: Mapping[uuid.UUID, ParentInfo],
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> list[Settled]:
    """Set each new job's waiting state and depth from its edges; check every edge.

    Returns the existing parents that have already started or finished: the caller
    settles them right after writing, so the new edges resolve at once. Keys are the
    UUIDs' integers: hashing those is several times cheaper at 100,000 jobs.
    """
    new = {j.id.int: j for j in jobs}
    old_depth = {p.id.int: p.depth for p in existing.values()}
    parents_of: dict[int, list[int]] = defaultdict(list)
    for e in edges:
        c, p = e.child_id.int, e.parent_id.int
        child = new.get(c)
        if child is None:
            raise DependencyError(f"Edge child {e.child_id} is not among the jobs being added")
        if p == c:
            raise CycleError(f"Circular dependency detected: {child.label} -> {child.label}")
        parent_job = new.get(p)
        if parent_job is not None:
            parent_job.has_children = True
            if e.kind == EdgeKind.PARALLEL:
                parent_job.has_parallel_children = True
        elif p not in old_depth:
            raise MissingDependency(
                f"Dependency not found: {readable_id(e.parent_id)} (required by {child.label})"
            )
        elif existing[e.parent_id].tenant_id != child.tenant_id:
            raise DependencyError("A dependency cannot link jobs of two tenants")
        parents_of[c].append(p)
    depth = _depths(new, parents_of, old_depth, max_depth)
    for key, ps in parents_of.items():
        job = new[key]
        job.pending_parents = len(ps)
        job.status = JobStatus.WAITING
        job.dependency_status = DependencyStatus.WAITING
        job.depth = depth[key]
    if not existing:
        return []
    used = {e.parent_id for e in edges}
    return [
        replace(p, has_children=True)  # it has now, whatever its row said before
        for p in existing.values()
        if p.id in used and (p.started or p.status.is_terminal)
    ]


def _depths(
    new: Mapping[int, NewJob],
    parents_of: Mapping[int, list[int]],
    old_depth: Mapping[int, int],
    max_depth: int,
) -> dict[int, int]:
    """Each new job's depth (1 + its deepest parent's); a cycle or a job too deep raises.

    Jobs usually come parents first (a workflow built step by step): then one pass in that
    order does it. Otherwise (a parent after its child) they are sorted topologically first.
    """
    depth = dict(old_depth)

    def fill(order: Iterable[int]) -> int | None:
        """Depths in `order`; the first job over the limit (its parents are within it)."""
        too_deep = None
        for key in order:
            ps = parents_of.get(key)
            d = depth[key] = 1 + max(depth[p] for p in ps) if ps else 0
            if d > max_depth and too_deep is None:
                too_deep = key
        return too_deep

    try:
        too_deep = fill(new)
    except KeyError:
        depth = dict(old_depth)
        too_deep = fill(_topological(new, parents_of))
    if too_deep is not None:
        job = new[too_deep]
        raise DependencyError(
            f"Dependency depth limit exceeded: {job.label} is {depth[too_deep]} levels deep"
            f" (limit {max_depth})"
        )
    return depth


def _topological(new: Mapping[int, NewJob], parents_of: Mapping[int, list[int]]) -> list[int]:
    """New jobs' keys, parents before children; a cycle among them raises with its path."""
    indegree = dict.fromkeys(new, 0)
    children: dict[int, list[int]] = defaultdict(list)
    for c, ps in parents_of.items():
        for p in ps:
            if p in new:
                indegree[c] += 1
                children[p].append(c)
    order = [k for k, d in indegree.items() if d == 0]
    i = 0
    while i < len(order):
        for c in children.get(order[i], ()):
            indegree[c] -= 1
            if indegree[c] == 0:
                order.append(c)
        i += 1
    if len(order) < len(new):
        label = {k: j.label for k, j in new.items()}
        check_graph(
            {label[k]: [label[p] for p in parents_of.get(k, []) if p in new] for k in new}
        )  # raises the cycle with its path
    return order
