"""The dependency rules without a database: graph checks, edges, verdicts, CEL conditions,
workflow building and files, graph export, explain and workflow stats."""

from __future__ import annotations

import itertools
import json
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pydot
import pytest

from jobforge import Job, JobSpec, JobStatus, ValidationError, Workflow, WorkflowJob
from jobforge.conditions import ConditionError, compile_condition, evaluate
from jobforge.deps import (
    CycleError,
    Dependency,
    DependencyError,
    EdgeKind,
    EdgeRow,
    MissingDependency,
    ParentInfo,
    Settled,
    as_dependency,
    check_graph,
    find_cycle,
    normalize_edge,
    plan_insert,
    skip_reason,
    verdict,
)
from jobforge.explain import explain
from jobforge.jobs import NewEdge, NewJob, readable_id
from jobforge.workflows.export import graph_dot, graph_json, graph_mermaid, render
from jobforge.workflows.files import (
    WorkflowFileError,
    load_workflow_file,
    parse_workflow,
    workflow_from_dict,
)
from jobforge.workflows.records import EdgeRecord, WorkflowRecord

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


# -- check_graph and find_cycle ------------------------------------------------------------


def test_valid_graphs_pass() -> None:
    check_graph({})
    check_graph({"a": []})
    check_graph({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})  # diamond


def test_missing_parent_names_parent_and_child() -> None:
    with pytest.raises(MissingDependency) as info:
        check_graph({"load": ["extract"], "report": ["load"]})
    assert str(info.value) == "Dependency not found: extract (required by load)"
    assert info.value.code == "dependency_not_found"
    assert isinstance(info.value, ValidationError)


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(CycleError) as info:
        check_graph({"a": [], "b": ["a", "b"]})
    assert str(info.value) == "Circular dependency detected: b -> b"
    assert info.value.code == "circular_dependency"


def test_cycle_message_gives_the_path_in_dependency_order() -> None:
    # b depends on a, c on b, a on c.
    with pytest.raises(CycleError) as info:
        check_graph({"a": ["c"], "b": ["a"], "c": ["b"]})
    assert str(info.value) == "Circular dependency detected: a -> b -> c -> a"


def test_cycle_path_ignores_nodes_outside_the_cycle() -> None:
    graph = {
        "root": [],
        "x": ["root"],
        "p": ["x", "r"],  # p is on the cycle p -> q -> r -> p, with an extra parent x
        "q": ["p"],
        "r": ["q"],
        "tail": ["r"],  # depends on the cycle but is not part of it
    }
    with pytest.raises(CycleError) as info:
        check_graph(graph)
    text = str(info.value)
    prefix = "Circular dependency detected: "
    assert text.startswith(prefix)
    path = text.removeprefix(prefix).split(" -> ")
    assert path[0] == path[-1]
    assert sorted(path[:-1]) == ["p", "q", "r"]
    for parent, child in itertools.pairwise(path):
        assert parent in graph[child], f"{child} does not depend on {parent}"


@pytest.mark.parametrize(
    "graph",
    [
        {"a": ["b"], "b": ["a"]},
        {"a": ["d"], "b": ["a"], "c": ["b"], "d": ["c"]},
        {"s": [], "a": ["s", "c"], "b": ["a"], "c": ["b"], "z": ["c", "s"]},
    ],
)
def test_find_cycle_returns_a_closed_walk_of_real_edges(graph: dict[str, list[str]]) -> None:
    cyclic = {n: ps for n, ps in graph.items() if n not in ("s", "z")}
    loop = find_cycle(cyclic)
    assert loop[0] == loop[-1]
    assert len(set(loop[:-1])) == len(loop) - 1
    for parent, child in itertools.pairwise(loop):
        assert parent in graph[child]


def test_depth_limit() -> None:
    chain = {"n0": []} | {f"n{i}": [f"n{i - 1}"] for i in range(1, 6)}  # n5 is 5 deep
    check_graph(chain, max_depth=5)
    with pytest.raises(DependencyError) as info:
        check_graph(chain, max_depth=4)
    assert str(info.value) == "Dependency depth limit exceeded: n5 is 5 levels deep (limit 4)"


def test_depth_counts_the_longest_path() -> None:
    graph = {"a": [], "b": ["a"], "c": ["b"], "d": ["a", "c"]}  # d: 1 via a, 3 via c
    check_graph(graph, max_depth=3)
    with pytest.raises(DependencyError, match="d is 3 levels deep"):
        check_graph(graph, max_depth=2)


def test_long_chain_needs_no_recursion() -> None:
    n = 30_000
    chain = {"n0": []} | {f"n{i}": [f"n{i - 1}"] for i in range(1, n)}
    check_graph(chain, max_depth=n)
    with pytest.raises(DependencyError, match=f"is {n - 1} levels deep"):
        check_graph(chain, max_depth=n - 2)
    chain["n0"] = [f"n{n - 1}"]
    with pytest.raises(CycleError) as info:
        check_graph(chain, max_depth=n)
    assert str(info.value).count(" -> ") == n


# -- edges as written ------------------------------------------------------------------------


def test_normalize_edge_defaults_and_kinds() -> None:
    assert normalize_edge("sequential", None) == (EdgeKind.SEQUENTIAL, "succeeded")
    for cond in ("succeeded", "failed", "always"):
        assert normalize_edge("sequential", cond) == (EdgeKind.SEQUENTIAL, cond)
    assert normalize_edge("parallel", None) == (EdgeKind.PARALLEL, None)
    assert normalize_edge("conditional", "x == 1") == (EdgeKind.CONDITIONAL, "x == 1")


def test_normalize_edge_refusals() -> None:
    with pytest.raises(DependencyError) as info:
        normalize_edge("eventually", None)
    assert str(info.value) == (
        "Invalid dependency type 'eventually' (expected sequential, conditional, parallel)"
    )
    with pytest.raises(DependencyError, match="Invalid condition 'x == 1' for a sequential"):
        normalize_edge("sequential", "x == 1")
    with pytest.raises(DependencyError, match="needs a condition expression"):
        normalize_edge("conditional", None)
    with pytest.raises(ConditionError) as bad:
        normalize_edge("conditional", "status ==")
    assert str(bad.value).startswith("Invalid condition 'status ==': ")
    assert bad.value.code == "bad_condition"


def test_as_dependency_accepts_three_spellings() -> None:
    assert as_dependency("a") == Dependency("a")
    d = Dependency("a", "parallel")
    assert as_dependency(d) is d
    assert as_dependency({"job": "a", "type": "conditional", "condition": "ok"}) == Dependency(
        "a", "conditional", "ok"
    )
    assert as_dependency({"parent": "p"}) == Dependency("p", "sequential", None)
    with pytest.raises(DependencyError, match="names no parent job"):
        as_dependency({"type": "sequential"})
    with pytest.raises(DependencyError, match="Invalid dependency 3"):
        as_dependency(3)


# -- verdicts ----------------------------------------------------------------------------------


def settled(status: JobStatus, result: Any = None, started: bool | None = None) -> Settled:
    if started is None:
        started = status in (
            JobStatus.RUNNING,
            JobStatus.SUCCEEDED,
            JobStatus.PARTIAL_SUCCESS,
            JobStatus.FAILED,
        )
    return Settled(uuid.uuid4(), status, result, started, None, False, "extract")


def edge(kind: str, condition: str | None = None) -> EdgeRow:
    k, c = normalize_edge(kind, condition)
    return EdgeRow(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), k, c)


S = JobStatus
VERDICTS = [
    # kind, condition, parent status, verdict
    ("sequential", None, S.RUNNING, None),
    ("sequential", None, S.QUEUED, None),
    ("sequential", None, S.SUCCEEDED, True),
    ("sequential", None, S.PARTIAL_SUCCESS, True),
    ("sequential", None, S.FAILED, False),
    ("sequential", None, S.SKIPPED, False),
    ("sequential", None, S.CANCELLED, False),
    ("sequential", "failed", S.SUCCEEDED, False),
    ("sequential", "failed", S.PARTIAL_SUCCESS, False),
    ("sequential", "failed", S.FAILED, True),
    ("sequential", "failed", S.SKIPPED, True),
    ("sequential", "failed", S.CANCELLED, True),
    ("sequential", "failed", S.RUNNING, None),
    ("sequential", "always", S.SUCCEEDED, True),
    ("sequential", "always", S.FAILED, True),
    ("sequential", "always", S.SKIPPED, True),
    ("sequential", "always", S.CANCELLED, True),
    ("sequential", "always", S.WAITING, None),
    ("parallel", None, S.QUEUED, None),
    ("parallel", None, S.WAITING, None),
    ("parallel", None, S.RUNNING, True),
    ("parallel", None, S.FAILED, True),  # it did start
    ("parallel", None, S.SKIPPED, False),
    ("parallel", None, S.CANCELLED, False),
    ("conditional", "ok", S.RUNNING, None),
    ("conditional", "ok", S.FAILED, False),
    ("conditional", "ok", S.SKIPPED, False),
]


@pytest.mark.parametrize(("kind", "condition", "status", "expected"), VERDICTS)
def test_verdict_table(kind: str, condition: str | None, status: JobStatus, expected: Any) -> None:
    assert verdict(edge(kind, condition), settled(status, {"ok": True})) is expected


def test_parallel_edge_of_a_job_cancelled_while_running_holds() -> None:
    assert verdict(edge("parallel"), settled(S.CANCELLED, started=True)) is True


def test_conditional_verdict_evaluates_the_result_only_on_success() -> None:
    e = edge("conditional", "validation_status == 'valid'")
    assert verdict(e, settled(S.SUCCEEDED, {"validation_status": "valid"})) is True
    assert verdict(e, settled(S.PARTIAL_SUCCESS, {"validation_status": "valid"})) is True
    assert verdict(e, settled(S.SUCCEEDED, {"validation_status": "invalid"})) is False
    assert verdict(e, settled(S.SUCCEEDED, None)) is False
    assert verdict(e, settled(S.FAILED, {"validation_status": "valid"})) is False


def test_skip_reasons_name_the_parent() -> None:
    assert skip_reason(edge("sequential"), settled(S.FAILED)) == (
        "parent extract ended failed; the edge requires succeeded"
    )
    assert skip_reason(edge("sequential", "failed"), settled(S.SUCCEEDED)) == (
        "parent extract ended succeeded; the edge requires failed"
    )
    assert skip_reason(edge("conditional", "v > 1"), settled(S.SUCCEEDED, {"v": 0})) == (
        "condition 'v > 1' on parent extract's result is false"
    )
    assert skip_reason(edge("conditional", "v > 1"), settled(S.CANCELLED)) == (
        "parent extract ended cancelled"
    )
    assert skip_reason(edge("parallel"), settled(S.SKIPPED)) == (
        "parent extract ended skipped without starting"
    )


# -- CEL conditions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "result", "expected"),
    [
        ("validation_status == 'valid'", {"validation_status": "valid"}, True),
        ("validation_status == 'valid'", {"validation_status": "bad"}, False),
        ("result.validation_status == 'valid'", {"validation_status": "valid"}, True),
        ("count > 10 && ok", {"count": 11, "ok": True}, True),
        ("count > 10 && ok", {"count": 11, "ok": False}, False),
        ("count > 10 || ok", {"count": 1, "ok": True}, True),
        ("'x' in tags", {"tags": ["a", "x"]}, True),
        ("size(rows) == 0", {"rows": []}, True),
        ("result.nested.level == 2", {"nested": {"level": 2}}, True),
        ("has(result.maybe)", {"maybe": 1}, True),
        ("has(result.maybe)", {"other": 1}, False),
        ("result > 2", 3, True),  # a non-object result is bound only as `result`
        ("result == 'done'", "done", True),
        ("size(result) == 2", [1, 2], True),
        ("result == null", None, True),
        ("true", None, True),
    ],
)
def test_conditions_over_results(source: str, result: Any, expected: bool) -> None:
    assert evaluate(source, result) is expected


@pytest.mark.parametrize(
    ("source", "result"),
    [
        ("missing == 1", {"v": 1}),  # unknown name: does not hold
        ("result.missing == 1", {"v": 1}),
        ("v", {"v": 1}),  # not a boolean
        ("v + 1", {"v": 1}),
        ("'ok'", {}),
        ("v > 1", {"v": "text"}),  # type error
        ("1 / v == 1", {"v": 0}),  # division by zero
    ],
)
def test_conditions_that_error_or_are_not_boolean_do_not_hold(source: str, result: Any) -> None:
    assert evaluate(source, result) is False


@pytest.mark.parametrize("source", ["v ==", "(a", "a b", "a = 1", "'unterminated", ""])
def test_condition_syntax_is_checked(source: str) -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition(source)
    assert str(info.value).startswith(f"Invalid condition {source!r}: ")


def test_conditions_cannot_reach_python() -> None:
    # CEL has no attribute access on Python objects: these are evaluation errors, not code.
    assert evaluate("result.__class__ == 'x'", {"a": 1}) is False
    assert evaluate("__import__('os') == null", {}) is False


# -- plan_insert -------------------------------------------------------------------------------


def new_job(name: str) -> NewJob:
    return NewJob(
        id=uuid.uuid4(),
        type="t",
        queue="default",
        payload_json="{}",
        priority=0,
        scheduled_at=T0,
        status=JobStatus.QUEUED,
        max_attempts=1,
        timeout=None,
        tenant_id=None,
        trace_id=None,
        correlation_id=None,
        created_at=T0,
        retry_backoff=1.0,
        retry_backoff_max=10.0,
        name=name,
    )


def new_edge(parent: uuid.UUID, child: uuid.UUID, kind: str = "sequential") -> NewEdge:
    k, c = normalize_edge(kind, None)
    return NewEdge(uuid.uuid4(), parent, child, k.value, c)


def parent_info(status: JobStatus, depth: int = 0, started: bool = False) -> ParentInfo:
    return ParentInfo(uuid.uuid4(), status, None, started, None, False, "old", depth=depth)


def test_plan_insert_sets_waiting_state_and_depth() -> None:
    a, b, c = new_job("a"), new_job("b"), new_job("c")
    old = parent_info(JobStatus.QUEUED, depth=4)
    # Given children first: the plan must order parents before children itself.
    edges = [new_edge(b.id, c.id), new_edge(a.id, b.id), new_edge(old.id, c.id, "parallel")]
    ready = plan_insert([c, b, a], edges, {old.id: old})
    assert ready == []  # the old parent has not started
    assert (a.status, a.dependency_status, a.pending_parents, a.depth) == (
        JobStatus.QUEUED,
        "none",
        0,
        0,
    )
    assert (b.status, b.pending_parents, b.depth) == (JobStatus.WAITING, 1, 1)
    assert (c.status, c.dependency_status, c.pending_parents, c.depth) == (
        JobStatus.WAITING,
        "waiting",
        2,
        5,
    )


def test_plan_insert_returns_parents_that_already_started_or_finished() -> None:
    done = parent_info(JobStatus.SUCCEEDED, started=True)
    running = parent_info(JobStatus.RUNNING, started=True)
    queued = parent_info(JobStatus.QUEUED)
    unused = parent_info(JobStatus.FAILED, started=True)
    child = new_job("child")
    edges = [new_edge(p.id, child.id) for p in (done, running, queued)]
    existing = {p.id: p for p in (done, running, queued, unused)}
    ready = plan_insert([child], edges, existing)
    assert {s.id for s in ready} == {done.id, running.id}
    assert child.pending_parents == 3


def test_plan_insert_marks_parents_of_parallel_edges() -> None:
    a, b, c = new_job("a"), new_job("b"), new_job("c")
    plan_insert([a, b, c], [new_edge(a.id, b.id, "parallel"), new_edge(a.id, c.id)], {})
    assert a.has_parallel_children
    assert not b.has_parallel_children


def test_plan_insert_refusals() -> None:
    a, b = new_job("a"), new_job("b")
    with pytest.raises(CycleError, match="Circular dependency detected: a -> a"):
        plan_insert([a], [new_edge(a.id, a.id)], {})
    ghost = uuid.uuid4()
    with pytest.raises(MissingDependency) as info:
        plan_insert([a], [new_edge(ghost, a.id)], {})
    assert str(info.value) == f"Dependency not found: {readable_id(ghost)} (required by a)"
    with pytest.raises(
        CycleError, match=r"Circular dependency detected: (a -> b -> a|b -> a -> b)"
    ):
        plan_insert([a, b], [new_edge(a.id, b.id), new_edge(b.id, a.id)], {})
    deep = parent_info(JobStatus.QUEUED, depth=3)
    with pytest.raises(DependencyError) as depth:
        plan_insert([b], [new_edge(deep.id, b.id)], {deep.id: deep}, max_depth=3)
    assert str(depth.value) == "Dependency depth limit exceeded: b is 4 levels deep (limit 3)"


# -- the workflow builder ------------------------------------------------------------------------


def parents_of(wf: Workflow) -> dict[str, list[str]]:
    return {n: [d.parent for d in wj.depends_on] for n, wj in wf.jobs.items()}


def test_builder_chain_parallel_barrier_and_explicit_edges() -> None:
    wf = (
        Workflow("etl")
        .add(JobSpec("extract", {"src": "s3"}))
        .then(JobSpec("validate", {}))
        .parallel([JobSpec("shard", {"n": 1}), JobSpec("shard", {"n": 2}), JobSpec("other", {})])
        .then(JobSpec("summary", {}))
        .add(
            WorkflowJob("audit", "audit", depends_on=[Dependency("extract", "parallel")]),
            depends_on=[{"job": "summary", "type": "sequential", "condition": "always"}],
        )
    )
    assert parents_of(wf) == {
        "extract": [],
        "validate": ["extract"],
        "shard": ["validate"],
        "shard_2": ["validate"],
        "other": ["validate"],
        "summary": ["shard", "shard_2", "other"],  # the barrier
        "audit": ["extract", "summary"],
    }
    assert wf.jobs["shard_2"].payload == {"n": 2}
    assert wf.jobs["audit"].depends_on[1] == Dependency("summary", "sequential", "always")
    wf.validate()


def test_builder_names_optional_and_payload() -> None:
    wf = Workflow("w").add(JobSpec("a", {"x": 1}), name="first", y=2)
    wf.then(WorkflowJob("b", "b"), optional=True)
    assert wf.jobs["first"].payload == {"x": 1, "y": 2}
    assert wf.jobs["b"].optional
    assert parents_of(wf) == {"first": [], "b": ["first"]}
    with pytest.raises(ValidationError, match="Duplicate job name 'first' in workflow 'w'"):
        wf.add(JobSpec("c", {}), name="first")
    with pytest.raises(ValidationError, match="expected a job or job spec"):
        wf.add("c")  # type: ignore[arg-type]


def test_builder_validation() -> None:
    with pytest.raises(ValidationError, match="Invalid failure_policy 'sometimes'"):
        Workflow("w", failure_policy="sometimes")
    with pytest.raises(ValidationError, match="Workflow 'w' has no jobs"):
        Workflow("w").validate()
    wf = Workflow("w").add(JobSpec("a", {}), depends_on=["nope"])
    with pytest.raises(MissingDependency, match=r"^Dependency not found: nope \(required by a\)$"):
        wf.validate()
    wf = Workflow("w").add(JobSpec("a", {}), depends_on=[{"job": "b", "type": "weird"}])
    wf.add(JobSpec("b", {}))
    with pytest.raises(DependencyError, match="Invalid dependency type 'weird'"):
        wf.validate()
    wf = Workflow("w").add(JobSpec("a", {})).then(JobSpec("b", {})).then(JobSpec("c", {}))
    wf.jobs["a"].depends_on.append(Dependency("c"))
    with pytest.raises(CycleError, match=r"^Circular dependency detected: a -> b -> c -> a$"):
        wf.validate()
    wf.jobs["a"].depends_on.clear()
    with pytest.raises(DependencyError, match="c is 2 levels deep"):
        wf.validate(max_depth=1)


# -- workflow files ------------------------------------------------------------------------------

SHAPE_A = {
    "name": "etl",
    "description": "nightly",
    "failure_policy": "continue_on_failure",
    "timeout": 60,
    "retries": 1,
    "metadata": {"team": "data"},
    "jobs": [
        {"name": "extract", "type": "extract_data", "payload": {"src": "s3"}},
        {
            "name": "validate",
            "type": "validate_data",
            "depends_on": ["extract"],
            "dependency_timeout": 30,
        },
        {
            "name": "load",
            "type": "load",
            "depends_on": [
                {"job": "validate", "type": "conditional", "condition": "status == 'ok'"}
            ],
            "optional": True,
            "priority": 5,
        },
        {
            "name": "alert",
            "depends_on": [{"job": "validate", "condition": "failed"}],
        },
    ],
}

SHAPE_B_YAML = """
name: etl
failure_policy: manual
jobs:
  - id: extract
    type: extract_data
  - id: monitor
    type: monitor
  - id: load
    type: load
dependencies:
  - from: extract
    to: load
  - from: extract
    to: monitor
    type: parallel
  - from: monitor
    to: load
    type: sequential
    condition: always
"""


def test_file_shape_a_json(tmp_path: Path) -> None:
    path = tmp_path / "etl.json"
    path.write_text(json.dumps(SHAPE_A))
    wf = load_workflow_file(path)
    assert wf.name == "etl" and wf.description == "nightly"
    assert wf.failure_policy == "continue_on_failure"
    assert (wf.timeout, wf.retries, wf.metadata) == (60, 1, {"team": "data"})
    assert list(wf.jobs) == ["extract", "validate", "load", "alert"]
    assert wf.jobs["extract"].type == "extract_data"
    assert wf.jobs["extract"].payload == {"src": "s3"}
    assert wf.jobs["validate"].options.dependency_timeout == 30
    assert wf.jobs["load"].depends_on == [Dependency("validate", "conditional", "status == 'ok'")]
    assert wf.jobs["load"].optional and wf.jobs["load"].options.priority == 5
    assert wf.jobs["alert"].type == "alert"  # the name when no type is given
    assert wf.jobs["alert"].depends_on == [Dependency("validate", "sequential", "failed")]


def test_file_shape_a_yaml_equals_json(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "etl.yml"
    path.write_text(yaml.safe_dump(SHAPE_A))
    from_yaml = load_workflow_file(path)
    from_json = parse_workflow(json.dumps(SHAPE_A))
    assert from_yaml.jobs == from_json.jobs


def test_file_shape_b_yaml(tmp_path: Path) -> None:
    path = tmp_path / "etl.yaml"
    path.write_text(SHAPE_B_YAML)
    wf = load_workflow_file(path)
    assert wf.failure_policy == "manual"
    assert parents_of(wf) == {"extract": [], "monitor": ["extract"], "load": ["extract", "monitor"]}
    assert wf.jobs["monitor"].depends_on == [Dependency("extract", "parallel", None)]
    assert wf.jobs["load"].depends_on[1] == Dependency("monitor", "sequential", "always")


def test_file_shape_b_json_matches_yaml() -> None:
    import yaml

    data = yaml.safe_load(SHAPE_B_YAML)
    assert workflow_from_dict(data).jobs == parse_workflow(SHAPE_B_YAML, yaml_syntax=True).jobs


def bad(data: Any) -> str:
    with pytest.raises(WorkflowFileError) as info:
        workflow_from_dict(data, "flows/etl.json")
    assert info.value.code == "bad_workflow_file"
    return str(info.value)


def job_list(*jobs: dict[str, Any]) -> dict[str, Any]:
    return {"name": "etl", "jobs": list(jobs)}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "flows/etl.json: a workflow must be an object"),
        ({"jobs": [{"name": "a"}]}, "flows/etl.json: field 'name' is required (a string)"),
        ({"name": "etl", "jobs": []}, "flows/etl.json: field 'jobs' must be a non-empty list"),
        (
            {"name": "etl", "jobs": [{"name": "a"}], "owner": "me"},
            "flows/etl.json: workflow: unknown field(s) 'owner'",
        ),
        (
            {"name": "etl", "jobs": [{"name": "a"}], "failure_policy": "yolo"},
            "flows/etl.json: Invalid failure_policy 'yolo'"
            " (expected fail_fast, continue_on_failure, manual)",
        ),
        (
            {"name": "etl", "jobs": [{"name": "a"}], "timeout": "soon"},
            "flows/etl.json: field 'timeout' must be a number",
        ),
        (job_list("a"), "flows/etl.json: jobs[0]: a job must be an object"),
        (job_list({"type": "x"}), "flows/etl.json: jobs[0]: field 'name' (or 'id') is required"),
        (
            job_list({"name": "a"}, {"name": "b", "colour": "red"}),
            "flows/etl.json: job 'b': unknown field(s) 'colour'",
        ),
        (job_list({"name": "a"}, {"name": "a"}), "flows/etl.json: job 'a': duplicate job name"),
        (
            job_list({"name": "a", "payload": [1]}),
            "flows/etl.json: job 'a': field 'payload' must be an object",
        ),
        (
            job_list({"name": "a", "depends_on": "b"}),
            "flows/etl.json: job 'a': field 'depends_on' must be a list",
        ),
        (
            job_list({"name": "a", "retries": "3"}),
            "flows/etl.json: job 'a': field 'retries' must be an integer",
        ),
        (
            job_list({"name": "a", "retries": True}),
            "flows/etl.json: job 'a': field 'retries' must be an integer",
        ),
        (
            job_list({"name": "a", "optional": 1}),
            "flows/etl.json: job 'a': field 'optional' must be true or false",
        ),
        (
            job_list({"name": "a"}, {"name": "b", "depends_on": [{"type": "parallel"}]}),
            "flows/etl.json: job 'b': depends_on[0]: field 'job' is required (the parent's name)",
        ),
        (
            job_list({"name": "a"}, {"name": "b", "depends_on": ["a", 7]}),
            "flows/etl.json: job 'b': depends_on[1]: expected a job name or an object",
        ),
        (
            job_list({"name": "a"}, {"name": "b", "depends_on": [{"job": "a", "when": "x"}]}),
            "flows/etl.json: job 'b': depends_on[0]: unknown field(s) 'when'",
        ),
        (
            job_list({"name": "b", "depends_on": ["ghost"]}),
            "flows/etl.json: Dependency not found: ghost (required by b)",
        ),
        (
            job_list({"name": "a", "depends_on": ["b"]}, {"name": "b", "depends_on": ["a"]}),
            "flows/etl.json: Circular dependency detected: a -> b -> a",
        ),
        (
            job_list(
                {"name": "a"},
                {"name": "b", "depends_on": [{"job": "a", "type": "conditional"}]},
            ),
            "flows/etl.json: job 'b': depends_on[0]:"
            " A conditional dependency needs a condition expression",
        ),
        (
            {**job_list({"id": "a"}, {"id": "b"}), "dependencies": [{"from": "a"}]},
            "flows/etl.json: dependencies[0]: fields 'from' and 'to' are required (job ids)",
        ),
        (
            {**job_list({"id": "a"}), "dependencies": [{"from": "a", "to": "zzz"}]},
            "flows/etl.json: dependencies[0]: field 'to': no job 'zzz' in this workflow",
        ),
        (
            {**job_list({"id": "a"}, {"id": "b"}), "dependencies": [{"from": "zzz", "to": "b"}]},
            "flows/etl.json: Dependency not found: zzz (required by b)",
        ),
        (
            {**job_list({"id": "a"}, {"id": "b"}), "dependencies": ["a->b"]},
            "flows/etl.json: dependencies[0]: a dependency must be an object",
        ),
        (
            {
                **job_list({"id": "a"}, {"id": "b"}),
                "dependencies": [{"from": "a", "to": "b", "kind": "x"}],
            },
            "flows/etl.json: dependencies[0]: unknown field(s) 'kind'",
        ),
    ],
)
def test_file_errors_name_file_job_and_field(data: Any, message: str) -> None:
    assert bad(data) == message


def test_file_bad_condition_names_the_file() -> None:
    text = bad(
        job_list(
            {"name": "a"},
            {"name": "b", "depends_on": [{"job": "a", "type": "conditional", "condition": "x =="}]},
        )
    )
    assert text.startswith("flows/etl.json: job 'b': depends_on[0]: Invalid condition 'x ==': ")
    text = bad(
        {
            **job_list({"id": "a"}, {"id": "b"}),
            "dependencies": [{"from": "a", "to": "b", "type": "soon"}],
        }
    )
    assert text.startswith(
        "flows/etl.json: dependencies[0] (a -> b): Invalid dependency type 'soon'"
    )


def test_file_syntax_errors_give_line_and_column(tmp_path: Path) -> None:
    broken_json = tmp_path / "w.json"
    broken_json.write_text('{\n  "name": "etl",\n  "jobs": [,]\n}\n')
    with pytest.raises(WorkflowFileError) as info:
        load_workflow_file(broken_json)
    assert str(info.value).startswith(f"{broken_json}: invalid JSON at line 3, column 12: ")
    broken_yaml = tmp_path / "w.yaml"
    broken_yaml.write_text("name: etl\njobs:\n  - id: a\n   bad: [\n")
    with pytest.raises(WorkflowFileError) as yinfo:
        load_workflow_file(broken_yaml)
    assert str(yinfo.value).startswith(f"{broken_yaml}: invalid YAML at line ")
    missing = tmp_path / "nope.json"
    with pytest.raises(WorkflowFileError, match=r"nope\.json: cannot read: "):
        load_workflow_file(missing)


# -- graph export ---------------------------------------------------------------------------------


def make_job(name: str, status: JobStatus, started: float | None, done: float | None) -> Job:
    return Job(
        id=uuid.uuid4(),
        type="etl_step",
        queue="default",
        status=status,
        payload={},
        priority=0,
        scheduled_at=T0,
        attempts=1,
        max_attempts=1,
        timeout=None,
        progress=0,
        progress_message=None,
        result=None,
        result_url=None,
        errors=[],
        tenant_id=None,
        trace_id=None,
        correlation_id=None,
        retry_backoff=1.0,
        retry_backoff_max=10.0,
        worker_id=None,
        lease_token=None,
        lease_expires_at=None,
        created_at=T0,
        updated_at=T0,
        started_at=None if started is None else T0 + timedelta(seconds=started),
        completed_at=None if done is None else T0 + timedelta(seconds=done),
        name=name,
    )


def make_edge(
    parent: Job, child: Job, kind: str, condition: str | None, status: str = "pending"
) -> EdgeRecord:
    return EdgeRecord(
        id=uuid.uuid4(),
        parent_id=parent.id,
        child_id=child.id,
        kind=kind,
        condition=condition,
        status=status,
        workflow_id=None,
        created_at=T0,
        resolved_at=None if status == "pending" else T0 + timedelta(seconds=2),
        resolved_by=None if status == "pending" else parent.name,
    )


@pytest.fixture
def sample_graph() -> tuple[list[Job], list[EdgeRecord]]:
    extract = make_job("extract", JobStatus.SUCCEEDED, 0.0, 1.5)
    check = make_job('say "hi" | done', JobStatus.SUCCEEDED, 2.0, 2.25)
    load = make_job("load\\data", JobStatus.SKIPPED, None, None)
    watch = make_job("watch", JobStatus.RUNNING, 0.5, None)
    edges = [
        make_edge(extract, check, "sequential", "succeeded", "resolved"),
        make_edge(check, load, "conditional", 'status == "ok" || n > 1', "failed"),
        make_edge(extract, watch, "parallel", None, "resolved"),
    ]
    return [extract, check, load, watch], edges


def test_dot_parses_with_pydot(sample_graph: tuple[list[Job], list[EdgeRecord]]) -> None:
    jobs, edges = sample_graph
    text = graph_dot(jobs, edges, title='nightly "etl"')
    with warnings.catch_warnings():  # pydot's own pyparsing deprecation noise
        warnings.simplefilter("ignore")
        graphs = pydot.graph_from_dot_data(text)
    assert graphs is not None and len(graphs) == 1
    g = graphs[0]
    assert g.get_type() == "digraph"
    assert g.get_name() == '"nightly \\"etl\\""'
    nodes = {n.get_name().strip('"'): n for n in g.get_nodes() if n.get_name() != "node"}
    assert set(nodes) == {j.job_id for j in jobs}
    extract, check, load, _ = jobs
    assert nodes[extract.job_id].get("fillcolor") == "palegreen"
    assert nodes[load.job_id].get("fillcolor") == "gainsboro"
    assert "1.50s" in nodes[extract.job_id].get("label")
    assert "succeeded" in nodes[extract.job_id].get("label")
    got = {(e.get_source().strip('"'), e.get_destination().strip('"')): e for e in g.get_edges()}
    assert set(got) == {("job_" + e.parent_id.hex, "job_" + e.child_id.hex) for e in edges}
    cond = got[(check.job_id, load.job_id)]
    assert cond.get("color") == "red"
    assert "conditional: status" in cond.get("label")
    assert "(failed)" in cond.get("label")
    par = got[(extract.job_id, jobs[3].job_id)]
    assert par.get("style") == "dashed"


def test_mermaid_shape(sample_graph: tuple[list[Job], list[EdgeRecord]]) -> None:
    jobs, edges = sample_graph
    text = graph_mermaid(jobs, edges)
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    node_lines = [ln for ln in lines if ln.strip().startswith("job_") and "[" in ln]
    assert len(node_lines) == 4
    assert any(ln.strip().startswith(jobs[0].job_id + '["extract<br/>') for ln in node_lines)
    assert lines[1].endswith(":::succeeded")
    edge_lines = [ln for ln in lines if "-->" in ln or "-.->" in ln]
    assert len(edge_lines) == 3
    parallel = [ln for ln in edge_lines if "-.->" in ln]
    assert len(parallel) == 1 and parallel[0].strip().endswith(jobs[3].job_id)
    # Quotes and pipes inside labels are escaped so the diagram parses.
    for ln in node_lines + edge_lines:
        inner = ln.split('"')[1:-1]
        assert all('"' not in part for part in inner)
    assert "#quot;" in text and "#124;" in text
    assert sum(ln.strip().startswith("classDef ") for ln in lines) >= 9


def test_json_shape(sample_graph: tuple[list[Job], list[EdgeRecord]]) -> None:
    jobs, edges = sample_graph
    data = json.loads(render("json", jobs, edges))
    direct = graph_json(jobs, edges)
    assert data["edges"] == direct["edges"]
    assert data["nodes"][:3] == direct["nodes"][:3]
    running = data["nodes"][3]  # its duration runs up to now
    assert running["status"] == "running" and running["completed_at"] is None
    assert running["duration"] > 365 * 24 * 3600  # started on 2024-05-01
    assert [n["id"] for n in data["nodes"]] == [j.job_id for j in jobs]
    first = data["nodes"][0]
    assert first == {
        "id": jobs[0].job_id,
        "name": "extract",
        "type": "etl_step",
        "status": "succeeded",
        "dependency_status": "none",
        "started_at": "2024-05-01T12:00:00Z",
        "completed_at": "2024-05-01T12:00:01.500000Z",
        "duration": 1.5,
    }
    assert data["nodes"][2]["duration"] is None
    assert data["edges"][1] == {
        "id": str(edges[1].id),
        "from": jobs[1].job_id,
        "to": jobs[2].job_id,
        "kind": "conditional",
        "condition": 'status == "ok" || n > 1',
        "status": "failed",
    }
    with pytest.raises(ValidationError, match="Unknown graph format 'png'"):
        render("png", jobs, edges)


# -- explain and stats -----------------------------------------------------------------------------


def test_explain_waiting_job() -> None:
    parent_a = make_job("extract", JobStatus.SUCCEEDED, 0, 1)
    parent_b = make_job("validate", JobStatus.RUNNING, 1, None)
    child = make_job("load", JobStatus.WAITING, None, None)
    child.dependency_status = "waiting"
    e1 = make_edge(parent_a, child, "sequential", "succeeded", "resolved")
    e2 = make_edge(parent_b, child, "conditional", "ok", "pending")
    ex = explain(child, [(e1, parent_a), (e2, parent_b)])
    assert ex.summary == "waiting for 1 of 2 dependencies"
    d = ex.to_dict()
    assert d["status"] == "waiting" and d["dependency_status"] == "waiting"
    assert [x["state"] for x in d["dependencies"]] == ["satisfied", "blocking"]
    assert d["dependencies"][1]["detail"] == (
        "released when the parent succeeds and 'ok' holds for its result"
    )
    text = ex.text().splitlines()
    assert text[0] == f"{child.job_id} (load): waiting for 1 of 2 dependencies"
    assert text[1].startswith(f"  ✓ extract {parent_a.job_id} is succeeded — sequential")
    assert text[2].startswith(f"  … validate {parent_b.job_id} is running — conditional [ok]")


def test_explain_skipped_job() -> None:
    parent = make_job("extract", JobStatus.FAILED, 0, 1)
    child = make_job("load", JobStatus.SKIPPED, None, None)
    child.reason = "skipped: parent extract ended failed; the edge requires succeeded"
    e = make_edge(parent, child, "sequential", "succeeded", "failed")
    ex = explain(child, [(e, parent)])
    assert ex.summary == "skipped — parent extract ended failed; the edge requires succeeded"
    assert ex.edges[0].state == "failed"
    assert ex.edges[0].detail == "can no longer hold: the parent did not succeed"
    assert "✗ extract" in ex.text()


def test_workflow_stats() -> None:
    rec = WorkflowRecord(
        id=uuid.uuid4(), name="w", description=None, status="running",
        failure_policy="fail_fast", priority=0, timeout=None, metadata={}, tenant_id=None,
        trace_id=None, correlation_id=None, reason=None, created_at=T0, updated_at=T0,
        completed_at=None,
        counts={"succeeded": 2, "partial_success": 1, "scheduled": 1, "queued": 1,
                "waiting": 2, "skipped": 1},
    )  # fmt: skip
    assert rec.stats() == {
        "total": 8,
        "waiting": 2,
        "queued": 2,
        "running": 0,
        "succeeded": 3,
        "failed": 0,
        "skipped": 1,
        "cancelled": 0,
        "completion_percentage": 50.0,
    }
    empty = WorkflowRecord(**{**vars_of(rec), "counts": {}})
    assert empty.stats()["completion_percentage"] == 0.0


def vars_of(rec: WorkflowRecord) -> dict[str, Any]:
    return {name: getattr(rec, name) for name in rec.__slots__}
