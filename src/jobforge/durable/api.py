"""The durable-workflow part of `Forge`: `@app.workflow`, start, inspect, cancel, retry, events."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from jobforge.durable.definitions import (
    DEFAULT_TIMEOUT,
    DurableRegistry,
    DurableWorkflow,
    parse_duration,
)
from jobforge.durable.records import RUN_FINISHED, RunRecord, StepRecord, parse_run_ref, run_ref
from jobforge.durable.runner import drive
from jobforge.errors import InvalidTransition, PayloadError, PayloadTooLarge, ValidationError
from jobforge.retry import DEFAULT_BACKOFF, DEFAULT_BACKOFF_MAX
from jobforge.store import runs as stored
from jobforge.tasks import JobDefinition, JobOptions

if TYPE_CHECKING:
    from datetime import datetime

    from jobforge.app import Forge
    from jobforge.context import JobContext
    from jobforge.resolve import Resolver
    from jobforge.store.sql import SQLStore

F = TypeVar("F", bound=Callable[..., Any])

RUN_RETRIES = 10  # attempts of a run's job: crashes and rescues, not step failures


class DurableRuns:
    """Mixed into Forge (what it uses of Forge is declared here)."""

    durable: DurableRegistry
    registry: dict[str, JobDefinition[Any, Any]]
    builtins: dict[str, JobDefinition[Any, Any]]
    on_enqueue: list[Callable[[], None]]
    max_dependency_depth: int
    max_payload_bytes: int
    default_queue: str

    if TYPE_CHECKING:

        @property
        def store(self) -> SQLStore: ...

        def _resolver(
            self, now: datetime | None = None, defaults: Mapping[str, Any] | None = None
        ) -> Resolver: ...

    def workflow(
        self,
        func: F | None = None,
        *,
        name: str | None = None,
        version: int = 1,
        timeout: float | str | None = DEFAULT_TIMEOUT,
        deprecated: bool = False,
        queue: str | None = None,
    ) -> Any:
        """Register a durable workflow `fn(ctx, input)`; several versions may share a name."""

        def register(fn: F) -> F:
            wf_name = name or fn.__name__
            if wf_name in self.registry:
                raise ValidationError(f"{wf_name!r} is already a job type")
            self.durable.add(DurableWorkflow(wf_name, version, fn, parse_duration(timeout),
                                             deprecated))  # fmt: skip
            if wf_name not in self.builtins:
                self.builtins[wf_name] = _run_definition(cast("Forge", self), wf_name, queue)
            return fn

        return register(func) if func is not None else register

    def start_workflow(
        self,
        name: str,
        input: dict[str, Any] | None = None,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> str:
        """Start a run (returns its `run_…` id at once); a repeated idempotency key returns
        the first run's id. Options as for jobs (queue, priority, delay, tenant_id, ...)."""
        wf = self.durable.starting(name, version)
        payload = {} if input is None else input
        if not isinstance(payload, dict):
            raise ValidationError("A workflow's input must be a JSON object")
        job = self._resolver()(name, payload, JobOptions(retries=RUN_RETRIES, **options))
        deadline = None if wf.timeout is None else job.created_at + timedelta(seconds=wf.timeout)
        run_id = stored.create(self.store, job, name, wf.version, payload, idempotency_key,
                               deadline, self.max_dependency_depth)  # fmt: skip
        for wake in self.on_enqueue:
            wake()
        return run_ref(run_id)

    def get_run(self, run_id: str) -> RunRecord:
        """The run: name, version, input, output, status, current step, error, times."""
        return stored.get(self.store, parse_run_ref(run_id))

    def run_steps(self, run_id: str) -> list[StepRecord]:
        return stored.steps(self.store, self.get_run(run_id).id)

    def list_runs(self, status: str | None = None, limit: int = 50) -> list[RunRecord]:
        return stored.list_runs(self.store, status, limit)

    def cancel_run(self, run_id: str) -> RunRecord:
        """Roll a running or waiting run back (its compensations, latest first); it ends
        `cancelled`."""
        run = self.get_run(run_id)
        if run.status in RUN_FINISHED:
            raise InvalidTransition(f"Cannot cancel run {run.run_id}: it is {run.status.value}")
        stored.request_cancel(self.store, run.id)
        self._wake_workers()
        return self.get_run(run_id)

    def resume_run(self, run_id: str) -> RunRecord:
        """Make a parked (sleeping or waiting) run due now."""
        run = self.get_run(run_id)
        if run.status in RUN_FINISHED:
            raise InvalidTransition(
                f"Cannot resume run {run.run_id}: it is {run.status.value} (retry_run re-runs"
                " a failed run)"
            )
        stored.wake(self.store, run.id)
        self._wake_workers()
        return self.get_run(run_id)

    def retry_run(self, run_id: str) -> RunRecord:
        """Re-run a failed, compensated or cancelled run from its first unfinished step;
        completed steps keep their recorded results."""
        run = self.get_run(run_id)
        if run.status not in RUN_FINISHED or run.status.value == "completed":
            raise InvalidTransition(f"Cannot retry run {run.run_id}: it is {run.status.value}")
        stored.retry(self.store, run.id)
        self._wake_workers()
        return self.get_run(run_id)

    def send_event(self, run_id: str, name: str, data: Any = None) -> None:
        """Deliver `data` (any JSON value, within the payload size limit) to the run's
        `wait_for_event(name)` and wake it."""
        try:
            size = len(json.dumps(data, allow_nan=False))  # ASCII: characters are bytes
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"Event data is not JSON-serialisable: {exc}") from None
        if size > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"Event data is {size} bytes, over the limit of {self.max_payload_bytes} bytes"
            )
        stored.send_event(self.store, parse_run_ref(run_id), name, data)
        self._wake_workers()

    def _wake_workers(self) -> None:
        for wake in self.on_enqueue:
            wake()


def _run_definition(app: Forge, name: str, queue: str | None) -> JobDefinition[Any, Any]:
    """The job type that carries this workflow's runs: its handler replays the run."""

    def run_handler(ctx: JobContext, /, **input: Any) -> Any:
        return drive(app, ctx)

    return JobDefinition(
        app, run_handler, name=name, queue=queue or app.default_queue, retries=RUN_RETRIES,
        timeout=None, priority=0, backoff=DEFAULT_BACKOFF, backoff_max=DEFAULT_BACKOFF_MAX,
        description=f"durable workflow {name}",
    )  # fmt: skip
