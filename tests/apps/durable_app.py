"""Durable workflows for the crash and CLI tests (`--app tests.apps.durable_app:app`).

Every step body, and every compensation, appends `<name> <pid>` to the file `input["log"]`,
so a test in another process can count how often each ran, and in which worker. A workflow
can be made to stop at a chosen point: it writes `<dir>/paused` and then blocks until the
test creates `<dir>/gate` (which the test does only after killing the worker).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from jobforge import Forge

STEPS = ("step1", "step2", "step3", "step4")

app = Forge()  # the database comes from JOBFORGE_DATABASE_URL or --db


def append(log: str, line: str) -> None:
    with open(log, "a") as f:
        f.write(f"{line} {os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())


def pause(where: str, directory: str) -> None:
    """Say we are at `where`, then wait (at most a minute) for the test's gate file."""
    gate = Path(directory) / "gate"
    if gate.exists():
        return
    note = Path(directory) / "paused.tmp"  # renamed into place: never read half-written
    note.write_text(f"{where} {os.getpid()}\n")
    note.rename(Path(directory) / "paused")
    deadline = time.monotonic() + 60
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def body(name: str, log: str, directory: str, pause_inside: bool) -> dict[str, str]:
    append(log, name)
    if pause_inside:
        pause(f"inside {name}", directory)
    return {"step": name}


def undo(name: str, log: str, directory: str, pause_inside: bool) -> Any:
    def compensate(result: Any) -> None:
        assert result == {"step": name}, result
        append(log, f"undo {name}")
        if pause_inside:
            pause(f"undoing {name}", directory)

    return compensate


def register(forge: Forge) -> None:
    """The workflows, on any app (the test's own app registers them to start runs)."""

    @forge.workflow(name="four_steps")
    def four_steps(ctx: Any, input: dict[str, Any]) -> list[str]:
        """`between`: pause after step `k` is recorded (k=0: before step1); `inside`:
        pause inside step `k`'s body, after its line was written."""
        log, directory, k, mode = input["log"], input["dir"], input["k"], input["mode"]
        done = []
        if mode == "between" and k == 0:
            pause("before step1", directory)
        for i, name in enumerate(STEPS, start=1):
            inside = mode == "inside" and k == i
            done.append(ctx.step(name, body, name, log, directory, inside).run()["step"])
            if mode == "between" and k == i:
                pause(f"after {name}", directory)
        return done

    @forge.workflow(name="saga")
    def saga(ctx: Any, input: dict[str, Any]) -> None:
        """Three steps with compensations, then one that fails: the rollback pauses while
        undoing `input["pause_undo"]`."""
        log, directory = input["log"], input["dir"]
        for name in STEPS[:3]:
            ctx.step(name, body, name, log, directory, False).compensate(
                undo(name, log, directory, input.get("pause_undo") == name)
            ).run()
        ctx.step("step4", failing, log).run()

    @forge.workflow(name="greet", version=1)
    def greet_v1(ctx: Any, input: dict[str, Any]) -> str:
        return f"v1 {input.get('who', 'nobody')}"

    @forge.workflow(name="greet", version=2)
    def greet(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
        hello = ctx.step("hello", lambda who: f"hello {who}", input.get("who", "nobody")).run()
        return {"greeting": hello}

    @forge.workflow(name="approval")
    def approval(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
        ctx.step("prepare", lambda: "ready").compensate(lambda r: None).run()
        data = ctx.wait_for_event("approved", timeout=3600)
        return {"approved_by": data["by"]}

    @forge.workflow(name="flaky")
    def flaky(ctx: Any, input: dict[str, Any]) -> str:
        ctx.step("first", lambda: 1).run()
        if not Path(input["fixed"]).exists():
            ctx.step("check", missing_file, input["fixed"]).run()
        return "fixed"


def failing(log: str) -> None:
    append(log, "step4")
    raise RuntimeError("step4 always fails")


def missing_file(path: str) -> None:
    raise FileNotFoundError(f"missing {path}")


register(app)

# The same workflows plus one plain job: `jobforge worker` (src/jobforge/cli.py) refuses an
# app whose registry holds no plain job, so the crash tests run their workers on this one.
worker_app = Forge()
register(worker_app)


@worker_app.job
def noop(ctx: Any) -> None:
    """Never enqueued: only here so that the worker accepts the app."""
