"""The change feed the API streams: events written by the database in the changing
transaction, read after a cursor, filtered, pruned; and what tenants change in the core."""

from __future__ import annotations

import psycopg
import pytest

from jobforge import Forge, JobContext, JobSpec, Workflow
from jobforge.deps import DependencyError, DuplicateDependency
from jobforge.errors import PayloadError, PayloadTooLarge
from jobforge.events import EventFilter, FeedCursor
from jobforge.jobs import parse_job_ref
from jobforge.store import events as feed
from jobforge.store.base import ClaimParams
from jobforge.store.retention import prune
from jobforge.store.sql import ANNOUNCED_BATCH
from jobforge.testing import run_until_idle
from jobforge.workflows.records import parse_workflow_ref
from tests.integration.feed_support import settled_read


def read(app: Forge, after: FeedCursor, where: EventFilter, limit: int = 500) -> feed.Page:
    return settled_read(app.store, after, where, limit)


def _all(app: Forge, where: EventFilter | None = None) -> list[tuple[str, str]]:
    page = read(app, FeedCursor(0, 0), where or EventFilter(), limit=10_000)
    return [(e.kind, e.status) for e in page.events]


def _job_app(app: Forge) -> Forge:
    @app.job
    def work(ctx: JobContext, n: int = 0) -> int:
        ctx.progress(50)
        return n

    return app


def test_a_job_reports_creation_start_progress_and_end(app: Forge) -> None:
    ref = _job_app(app).enqueue("work", {"n": 1})
    run_until_idle(app)
    events = read(app, FeedCursor(0, 0), EventFilter()).events
    assert [e.status for e in events] == ["queued", "running", "running", "succeeded"]
    assert [e.progress for e in events] == [0, 0, 50, 100]
    assert {e.object_id for e in events} == {parse_job_ref(ref)}
    assert events == sorted(events, key=lambda e: e.cursor)  # commit order


def test_a_reader_resumes_after_its_cursor_and_misses_nothing(app: Forge) -> None:
    _job_app(app)
    start = feed.head(app.store)
    first = app.enqueue("work")
    page = read(app, start, EventFilter())
    assert [(e.object_id, e.status) for e in page.events] == [(parse_job_ref(first), "queued")]
    second = app.enqueue("work")
    again = read(app, page.cursor, EventFilter())
    assert [e.object_id for e in again.events] == [parse_job_ref(second)]
    assert read(app, again.cursor, EventFilter()).events == []
    assert FeedCursor.parse(str(again.cursor)) == again.cursor


def test_pages_never_skip_an_event(app: Forge) -> None:
    _job_app(app)
    for _ in range(3):
        app.enqueue_many([_spec() for _ in range(7)])
    seen, cursor = [], FeedCursor(0, 0)
    while True:
        page = read(app, cursor, EventFilter(), limit=4)
        seen += [e.cursor for e in page.events]
        if not page.events:
            break
        cursor = page.cursor
    assert len(seen) == len(set(seen)) == 21


def _spec() -> JobSpec:
    return JobSpec("work", {})


def test_workflow_jobs_are_announced_by_their_workflow(app: Forge) -> None:
    _job_app(app)
    wf = Workflow("pipe").add(app.registry["work"].spec(n=1), name="a")
    wf.then(app.registry["work"].spec(n=2), name="b")
    ref = app.enqueue_workflow(wf)
    assert _all(app) == [("workflow", "pending")]  # not one event per job: cheap at 100k jobs
    run_until_idle(app)
    only = EventFilter(workflow_id=parse_workflow_ref(ref))
    kinds = _all(app, only)
    assert ("workflow", "running") in kinds and kinds[-1] == ("workflow", "succeeded")
    assert kinds.count(("job", "succeeded")) == 2


def test_filters_by_tenant_kind_and_object(app: Forge) -> None:
    _job_app(app)
    mine = app.enqueue("work", tenant_id="acme")
    app.enqueue("work", tenant_id="other")
    untagged = app.enqueue("work")
    acme = read(app, FeedCursor(0, 0), EventFilter(tenant="acme")).events
    assert [e.object_id for e in acme] == [parse_job_ref(mine)]
    default = read(app, FeedCursor(0, 0), EventFilter(tenant="default")).events
    assert [e.object_id for e in default] == [parse_job_ref(untagged)]
    one = EventFilter(kind="job", object_id=parse_job_ref(mine))
    assert len(read(app, FeedCursor(0, 0), one).events) == 1


def test_durable_runs_report_their_status(app: Forge) -> None:
    @app.workflow
    def flow(ctx, input: dict) -> int:  # type: ignore[no-untyped-def, type-arg]
        return int(ctx.step("one", lambda: 1).run())

    run = app.start_workflow("flow", {})
    run_until_idle(app)
    where = EventFilter(kind="run", object_id=app.get_run(run).id)
    statuses = [s for _, s in _all(app, where)]
    assert statuses[0] == "created" and statuses[-1] == "completed"


def test_pruning_keeps_the_newest_event(app: Forge) -> None:
    _job_app(app)
    app.enqueue("work")
    app.enqueue("work")
    before = feed.head(app.store)
    two_days = "at - 172800" if app.store.url.startswith("sqlite") else "at - interval '2 days'"
    with app.store._tx() as cur:
        cur.execute(f"UPDATE jobforge_events SET at = {two_days}")
    prune(app.store, None)  # jobs are kept; events older than a day go
    left = read(app, FeedCursor(0, 0), EventFilter()).events
    assert len(left) <= 1  # SQLite keeps its newest id, so ids are never reused
    app.enqueue("work")
    new = read(app, before, EventFilter()).events
    assert len(new) == 1 and new[0].cursor > before


def test_postgres_holds_back_events_behind_an_open_older_transaction(pg_url: str) -> None:
    """A transaction that wrote its event first but commits last is still delivered."""
    app = _job_app(Forge(pg_url))
    early, late = app.enqueue("work"), app.enqueue("work")
    cursor = feed.head(app.store)
    with psycopg.connect(pg_url) as slow:
        slow.execute(
            "UPDATE jobforge_jobs SET status = 'cancelled' WHERE id = %s", (parse_job_ref(early),)
        )  # its transaction id is now older than the next one's
        app.cancel_job(late)
        held = feed.read(app.store, cursor, EventFilter())
        assert held.events == []  # the late one waits for the older transaction to end
        assert held.cursor <= feed.head(app.store)
        slow.commit()
    page = read(app, held.cursor, EventFilter())
    ids = [e.object_id for e in page.events]
    assert ids == [parse_job_ref(early), parse_job_ref(late)]  # in transaction order
    app.close()


def test_unique_keys_are_per_tenant(app: Forge) -> None:
    _job_app(app)
    a = app.enqueue("work", unique_key="k", tenant_id="a")
    b = app.enqueue("work", unique_key="k", tenant_id="b")
    assert a != b
    assert app.enqueue("work", unique_key="k", tenant_id="a") == a
    assert app.enqueue("work", unique_key="k") not in (a, b)


def test_a_dependency_cannot_cross_tenants(app: Forge) -> None:
    _job_app(app)
    parent = app.enqueue("work", tenant_id="a")
    with pytest.raises(DependencyError, match="two tenants"):
        app.enqueue("work", tenant_id="b", depends_on=[parent])
    assert len(app.list_jobs()) == 1  # nothing written


def test_the_default_tenant_is_the_untagged_one(app: Forge) -> None:
    _job_app(app)
    untagged = app.enqueue("work")
    child = app.enqueue("work", tenant_id="default", depends_on=[untagged])
    assert app.get_job(child).tenant_id is None  # type: ignore[union-attr]
    assert app.enqueue("work", tenant_id="default", unique_key="u") == app.enqueue(
        "work", unique_key="u"
    )


def test_one_edge_per_pair_of_jobs(app: Forge) -> None:
    _job_app(app)
    parent = app.enqueue("work")
    with pytest.raises(DependencyError, match="listed twice"):
        app.enqueue("work", depends_on=[parent, parent])
    child = app.enqueue("work", depends_on=[parent])
    with pytest.raises(DuplicateDependency, match="already depends on"):
        app.add_dependency(parent, child)
    assert len(app.dependencies(child)[0]) == 1


def test_event_data_must_be_json_within_the_payload_limit(app: Forge) -> None:
    @app.workflow
    def wait(ctx, input: dict) -> object:  # type: ignore[no-untyped-def, type-arg]
        return ctx.wait_for_event("go", timeout=60)

    run = app.start_workflow("wait", {})
    with pytest.raises(PayloadError, match="not JSON"):
        app.send_event(run, "go", float("nan"))
    with pytest.raises(PayloadTooLarge, match="over the limit"):
        app.send_event(run, "go", "x" * app.max_payload_bytes)
    app.send_event(run, "go", [1, "two"])
    run_until_idle(app)
    assert app.get_run(run).output == [1, "two"]


def test_postgres_claim_leaves_jobs_younger_than_its_transaction(pg_url: str) -> None:
    """`finish_and_claim` writes first, then claims: a job released in between by a younger
    transaction waits for the next claim, so the feed never shows it running before it shows
    it queued (the feed orders transactions by id)."""
    app = _job_app(Forge(pg_url))
    parent = app.enqueue("work", delay=3600)
    child = parse_job_ref(app.enqueue("work", depends_on=[parent]))
    other = parse_job_ref(app.enqueue("work", delay=3600))
    params = ClaimParams("w1", ["work"], None, limit=10, lease_seconds=30)
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE jobforge_jobs SET priority = 1 WHERE id = %s", (other,))  # its xid
        app.remove_dependency(str(app.dependencies(str(child))[0][0].id))  # child released
        assert app.store.bound(conn).claim_jobs(params) == []
        conn.commit()
    assert [j.id for j in app.store.claim_jobs(params)] == [child]
    where = EventFilter(kind="job", object_id=child)
    assert [s for _, s in _all(app, where)] == ["waiting", "queued", "running"]
    app.close()


def test_bulk_enqueues_are_not_announced_job_by_job(app: Forge) -> None:
    _job_app(app)
    start = feed.head(app.store)
    app.enqueue_many([_spec() for _ in range(ANNOUNCED_BATCH - 1)])
    assert len(read(app, start, EventFilter(), limit=1000).events) == 199
    middle = feed.head(app.store)
    app.enqueue_many([_spec() for _ in range(ANNOUNCED_BATCH)])
    assert read(app, middle, EventFilter()).events == []  # they show when they run
