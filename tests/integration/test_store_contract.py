"""The storage verbs, called directly, behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from jobforge import Forge, InvalidTransition, JobNotFound, JobStatus, ValidationError
from jobforge.jobs import NewJob, utcnow
from jobforge.store.base import ClaimParams, ListParams, Outcome, ProgressUpdate
from jobforge.store.factory import open_store
from jobforge.store.migrate import load_migrations
from jobforge.store.sql import SQLStore
from tests.conftest import with_dbname


def new_job(
    type: str = "t",
    *,
    queue: str = "default",
    priority: int = 0,
    delay: float = 0.0,
    age: float = 0.0,
    max_attempts: int = 3,
    payload: str = "{}",
    created_at: datetime | None = None,
    job_id: uuid.UUID | None = None,
) -> NewJob:
    """A resolved job; `age` puts scheduled_at in the past, `delay` in the future."""
    now = utcnow()
    when = now + timedelta(seconds=delay - age)
    return NewJob(
        id=job_id or uuid.uuid4(),
        type=type,
        queue=queue,
        payload_json=payload,
        priority=priority,
        scheduled_at=when,
        status=JobStatus.SCHEDULED if delay > 0 else JobStatus.QUEUED,
        max_attempts=max_attempts,
        timeout=None,
        tenant_id=None,
        trace_id=None,
        correlation_id=None,
        created_at=created_at or now,
        retry_backoff=1.0,
        retry_backoff_max=300.0,
    )


def claim(
    store: SQLStore,
    types: list[str] | None = None,
    *,
    queues: list[str] | None = None,
    limit: int = 10,
    lease: float = 30.0,
    worker: str = "w1",
) -> list:
    return store.claim_jobs(ClaimParams(worker, types or ["t"], queues, limit, lease))


@pytest.fixture
def store(app: Forge) -> SQLStore:
    return app.store


# -- insert and claim ----------------------------------------------------------------------


def test_insert_then_get(store: SQLStore) -> None:
    nj = new_job(payload='{"a":[1,2],"b":"é"}', priority=7, queue="mail")
    store.insert_jobs([nj])
    job = store.get_job(nj.id)
    assert job is not None
    assert job.id == nj.id
    assert job.status == JobStatus.QUEUED
    assert job.payload == {"a": [1, 2], "b": "é"}
    assert (job.priority, job.queue, job.attempts, job.max_attempts) == (7, "mail", 0, 3)
    assert job.errors == [] and job.result is None and job.progress == 0
    assert job.lease_token is None and job.worker_id is None and job.started_at is None
    assert job.created_at.tzinfo is not None
    assert abs((job.scheduled_at - nj.scheduled_at).total_seconds()) < 0.001
    assert store.get_job(uuid.uuid4()) is None


def test_insert_batch_is_atomic(store: SQLStore) -> None:
    dup = uuid.uuid4()
    with pytest.raises(Exception):  # noqa: B017 - driver-specific integrity error
        store.insert_jobs([new_job(), new_job(job_id=dup), new_job(job_id=dup)])
    assert store.list_jobs(ListParams()) == []


def test_claim_marks_running_counts_attempt_and_sets_lease(store: SQLStore) -> None:
    nj = new_job()
    store.insert_jobs([nj])
    before = utcnow()
    (job,) = claim(store, lease=30.0, worker="worker-a")
    assert job.id == nj.id
    assert job.status == JobStatus.RUNNING
    assert job.attempts == 1
    assert job.worker_id == "worker-a"
    assert job.lease_token
    assert job.lease_expires_at is not None
    lease_left = (job.lease_expires_at - before).total_seconds()
    assert 28 < lease_left < 32
    assert job.started_at is not None
    stored = store.get_job(nj.id)
    assert stored is not None
    assert stored.status == JobStatus.RUNNING
    assert stored.lease_token == job.lease_token
    assert stored.attempts == 1
    # Nothing left to claim.
    assert claim(store) == []


def test_each_claim_gets_a_new_lease_token(store: SQLStore) -> None:
    store.insert_jobs([new_job(), new_job()])
    (a,) = claim(store, limit=1)
    (b,) = claim(store, limit=1)
    assert a.id != b.id
    assert a.lease_token != b.lease_token


def test_claim_order_priority_then_scheduled_at(store: SQLStore) -> None:
    jobs = {
        "low_old": new_job(priority=0, age=30),
        "high_new": new_job(priority=10, age=1),
        "high_old": new_job(priority=10, age=20),
        "mid": new_job(priority=5, age=5),
        "low_new": new_job(priority=0, age=2),
        "negative": new_job(priority=-3, age=60),
    }
    store.insert_jobs(list(jobs.values()))
    names = {j.id: name for name, j in jobs.items()}
    one_by_one = []
    while batch := claim(store, limit=1):
        one_by_one.append(names[batch[0].id])
    assert one_by_one == ["high_old", "high_new", "mid", "low_old", "low_new", "negative"]


def test_claim_batch_is_returned_in_run_order(store: SQLStore) -> None:
    jobs = [new_job(priority=p, age=a) for p, a in [(1, 3), (9, 1), (1, 9), (5, 2)]]
    store.insert_jobs(jobs)
    got = claim(store, limit=3)
    assert [(j.priority) for j in got] == [9, 5, 1]
    assert got[2].id == jobs[2].id  # the older of the two priority-1 jobs
    assert claim(store)[0].id == jobs[0].id


def test_claim_respects_limit(store: SQLStore) -> None:
    store.insert_jobs([new_job() for _ in range(7)])
    assert len(claim(store, limit=3)) == 3
    assert len(claim(store, limit=3)) == 3
    assert len(claim(store, limit=3)) == 1


def test_delayed_job_not_claimable_before_due(store: SQLStore) -> None:
    nj = new_job(delay=0.4)
    store.insert_jobs([nj])
    assert store.get_job(nj.id).status == JobStatus.SCHEDULED  # type: ignore[union-attr]
    assert claim(store) == []
    due = store.next_due_at(["t"], None)
    assert due is not None
    assert abs((due - nj.scheduled_at).total_seconds()) < 0.001
    time.sleep(max(0.0, (nj.scheduled_at - utcnow()).total_seconds()) + 0.05)
    (job,) = claim(store)
    assert job.id == nj.id
    assert job.status == JobStatus.RUNNING
    assert store.next_due_at(["t"], None) is None


def test_claim_filters_by_type_and_queue(store: SQLStore) -> None:
    x1 = new_job("x", queue="q1")
    x2 = new_job("x", queue="q2")
    y1 = new_job("y", queue="q1")
    store.insert_jobs([x1, x2, y1])
    assert claim(store, ["nothing"]) == []
    assert claim(store, ["x"], queues=["q3"]) == []
    assert [j.id for j in claim(store, ["y"])] == [y1.id]
    assert [j.id for j in claim(store, ["x", "y"], queues=["q2"])] == [x2.id]
    assert [j.id for j in claim(store, ["x", "y"], queues=None)] == [x1.id]


def test_next_due_at_filters_by_type_and_queue(store: SQLStore) -> None:
    early = new_job("x", queue="q1", delay=50)
    late = new_job("x", queue="q2", delay=100)
    store.insert_jobs([early, late])
    assert store.next_due_at(["y"], None) is None
    due_all = store.next_due_at(["x"], None)
    due_q2 = store.next_due_at(["x"], ["q2"])
    assert due_all is not None and due_q2 is not None
    assert abs((due_all - early.scheduled_at).total_seconds()) < 0.001
    assert abs((due_q2 - late.scheduled_at).total_seconds()) < 0.001


def test_concurrent_claimers_never_share_a_job(store: SQLStore) -> None:
    total = 500
    store.insert_jobs([new_job() for _ in range(total)])
    barrier = threading.Barrier(4)
    claimed: list[list[uuid.UUID]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def claimer(n: int) -> None:
        try:
            barrier.wait()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                got = claim(store, limit=10, worker=f"w{n}")
                claimed[n].extend(j.id for j in got)
                if not got and not store.list_jobs(ListParams(status="queued", limit=1)):
                    return
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    everything = [i for ids in claimed for i in ids]
    assert len(everything) == total
    assert len(set(everything)) == total
    jobs = store.list_jobs(ListParams(limit=total + 10))
    assert {j.id for j in jobs} == set(everything)
    assert all(j.status == JobStatus.RUNNING and j.attempts == 1 for j in jobs)
    # Each job belongs to the worker that reported it.
    owner = {i: f"w{n}" for n, ids in enumerate(claimed) for i in ids}
    assert all(j.worker_id == owner[j.id] for j in jobs)


# -- finishing, fenced by the lease token --------------------------------------------------


def test_finish_applies_only_with_the_current_lease_token(store: SQLStore) -> None:
    a, b = new_job(), new_job()
    store.insert_jobs([a, b])
    ja, jb = claim(store, limit=2)
    applied = store.finish_jobs(
        [
            Outcome(ja.id, "not-the-token", JobStatus.SUCCEEDED, result_json='"stolen"'),
            Outcome(
                jb.id, jb.lease_token, JobStatus.SUCCEEDED, result_json='{"ok":1}', progress=100
            ),
        ]
    )
    assert applied == [jb.id]
    after_a = store.get_job(ja.id)
    after_b = store.get_job(jb.id)
    assert after_a is not None and after_b is not None
    assert after_a.status == JobStatus.RUNNING and after_a.result is None
    assert after_b.status == JobStatus.SUCCEEDED
    assert after_b.result == {"ok": 1}
    assert after_b.progress == 100
    assert after_b.completed_at is not None
    assert after_b.lease_token is None and after_b.worker_id is None
    # A second outcome with the (now spent) token is refused too.
    again = Outcome(jb.id, jb.lease_token, JobStatus.FAILED)
    assert store.finish_jobs([again]) == []
    assert store.get_job(jb.id).status == JobStatus.SUCCEEDED  # type: ignore[union-attr]


def test_finish_with_retry_reschedules_and_keeps_errors(store: SQLStore) -> None:
    store.insert_jobs([new_job()])
    (job,) = claim(store)
    when = utcnow() + timedelta(seconds=60)
    err = {"type": "ValueError", "message": "bad", "traceback": None, "attempt": 1, "time": "t"}
    assert store.finish_jobs(
        [Outcome(job.id, job.lease_token, JobStatus.SCHEDULED, errors=[err], scheduled_at=when)]
    ) == [job.id]
    after = store.get_job(job.id)
    assert after is not None
    assert after.status == JobStatus.SCHEDULED
    assert after.errors == [err]
    assert after.attempts == 1
    assert after.completed_at is None
    assert abs((after.scheduled_at - when).total_seconds()) < 0.001
    assert claim(store) == []  # not due yet


def test_finish_attempt_delta_gives_the_attempt_back(store: SQLStore) -> None:
    store.insert_jobs([new_job()])
    (job,) = claim(store)
    outcome = Outcome(job.id, job.lease_token, JobStatus.QUEUED, attempt_delta=-1)
    assert store.finish_jobs([outcome]) == [job.id]
    assert store.get_job(job.id).attempts == 0  # type: ignore[union-attr]
    (again,) = claim(store)
    assert again.attempts == 1


def test_progress_is_fenced_too(store: SQLStore) -> None:
    store.insert_jobs([new_job()])
    (job,) = claim(store)
    store.finish_jobs([], [ProgressUpdate(job.id, "wrong", 90, "nope")])
    assert store.get_job(job.id).progress == 0  # type: ignore[union-attr]
    store.finish_jobs([], [ProgressUpdate(job.id, job.lease_token, 40, "loading")])
    after = store.get_job(job.id)
    assert after is not None
    assert (after.progress, after.progress_message) == (40, "loading")


def test_stale_worker_cannot_finish_after_the_job_was_rescued_and_reclaimed(
    store: SQLStore,
) -> None:
    store.insert_jobs([new_job()])
    (old,) = claim(store, lease=0.05, worker="slow")
    time.sleep(0.2)
    assert store.rescue_expired().requeued == [old.id]
    (new,) = claim(store, worker="fresh")
    assert new.id == old.id and new.lease_token != old.lease_token
    assert new.attempts == 2
    assert store.finish_jobs([Outcome(old.id, old.lease_token, JobStatus.SUCCEEDED)]) == []
    current = store.get_job(old.id)
    assert current is not None
    assert current.status == JobStatus.RUNNING and current.worker_id == "fresh"
    assert store.finish_jobs([Outcome(new.id, new.lease_token, JobStatus.SUCCEEDED)]) == [new.id]


# -- leases: heartbeat, rescue, release ----------------------------------------------------


def test_heartbeat_extends_the_leases_of_that_worker_only(store: SQLStore) -> None:
    store.insert_jobs([new_job(), new_job()])
    (mine,) = claim(store, limit=1, lease=0.3, worker="me")
    (theirs,) = claim(store, limit=1, lease=0.3, worker="other")
    assert store.heartbeat("me", 30.0) == {mine.id: False}
    time.sleep(0.45)
    rescued = store.rescue_expired()
    assert rescued.requeued == [theirs.id]
    assert store.get_job(mine.id).status == JobStatus.RUNNING  # type: ignore[union-attr]
    # A cancelled job is no longer held: the worker learns it from the heartbeat.
    store.cancel_job(mine.id)
    assert store.heartbeat("me", 30.0) == {}


def test_rescue_requeues_expired_jobs_with_a_lease_expired_error(store: SQLStore) -> None:
    expiring, healthy = new_job(max_attempts=3), new_job(max_attempts=3)
    store.insert_jobs([expiring, healthy])
    (a,) = claim(store, limit=1, lease=0.05, worker="dead-worker")
    (b,) = claim(store, limit=1, lease=30.0, worker="live-worker")
    time.sleep(0.2)
    result = store.rescue_expired()
    assert result.requeued == [a.id]
    assert result.failed == []
    job = store.get_job(a.id)
    assert job is not None
    assert job.status == JobStatus.QUEUED
    assert job.attempts == 1  # the lost attempt still counts
    assert job.worker_id is None and job.lease_token is None and job.lease_expires_at is None
    assert job.completed_at is None
    (entry,) = job.errors
    assert entry["type"] == "LeaseExpired"
    assert "dead-worker" in entry["message"]
    assert entry["attempt"] == 1
    assert entry["traceback"] is None
    assert entry["time"].endswith("Z")
    stamp = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    assert abs((stamp - datetime.now(UTC)).total_seconds()) < 10
    assert store.get_job(b.id).status == JobStatus.RUNNING  # type: ignore[union-attr]
    # Rescued jobs run again, and nothing is rescued twice.
    assert store.rescue_expired().requeued == []
    (again,) = claim(store, limit=1)
    assert again.id == a.id and again.attempts == 2


def test_rescue_fails_jobs_with_no_attempts_left(store: SQLStore) -> None:
    store.insert_jobs([new_job(max_attempts=1)])
    (job,) = claim(store, lease=0.05)
    time.sleep(0.2)
    result = store.rescue_expired()
    assert result.failed == [job.id]
    assert result.requeued == []
    after = store.get_job(job.id)
    assert after is not None
    assert after.status == JobStatus.FAILED
    assert after.completed_at is not None
    assert [e["type"] for e in after.errors] == ["LeaseExpired"]
    assert claim(store) == []


def test_rescue_appends_to_existing_errors(store: SQLStore) -> None:
    store.insert_jobs([new_job(max_attempts=2)])
    (job,) = claim(store, lease=0.05)
    first = {"type": "ValueError", "message": "m", "traceback": "tb", "attempt": 1, "time": "t"}
    store.finish_jobs([Outcome(job.id, job.lease_token, JobStatus.QUEUED, errors=[first])])
    (job,) = claim(store, lease=0.05)
    time.sleep(0.2)
    assert store.rescue_expired().failed == [job.id]
    errors = store.get_job(job.id).errors  # type: ignore[union-attr]
    assert errors[0] == first
    assert errors[1]["type"] == "LeaseExpired" and errors[1]["attempt"] == 2


def test_release_gives_the_attempt_back(store: SQLStore) -> None:
    store.insert_jobs([new_job("t", queue="q")])
    (job,) = claim(store)
    assert store.release_jobs([(job.id, "wrong-token")]) == 0
    assert store.get_job(job.id).status == JobStatus.RUNNING  # type: ignore[union-attr]
    assert store.release_jobs([(job.id, job.lease_token)]) == 1
    after = store.get_job(job.id)
    assert after is not None
    assert after.status == JobStatus.QUEUED
    assert after.attempts == 0
    assert after.worker_id is None and after.lease_token is None
    assert after.errors == []
    assert store.release_jobs([(job.id, job.lease_token)]) == 0  # spent token
    (again,) = claim(store)
    assert again.attempts == 1


# -- cancel and retry ----------------------------------------------------------------------


def test_cancel_queued_and_scheduled_jobs(store: SQLStore) -> None:
    queued, scheduled = new_job(), new_job(delay=60)
    store.insert_jobs([queued, scheduled])
    for nj in (queued, scheduled):
        job = store.cancel_job(nj.id)
        assert job.status == JobStatus.CANCELLED
        assert job.completed_at is not None
        assert store.get_job(nj.id).status == JobStatus.CANCELLED  # type: ignore[union-attr]
    assert claim(store) == []


def test_cancel_running_job_revokes_its_lease(store: SQLStore) -> None:
    store.insert_jobs([new_job()])
    (job,) = claim(store)
    cancelled = store.cancel_job(job.id)
    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.lease_token is None and cancelled.worker_id is None
    # The worker's late outcome cannot resurrect it.
    assert store.finish_jobs([Outcome(job.id, job.lease_token, JobStatus.SUCCEEDED)]) == []
    assert store.get_job(job.id).status == JobStatus.CANCELLED  # type: ignore[union-attr]


def test_cancel_refused_from_terminal_states(store: SQLStore) -> None:
    store.insert_jobs([new_job(), new_job()])
    a, b = claim(store, limit=2)
    store.finish_jobs([Outcome(a.id, a.lease_token, JobStatus.SUCCEEDED)])
    with pytest.raises(InvalidTransition) as info:
        store.cancel_job(a.id)
    assert str(info.value) == (
        f"Cannot cancel job {a.job_id}: it is succeeded "
        "(allowed from queued, running, scheduled, waiting)"
    )
    assert info.value.http_status == 409
    store.cancel_job(b.id)
    with pytest.raises(InvalidTransition, match="it is cancelled"):
        store.cancel_job(b.id)


def test_retry_failed_and_cancelled_jobs(store: SQLStore) -> None:
    f, c = new_job(max_attempts=1), new_job()
    store.insert_jobs([f, c])
    (jf,) = claim(store, limit=1)
    err = {"type": "E", "message": "m", "traceback": None, "attempt": 1, "time": "t"}
    store.finish_jobs([Outcome(jf.id, jf.lease_token, JobStatus.FAILED, errors=[err], progress=30)])
    store.cancel_job(c.id)
    for nj in (f, c):
        job = store.retry_job(nj.id)
        assert job.status == JobStatus.QUEUED
        assert job.attempts == 0
        assert job.completed_at is None
        assert job.result is None
        assert job.progress == 0
        assert abs((job.scheduled_at - utcnow()).total_seconds()) < 5
    assert store.get_job(f.id).errors == [err]  # type: ignore[union-attr]  # history kept
    assert {j.id for j in claim(store)} == {f.id, c.id}


@pytest.mark.parametrize("state", ["queued", "scheduled", "running", "succeeded"])
def test_retry_refused_unless_failed_cancelled_or_skipped(store: SQLStore, state: str) -> None:
    nj = new_job(delay=60 if state == "scheduled" else 0)
    store.insert_jobs([nj])
    if state in ("running", "succeeded"):
        (job,) = claim(store)
        if state == "succeeded":
            store.finish_jobs([Outcome(job.id, job.lease_token, JobStatus.SUCCEEDED)])
    with pytest.raises(InvalidTransition) as info:
        store.retry_job(nj.id)
    assert str(info.value) == (
        f"Cannot retry job job_{nj.id.hex}: it is {state} (allowed from cancelled, failed, skipped)"
    )
    assert store.get_job(nj.id).status == state  # type: ignore[union-attr]


def test_unknown_job_is_not_found(store: SQLStore) -> None:
    missing = uuid.uuid4()
    for verb in (store.cancel_job, store.retry_job):
        with pytest.raises(JobNotFound) as info:
            verb(missing)
        assert str(info.value) == f"Job not found: job_{missing.hex}"
        assert info.value.http_status == 404


def test_app_cancel_and_retry_accept_both_id_forms(app: Forge) -> None:
    nj = new_job()
    app.store.insert_jobs([nj])
    assert app.cancel_job("job_" + nj.id.hex).status == JobStatus.CANCELLED
    assert app.retry_job(str(nj.id)).status == JobStatus.QUEUED
    with pytest.raises(ValidationError, match="Invalid job id"):
        app.cancel_job("job_nonsense")
    with pytest.raises(JobNotFound):
        app.cancel_job(str(uuid.uuid4()))


# -- listing -------------------------------------------------------------------------------


def test_list_jobs_filters_and_orders_newest_first(store: SQLStore, app: Forge) -> None:
    base = utcnow() - timedelta(minutes=10)
    specs = [
        ("a", "q1", 0),
        ("a", "q2", 1),
        ("b", "q1", 2),
        ("b", "q2", 3),
        ("a", "q1", 4),
    ]
    jobs = [new_job(t, queue=q, created_at=base + timedelta(seconds=s)) for t, q, s in specs]
    store.insert_jobs(jobs)
    store.cancel_job(jobs[1].id)

    def ids(**kw: object) -> list[uuid.UUID]:
        return [j.id for j in store.list_jobs(ListParams(**kw))]  # type: ignore[arg-type]

    assert ids() == [j.id for j in reversed(jobs)]
    assert ids(type="a") == [jobs[4].id, jobs[1].id, jobs[0].id]
    assert ids(queue="q2") == [jobs[3].id, jobs[1].id]
    assert ids(status="cancelled") == [jobs[1].id]
    assert ids(status="queued", type="a", queue="q1") == [jobs[4].id, jobs[0].id]
    assert ids(status="running") == []
    assert ids(limit=2) == [jobs[4].id, jobs[3].id]
    assert ids(type="zzz") == []
    # Through the app, with a bad status refused by name.
    assert [j.id for j in app.list_jobs(status="queued", queue="q2")] == [jobs[3].id]
    with pytest.raises(ValidationError, match="Unknown status 'bogus'"):
        app.list_jobs(status="bogus")


# -- migrations ----------------------------------------------------------------------------


def test_migrate_is_idempotent(store: SQLStore) -> None:
    dialect = "sqlite" if store.url.startswith("sqlite") else "postgres"
    latest = len(load_migrations(f"jobforge.store.{dialect}.migrations"))
    assert store.schema_version() == latest
    assert store.migrate() == latest
    assert store.migrate() == latest
    assert store.schema_version() == latest
    store.insert_jobs([new_job()])  # the schema still works, data untouched by re-migrating
    store.migrate()
    assert len(store.list_jobs(ListParams())) == 1


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no jobforge schema at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    server = request.getfixturevalue("pg_template")
    name = "jf_empty_" + uuid.uuid4().hex[:10]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield with_dbname(server, name)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_fresh_database_migrates_from_zero(empty_db_url: str) -> None:
    store = open_store(empty_db_url, migrate=False)
    try:
        assert store.schema_version() == 0
        version = store.migrate()
        assert version >= 1
        assert store.schema_version() == version
        assert store.migrate() == version
    finally:
        store.close()


def test_concurrent_first_starts_agree_on_the_schema(empty_db_url: str) -> None:
    """Several workers starting at once on a database nobody has migrated yet."""
    versions: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        try:
            barrier.wait()
            store = open_store(empty_db_url, migrate=False)
            try:
                versions.append(store.migrate())
            finally:
                store.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(versions) == 6 and len(set(versions)) == 1 and versions[0] >= 1
    store = open_store(empty_db_url)
    try:
        store.insert_jobs([new_job()])
        assert len(store.list_jobs(ListParams())) == 1
    finally:
        store.close()


def test_sqlite_open_waits_while_a_new_file_is_being_written(tmp_path: Path) -> None:
    """Switching a new file to WAL while another connection holds its write lock fails at
    once in SQLite ("database is locked", no busy wait); opening the store must wait instead."""
    path = tmp_path / "busy.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("CREATE TABLE unrelated (x)")
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO unrelated VALUES (1)")
        releaser = threading.Timer(0.3, other.execute, ("COMMIT",))
        releaser.start()
        started = time.monotonic()
        store = open_store(f"sqlite:///{path}")
        try:
            assert time.monotonic() - started >= 0.25
            assert store.schema_version() >= 1
            store.insert_jobs([new_job()])
            assert len(store.list_jobs(ListParams())) == 1
        finally:
            store.close()
        releaser.join()
    finally:
        other.close()
