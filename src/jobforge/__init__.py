"""jobforge: durable background jobs and workflows for Python, on SQLite or PostgreSQL."""

from __future__ import annotations

from jobforge.app import Forge
from jobforge.context import JobContext
from jobforge.deps import Dependency, FailurePolicy
from jobforge.durable.context import EventTimeout, RunContext, StepFailed
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
from jobforge.workflows.dag import Workflow, WorkflowJob

__all__ = [
    "Cancel",
    "Dependency",
    "EventTimeout",
    "FailurePolicy",
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
    "RunContext",
    "Snooze",
    "StepFailed",
    "UnknownJobType",
    "ValidationError",
    "Worker",
    "WorkerConfig",
    "Workflow",
    "WorkflowJob",
]
