"""Property-based: random DAGs with random edge kinds, conditions and outcomes, run through a
real worker on both backends, against a small reference model of the dependency rules."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobforge import Dependency, Forge, JobContext, JobSpec, Worker, Workflow, testing
from jobforge.conditions import compile_condition
from jobforge.deps import CycleError, check_graph

# CEL conditions over a parent's result {"v": k}, with the same rule in Python.
CONDITIONS: list[tuple[str, Callable[[int], bool]]] = [
    ("v > 4", lambda v: v > 4),
    ("v % 2 == 0", lambda v: v % 2 == 0),
    ("result.v < 3 || result.v == 7", lambda v: v < 3 or v == 7),
    ("v in [1, 5, 8]", lambda v: v in (1, 5, 8)),
]


@dataclass(frozen=True)
class Edge:
    parent: int
    kind: str  # sequential, conditional, parallel
    condition: str | None  # succeeded/failed/always, or an index into CONDITIONS as text


@dataclass(frozen=True)
class Node:
    fail: bool
    v: int
    edges: tuple[Edge, ...]


@st.composite
def edges_into(draw: st.DrawFn, i: int) -> tuple[Edge, ...]:
    if i == 0:
        return ()
    parents = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=min(i, 3)))
    out = []
    for p in sorted(parents):
        kind = draw(st.sampled_from(["sequential", "conditional", "parallel"]))
        if kind == "sequential":
            cond: str | None = draw(st.sampled_from(["succeeded", "failed", "always"]))
        elif kind == "conditional":
            cond = str(draw(st.integers(0, len(CONDITIONS) - 1)))
        else:
            cond = None
        out.append(Edge(p, kind, cond))
    return tuple(out)


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 12) -> list[Node]:
    n = draw(st.integers(1, max_nodes))
    return [
        Node(
            fail=draw(st.sampled_from([False, False, True])),
            v=draw(st.integers(0, 9)),
            edges=draw(edges_into(i)),
        )
        for i in range(n)
    ]


def model(nodes: list[Node]) -> list[str]:
    """Final statuses under continue_on_failure: the rules, written the simple way."""
    status: list[str] = []
    for node in nodes:
        runs = True
        for e in node.edges:
            ps = status[e.parent]
            ran = ps in ("succeeded", "failed")
            if e.kind == "parallel":
                holds = ran
            elif e.kind == "conditional":
                holds = ps == "succeeded" and CONDITIONS[int(e.condition or 0)][1](
                    nodes[e.parent].v
                )
            elif e.condition == "failed":
                holds = ps != "succeeded"
            elif e.condition == "always":
                holds = True
            else:
                holds = ps == "succeeded"
            runs = runs and holds
        status.append(("failed" if node.fail else "succeeded") if runs else "skipped")
    return status


def as_workflow(nodes: list[Node]) -> Workflow:
    wf = Workflow("random", failure_policy="continue_on_failure")
    for i, node in enumerate(nodes):
        deps = []
        for e in node.edges:
            if e.kind == "conditional":
                deps.append(
                    Dependency(f"n{e.parent}", e.kind, CONDITIONS[int(e.condition or 0)][0])
                )
            else:
                deps.append(Dependency(f"n{e.parent}", e.kind, e.condition))
        wf.add(JobSpec("node", {"fail": node.fail, "v": node.v}), name=f"n{i}", depends_on=deps)
    return wf


def worker_running(app: Forge, **config: Any) -> AbstractContextManager[Worker]:
    """A non-burst worker on its own thread for the duration of the block."""
    return testing.worker_running(app, **{"poll_interval": 0.05, **config})


def test_random_dags_follow_the_rules(app: Forge) -> None:
    rng_sleep = [0.0, 0.0, 0.002, 0.01]

    @app.job(retries=0)
    def node(ctx: JobContext, fail: bool, v: int) -> dict[str, int]:
        time.sleep(rng_sleep[v % len(rng_sleep)])
        if fail:
            raise RuntimeError(f"node {ctx.job.name} fails")
        return {"v": v}

    examples = 0
    # celpy raises the interpreter's recursion limit whenever it builds a parser; compile the
    # conditions up front (they are cached) so that does not happen inside a Hypothesis run.
    for source, _ in CONDITIONS:
        compile_condition(source)

    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(dags())
    def check(nodes: list[Node]) -> None:
        nonlocal examples
        examples += 1
        ref = app.enqueue_workflow(as_workflow(nodes))
        deadline = time.monotonic() + 20
        while (wf := app.get_workflow(ref)) is not None and wf.completed_at is None:
            if time.monotonic() > deadline:
                states = {j.name: j.status.value for j in app.workflow_jobs(ref)}
                pytest.fail(f"workflow never completed: {states}")
            time.sleep(0.01)
        assert wf is not None
        jobs = {j.name: j for j in app.workflow_jobs(ref)}
        got = [jobs[f"n{i}"].status.value for i in range(len(nodes))]
        expected = model(nodes)
        assert got == expected
        assert all(j.status.is_terminal for j in jobs.values())
        assert wf.status == ("failed" if "failed" in expected else "succeeded")
        for i, n in enumerate(nodes):
            child = jobs[f"n{i}"]
            if child.started_at is None:
                assert got[i] == "skipped"
                assert child.reason is not None and child.reason.startswith("skipped: ")
                continue
            assert child.attempts == 1, "a job ran twice"
            for e in n.edges:
                parent = jobs[f"n{e.parent}"]
                if e.kind == "parallel":
                    assert parent.started_at is not None
                    assert child.started_at >= parent.started_at, f"n{i} before n{e.parent} began"
                else:
                    assert parent.completed_at is not None
                    assert child.started_at >= parent.completed_at, (
                        f"n{i} started before n{e.parent} completed"
                    )
            if got[i] == "succeeded":
                assert child.result == {"v": n.v}
        edges = app.workflow_edges(ref)
        assert len(edges) == sum(len(n.edges) for n in nodes)
        assert {e.status for e in edges} <= {"resolved", "failed", "cancelled"}

    with worker_running(app, concurrency=4):
        check()
    assert examples >= 25


# -- graph validation, without a database ------------------------------------------------------


@settings(max_examples=200, deadline=None, database=None)
@given(dags(max_nodes=15), st.data())
def test_graph_checks_accept_dags_and_find_closing_cycles(nodes: list[Node], data: Any) -> None:
    graph = {f"n{i}": [f"n{e.parent}" for e in n.edges] for i, n in enumerate(nodes)}
    check_graph(graph)
    # An edge from a descendant back to one of its ancestors closes a cycle.
    reach = {
        (f"n{a}", f"n{b}") for b, n in enumerate(nodes) for a in range(b) if _reaches(nodes, a, b)
    }
    if not reach:
        return
    ancestor, descendant = data.draw(st.sampled_from(sorted(reach)))
    graph[ancestor] = [*graph[ancestor], descendant]
    with pytest.raises(CycleError) as info:
        check_graph(graph)
    prefix = "Circular dependency detected: "
    assert str(info.value).startswith(prefix)
    path = str(info.value).removeprefix(prefix).split(" -> ")
    assert path[0] == path[-1] and len(path) >= 3
    for parent, child in itertools.pairwise(path):
        assert parent in graph[child], f"{child} does not depend on {parent}"


def _reaches(nodes: list[Node], a: int, b: int) -> bool:
    """Is a an ancestor of b?"""
    stack, seen = [b], set()
    while stack:
        x = stack.pop()
        for e in nodes[x].edges:
            if e.parent == a:
                return True
            if e.parent not in seen:
                seen.add(e.parent)
                stack.append(e.parent)
    return False
