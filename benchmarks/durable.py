"""Durable workflow benchmark, run by `benchmarks/run.py --only ...,durable`.

- **steps**: one run of a durable workflow of N sequential no-op steps, one in-process burst
  worker. Steps per second = N / (worker start -> the run's `completed_at`). Each step is
  recorded (its own committed transaction, fenced by the run's lease) before the next runs.

The run must end `completed` with N completed steps recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_app import fresh  # noqa: E402

from jobforge import Forge, RunContext, Worker, WorkerConfig  # noqa: E402

TARGETS = {"sqlite": 2000.0, "postgres": 1000.0}  # steps/s, at least
KEYS = ("steps_per_s", "seconds", "wall")


class Backend(Protocol):
    name: str

    def new_url(self) -> str: ...

    def drop(self, url: str) -> None: ...


def _noop(i: int) -> int:
    return i


def register(app: Forge) -> None:
    @app.workflow(name="bench_steps")
    def bench_steps(ctx: RunContext, input: dict[str, Any]) -> int:
        for i in range(input["steps"]):
            ctx.step(f"s{i}", _noop, i).run()
        return int(input["steps"])


def bench_steps(backend: Backend, n: int) -> dict[str, Any]:
    with fresh(backend) as (_, app):
        register(app)
        run_id = app.start_workflow("bench_steps", {"steps": n})
        worker = Worker(app, WorkerConfig(concurrency=1, burst=True))
        t0 = time.time()
        asyncio.run(worker.run())
        wall = time.time() - t0
        run = app.get_run(run_id)
        done = [s for s in app.run_steps(run_id) if s.status.value == "completed"]
        if run.status.value != "completed" or len(done) != n or run.completed_at is None:
            errors = [f"run {run.status.value} with {len(done)} of {n} steps"]
            print(f"FAILED: {errors[0]}", file=sys.stderr)
            return {"error": errors[0], **dict.fromkeys(KEYS, float("nan"))}
        seconds = run.completed_at.timestamp() - t0
        return {"steps": n, "steps_per_s": n / seconds, "seconds": seconds, "wall": wall}


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--durable-steps", type=int, default=1_000, help="steps in the durable run")


def run(
    backend: Backend,
    args: argparse.Namespace,
    median: Callable[..., dict[str, Any]],
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    say(f"durable workflow of {args.durable_steps:,} sequential steps")
    runs = [bench_steps(backend, args.durable_steps) for _ in range(args.repeat)]
    return [{"kind": "steps", **median(runs, "steps_per_s")}]


def table_rows(name: str, results: list[dict[str, Any]]) -> list[list[str]]:
    rows: list[list[str]] = []
    for r in results:
        target = TARGETS[name]
        value = r["steps_per_s"]
        vs = f"{'meets' if value >= target else 'BELOW'} >= {target:,.0f}/s"
        if r.get("errors"):
            vs = f"FAILED in {len(r['errors'])} of {len(r['runs'])} runs"
        values = r.get("runs", [])
        spread = (
            f"median of {len(values)} runs ({min(values):,.0f}-{max(values):,.0f}/s); "
            if len(values) > 1
            else ""
        )
        detail = spread + (
            f"{r['seconds']:.2f} s from worker start to the run's completion; each step one "
            f"committed write; wall {r['wall']:.2f} s"
        )
        what = f"durable workflow of {r['steps']:,} sequential no-op steps: steps per second"
        rows.append([name, what, f"{value:,.0f} steps/s", vs, detail])
    return rows
