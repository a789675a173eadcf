"""Real `jobforge` processes for end-to-end tests: run the CLI, start and stop workers,
read the database directly, and wait on conditions with deadlines (never fixed sleeps)."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.e2e:app"

T = TypeVar("T")


def cli_env(db_url: str | None = None, **extra: str) -> dict[str, str]:
    """The test's environment minus any JOBFORGE_* setting, plus the ones given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBFORGE_")}
    env["PYTHONUNBUFFERED"] = "1"
    if db_url is not None:
        env["JOBFORGE_DATABASE_URL"] = db_url
    env.update(extra)
    return env


def jobforge(
    *args: str,
    db_url: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m jobforge ARGS` to completion."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "jobforge", *args],
            capture_output=True,
            text=True,
            env=env if env is not None else cli_env(db_url),
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # the child has been killed; show what it said
        raise AssertionError(
            f"jobforge {' '.join(args)} still running after {timeout}s; output:\n"
            f"{_text(exc.stdout)}\n{_text(exc.stderr)}"
        ) from None


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """stdout of a command that must have succeeded."""
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}\nstdout:\n{result.stdout}\n"
        f"stderr:\n{result.stderr}"
    )
    return result.stdout


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# -- direct database access (independent of jobforge's own reading code) --------------------
def sql(url: str, query: str) -> list[tuple[Any, ...]]:
    """Run one read-only query against the database `url` names."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute(query).fetchall()
        finally:
            conn.close()
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


def job_count(url: str) -> int:
    return int(sql(url, "SELECT count(*) FROM jobforge_jobs")[0][0])


def status_counts(url: str) -> dict[str, int]:
    return {
        str(s): int(n)
        for s, n in sql(url, "SELECT status, count(*) FROM jobforge_jobs GROUP BY status")
    }


# -- worker processes --------------------------------------------------------------------------
class WorkerProcess:
    """A `jobforge worker` in its own session, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in wait()/kill()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "jobforge", "worker", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {self.pid} still running after {timeout}s; log:\n{self.log}"
            ) from None
        finally:
            if self.popen.returncode is not None:
                self._log.close()

    def kill(self) -> None:
        """SIGKILL the worker's whole session (it and anything it started), then reap it."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it died just now
                os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(10)
        self._log.close()


class Workers:
    """Starts workers for one test and kills whatever is left at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[WorkerProcess] = []

    def start(self, db_url: str, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        n = len(self.started) + 1
        proc = WorkerProcess(
            ["--app", APP, "--db", db_url, *args],
            env if env is not None else cli_env(db_url),
            self.tmp_path / f"worker{n}.log",
        )
        self.started.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.started:
            proc.kill()


def started_line(proc: WorkerProcess, timeout: float = 20) -> None:
    """Wait until the worker has registered and is fetching jobs."""
    wait_until(
        lambda: "started: types=" in proc.log or not proc.alive(),
        timeout,
        f"worker {proc.pid} to start",
    )
    assert proc.alive(), f"worker exited early:\n{proc.log}"
