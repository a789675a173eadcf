"""Helpers for testing code that uses jobforge."""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from typing import Any

from jobforge.app import Forge
from jobforge.worker.background import background_worker
from jobforge.worker.worker import Worker, WorkerConfig, WorkerStats


def run_until_idle(app: Forge, **config: Any) -> WorkerStats:
    """Run an in-process worker in burst mode until no runnable job is left."""
    config.setdefault("poll_interval", 0.1)
    return asyncio.run(Worker(app, WorkerConfig(burst=True, **config)).run())


def worker_running(app: Forge, **config: Any) -> AbstractContextManager[Worker]:
    """A worker on its own thread and event loop for the duration of the block; stopped
    gracefully at its end, and an error it died of is raised here."""
    return background_worker(
        app, WorkerConfig(**{"poll_interval": 0.1, "grace_period": 5.0, **config})
    )
