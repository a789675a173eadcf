"""Helpers for testing code that uses jobforge."""

from __future__ import annotations

import asyncio
from typing import Any

from jobforge.app import Forge
from jobforge.worker.worker import Worker, WorkerConfig, WorkerStats


def run_until_idle(app: Forge, **config: Any) -> WorkerStats:
    """Run an in-process worker in burst mode until no runnable job is left."""
    config.setdefault("poll_interval", 0.1)
    return asyncio.run(Worker(app, WorkerConfig(burst=True, **config)).run())
