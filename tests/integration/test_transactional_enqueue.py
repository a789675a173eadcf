"""`enqueue(..., connection=conn)`: the job is written in the caller's own transaction."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator

import psycopg
import pytest

from jobforge import Forge, JobContext, JobSpec, JobStatus, Worker, WorkerConfig
from jobforge.testing import run_until_idle


def make_app(url: str) -> Forge:
    app = Forge(url)

    @app.job
    def ship(ctx: JobContext, order_id: int) -> str:
        return f"shipped {order_id}"

    app.store  # noqa: B018 - open and migrate before the caller's connection writes
    return app


@pytest.fixture
def sqlite_app(sqlite_url: str) -> Iterator[Forge]:
    app = make_app(sqlite_url)
    yield app
    app.close()


@pytest.fixture
def pg_app(pg_url: str) -> Iterator[Forge]:
    app = make_app(pg_url)
    yield app
    app.close()


def test_sqlite_rollback_discards_the_job_and_commit_keeps_it(
    sqlite_app: Forge, sqlite_url: str
) -> None:
    app = sqlite_app
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=10)
    try:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        conn.commit()

        conn.execute("INSERT INTO orders VALUES (1)")
        dropped = app.enqueue("ship", {"order_id": 1}, connection=conn)
        assert conn.in_transaction
        assert app.get_job(dropped) is None  # not visible to anyone else before commit
        conn.rollback()
        assert app.get_job(dropped) is None
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0

        conn.execute("INSERT INTO orders VALUES (2)")
        kept = app.enqueue("ship", {"order_id": 2}, connection=conn)
        batch = app.enqueue_many(
            [JobSpec("ship", {"order_id": 3}), JobSpec("ship", {"order_id": 4})], connection=conn
        )
        assert app.list_jobs() == []
        conn.commit()
    finally:
        conn.close()

    job = app.get_job(kept)
    assert job is not None and job.status == JobStatus.QUEUED
    assert job.payload == {"order_id": 2}
    assert len(app.list_jobs()) == 3
    stats = run_until_idle(app, poll_interval=0.05)
    assert stats.finished == {"succeeded": 3}
    assert [app.get_job(j).result for j in [kept, *batch]] == [  # type: ignore[union-attr]
        "shipped 2",
        "shipped 3",
        "shipped 4",
    ]
    assert app.get_job(dropped) is None


def test_postgres_rollback_discards_the_job_and_commit_keeps_it(pg_app: Forge, pg_url: str) -> None:
    app = pg_app
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE orders (id integer PRIMARY KEY)")
        conn.commit()

        conn.execute("INSERT INTO orders VALUES (1)")
        dropped = app.enqueue("ship", {"order_id": 1}, connection=conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert app.get_job(dropped) is None  # not visible to anyone else before commit
        conn.rollback()
        assert app.get_job(dropped) is None
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0  # type: ignore[index]

        conn.execute("INSERT INTO orders VALUES (2)")
        kept = app.enqueue("ship", {"order_id": 2}, connection=conn)
        batch = app.enqueue_many(
            [JobSpec("ship", {"order_id": 3}), JobSpec("ship", {"order_id": 4})], connection=conn
        )
        assert app.list_jobs() == []
        conn.commit()

    job = app.get_job(kept)
    assert job is not None and job.status == JobStatus.QUEUED
    assert job.payload == {"order_id": 2}
    assert len(app.list_jobs()) == 3
    stats = run_until_idle(app, poll_interval=0.05)
    assert stats.finished == {"succeeded": 3}
    assert [app.get_job(j).result for j in [kept, *batch]] == [  # type: ignore[union-attr]
        "shipped 2",
        "shipped 3",
        "shipped 4",
    ]
    assert app.get_job(dropped) is None


def test_postgres_commit_wakes_a_listening_worker(pg_app: Forge, pg_url: str) -> None:
    """The NOTIFY sent inside the caller's transaction is delivered at its commit."""
    app = pg_app
    producer = make_app(pg_url)  # another process's app: no in-process wake-up

    async def main() -> float:
        # A long poll interval: only the notification can wake the worker quickly.
        worker = Worker(app, WorkerConfig(poll_interval=30.0, grace_period=1.0))
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.5)  # let the worker start listening and go idle

        def write() -> str:
            with psycopg.connect(pg_url) as conn:
                job_id = producer.enqueue("ship", {"order_id": 9}, connection=conn)
                conn.commit()
            return job_id

        job_id = await asyncio.to_thread(write)
        committed = time.monotonic()
        try:
            while True:
                job = await asyncio.to_thread(app.get_job, job_id)
                if job is not None and job.status == JobStatus.SUCCEEDED:
                    return time.monotonic() - committed
                assert time.monotonic() - committed < 10
                await asyncio.sleep(0.02)
        finally:
            worker.request_stop()
            await task

    try:
        assert asyncio.run(main()) < 5
    finally:
        producer.close()
