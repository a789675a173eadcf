"""jobforge: durable background jobs and workflows for Python, on SQLite or PostgreSQL."""

from __future__ import annotations

from jobforge.app import Forge
from jobforge.context import JobContext
from jobforge.errors import (
    Cancel,
    InvalidTransition,
    JobforgeError,
    JobNotFound,
    JobTimeout,
    PayloadError,
    PayloadTooLarge,
    Retry,
    Snooze,
    UnknownJobType,
    ValidationError,
)
from jobforge.jobs import Job, JobStatus, PartialSuccess
from jobforge.tasks import JobDefinition, JobOptions, JobSpec
from jobforge.worker.worker import Worker, WorkerConfig

__all__ = [
    "Cancel",
    "Forge",
    "InvalidTransition",
    "Job",
    "JobContext",
    "JobDefinition",
    "JobNotFound",
    "JobOptions",
    "JobSpec",
    "JobStatus",
    "JobTimeout",
    "JobforgeError",
    "PartialSuccess",
    "PayloadError",
    "PayloadTooLarge",
    "Retry",
    "Snooze",
    "UnknownJobType",
    "ValidationError",
    "Worker",
    "WorkerConfig",
]
