"""Registry groups on both backends: `enqueue_group`/`enqueue_all` write one workflow holding
a group and, transitively, what it depends on; dry runs write nothing; the workflow runs in
dependency order and can be inspected, graphed, cancelled and retried like any other."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from jobforge import Forge, Job, JobContext, JobStatus, ValidationError
from jobforge.registry import MEMBER, GroupNotFound
from jobforge.testing import run_until_idle
from tests.apps import groups_app
from tests.apps.groups_app import SHAPE, register
from tests.e2e.helpers import sql

FAST: dict[str, Any] = {"poll_interval": 0.05}


@pytest.fixture
def reg_app(app: Forge) -> Iterator[Forge]:
    """The test's app with the groups registry (handlers sleep only briefly)."""
    register(app)
    saved = groups_app.SLEEP
    groups_app.SLEEP = 0.05
    try:
        yield app
    finally:
        groups_app.SLEEP = saved


def row_counts(app: Forge) -> tuple[int, int, int]:
    """(workflows, jobs, edges), read straight from the database."""
    app.store  # noqa: B018 - make sure the schema exists before counting
    (row,) = sql(
        app.url,
        "SELECT (SELECT count(*) FROM jobforge_workflows), (SELECT count(*) FROM jobforge_jobs),"
        " (SELECT count(*) FROM jobforge_edges)",
    )
    return int(row[0]), int(row[1]), int(row[2])


def by_name(app: Forge, wf_id: str) -> dict[str, Job]:
    return {j.name or "": j for j in app.workflow_jobs(wf_id)}


def assert_dependency_order(jobs: dict[str, Job]) -> None:
    """No job started before each job it depends on (per the registry) had finished."""
    for name, job in jobs.items():
        for parent in SHAPE[name][1]:
            done = jobs[parent].completed_at
            assert done is not None and job.started_at is not None, (name, parent)
            assert job.started_at >= done, f"{name} started before {parent} finished"


def test_enqueue_group_writes_one_workflow_with_the_closure(reg_app: Forge) -> None:
    plan = reg_app.enqueue_group("feed", params={"feed-build": {"batchSize": 5}})
    assert plan.dry_run is False
    assert plan.workflow_id is not None and plan.workflow_id.startswith("wf_")
    reasons = {j.name: j.reason for j in plan.jobs}
    assert reasons["feed-build"] == MEMBER and reasons["feed-publish"] == MEMBER
    assert reasons["match-scores"] == "dependency of feed-build"
    assert reasons["extract"] == "dependency of clean"

    wf = reg_app.get_workflow(plan.workflow_id)
    assert wf is not None
    assert wf.name == "group:feed" and wf.status == "pending"
    assert wf.metadata == {"group": "feed", "included": reasons}
    jobs = by_name(reg_app, plan.workflow_id)
    assert set(jobs) == {"extract", "clean", "match-scores", "rank-scores", "feed-build",
                         "feed-publish"}  # fmt: skip
    assert all(j.type == n for n, j in jobs.items())
    # the stored payloads are the plan's: registered defaults overlaid with params
    assert jobs["feed-build"].payload == {"batchSize": 5, "locale": "en"}
    assert jobs["match-scores"].payload == {"batchSize": 100}
    assert {n: j.payload for n, j in jobs.items()} == {j.name: j.payload for j in plan.jobs}
    # one edge per registered dependency, nothing else
    ids = {j.id: n for n, j in jobs.items()}
    edges = {(ids[e.parent_id], ids[e.child_id]) for e in reg_app.workflow_edges(plan.workflow_id)}
    assert edges == {(p, n) for n in jobs for p in SHAPE[n][1]}
    assert jobs["extract"].status == JobStatus.QUEUED
    assert jobs["feed-build"].status == JobStatus.WAITING
    assert row_counts(reg_app) == (1, 6, 6)

    run_until_idle(reg_app, concurrency=4, **FAST)
    wf = reg_app.get_workflow(plan.workflow_id)
    assert wf is not None and wf.status == "succeeded"
    jobs = by_name(reg_app, plan.workflow_id)
    assert {j.status for j in jobs.values()} == {JobStatus.SUCCEEDED}
    assert jobs["feed-build"].result == {
        "job": "feed-build",
        "payload": {"batchSize": 5, "locale": "en"},
    }
    assert_dependency_order(jobs)


def test_dry_run_writes_nothing(reg_app: Forge) -> None:
    plan = reg_app.enqueue_group("feed", params={"feed-build": {"batchSize": 5}}, dry_run=True)
    assert plan.dry_run is True and plan.workflow_id is None
    assert [j.name for j in plan.jobs][-1] == "feed-publish"
    everything = reg_app.enqueue_all(dry_run=True)
    assert len(everything.jobs) == len(SHAPE) and everything.workflow_id is None
    assert row_counts(reg_app) == (0, 0, 0)
    assert reg_app.list_workflows() == [] and reg_app.list_jobs() == []


def test_refused_group_enqueues_write_nothing(reg_app: Forge) -> None:
    with pytest.raises(GroupNotFound) as err:
        reg_app.enqueue_group("nope")
    assert str(err.value) == "Group not found: nope (known: feed, ingest, scoring)"
    with pytest.raises(ValidationError) as err2:
        reg_app.enqueue_group("scoring", params={"feed-build": {"batchSize": 5}})
    assert str(err2.value) == "Parameters given for feed-build, not part of scoring"
    # a payload over the size limit is refused for the whole plan, before writing
    small = Forge(reg_app.url, max_payload_bytes=64)
    try:
        register(small)
        with pytest.raises(ValidationError):
            small.enqueue_group("feed", params={"clean": {"blob": "x" * 200}})
    finally:
        small.close()
    assert row_counts(reg_app) == (0, 0, 0)


def test_group_plan_crosses_groups_but_not_further(reg_app: Forge) -> None:
    plan = reg_app.enqueue_group("scoring")
    assert plan.workflow_id is not None
    assert {j.name: j.reason for j in plan.jobs} == {
        "match-scores": MEMBER,
        "rank-scores": MEMBER,
        "clean": "dependency of match-scores",
        "extract": "dependency of clean",
    }
    plan2 = reg_app.enqueue_group("ingest")
    assert plan2.workflow_id is not None
    assert [j.name for j in plan2.jobs] == ["extract", "clean"]
    assert row_counts(reg_app) == (2, 6, 4)  # 3 + 1 edges
    run_until_idle(reg_app, concurrency=4, **FAST)
    for wf_id in (plan.workflow_id, plan2.workflow_id):
        wf = reg_app.get_workflow(wf_id)
        assert wf is not None and wf.status == "succeeded"
    assert_dependency_order(by_name(reg_app, plan.workflow_id))


def test_enqueue_all_runs_every_job_in_dependency_order(reg_app: Forge) -> None:
    plan = reg_app.enqueue_all()
    assert plan.workflow_id is not None and plan.target == "all"
    wf = reg_app.get_workflow(plan.workflow_id)
    assert wf is not None and wf.name == "all"
    run_until_idle(reg_app, concurrency=4, **FAST)
    jobs = by_name(reg_app, plan.workflow_id)
    assert set(jobs) == set(SHAPE)
    assert {j.status for j in jobs.values()} == {JobStatus.SUCCEEDED}
    assert_dependency_order(jobs)
    # the diamond's two sides ran at the same time (4 slots, both released together)
    a, b = jobs["match-scores"], jobs["rank-scores"]
    assert a.started_at and b.started_at and a.completed_at and b.completed_at
    assert a.started_at < b.completed_at and b.started_at < a.completed_at
    wf = reg_app.get_workflow(plan.workflow_id)
    assert wf is not None and wf.status == "succeeded"
    assert wf.stats()["succeeded"] == len(SHAPE)


def test_graph_cancel_of_a_group_workflow(reg_app: Forge) -> None:
    plan = reg_app.enqueue_group("feed")
    assert plan.workflow_id is not None
    graph = json.loads(reg_app.workflow_graph(plan.workflow_id, "json"))
    names = {n["id"]: n["name"] for n in graph["nodes"]}
    assert sorted(names.values()) == sorted(j.name for j in plan.jobs)
    assert {(names[e["from"]], names[e["to"]]) for e in graph["edges"]} == {
        (p, j.name) for j in plan.jobs for p in j.depends_on
    }
    assert "feed-build" in reg_app.workflow_graph(plan.workflow_id, "mermaid")

    wf = reg_app.cancel_workflow(plan.workflow_id)
    assert wf.status == "cancelled"
    assert {j.status for j in reg_app.workflow_jobs(plan.workflow_id)} == {JobStatus.CANCELLED}
    stats = run_until_idle(reg_app, **FAST)
    assert stats.claimed == 0


def test_retry_of_a_failed_group_workflow(app: Forge) -> None:
    failing = {"clean": True}
    ran: list[str] = []

    def handler(name: str) -> Any:
        def run(ctx: JobContext, **payload: Any) -> str:
            ran.append(name)
            if failing.get(name):
                raise RuntimeError(f"{name} broke")
            return name

        return run

    app.job(name="extract", group="ingest", retries=0)(handler("extract"))
    app.job(name="clean", group="ingest", depends_on=["extract"], retries=0)(handler("clean"))
    app.job(name="feed-build", group="feed", depends_on=["clean"], retries=0)(handler("feed-build"))
    plan = app.enqueue_group("feed")
    assert plan.workflow_id is not None
    run_until_idle(app, **FAST)
    wf = app.get_workflow(plan.workflow_id)
    assert wf is not None and wf.status == "failed"
    st = {n: j.status for n, j in by_name(app, plan.workflow_id).items()}
    assert st["extract"] == JobStatus.SUCCEEDED and st["clean"] == JobStatus.FAILED
    assert st["feed-build"] in (JobStatus.SKIPPED, JobStatus.CANCELLED)
    assert "feed-build" not in ran

    failing.clear()
    wf = app.retry_workflow(plan.workflow_id)
    assert wf.status in ("pending", "running")
    run_until_idle(app, **FAST)
    wf = app.get_workflow(plan.workflow_id)
    assert wf is not None and wf.status == "succeeded"
    assert ran == ["extract", "clean", "clean", "feed-build"]  # the success was kept
