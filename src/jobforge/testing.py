"""Helpers for testing code that uses jobforge."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jobforge.app import Forge
from jobforge.worker.worker import Worker, WorkerConfig, WorkerStats


def run_until_idle(app: Forge, **config: Any) -> WorkerStats:
    """Run an in-process worker in burst mode until no runnable job is left."""
    config.setdefault("poll_interval", 0.1)
    return asyncio.run(Worker(app, WorkerConfig(burst=True, **config)).run())


@contextmanager
def worker_running(app: Forge, **config: Any) -> Iterator[Worker]:
    """A worker on its own thread and event loop for the duration of the block; stopped
    gracefully at its end, and an error it died of is raised here."""
    worker = Worker(app, WorkerConfig(**{"poll_interval": 0.1, "grace_period": 5.0, **config}))
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(worker.run())
        except BaseException as exc:  # surfaced in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="jobforge-test-worker", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while worker._loop is None:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise errors[0] if errors else RuntimeError("the worker did not start")
        time.sleep(0.01)
    try:
        yield worker
    finally:
        worker._loop.call_soon_threadsafe(worker.request_stop)
        thread.join(15)
        if thread.is_alive():
            raise RuntimeError("the worker did not stop within 15 s")
        if errors:
            raise errors[0]
