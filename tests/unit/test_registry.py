"""The job registry as a graph, without a database: registration fields, validation messages,
groups, and the plan a group (or everything) enqueues with why each job is included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobforge import Forge, JobContext, ValidationError
from jobforge.deps import CycleError, MissingDependency
from jobforge.registry import MEMBER, GroupNotFound
from tests.apps.groups_app import SHAPE, register


@pytest.fixture
def forge(tmp_path: Path) -> Forge:
    """An app whose database is never opened by these tests (checked by `no_db`)."""
    return Forge(f"sqlite:///{tmp_path / 'never.db'}")


@pytest.fixture
def no_db(forge: Forge, tmp_path: Path) -> Iterator[None]:
    yield
    assert forge._store is None, "a registry operation opened the database"
    assert not (tmp_path / "never.db").exists()


def noop(ctx: JobContext, **payload: Any) -> dict[str, Any]:
    return payload


def add(forge: Forge, name: str, **options: Any) -> None:
    forge.job(name=name, **options)(noop)


# -- registration ------------------------------------------------------------------------------
def test_registration_keeps_every_field(forge: Forge, no_db: None) -> None:
    @forge.job(
        name="match-scores",
        group="scoring",
        depends_on=["clean-data"],
        description="Score every match.",
        defaults={"batchSize": 100},
        examples=[{"batchSize": 10}],
        queue="scores",
        retries=1,
    )
    def score(ctx: JobContext, batchSize: int) -> int:
        return batchSize

    @forge.job(name="clean-data", group="ingest")
    def clean(ctx: JobContext) -> None:
        """Drop malformed rows."""

    forge.validate()  # a dependency registered after its dependant is fine
    assert list(forge.registry) == ["match-scores", "clean-data"]
    d = forge.registry["match-scores"]
    assert d.to_dict() == {
        "name": "match-scores",
        "group": "scoring",
        "depends_on": ["clean-data"],
        "queue": "scores",
        "description": "Score every match.",
        "defaults": {"batchSize": 100},
        "examples": [{"batchSize": 10}],
        "retries": 1,
        "timeout": None,
        "priority": 0,
    }
    # the docstring is the description when none is given
    assert forge.registry["clean-data"].description == "Drop malformed rows."
    assert forge.registry["clean-data"].to_dict()["depends_on"] == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "bad name"}, "Invalid job name 'bad name': use letters, digits"),
        ({"name": "-leading-dash"}, "Invalid job name '-leading-dash'"),
        ({"name": "ok", "group": "a b"}, "Invalid group 'a b' for job 'ok'"),
        ({"name": "ok", "depends_on": [""]}, "depends_on of job 'ok' must be job names"),
        ({"name": "ok", "depends_on": [3]}, "depends_on of job 'ok' must be job names"),
        (
            {"name": "ok", "defaults": {"x": float("nan")}},
            "defaults of job 'ok' are not JSON",
        ),
        ({"name": "ok", "defaults": {"when": object()}}, "defaults of job 'ok' are not JSON"),
        ({"name": "ok", "retries": -1}, "retries must be >= 0 (job 'ok')"),
    ],
)
def test_bad_fields_are_refused_at_decoration(
    forge: Forge, no_db: None, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as err:
        forge.job(**options)(noop)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert forge.registry == {}


@pytest.mark.parametrize("defaults", [["batchSize"], "batchSize=5", 5, [("batchSize", 5)]])
def test_defaults_that_are_not_an_object_are_refused(
    forge: Forge, no_db: None, defaults: Any
) -> None:
    """`defaults` must be a JSON object; a list, a string or a number is refused with the
    registry's own message (not a TypeError/ValueError from converting it, and a list of
    pairs is not silently turned into a dict)."""
    with pytest.raises(ValidationError, match=r"^defaults of job 'ok' must be a JSON object$"):
        forge.job(name="ok", defaults=defaults)(noop)
    assert forge.registry == {}


def test_examples_and_depends_on_given_as_a_string_are_refused(forge: Forge, no_db: None) -> None:
    """A bare string is not a list of examples, nor a list of job names: it must not be split
    into its characters."""
    with pytest.raises(ValidationError, match=r"^examples of job 'ok' must be a list$"):
        forge.job(name="ok", examples="batchSize=5")(noop)
    with pytest.raises(ValidationError, match=r"^depends_on of job 'ok2' must be job names$"):
        forge.job(name="ok2", depends_on="extract")(noop)
    assert forge.registry == {}


def test_a_name_registered_twice_is_refused(forge: Forge, no_db: None) -> None:
    add(forge, "match-scores")
    with pytest.raises(ValidationError, match=r"^Job type 'match-scores' is registered twice$"):
        add(forge, "match-scores", group="other")
    assert forge.registry["match-scores"].group is None


# -- validation --------------------------------------------------------------------------------
def test_missing_dependency_message(forge: Forge, no_db: None) -> None:
    add(forge, "extract")
    add(forge, "report", depends_on=["extract", "transform"])
    with pytest.raises(MissingDependency) as err:
        forge.validate()
    assert str(err.value) == "Dependency not found: transform (required by report)"
    add(forge, "transform", depends_on=["extract"])
    forge.validate()  # registering it later fixes it


def test_cycle_message_names_the_path_parents_first(forge: Forge, no_db: None) -> None:
    add(forge, "extract", depends_on=["load"])
    add(forge, "transform", depends_on=["extract"])
    add(forge, "load", depends_on=["transform"])
    add(forge, "unrelated")
    with pytest.raises(CycleError) as err:
        forge.validate()
    # a -> b reads "b depends on a": transform needs extract, load needs transform, ...
    assert str(err.value) == "Circular dependency detected: extract -> transform -> load -> extract"


def test_two_and_one_job_cycles(tmp_path: Path) -> None:
    two = Forge(f"sqlite:///{tmp_path / 'a.db'}")
    add(two, "a", depends_on=["b"])
    add(two, "b", depends_on=["a"])
    with pytest.raises(CycleError, match=r"^Circular dependency detected: a -> b -> a$"):
        two.validate()
    one = Forge(f"sqlite:///{tmp_path / 'b.db'}")
    add(one, "self-loop", depends_on=["self-loop"])
    with pytest.raises(CycleError, match=r"^Circular dependency detected: self-loop -> self-loop$"):
        one.validate()
    # planning re-validates: an invalid registry plans nothing
    with pytest.raises(CycleError):
        one.enqueue_all(dry_run=True)


def test_validate_runs_again_after_a_new_registration(forge: Forge, no_db: None) -> None:
    add(forge, "a")
    forge.validate()
    add(forge, "b", depends_on=["missing"])
    with pytest.raises(
        MissingDependency, match=r"^Dependency not found: missing \(required by b\)$"
    ):
        forge.validate()


# -- groups and plans ----------------------------------------------------------------------------
def test_groups_and_members(forge: Forge, no_db: None) -> None:
    register(forge)
    assert forge.groups() == {"feed": 2, "ingest": 2, "scoring": 2}
    assert [d.name for d in forge.group_jobs("scoring")] == ["match-scores", "rank-scores"]
    with pytest.raises(GroupNotFound) as err:
        forge.group_jobs("nope")
    assert str(err.value) == "Group not found: nope (known: feed, ingest, scoring)"
    empty = Forge("sqlite:///unused.db")
    with pytest.raises(GroupNotFound, match=r"^Group not found: x \(known: none registered\)$"):
        empty.group_jobs("x")


def test_group_plan_is_the_transitive_closure_with_reasons(forge: Forge, no_db: None) -> None:
    register(forge)
    plan = forge.enqueue_group("feed", dry_run=True)
    assert plan.dry_run and plan.workflow_id is None and plan.target == "feed"
    reasons = {j.name: j.reason for j in plan.jobs}
    assert reasons == {
        "feed-build": MEMBER,
        "feed-publish": MEMBER,
        "match-scores": "dependency of feed-build",
        "rank-scores": "dependency of feed-build",
        "clean": "dependency of match-scores",
        "extract": "dependency of clean",
    }
    order = [j.name for j in plan.jobs]
    for j in plan.jobs:  # parents before children
        for parent in j.depends_on:
            assert order.index(parent) < order.index(j.name), order
    assert order == ["extract", "clean", "match-scores", "rank-scores", "feed-build",
                     "feed-publish"]  # fmt: skip
    groups = {j.name: j.group for j in plan.jobs}
    assert groups["clean"] == "ingest" and groups["feed-build"] == "feed"
    assert "audit" not in reasons


def test_plan_payload_is_defaults_overlaid_with_params(forge: Forge, no_db: None) -> None:
    register(forge)
    plan = forge.enqueue_group(
        "feed", {"feed-build": {"batchSize": 5}, "clean": {"day": "2026-11-22"}}, dry_run=True
    )
    payloads = {j.name: j.payload for j in plan.jobs}
    assert payloads["feed-build"] == {"batchSize": 5, "locale": "en"}
    assert payloads["match-scores"] == {"batchSize": 100}
    assert payloads["clean"] == {"day": "2026-11-22"}
    assert payloads["extract"] == {}
    # the plan did not change the registry's defaults
    assert forge.registry["feed-build"].defaults == {"batchSize": 50, "locale": "en"}


def test_params_for_a_job_outside_the_plan_are_refused(forge: Forge, no_db: None) -> None:
    register(forge)
    with pytest.raises(ValidationError) as err:
        forge.enqueue_group("scoring", {"feed-build": {"batchSize": 5}, "audit": {}})
    assert str(err.value) == "Parameters given for audit, feed-build, not part of scoring"
    with pytest.raises(ValidationError, match=r"^Parameters given for ghost, not part of all$"):
        forge.enqueue_all({"ghost": {}}, dry_run=True)


def test_unknown_group(forge: Forge, no_db: None) -> None:
    register(forge)
    with pytest.raises(GroupNotFound) as err:
        forge.enqueue_group("nope", dry_run=True)
    assert str(err.value) == "Group not found: nope (known: feed, ingest, scoring)"


def test_plan_of_everything(forge: Forge, no_db: None) -> None:
    register(forge)
    plan = forge.enqueue_all(dry_run=True)
    assert plan.target == "all"
    assert {j.name for j in plan.jobs} == set(SHAPE)
    assert all(j.reason == MEMBER for j in plan.jobs)
    order = [j.name for j in plan.jobs]
    for name, (_, parents) in SHAPE.items():
        for parent in parents:
            assert order.index(parent) < order.index(name)
    wf = plan.workflow()
    assert wf.name == "all"
    assert {n: [d.parent for d in j.depends_on] for n, j in wf.jobs.items()} == {
        n: parents for n, (_, parents) in SHAPE.items()
    }
    d = plan.to_dict()
    assert d["dry_run"] is True and d["workflow_id"] is None and d["target"] == "all"
    assert [j["name"] for j in d["jobs"]] == order
