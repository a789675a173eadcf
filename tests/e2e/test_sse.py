"""GET /events against a real `jobforge serve`: feed order, resuming with Last-Event-ID
without loss or duplicates, filters, tenants, wake-up latency, and (on PostgreSQL) a
transaction that commits after a later one.

Every received sequence is compared with the `jobforge_events` table, read directly."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg

from jobforge import apikeys
from jobforge.store.factory import open_store
from tests.e2e.helpers import sql, wait_until
from tests.e2e.serving import SERVE_APP, Event, EventStream, Servers

ALL = "jobs:read,jobs:write,workflows:read,workflows:write"
FINISHED = {"succeeded", "failed", "cancelled", "skipped", "completed", "compensated"}
Stored = tuple[str, str, str, str]  # (event id, kind, object, status)


def key(db_url: str, tenant: str, permissions: str = ALL) -> str:
    """A new API key's token (made in-process: the CLI's own tests are in test_serve)."""
    store = open_store(db_url)
    try:
        return apikeys.create(store, tenant, permissions.split(","))[1]
    finally:
        store.close()


def stored(db_url: str, tenant: str | None = "acme") -> list[Stored]:
    """The feed as the database holds it, in feed order: (id, kind, object, status)."""
    txid = "0" if db_url.startswith("sqlite") else "txid::text"
    order = "id" if db_url.startswith("sqlite") else "txid, id"
    where = "" if tenant is None else f"WHERE tenant_id = '{tenant}'"
    rows = sql(
        db_url,
        f"SELECT {txid}, id, kind, object_id, status FROM jobforge_events {where} ORDER BY {order}",
    )
    prefix = {"job": "job_", "workflow": "wf_", "run": "run_"}
    return [
        (f"{t}-{i}", str(k), prefix[str(k)] + uuid.UUID(str(o)).hex, str(s))
        for t, i, k, o, s in rows
    ]


def seen(events: list[Event]) -> list[Stored]:
    return [(e.id, e.kind, e.object, e.data["status"]) for e in events]


def check_order(events: list[Event]) -> None:
    cursors = [e.cursor for e in events]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors), cursors
    for e in events:
        assert e.data["id"] == e.id and e.data["kind"] == e.kind
        assert e.data["at"].endswith("Z")


def api(client: httpx.Client, method: str, path: str, status: int, **kw: Any) -> dict[str, Any]:
    response = client.request(method, path, **kw)
    assert response.status_code == status, f"{method} {path}: {response.text}"
    body: dict[str, Any] = response.json()
    return body


def final(
    client: httpx.Client, path: str, done: Callable[[str], bool] = FINISHED.__contains__
) -> str:
    def check() -> str | None:
        status = str(api(client, "GET", path, 200)["status"])
        return status if done(status) else None

    return wait_until(check, 20, f"{path} to finish")


def echo(client: httpx.Client, **extra: Any) -> str:
    body = {"type": "echo", "payload": {"n": 1}, **extra}
    return str(api(client, "POST", "/jobs", 202, json=body)["job_id"])


def workflow(client: httpx.Client, delay: float = 0) -> str:
    jobs = [{"name": "a", "type": "echo", "delay": delay},
            {"name": "b", "type": "echo", "depends_on": ["a"]}]  # fmt: skip
    return str(
        api(client, "POST", "/workflows", 201, json={"name": "w", "jobs": jobs})["workflow_id"]
    )


def start_run(client: httpx.Client, name: str, data: dict[str, Any]) -> str:
    return str(api(client, "POST", f"/runs/{name}/start", 201, json={"input": data})["run_id"])


# -- order and resume ------------------------------------------------------------------------
def test_events_in_feed_order_and_a_reconnect_misses_nothing(db_url: str, servers: Servers) -> None:
    token = key(db_url, "acme")
    server = servers.start(db_url, "--app", SERVE_APP, "--with-worker")
    with server.client(token) as c:
        first = EventStream(c)
        job = echo(c)
        got = first.until(lambda e: e.object == job and e.data["status"] == "succeeded")
        assert [(e.kind, e.object, e.data["status"]) for e in got] == [
            ("job", job, "queued"), ("job", job, "running"), ("job", job, "succeeded"),
        ]  # fmt: skip
        assert got[0].data["workflow_id"] is None and got[-1].data["progress"] == 100
        assert first.retry == 1000  # the reconnect delay the server asks for

        wf, run = workflow(c), start_run(c, "greet", {"who": "sse"})
        got += first.take(2)  # then hang up in the middle of these
        first.close()
        # Changes while no one listens: the workflow and run finish, more jobs come and go.
        cancelled = echo(c, delay=3600)
        api(c, "POST", f"/jobs/{cancelled}/cancel", 200)
        assert final(c, f"/workflows/{wf}") == "succeeded"
        assert final(c, f"/runs/{run}") == "completed"
        # One at a time, each to an idle worker: a worker that claims a job in the transaction
        # that finishes another shows it running before created (see the last test).
        more = []
        for _ in range(3):
            more.append(echo(c))
            assert final(c, f"/jobs/{more[-1]}") == "succeeded"

        expected = stored(db_url)
        with EventStream(c, last_event_id=got[-1].id) as second:
            got += second.take(len(expected) - len(got))
            assert seen(got) == expected  # nothing missed, nothing twice, in feed order
            check_order(got)
            # Nothing more is pending: the next event is a new change's.
            latest = echo(c, delay=3600)
            assert seen([second.next()]) == [(stored(db_url)[-1][0], "job", latest, "scheduled")]

    statuses: dict[str, list[str]] = {}
    for e in got:
        statuses.setdefault(e.object, []).append(e.data["status"])
    assert statuses[cancelled] == ["scheduled", "cancelled"]
    assert statuses[wf] == ["pending", "running", "succeeded"]
    assert statuses[run][0] == "created" and statuses[run][-1] == "completed"
    for j in more:
        assert statuses[j] == ["queued", "running", "succeeded"]
    wf_jobs = {e.object for e in got if e.kind == "job" and e.data["workflow_id"] == wf}
    assert len(wf_jobs) == 2 and all(statuses[j][-1] == "succeeded" for j in wf_jobs)


# -- filters and tenants ----------------------------------------------------------------------
def test_filters_and_tenants_see_only_their_events(db_url: str, servers: Servers) -> None:
    acme, globex = key(db_url, "acme"), key(db_url, "globex", "admin")
    server = servers.start(db_url, "--app", SERVE_APP, "--with-worker")
    with server.client(token=acme) as c, server.client(token=globex) as g:
        # Noise that finishes first: another job, workflow and run of the same tenant.
        noise = [echo(c), workflow(c), start_run(c, "greet", {})]
        # The watched objects, which stay put until the test moves them.
        job = echo(c, delay=3600)
        wf = workflow(c, delay=3600)
        run = start_run(c, "approval", {})
        for path in (f"/jobs/{noise[0]}", f"/workflows/{noise[1]}", f"/runs/{noise[2]}"):
            final(c, path)
        final(c, f"/runs/{run}", lambda status: status == "waiting")

        # Another tenant's objects do not exist for globex, also as filters.
        for name, ref in (("job_id", job), ("workflow_id", wf), ("run_id", run)):
            refused = g.get("/events", params={name: ref})
            assert refused.status_code == 404, refused.text
            assert refused.json()["error"]["code"] == f"{name.removesuffix('_id')}_not_found"
        assert c.get("/events", params={"job_id": job, "run_id": run}).status_code == 422
        assert c.get("/events", headers={"Last-Event-ID": "nope"}).status_code == 422

        # Streams from the very beginning ("0-0"): each replays what matches, then goes on.
        streams = {
            "all": EventStream(c, last_event_id="0-0"),
            "job": EventStream(c, last_event_id="0-0", job_id=job),
            "workflow": EventStream(c, last_event_id="0-0", workflow_id=wf),
            "run": EventStream(c, last_event_id="0-0", run_id=run),
            "globex": EventStream(g, last_event_id="0-0"),
        }
        try:

            def delivered(name: str, matches: Callable[[Stored], bool], latest: bool) -> None:
                """The stream got exactly the matching events; with `latest`, the last of
                them is the latest of all, so a stray event would have come before it."""
                everything = stored(db_url)
                expected = [s for s in everything if matches(s)]
                assert not latest or expected[-1] == everything[-1]
                got = streams[name].take(len(expected))
                check_order(got)
                assert seen(got) == expected, name

            # The run first: its job's own events come after the run's last one.
            api(c, "POST", f"/runs/{run}/events/approved", 202, json={"by": "sse"})
            assert final(c, f"/runs/{run}") == "completed"
            assert final(c, f"/jobs/{run.replace('run_', 'job_')}") == "succeeded"
            delivered("run", lambda s: s[1] == "run" and s[2] == run, latest=False)
            api(c, "POST", f"/jobs/{job}/cancel", 200)
            delivered("job", lambda s: s[2] == job, latest=True)
            api(c, "POST", f"/workflows/{wf}/cancel", 200)
            listed = api(c, "GET", "/jobs", 200, params={"workflow_id": wf})["jobs"]
            wf_jobs = {j["job_id"] for j in listed}
            assert len(wf_jobs) == 2
            delivered("workflow", lambda s: s[2] == wf or s[2] in wf_jobs, latest=True)
            delivered("all", lambda s: True, latest=True)

            # globex saw none of it: the first event it gets is of its own job, made last.
            own = echo(g)
            got = streams["globex"].until(lambda e: e.data["status"] == "succeeded")
            assert {e.object for e in got} == {own}
            assert seen(got) == stored(db_url, "globex")
            # No acme stream got anything more: neither globex's events nor, for the run
            # stream, its job's (a stray event would come within a few milliseconds).
            streams["run"].quiet_for(0.5)
            for name in ("all", "job", "workflow"):
                streams[name].quiet_for(0.01)
            # Nor a keep-alive: it is due after 15 quiet seconds, however often others' changes
            # wake the stream.
            assert {name: s.comments for name, s in streams.items()} == dict.fromkeys(streams, 0)
        finally:
            for stream in streams.values():
                stream.close()


# -- latency ------------------------------------------------------------------------------------
def test_an_event_arrives_at_once(db_url: str, servers: Servers) -> None:
    """The listener wakes the stream: no waiting for the fallback re-read (0.5 s on
    PostgreSQL, 15 s on SQLite)."""
    server = servers.start(db_url, "--app", SERVE_APP)
    with server.client(key(db_url, "acme")) as c, EventStream(c) as stream:
        latencies = []
        for _ in range(7):
            sent = time.monotonic()
            job = echo(c)
            event = stream.next(5)
            assert event.object == job
            latencies.append(event.received - sent)
    assert max(latencies) < 1.0, latencies
    assert statistics.median(latencies) < 0.15, latencies


# -- PostgreSQL: commit order is not txid order ---------------------------------------------------
def test_a_transaction_that_commits_late_is_not_skipped(pg_url: str, servers: Servers) -> None:
    """An event's transaction id is taken when it starts writing; one that began earlier
    can commit later. The feed holds later events back until it has, so a client that
    resumes from its last id never skips it."""
    server = servers.start(pg_url, "--app", SERVE_APP)
    with server.client(key(pg_url, "acme")) as c:
        jobs = [echo(c, delay=3600) for _ in range(5)]
        stream = EventStream(c)

        def cancel_in_sql(conn: psycopg.Connection[Any], job: str) -> int:
            """Cancel `job` in `conn`'s open transaction; its transaction id."""
            conn.execute(
                "UPDATE jobforge_jobs SET status = 'cancelled', updated_at = now() WHERE id = %s",
                (uuid.UUID(job.removeprefix("job_")),),
            )
            return int(conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0])

        def checked(got: list[Event], expected: list[tuple[str, int]]) -> None:
            check_order(got)
            assert [(e.object, e.cursor[0]) for e in got] == expected
            assert all(e.data["status"] == "cancelled" for e in got)

        with psycopg.connect(pg_url) as early, psycopg.connect(pg_url) as late:
            # `early` takes its transaction id first and commits last.
            t0 = cancel_in_sql(early, jobs[0])
            t1 = cancel_in_sql(late, jobs[1])
            late.commit()
            assert t0 < t1
            stream.quiet_for(1.2)  # held back: delivering t1 now would skip t0 on resume
            early.commit()
            got = stream.take(2)
            checked(got, [(jobs[0], t0), (jobs[1], t1)])

            # The same across a reconnect: hang up while an early transaction is open.
            t2 = cancel_in_sql(early, jobs[2])
            t3 = cancel_in_sql(late, jobs[3])
            late.commit()
            api(c, "POST", f"/jobs/{jobs[4]}/cancel", 200)  # committed, after t2 as well
            stream.quiet_for(0.6)
            stream.close()
            resumed = EventStream(c, last_event_id=got[-1].id)
            resumed.quiet_for(0.6)
            early.commit()
            more = resumed.take(3)
            assert [e.object for e in more] == [jobs[2], jobs[3], jobs[4]]
            checked(more[:2], [(jobs[2], t2), (jobs[3], t3)])
            resumed.close()
    assert seen(got + more) == stored(pg_url)[5:]  # after the five "scheduled" events
