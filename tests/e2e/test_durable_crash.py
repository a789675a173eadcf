"""A worker SIGKILLed in the middle of a durable run: another worker resumes it after the
lease, and no completed step (or compensation) runs twice."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from jobforge import Forge
from jobforge.durable.records import RUN_FINISHED
from tests.apps.durable_app import STEPS, register
from tests.e2e.helpers import WorkerProcess, Workers, cli_env, sql, started_line, wait_until

APP = "tests.apps.durable_app:worker_app"
FAST = ["--concurrency", "2", "--lease-seconds", "2", "--rescue-interval", "0.5"]
FAST += ["--poll-interval", "0.2"]


@pytest.fixture
def durable(db_url: str) -> Forge:
    forge = Forge(db_url)
    register(forge)
    forge.store  # noqa: B018 - migrate now
    yield forge  # type: ignore[misc]
    forge.close()


def start_worker(workers: Workers, db_url: str) -> WorkerProcess:
    n = len(workers.started) + 1
    proc = WorkerProcess(
        ["--app", APP, "--db", db_url, *FAST], cli_env(db_url), workers.tmp_path / f"w{n}.log"
    )
    workers.started.append(proc)
    return proc


def lines(log: Path) -> list[tuple[str, int]]:
    """(what, pid) for each line the steps and compensations wrote."""
    out = []
    for line in log.read_text().splitlines():
        what, pid = line.rsplit(" ", 1)
        out.append((what, int(pid)))
    return out


def recorded(db_url: str, run_id: str) -> dict[str, str]:
    """The run's steps as stored, read directly from the database."""
    uid = run_id.removeprefix("run_")
    rows = sql(db_url, "SELECT run_id, name, status FROM jobforge_steps")
    return {str(name): str(status) for rid, name, status in rows if _hex(rid) == uid}


def _hex(value: object) -> str:
    return str(value).replace("-", "").lower()


def kill(proc: WorkerProcess) -> None:
    proc.send(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL


def finish(forge: Forge, run_id: str, timeout: float = 25) -> object:
    """The run once it and the job carrying it have both finished."""

    def done() -> object:
        run = forge.get_run(run_id)
        job = forge.get_job(run_id.replace("run_", "job_"))
        ready = run.status in RUN_FINISHED and job is not None and job.status.is_terminal
        return run if ready else None

    return wait_until(done, timeout, f"{run_id} to finish on the second worker")


BOUNDARIES = [("between", k) for k in range(5)] + [("inside", k) for k in range(1, 5)]


@pytest.mark.parametrize(("mode", "k"), BOUNDARIES, ids=[f"{m}-{k}" for m, k in BOUNDARIES])
def test_sigkill_at_a_step_boundary_resumes_without_rerunning_steps(
    db_url: str, durable: Forge, workers: Workers, tmp_path: Path, mode: str, k: int
) -> None:
    log, gate_dir = tmp_path / "steps.log", tmp_path / "gate_dir"
    log.touch()
    gate_dir.mkdir()
    run_id = durable.start_workflow(
        "four_steps", {"log": str(log), "dir": str(gate_dir), "k": k, "mode": mode}
    )

    first = start_worker(workers, db_url)
    wait_until(lambda: (gate_dir / "paused").exists() or not first.alive(), 20, "the run to pause")
    assert first.alive(), first.log
    where = (gate_dir / "paused").read_text()
    assert where.endswith(f" {first.pid}\n")
    # Exactly the steps before the kill point are recorded (in the database, not in memory).
    completed = [s for s in STEPS[:k] if mode == "between" or s != f"step{k}"]
    assert recorded(db_url, run_id) == dict.fromkeys(completed, "completed")
    assert durable.get_run(run_id).status.value == "running"

    kill(first)
    (gate_dir / "gate").touch()  # from now on, nothing pauses
    second = start_worker(workers, db_url)
    started_line(second)
    run = finish(durable, run_id)

    assert run.status.value == "completed", (run.error, second.log)  # type: ignore[attr-defined]
    assert run.output == list(STEPS)  # type: ignore[attr-defined]
    assert recorded(db_url, run_id) == dict.fromkeys(STEPS, "completed")
    ran = lines(log)
    counts = Counter(what for what, _ in ran)
    by_pid = {what: [pid for w, pid in ran if w == what] for what in counts}
    for i, name in enumerate(STEPS, start=1):
        if mode == "inside" and i == k:
            # Killed while running: it ran on both workers, never a third time.
            assert by_pid[name] == [first.pid, second.pid], ran
        elif i <= k:
            assert by_pid[name] == [first.pid], ran  # recorded before the kill: not again
        else:
            assert by_pid[name] == [second.pid], ran
    job = durable.get_job(run_id.replace("run_", "job_"))
    assert job is not None
    assert job.status == "succeeded"
    assert job.attempts == 2
    assert [e["type"] for e in job.errors] == ["LeaseExpired"]

    second.send(signal.SIGTERM)
    assert second.wait(15) == 0


@pytest.mark.parametrize("pause_undo", ["step2", "step1"])
def test_sigkill_during_compensation_resumes_the_rollback(
    db_url: str, durable: Forge, workers: Workers, tmp_path: Path, pause_undo: str
) -> None:
    log, gate_dir = tmp_path / "steps.log", tmp_path / "gate_dir"
    log.touch()
    gate_dir.mkdir()
    run_id = durable.start_workflow(
        "saga", {"log": str(log), "dir": str(gate_dir), "pause_undo": pause_undo}
    )

    first = start_worker(workers, db_url)
    wait_until(
        lambda: (gate_dir / "paused").exists() or not first.alive(), 20, "the rollback to pause"
    )
    assert first.alive(), first.log
    assert (gate_dir / "paused").read_text() == f"undoing {pause_undo} {first.pid}\n"
    assert durable.get_run(run_id).status.value == "compensating"
    before = recorded(db_url, run_id)
    assert before["step4"] == "failed"
    assert before["step3"] == "compensated"
    assert before[pause_undo] == "completed"

    kill(first)
    (gate_dir / "gate").touch()
    second = start_worker(workers, db_url)
    started_line(second)
    run = finish(durable, run_id)

    assert run.status.value == "compensated", (run.error, second.log)  # type: ignore[attr-defined]
    assert run.error["step"] == "step4"  # type: ignore[attr-defined]
    assert recorded(db_url, run_id) == {
        "step1": "compensated",
        "step2": "compensated",
        "step3": "compensated",
        "step4": "failed",
    }
    ran = lines(log)
    by_pid: dict[str, list[int]] = {}
    for what, pid in ran:
        by_pid.setdefault(what, []).append(pid)
    # The forward steps ran once, on the first worker: the second did not re-run any.
    for name in STEPS:
        assert by_pid[name] == [first.pid], ran
    # Compensations done before the kill did not run again; the interrupted one ran again.
    assert by_pid["undo step3"] == [first.pid], ran
    assert by_pid[f"undo {pause_undo}"] == [first.pid, second.pid], ran
    if pause_undo == "step2":
        assert by_pid["undo step1"] == [second.pid], ran
    else:
        assert by_pid["undo step2"] == [first.pid], ran
    # Latest first, on both workers together.
    order = [what for what, _ in ran if what.startswith("undo")]
    expected = ["undo step3", "undo step2", "undo step1"]
    expected.insert(expected.index(f"undo {pause_undo}"), f"undo {pause_undo}")
    assert order == expected
    job = durable.get_job(run_id.replace("run_", "job_"))
    assert job is not None
    assert job.status == "failed"

    second.send(signal.SIGTERM)
    assert second.wait(15) == 0


def test_a_worker_that_lost_its_claim_records_nothing(
    db_url: str, durable: Forge, workers: Workers, tmp_path: Path
) -> None:
    """A worker frozen (SIGSTOP) inside step2 loses the run to another worker; when it wakes
    up, its late step2 result is refused and it runs no further step."""
    log, gate_dir = tmp_path / "steps.log", tmp_path / "gate_dir"
    log.touch()
    gate_dir.mkdir()
    run_id = durable.start_workflow(
        "four_steps", {"log": str(log), "dir": str(gate_dir), "k": 2, "mode": "inside"}
    )
    first = start_worker(workers, db_url)
    wait_until(lambda: (gate_dir / "paused").exists() or not first.alive(), 20, "the run to pause")
    assert first.alive(), first.log
    first.send(signal.SIGSTOP)
    try:
        (gate_dir / "gate").touch()
        second = start_worker(workers, db_url)
        started_line(second)
        run = finish(durable, run_id)
        assert run.status.value == "completed", run.error  # type: ignore[attr-defined]
        stored = {s.name: s for s in durable.run_steps(run_id)}
    finally:
        first.send(signal.SIGCONT)
    # The frozen worker wakes up, finishes step2's body, and tries to record it.
    wait_until(
        lambda: "outcome dropped" in first.log or "taken from this worker" in first.log,
        15,
        "the first worker to notice it lost the run",
    )
    first.send(signal.SIGTERM)
    first.wait(15)
    assert durable.get_run(run_id).status.value == "completed"
    assert {s.name: s for s in durable.run_steps(run_id)} == stored  # nothing overwritten
    ran = lines(log)
    assert [(w, p) for w, p in ran if p == first.pid] == [
        ("step1", first.pid),
        ("step2", first.pid),
    ]
    assert [w for w, p in ran if p == second.pid] == ["step2", "step3", "step4"]
    job = durable.get_job(run_id.replace("run_", "job_"))
    assert job is not None and job.status == "succeeded"
    assert job.result == list(STEPS)
