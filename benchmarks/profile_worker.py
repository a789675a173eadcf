"""Profile the processing path: one in-process worker draining N no-op jobs.

    python benchmarks/profile_worker.py --backend sqlite --jobs 10000
    python benchmarks/profile_worker.py --backend postgres --jobs 10000 --cprofile-out /tmp/pg.prof

Reports, for the timed run:
- the store verbs the worker called (count, batch sizes, time),
- every named query (count, total and mean execution time) and every transaction
  (time to BEGIN / take the write lock, body, COMMIT), so commits per second are exact,
- a cProfile of every thread (event loop, DB threads, handler threads), merged and per
  thread group, sorted by own time.

The figures are slower than `run.py`'s: deterministic profiling costs a lot of CPU. Run it
with `--no-cprofile` to get the query and transaction timings at close to full speed, or
under a sampler (`py-spy record --threads --idle -- python benchmarks/profile_worker.py
--no-cprofile ...`) for wall-clock stacks.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import resource
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import run  # noqa: E402

from jobforge import Forge, Worker, WorkerConfig  # noqa: E402


class SQLTimer:
    """Times each named query and each transaction of one store instance."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queries: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        self.tx: list[tuple[float, float, float]] = []  # begin, body, commit (seconds)
        self.executemany: list[float] = [0, 0.0]

    def attach(self, app: Forge) -> None:
        store = app.store
        orig_run = store._run
        orig_tx = store._tx
        timer = self

        def timed_run(cur: Any, name: str, **params: Any) -> Any:
            t0 = time.perf_counter()
            out = orig_run(cur, name, **params)
            dt = time.perf_counter() - t0
            with timer.lock:
                q = timer.queries[name]
                q[0] += 1
                q[1] += dt
            return out

        @contextmanager
        def timed_tx() -> Iterator[Any]:
            cm: AbstractContextManager[Any] = orig_tx()
            t0 = time.perf_counter()
            cur = cm.__enter__()
            t1 = time.perf_counter()
            try:
                yield cur
            except BaseException:
                if not cm.__exit__(*sys.exc_info()):
                    raise
                return
            t2 = time.perf_counter()
            cm.__exit__(None, None, None)
            t3 = time.perf_counter()
            with timer.lock:
                timer.tx.append((t1 - t0, t2 - t1, t3 - t2))

        store._run = timed_run  # type: ignore[method-assign]
        store._tx = timed_tx  # type: ignore[method-assign]

    def report(self, elapsed: float) -> str:
        lines = ["named queries (inside transactions; execute + fetch of RETURNING rows):"]
        lines.append(f"  {'query':<16} {'count':>7} {'total s':>8} {'mean ms':>8} {'% of run':>8}")
        for name, (count, total) in sorted(self.queries.items(), key=lambda kv: -kv[1][1]):
            lines.append(
                f"  {name:<16} {int(count):>7} {total:>8.3f} {1000 * total / count:>8.3f} "
                f"{100 * total / elapsed:>7.1f}%"
            )
        if self.tx:
            n = len(self.tx)
            begin = sum(t[0] for t in self.tx)
            body = sum(t[1] for t in self.tx)
            commit = sum(t[2] for t in self.tx)
            lines.append(
                f"transactions: {n} ({n / elapsed:,.0f}/s); mean begin/lock wait "
                f"{1000 * begin / n:.3f} ms, body {1000 * body / n:.3f} ms, "
                f"commit {1000 * commit / n:.3f} ms; total {begin + body + commit:.2f} s "
                f"= {100 * (begin + body + commit) / elapsed:.0f}% of the run"
            )
        return "\n".join(lines)


class ThreadProfiler:
    """cProfile in every thread: the main thread now, every new thread as it starts."""

    def __init__(self) -> None:
        self.profiles: list[tuple[str, cProfile.Profile]] = []
        self.lock = threading.Lock()

    def _hook(self, frame: Any, event: str, arg: Any) -> None:
        sys.setprofile(None)
        prof = cProfile.Profile()
        with self.lock:
            self.profiles.append((threading.current_thread().name, prof))
        prof.enable()

    def start(self) -> None:
        main = cProfile.Profile()
        self.profiles.append(("MainThread", main))
        threading.setprofile(self._hook)
        main.enable()

    def stop(self) -> None:
        threading.setprofile(None)  # type: ignore[arg-type]
        self.profiles[0][1].disable()
        time.sleep(0.2)  # let the worker's executor threads exit

    def stats(self, group: str | None = None) -> pstats.Stats | None:
        selected = [p for name, p in self.profiles if group is None or _group(name) == group]
        if not selected:
            return None
        out = pstats.Stats(selected[0], stream=io.StringIO())
        for prof in selected[1:]:
            out.add(prof)
        return out

    def groups(self) -> list[str]:
        return sorted({_group(name) for name, _ in self.profiles})


def _group(thread_name: str) -> str:
    for prefix in ("jobforge-db", "jobforge-job", "jobforge-sqlite-listener", "jobforge-pg"):
        if thread_name.startswith(prefix):
            return prefix
    return "MainThread (event loop)" if thread_name == "MainThread" else thread_name


def top(stats: pstats.Stats, n: int, key: str = "tottime") -> str:
    buf = io.StringIO()
    stats.stream = buf  # type: ignore[attr-defined]
    stats.sort_stats(key).print_stats(n)
    text = buf.getvalue()
    start = text.find("   ncalls")
    return text[start:] if start >= 0 else text


def _cpu_seconds(backend: run.Backend) -> tuple[float, float]:
    """CPU time used so far by this process, and by the embedded PostgreSQL server."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    ours = usage.ru_utime + usage.ru_stime
    server = 0.0
    pid = backend.server_pid() if isinstance(backend, run.PostgresBackend) else None
    if pid is not None:
        import psutil

        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                server += t.user + t.system
            except psutil.Error:
                pass
    return ours, server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--prefetch", type=int, default=None)
    p.add_argument("--handler", choices=("sync", "async"), default="sync")
    p.add_argument("--pg-url", default=None)
    p.add_argument("--tmpdir", default=None)
    p.add_argument("--top", type=int, default=25, help="functions shown per profile")
    p.add_argument("--analyze", action="store_true", help="ANALYZE the jobs table after seeding")
    p.add_argument("--no-cprofile", action="store_true", help="timings only, near full speed")
    p.add_argument("--cprofile-out", default=None, help="dump the merged profile here")
    args = p.parse_args(argv)

    import tempfile

    tmp = Path(args.tmpdir or tempfile.gettempdir())
    backend: run.Backend = (
        run.SQLiteBackend(tmp)
        if args.backend == "sqlite"
        else run.PostgresBackend(tmp, args.pg_url)
    )
    type_name = "noop" if args.handler == "sync" else "noop_async"
    try:
        with run.fresh(backend) as (url, app):
            run._seed(app, type_name, args.jobs)
            if args.analyze:
                backend.query(url, "ANALYZE jobforge_jobs")
            probe = run.Probe.attach(app)
            timer = SQLTimer()
            timer.attach(app)
            config = WorkerConfig(concurrency=args.concurrency, burst=True, prefetch=args.prefetch)
            worker = Worker(app, config)
            profiler = ThreadProfiler()
            if not args.no_cprofile:
                profiler.start()
            cpu0 = _cpu_seconds(backend)
            t0 = time.time()
            stats = asyncio.run(worker.run())
            cpu1 = _cpu_seconds(backend)
            if not args.no_cprofile:
                profiler.stop()
            _, _first, last_done, error = run._verify(backend, url, args.jobs)
            elapsed = last_done - t0
    finally:
        backend.close()

    print(f"backend={args.backend} jobs={args.jobs} concurrency={args.concurrency} "
          f"prefetch={args.prefetch} handler={args.handler} analyze={args.analyze} "
          f"cprofile={not args.no_cprofile}")  # fmt: skip
    if error:
        print(f"VERIFICATION FAILED: {error}")
    print(f"worker start -> last done: {elapsed:.2f} s = {args.jobs / elapsed:,.0f} jobs/s "
          f"(worker stats: {stats.finished})")  # fmt: skip
    cpu = f"CPU: this process {cpu1[0] - cpu0[0]:.2f} s"
    if cpu1[1]:
        cpu += f", PostgreSQL server {cpu1[1] - cpu0[1]:.2f} s (long-lived backends only)"
    print(cpu + f", over {elapsed:.2f} s of wall time on {run.machine_facts()['nproc']} CPUs")
    s = probe.summary(elapsed)
    print(
        f"claim batches {s['claims']} ({s['empty_claims']} empty), mean {s['claim_batch']:.2f} "
        f"jobs; finish batches {s['flushes']}, mean {s['finish_batch']:.2f} outcomes; "
        f"store calls: claim_jobs {probe.calls.get('claim_jobs', 0)} ({s['claim_ms']:.2f} ms "
        f"each), finish_jobs {probe.calls.get('finish_jobs', 0)} ({s['finish_ms']:.2f} ms), "
        f"finish_and_claim {s['combined']} ({s['combined_ms']:.2f} ms), next_due_at "
        f"{s['next_due_at']}; write transactions {s['write_tx']} = {s['write_tx_per_s']:,.0f}/s;"
        f" DB threads busy {100 * s['db_busy']:.0f}% of the run (sum over 2 threads)"
    )
    print(timer.report(elapsed))
    if not args.no_cprofile:
        merged = profiler.stats()
        assert merged is not None
        if args.cprofile_out:
            merged.dump_stats(args.cprofile_out)
        print("\n== all threads, by own time ==")
        print(top(merged, args.top))
        for group in profiler.groups():
            g = profiler.stats(group)
            if g is None:
                continue
            print(f"\n== {group}, by own time ==")
            print(top(g, min(args.top, 15)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
