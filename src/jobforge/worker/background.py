"""A worker on its own thread and event loop, e.g. beside the HTTP API in one process."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from jobforge.worker.worker import Worker, WorkerConfig

if TYPE_CHECKING:
    from jobforge.app import Forge


@contextmanager
def background_worker(app: Forge, config: WorkerConfig) -> Iterator[Worker]:
    """Run a worker for the duration of the block; stopped gracefully (within its grace
    period) at the end, and an error it died of is raised here."""
    worker = Worker(app, config)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(worker.run())
        except BaseException as exc:  # surfaced in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="jobforge-worker", daemon=True)
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
        thread.join(config.grace_period + 10)
        if thread.is_alive():
            raise RuntimeError(f"the worker did not stop within {config.grace_period + 10:.0f} s")
        if errors:
            raise errors[0]
