"""`@app.job`: a registered handler that keeps its signature for `enqueue`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar

from jobforge.context import JobContext
from jobforge.retry import DEFAULT_BACKOFF, DEFAULT_BACKOFF_MAX

if TYPE_CHECKING:
    from datetime import datetime

    from jobforge.app import Forge

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_RETRIES = 3


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Per-enqueue options; None means "use the job's registered default"."""

    queue: str | None = None
    priority: int | None = None
    delay: float | None = None
    run_at: datetime | None = None
    retries: int | None = None
    timeout: float | None = None
    tenant_id: str | None = None
    trace_id: str | None = None
    correlation_id: str | None = None
    depends_on: Sequence[Any] | None = None  # job ids, Dependency objects or mappings
    dependency_timeout: float | None = None  # seconds a job may wait for its parents
    unique_key: str | None = None  # while a job with this key is unfinished, return that one


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to enqueue, as used by `Forge.enqueue_many`."""

    type: str
    payload: dict[str, Any]
    options: JobOptions = JobOptions()


class JobDefinition(Generic[P, R]):
    """A registered job type. Call `.enqueue(**payload)` to run it on a worker."""

    def __init__(
        self,
        app: Forge,
        func: Callable[Concatenate[JobContext, P], R],
        *,
        name: str,
        queue: str,
        retries: int,
        timeout: float | None,
        priority: int,
        backoff: float,
        backoff_max: float,
        group: str | None = None,
        depends_on: Sequence[str] = (),
        description: str | None = None,
        defaults: dict[str, Any] | None = None,
        examples: Sequence[Any] = (),
    ) -> None:
        self.app = app
        self.func = func
        self.name = name
        self.queue = queue
        self.retries = retries
        self.timeout = timeout
        self.priority = priority
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.group = group
        # Job type names, for group and all enqueues (a bare string is kept, to be refused).
        self.depends_on = depends_on if isinstance(depends_on, str) else tuple(depends_on)
        self.description = description or inspect.getdoc(func)
        # Payload defaults, under every enqueue's payload (a non-mapping is refused by the
        # registry's check, which names the job).
        self.defaults: dict[str, Any] = (
            dict(defaults) if isinstance(defaults, Mapping) else defaults or {}
        )
        self.examples = examples if isinstance(examples, str) else list(examples)
        self.is_async = inspect.iscoroutinefunction(func)
        self._options = JobOptions()

    def to_dict(self) -> dict[str, Any]:
        """The registration as `job definitions --json` prints it."""
        return {
            "name": self.name,
            "group": self.group,
            "depends_on": list(self.depends_on),
            "queue": self.queue,
            "description": self.description,
            "defaults": self.defaults,
            "examples": self.examples,
            "retries": self.retries,
            "timeout": self.timeout,
            "priority": self.priority,
        }

    def __call__(self, ctx: JobContext, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(ctx, *args, **kwargs)

    def configure(self, **options: Any) -> JobDefinition[P, R]:
        """A copy that enqueues with these options (queue, priority, delay, run_at, ...)."""
        clone: JobDefinition[P, R] = JobDefinition.__new__(JobDefinition)
        clone.__dict__.update(self.__dict__)
        clone._options = replace(self._options, **options)
        return clone

    def spec(self, *args: P.args, **payload: P.kwargs) -> JobSpec:
        """This job with a payload, for `app.enqueue_many`."""
        if args:
            raise TypeError("job payloads are keyword arguments only")
        return JobSpec(self.name, dict(payload), self._options)

    def enqueue(self, *args: P.args, **payload: P.kwargs) -> str:
        """Enqueue one run; returns its `job_…` id."""
        return self.app.enqueue_many([self.spec(*args, **payload)])[0]

    async def enqueue_async(self, *args: P.args, **payload: P.kwargs) -> str:
        """`enqueue` without blocking the event loop."""
        return (await self.app.enqueue_many_async([self.spec(*args, **payload)]))[0]


def default_options() -> dict[str, Any]:
    return {
        "retries": DEFAULT_RETRIES,
        "timeout": None,
        "priority": 0,
        "backoff": DEFAULT_BACKOFF,
        "backoff_max": DEFAULT_BACKOFF_MAX,
    }
