"""Workflow (DAG) benchmarks, run by `benchmarks/run.py --only ...,dag --dag chain,fanout,big`.

- **chain**: one workflow of N jobs, each depending on the one before (`add(h0).then(h1)...`),
  one in-process worker in burst mode. Per hop: the run (worker start -> last job's
  `completed_at`) / N, and the stored gap child `started_at` - parent `completed_at`.
- **fanout**: one root, N children of the root, one fan-in job depending on all N; seconds
  from worker start to the fan-in's `completed_at`.
- **big**: `app.enqueue_workflow` of a workflow of N jobs where each job depends on one
  random earlier job among the previous W (seeded). Built and enqueued in a fresh
  subprocess (`python benchmarks/dag.py enqueue-big URL ...`), so its peak RSS
  (`ru_maxrss`) is that of the build plus the enqueue alone.

Every job must end `succeeded` (chain, fanout), the fan-in must start after every other job
completed, and the big workflow must hold N jobs and N - 1 edges.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_app import build, fresh  # noqa: E402

from jobforge import Forge, JobSpec, Worker, WorkerConfig  # noqa: E402
from jobforge.workflows.dag import Workflow  # noqa: E402

KINDS = ("chain", "fanout", "big")
TARGETS = {  # (backend, metric) -> upper bound
    ("sqlite", "hop_ms"): 1.0,
    ("postgres", "hop_ms"): 2.0,
    ("sqlite", "fanout_s"): 1.0,
    ("postgres", "fanout_s"): 1.0,
    ("sqlite", "big_s"): 5.0,
    ("postgres", "big_s"): 5.0,
    ("sqlite", "big_mb"): 500.0,
    ("postgres", "big_mb"): 500.0,
}
STRICT = {"big_s", "big_mb"}  # "< target" (the others are "<= target")


class Backend(Protocol):
    name: str

    def new_url(self) -> str: ...

    def drop(self, url: str) -> None: ...

    def query(self, url: str, sql: str) -> list[tuple[Any, ...]]: ...


def _pct(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


def _ms(a: datetime | None, b: datetime | None) -> float:
    if a is None or b is None:
        return float("nan")
    return 1000 * (a - b).total_seconds()


def _run_worker(app: Forge, concurrency: int) -> tuple[float, float, Any]:
    """One in-process burst worker; (epoch at its start, wall seconds, its stats)."""
    worker = Worker(app, WorkerConfig(concurrency=concurrency, burst=True))
    t0 = time.time()
    stats = asyncio.run(worker.run())
    return t0, time.time() - t0, stats


CHAIN_KEYS = ("run_s", "run_hop_ms", "window_hop_ms", "gap_p50_ms", "gap_p99_ms", "gap_max_ms",
              "wall")  # fmt: skip
FANOUT_KEYS = ("seconds", "children_s", "fanin_gap_ms", "root_s", "wall")
BIG_KEYS = ("build_s", "enqueue_s", "rss_start_mb", "rss_built_mb", "peak_built_mb", "peak_mb")


def _failure(errors: list[str], keys: tuple[str, ...], **known: Any) -> dict[str, Any]:
    """A run that could not be measured: every figure NaN, the error kept."""
    print(f"FAILED: {'; '.join(errors)}", file=sys.stderr)
    return {"error": "; ".join(errors), **dict.fromkeys(keys, float("nan")), **known}


def _check_statuses(app: Forge, wf_id: str, jobs: list[Any], n: int) -> list[str]:
    errors = []
    statuses: dict[str, int] = {}
    for j in jobs:
        statuses[str(j.status)] = statuses.get(str(j.status), 0) + 1
    if statuses != {"succeeded": n}:
        errors.append(f"expected {n} succeeded, found {statuses}")
    record = app.get_workflow(wf_id)
    if record is None or record.status != "succeeded":
        errors.append(f"workflow {None if record is None else record.status}, not succeeded")
    return errors


# -- chain ----------------------------------------------------------------------------------------
def bench_chain(backend: Backend, n: int, concurrency: int) -> dict[str, Any]:
    """A workflow `h0 -> h1 -> ... -> h{n-1}`, run by one burst worker."""
    wf = Workflow("bench-chain").add(JobSpec("noop", {"i": 0}), name="h0")
    for i in range(1, n):
        wf.then(JobSpec("noop", {"i": i}), name=f"h{i}")
    with fresh(backend) as (_, app):
        wf_id = app.enqueue_workflow(wf)
        t0, wall, stats = _run_worker(app, concurrency)
        jobs = {j.name: j for j in app.workflow_jobs(wf_id)}
        errors = _check_statuses(app, wf_id, list(jobs.values()), n)
    found = [jobs.get(f"h{i}") for i in range(n)]
    chain = [j for j in found if j is not None]
    if len(chain) != n:
        errors.append("jobs missing from the workflow")
        return _failure(errors, CHAIN_KEYS, jobs=n, concurrency=concurrency)
    gaps = sorted(_ms(c.started_at, p.completed_at) for p, c in itertools.pairwise(chain))
    if gaps and gaps[0] < 0:
        bad = sum(1 for g in gaps if g < 0)
        errors.append(f"{bad} jobs started before their parent completed (min {gaps[0]:.2f} ms)")
    last, first = chain[-1].completed_at, chain[0].started_at
    run_s = last.timestamp() - t0 if last else float("nan")
    if errors:
        print(f"[{backend.name}] dag chain FAILED: {'; '.join(errors)}", file=sys.stderr)
    return {
        "error": "; ".join(errors),
        "jobs": n,
        "concurrency": concurrency,
        "run_s": run_s,  # worker start -> last job's completed_at
        "run_hop_ms": 1000 * run_s / n,
        "window_hop_ms": 1000 * (last - first).total_seconds() / (n - 1) if last and first else 0,
        "gap_p50_ms": statistics.median(gaps) if gaps else float("nan"),
        "gap_p99_ms": _pct(gaps, 99) if gaps else float("nan"),
        "gap_max_ms": gaps[-1] if gaps else float("nan"),
        "wall": wall,
        "claimed": stats.claimed,
    }


# -- fan-out / fan-in -----------------------------------------------------------------------------
def bench_fanout(backend: Backend, n: int, concurrency: int) -> dict[str, Any]:
    """`root` -> `c0..c{n-1}` -> `fanin` (depends on all n), run by one burst worker."""
    wf = Workflow("bench-fanout").add(JobSpec("noop", {"i": -1}), name="root")
    children = [f"c{i}" for i in range(n)]
    for i, name in enumerate(children):
        wf.add(JobSpec("noop", {"i": i}), name=name, depends_on=["root"])
    wf.add(JobSpec("noop", {"i": n}), name="fanin", depends_on=children)
    with fresh(backend) as (_, app):
        wf_id = app.enqueue_workflow(wf)
        t0, wall, _ = _run_worker(app, concurrency)
        jobs = {j.name: j for j in app.workflow_jobs(wf_id)}
        errors = _check_statuses(app, wf_id, list(jobs.values()), n + 2)
    fanin, root = jobs.get("fanin"), jobs.get("root")
    if fanin is None or root is None or fanin.completed_at is None:
        errors.append("fan-in job missing or not completed")
        return _failure(errors, FANOUT_KEYS, jobs=n, concurrency=concurrency)
    others = [j for name, j in jobs.items() if name != "fanin"]
    last_other = max((j.completed_at for j in others if j.completed_at), default=None)
    if fanin.started_at is None or last_other is None or fanin.started_at < last_other:
        errors.append(f"fan-in started {fanin.started_at}, before the last child done {last_other}")
    starts = [j.started_at for j in others if j.name != "root" and j.started_at is not None]
    first_child = min(starts, default=None)
    if errors:
        print(f"[{backend.name}] dag fanout FAILED: {'; '.join(errors)}", file=sys.stderr)
    return {
        "error": "; ".join(errors),
        "jobs": n,
        "concurrency": concurrency,
        "seconds": fanin.completed_at.timestamp() - t0,  # worker start -> fan-in done
        "children_s": _ms(last_other, first_child) / 1000,  # first child start -> last done
        "fanin_gap_ms": _ms(fanin.started_at, last_other),  # last child done -> fan-in start
        "root_s": root.started_at.timestamp() - t0 if root.started_at else float("nan"),
        "wall": wall,
    }


# -- a big workflow -------------------------------------------------------------------------------
def build_big(n: int, window: int, seed: int) -> Workflow:
    """n jobs; job i > 0 depends on one random job among the `window` before it."""
    rng = random.Random(seed)
    wf = Workflow("bench-big").add(JobSpec("noop", {"i": 0}), name="j0")
    for i in range(1, n):
        parent = rng.randrange(max(0, i - window), i)
        wf.add(JobSpec("noop", {"i": i}), name=f"j{i}", depends_on=[f"j{parent}"])
    return wf


def _rss_mb() -> float:
    """Resident set size now, MB (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _peak_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb / 1024 if sys.platform != "darwin" else kb / 1024 / 1024


def enqueue_big_main(argv: list[str]) -> int:
    """Subprocess entry: build, then time `enqueue_workflow`; prints one JSON line."""
    p = argparse.ArgumentParser(prog="dag.py enqueue-big")
    p.add_argument("url")
    p.add_argument("--jobs", type=int, required=True)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    app = build(a.url)
    app.store  # noqa: B018 - connect (and check migrations) outside the timings
    rss_start = _rss_mb()
    t0 = time.perf_counter()
    wf = build_big(a.jobs, a.window, a.seed)
    build_s = time.perf_counter() - t0
    rss_built, peak_built = _rss_mb(), _peak_mb()
    t0 = time.perf_counter()
    wf_id = app.enqueue_workflow(wf)
    enqueue_s = time.perf_counter() - t0
    peak = _peak_mb()
    app.close()
    out = {
        "workflow_id": wf_id, "build_s": build_s, "enqueue_s": enqueue_s,
        "rss_start_mb": rss_start, "rss_built_mb": rss_built, "peak_built_mb": peak_built,
        "peak_mb": peak,
    }  # fmt: skip
    print(json.dumps(out))
    return 0


def bench_big(backend: Backend, n: int, window: int, seed: int) -> dict[str, Any]:
    with fresh(backend) as (url, app):
        app.close()
        cmd = [sys.executable, str(Path(__file__).resolve()), "enqueue-big", url]
        cmd += ["--jobs", str(n), "--window", str(window), "--seed", str(seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            errors = [f"enqueue subprocess exited {proc.returncode}: {tail}"]
            return _failure(errors, BIG_KEYS, jobs=n, window=window, seed=seed, edges=0)
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        wf_hex = out["workflow_id"].removeprefix("wf_")
        where = _workflow_filter(backend.name, wf_hex)
        jobs = backend.query(url, f"SELECT count(*) FROM jobforge_jobs WHERE {where}")[0][0]
        edges = backend.query(url, f"SELECT count(*) FROM jobforge_edges WHERE {where}")[0][0]
        statuses = dict(
            backend.query(
                url, f"SELECT status, count(*) FROM jobforge_jobs WHERE {where} GROUP BY status"
            )
        )
    errors = []
    if (jobs, edges) != (n, n - 1):
        errors.append(f"expected {n} jobs and {n - 1} edges, found {jobs} and {edges}")
    if statuses != ({"queued": 1, "waiting": n - 1} if n > 1 else {"queued": 1}):
        errors.append(f"unexpected statuses {statuses}")
    if errors:
        print(f"[{backend.name}] dag big FAILED: {'; '.join(errors)}", file=sys.stderr)
    return {
        "error": "; ".join(errors), "jobs": n, "window": window, "seed": seed, "edges": edges,
        **out,
    }  # fmt: skip


def _workflow_filter(backend: str, wf_hex: str) -> str:
    """SQL condition selecting one workflow's rows (SQLite stores the UUID as text)."""
    text = str(uuid.UUID(wf_hex))
    return f"workflow_id = '{text}'::uuid" if backend == "postgres" else f"workflow_id = '{text}'"


# -- options, runs and rows -----------------------------------------------------------------------
def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dag", default=",".join(KINDS), help="workflow benchmarks (chain,fanout,big)")
    p.add_argument("--dag-chain", type=int, default=300, help="jobs in the chain workflow")
    p.add_argument("--dag-fanout", type=int, default=2_000, help="children of the fan-out")
    p.add_argument("--dag-big", type=int, default=100_000, help="jobs in the big workflow")
    p.add_argument("--dag-window", type=int, default=100, help="big: parent among the last W")
    p.add_argument("--dag-seed", type=int, default=1, help="big: random seed")


def run(
    backend: Backend,
    args: argparse.Namespace,
    median: Callable[..., dict[str, Any]],
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Every selected workflow benchmark, `args.repeat` times each (median kept)."""
    kinds = [k.strip() for k in args.dag.split(",") if k.strip()]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise SystemExit(f"unknown --dag benchmark(s): {', '.join(sorted(unknown))}")
    reps = range(args.repeat)
    out: list[dict[str, Any]] = []
    if "chain" in kinds:
        say(f"workflow chain of {args.dag_chain}")
        runs = [bench_chain(backend, args.dag_chain, args.concurrency) for _ in reps]
        out.append({"kind": "chain", **median(runs, "run_hop_ms")})
    if "fanout" in kinds:
        say(f"workflow fan-out of {args.dag_fanout} + fan-in")
        runs = [bench_fanout(backend, args.dag_fanout, args.concurrency) for _ in reps]
        out.append({"kind": "fanout", **median(runs, "seconds")})
    if "big" in kinds:
        say(f"enqueue a workflow of {args.dag_big:,} jobs")
        runs = [bench_big(backend, args.dag_big, args.dag_window, args.dag_seed) for _ in reps]
        out.append({"kind": "big", **median(runs, "enqueue_s")})
    return out


def _vs(backend: str, metric: str, value: float, unit: str) -> str:
    target = TARGETS.get((backend, metric))
    if target is None:
        return ""
    strict = metric in STRICT
    ok = value < target if strict else value <= target
    return f"{'meets' if ok else 'ABOVE'} {'<' if strict else '<='} {target:g} {unit}"


def _spread(r: dict[str, Any], fmt: str, unit: str) -> str:
    values = r.get("runs", [])
    if len(values) < 2:
        return ""
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return f"median of {len(values)} runs ({lo}-{hi}{unit}); "


def _failed(r: dict[str, Any], vs: str, detail: str) -> tuple[str, str]:
    if not r.get("errors"):
        return vs, detail
    return f"FAILED in {len(r['errors'])} of {len(r['runs'])} runs", f"{r['errors'][0]}; {detail}"


def table_rows(name: str, results: list[dict[str, Any]]) -> list[list[str]]:
    """[backend, benchmark, result, vs target / tail, detail] per figure."""
    rows: list[list[str]] = []
    for r in results:
        if r["kind"] == "chain":
            what = f"workflow chain of {r['jobs']:,} jobs (`add().then()...`), concurrency "
            what += f"{r['concurrency']}: run time / {r['jobs']:,}"
            vs = _vs(name, "hop_ms", r["run_hop_ms"], "ms")
            detail = _spread(r, "{:.2f}", " ms") + (
                f"{r['run_s']:.2f} s from worker start to last done; "
                f"{r['window_hop_ms']:.2f} ms per hop first start→last done"
            )
            rows.append([name, what, f"{r['run_hop_ms']:.2f} ms per hop", *_failed(r, vs, detail)])
            what = f"workflow chain of {r['jobs']:,} jobs: child `started_at` − parent "
            what += "`completed_at` (stored)"
            vs = _vs(name, "hop_ms", r["gap_p50_ms"], "ms")
            detail = f"p99 {r['gap_p99_ms']:.2f} ms, max {r['gap_max_ms']:.2f} ms"
            detail += " (in the run of median time per hop)"
            if name == "postgres":
                detail += "; `completed_at` is the finishing transaction's start, `started_at` "
                detail += "the claim's clock, often in the same transaction"
            rows.append([name, what, f"p50 {r['gap_p50_ms']:.2f} ms", vs, detail])
        elif r["kind"] == "fanout":
            what = f"workflow fan-out: 1 root → {r['jobs']:,} children → 1 fan-in, concurrency "
            what += f"{r['concurrency']}: worker start → fan-in done"
            vs = _vs(name, "fanout_s", r["seconds"], "s")
            detail = _spread(r, "{:.2f}", " s") + (
                f"root started at {1000 * r['root_s']:.0f} ms; children {r['children_s']:.2f} s "
                f"first start→last done ({(r['jobs']) / r['children_s']:,.0f}/s); fan-in started "
                f"{r['fanin_gap_ms']:.1f} ms after the last child; wall {r['wall']:.2f} s"
            )
            rows.append([name, what, f"{r['seconds']:.2f} s", *_failed(r, vs, detail)])
        elif r["kind"] == "big":
            what = f"enqueue a workflow of {r['jobs']:,} jobs (each depends on one random of the "
            what += f"previous {r['window']}): `enqueue_workflow`"
            vs = _vs(name, "big_s", r["enqueue_s"], "s") + "; "
            vs += _vs(name, "big_mb", r["peak_mb"], "MB")
            detail = _spread(r, "{:.2f}", " s") + (
                f"peak RSS {r['peak_mb']:.0f} MB (fresh process: {r['rss_start_mb']:.0f} MB "
                f"after imports, {r['rss_built_mb']:.0f} MB with the workflow built); "
                f"build {r['build_s']:.2f} s, not included; {r['jobs']:,} jobs and "
                f"{r['edges']:,} edges stored"
            )
            result = f"{r['enqueue_s']:.2f} s, {r['peak_mb']:.0f} MB"
            rows.append([name, what, result, *_failed(r, vs, detail)])
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["enqueue-big"]:
        raise SystemExit(enqueue_big_main(sys.argv[2:]))
    raise SystemExit("usage: dag.py enqueue-big URL --jobs N [--window W] [--seed S]")
