"""What a durable workflow function receives as `ctx`: steps that are recorded and replayed.

A run's function is executed from the top on every attempt. A step already recorded as done
returns its recorded result without running; a new step runs and its result is written
(fenced by the job's lease) before the function goes on. Steps are keyed by name, so
concurrent steps and reordered code replay correctly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobforge.durable.records import RunRecord, StepRecord, StepStatus
from jobforge.errors import ValidationError
from jobforge.jobs import utcnow
from jobforge.retry import backoff_delay
from jobforge.store import runs as stored
from jobforge.worker.executor import user_traceback

if TYPE_CHECKING:
    from jobforge.app import Forge
    from jobforge.context import JobContext

DONE = frozenset(
    {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.COMPENSATED}
)
# Threads for steps with a timeout, and for ctx.parallel: two pools, so that timed steps run
# inside parallel ones can never wait on a pool their callers fill.
_step_threads = concurrent.futures.ThreadPoolExecutor(32, thread_name_prefix="jobforge-step")
_parallel_threads = concurrent.futures.ThreadPoolExecutor(32, thread_name_prefix="jobforge-par")


class StepFailed(Exception):
    """A step failed for good (after its retries); the run compensates unless caught."""

    def __init__(self, step: str, error: dict[str, Any]) -> None:
        super().__init__(f"step {step!r} failed: {error.get('type')}: {error.get('message')}")
        self.step = step
        self.error = error


class EventTimeout(Exception):
    """`wait_for_event` reached its timeout without the event."""


class NonDeterminism(Exception):
    """The code no longer matches what the run recorded."""


class RunInterrupted(BaseException):
    """Cancelled, timed out, or compensating: no new step may start. A BaseException, so a
    workflow's `except Exception` cannot swallow it."""

    def __init__(self, reason: dict[str, Any]) -> None:
        super().__init__(reason["message"])
        self.reason = reason


class Suspend(BaseException):
    """Park the run until `until` (epoch seconds, None: no limit) or until `event` is sent."""

    def __init__(self, step: str, until: float | None, event: str | None = None) -> None:
        super().__init__(step)
        self.step, self.until, self.event = step, until, event


class LostClaim(BaseException):
    """Another worker took the run over (this one's lease expired): stop at once."""


def error_info(exc: BaseException, attempt: int | None = None) -> dict[str, Any]:
    """A structured error: type, message, and the traceback of the user's own frames."""
    info: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__}
    if attempt is not None:
        info["attempt"] = attempt
    if isinstance(exc, StepFailed):  # the step's own error says where it came from
        info["step"] = exc.step
    else:
        info["traceback"] = user_traceback(exc)
    return info


def as_json(value: Any, what: str) -> Any:
    """The value as a replay will see it (so first run and replays agree), or refused."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what} is not JSON: {exc}") from None


class StepCall:
    """`ctx.step(name, fn, *args).compensate(undo).timeout(s).retry(n).optional().run()`."""

    def __init__(
        self,
        ctx: RunContext,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.ctx, self.name, self.fn, self.args, self.kwargs = ctx, name, fn, args, kwargs
        self.undo: Callable[[Any], Any] | None = None
        self.seconds: float | None = None
        self.retries = 0
        self.backoff = 1.0
        self.is_optional = False

    def compensate(self, undo: Callable[[Any], Any]) -> StepCall:
        """Called with this step's result if the run later rolls back."""
        self.undo = undo
        return self

    def timeout(self, seconds: float) -> StepCall:
        self.seconds = seconds
        return self

    def retry(self, times: int, backoff: float = 1.0) -> StepCall:
        """Run again up to `times` more times on failure, `backoff` seconds doubling."""
        self.retries, self.backoff = times, backoff
        return self

    def optional(self) -> StepCall:
        """Its failure is recorded (`skipped`) and `run()` returns None: the run goes on."""
        self.is_optional = True
        return self

    def run(self) -> Any:
        """Run the step (or replay its recorded result) in a sync workflow."""
        done, value = self.ctx._replay(self)
        if done:
            return value
        self.ctx._before_new_step(self.name)
        return self.ctx._execute(self)

    async def run_async(self) -> Any:
        """`run()` for async workflows; steps gathered with asyncio run concurrently."""
        done, value = self.ctx._replay(self)
        if done:
            return value
        await asyncio.sleep(0)  # siblings of a gather mark their replayed steps first
        self.ctx._before_new_step(self.name)
        return await self.ctx._execute_async(self)

    def _input(self) -> Any:
        return json.loads(json.dumps({"args": self.args, "kwargs": self.kwargs}, default=str))


class RunContext:
    """Per-attempt context of a durable run."""

    def __init__(
        self,
        app: Forge,
        run: RunRecord,
        job_ctx: JobContext,
        records: Sequence[StepRecord],
        compensating: dict[str, Any] | None,
    ) -> None:
        self.app = app
        self.run = run
        self.run_id = run.run_id
        self.workflow_name = run.name
        self.version = run.version
        self.started_at: datetime = run.started_at or utcnow()
        self.deadline = run.deadline
        self._job = job_ctx
        self._records = {r.name: r for r in records}
        self._visited: set[str] = set()
        # Recorded steps not yet met in this replay: a new step may only run once it is empty.
        self._unreplayed = {r.name for r in records if r.status in DONE}
        self._seq = max((r.seq for r in records), default=0)
        self._compensations: list[tuple[int, str, Callable[[Any], Any], Any]] = []
        self.interrupted = compensating
        self._auto: dict[str, int] = {}
        self._lock = threading.Lock()
        self._cancel_seen = job_ctx.job.cancel_requested  # also learnt from each step write

    # -- information ---------------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds since the run started (wall clock: differs between replays)."""
        return (utcnow() - self.started_at).total_seconds()

    def workflow_time(self) -> datetime:
        """Now, recorded on first call: every replay gets the same value back."""
        key = f"time:{self._next('time')}"
        rec = self._visit(key)
        if rec is not None and rec.status == StepStatus.COMPLETED:
            return datetime.fromisoformat(rec.result)
        now = utcnow()
        self._save(key, StepStatus.COMPLETED, result=now.isoformat())
        return now

    # -- steps ---------------------------------------------------------------------------
    def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> StepCall:
        """A step named `name` (unique in the run) calling `fn(*args, **kwargs)`."""
        return StepCall(self, name, fn, args, kwargs)

    def parallel(self, calls: Sequence[StepCall]) -> list[Any]:
        """Run steps concurrently (threads) and return their results in order."""
        pending = []
        for call in calls:
            done, value = self._replay(call)
            pending.append((call, done, value))
        todo = [c for c, done, _ in pending if not done]
        for call in todo:
            self._before_new_step(call.name)
        futures = {c.name: _parallel_threads.submit(self._execute, c) for c in todo}
        # Every sibling ends (and is recorded) before a failure propagates, so a rollback
        # compensates the ones that completed.
        concurrent.futures.wait(futures.values())
        return [futures[c.name].result() if not done else v for c, done, v in pending]

    async def parallel_async(self, calls: Sequence[StepCall]) -> list[Any]:
        """`parallel` for async workflows; every sibling ends before a failure propagates."""
        results = await asyncio.gather(*(c.run_async() for c in calls), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return list(results)

    # -- waiting -------------------------------------------------------------------------
    def sleep(self, seconds: float, name: str | None = None) -> None:
        """Park the run durably for `seconds`: no worker slot is held meanwhile."""
        key = name or f"sleep:{self._next('sleep')}"
        rec = self._visit(key)
        if rec is not None and rec.status == StepStatus.COMPLETED:
            return
        if rec is None:
            self._before_new_step(key)
            until = time.time() + seconds
            self._save(key, StepStatus.RUNNING, result={"until": until})
        else:
            self._check_interrupt()
            until = rec.result["until"]
        if time.time() >= until:
            self._save(key, StepStatus.COMPLETED, result={"until": until})
            return
        raise Suspend(key, until)

    def wait_for_event(self, name: str, timeout: float | None = None) -> Any:
        """Park the run until `app.send_event(run_id, name, data)`; returns the data.
        Raises EventTimeout after `timeout` seconds without it."""
        key = f"event:{name}"
        rec = self._visit(key)
        if rec is not None and rec.status == StepStatus.COMPLETED:
            return rec.result
        if rec is not None and rec.status == StepStatus.FAILED:
            raise EventTimeout(rec.error["message"] if rec.error else name)
        if rec is None:
            self._before_new_step(key)
            until = None if timeout is None else time.time() + timeout
            self._save(key, StepStatus.RUNNING, input={"timeout": timeout}, result={"until": until})
        else:
            self._check_interrupt()
            until = rec.result["until"]
        sent, data = stored.event(self.app.store, self.run.id, name)
        if sent:
            self._save(key, StepStatus.COMPLETED, result=data)
            return data
        if until is not None and time.time() >= until:
            message = f"no event {name!r} within {timeout or 0:g}s"
            self._save(key, StepStatus.FAILED, error={"type": "EventTimeout", "message": message})
            raise EventTimeout(message)
        raise Suspend(key, until, event=name)

    # -- low-level step API ----------------------------------------------------------------
    def is_step_completed(self, name: str) -> bool:
        self._mark(name)  # asking about a step replays it, as far as the replay check goes
        rec = self._records.get(name)
        return rec is not None and rec.status == StepStatus.COMPLETED

    def get_step_result(self, name: str) -> Any:
        self._mark(name)
        rec = self._records.get(name)
        if rec is None or rec.status != StepStatus.COMPLETED:
            raise ValidationError(f"Step {name!r} of run {self.run_id} has not completed")
        return rec.result

    def record_step_start(self, name: str) -> None:
        self._mark(name)
        self._save(name, StepStatus.RUNNING)

    def record_step_complete(self, name: str, result: Any = None) -> None:
        self._mark(name)
        self._save(name, StepStatus.COMPLETED, result=as_json(result, f"result of step {name!r}"))

    def record_step_failure(self, name: str, error: BaseException | str) -> None:
        self._mark(name)
        info = (
            error_info(error)
            if isinstance(error, BaseException)
            else {"type": "StepFailure", "message": str(error)}
        )
        self._save(name, StepStatus.FAILED, error=info)

    # -- machinery -----------------------------------------------------------------------
    def _next(self, kind: str) -> int:
        with self._lock:
            self._auto[kind] = self._auto.get(kind, 0) + 1
            return self._auto[kind]

    def _visit(self, name: str) -> StepRecord | None:
        with self._lock:
            if name in self._visited:
                raise ValidationError(f"Step name {name!r} is used twice in run {self.run_id}")
            self._visited.add(name)
            self._unreplayed.discard(name)
        return self._records.get(name)

    def _mark(self, name: str) -> None:
        with self._lock:
            self._visited.add(name)
            self._unreplayed.discard(name)

    def _replay(self, call: StepCall) -> tuple[bool, Any]:
        """(True, result) for a step already done; a recorded failure raises again."""
        rec = self._visit(call.name)
        if rec is None or rec.status in (StepStatus.PENDING, StepStatus.RUNNING):
            return False, None
        if rec.status == StepStatus.FAILED:
            raise StepFailed(call.name, rec.error or {})
        if rec.status == StepStatus.COMPLETED and call.undo is not None:
            with self._lock:
                self._compensations.append((rec.seq, call.name, call.undo, rec.result))
        return True, None if rec.status == StepStatus.SKIPPED else rec.result

    def _check_interrupt(self) -> None:
        if self.interrupted is None:
            if self._job.cancel_requested or self._cancel_seen:
                self.interrupted = {"type": "cancelled", "message": "the run was cancelled"}
            elif self.deadline is not None and utcnow() > self.deadline:
                self.interrupted = {"type": "timeout", "message": "the run timed out"}
        if self.interrupted is not None:
            raise RunInterrupted(self.interrupted)

    def _before_new_step(self, name: str) -> None:
        """No new step once interrupted; none while recorded steps were not replayed."""
        self._check_interrupt()
        with self._lock:
            missed = sorted(self._unreplayed)
        if missed:
            raise NonDeterminism(
                f"run {self.run_id} ({self.workflow_name} version {self.version}) is about to"
                f" run step {name!r}, but recorded step {missed[0]!r} was not replayed: the"
                f" code differs from the code (version {self.run.version}) that recorded it"
            )

    def _execute(self, call: StepCall) -> Any:
        started = utcnow()
        for attempt in range(1, call.retries + 2):
            try:
                value = self._call_sync(call)
            except Exception as exc:
                if attempt <= call.retries:
                    time.sleep(backoff_delay(attempt, call.backoff, 60.0))
                    continue
                return self._failed(call, error_info(exc, attempt), attempt, started)
            return self._completed(call, value, attempt, started)
        raise AssertionError("unreachable")

    async def _execute_async(self, call: StepCall) -> Any:
        started = utcnow()
        for attempt in range(1, call.retries + 2):
            try:
                async with asyncio.timeout(call.seconds):
                    if inspect.iscoroutinefunction(call.fn):
                        value = await call.fn(*call.args, **call.kwargs)
                    else:
                        value = await asyncio.to_thread(call.fn, *call.args, **call.kwargs)
            except Exception as exc:
                if attempt <= call.retries:
                    await asyncio.sleep(backoff_delay(attempt, call.backoff, 60.0))
                    continue
                return self._failed(call, error_info(exc, attempt), attempt, started)
            return self._completed(call, value, attempt, started)
        raise AssertionError("unreachable")

    def _call_sync(self, call: StepCall) -> Any:
        def invoke() -> Any:
            if inspect.iscoroutinefunction(call.fn):
                return asyncio.run(call.fn(*call.args, **call.kwargs))
            return call.fn(*call.args, **call.kwargs)

        if call.seconds is None:
            return invoke()
        future = _step_threads.submit(invoke)
        try:
            return future.result(timeout=call.seconds)
        except concurrent.futures.TimeoutError:
            message = f"step {call.name!r} exceeded its timeout of {call.seconds}s"
            raise TimeoutError(message) from None

    def _completed(self, call: StepCall, value: Any, attempt: int, started: datetime) -> Any:
        value = as_json(value, f"result of step {call.name!r}")
        rec = self._save(
            call.name,
            StepStatus.COMPLETED,
            input=call._input(),
            result=value,
            attempts=attempt,
            started_at=started,
        )
        if call.undo is not None:
            with self._lock:
                self._compensations.append((rec.seq, call.name, call.undo, value))
        return value

    def _failed(
        self, call: StepCall, error: dict[str, Any], attempt: int, started: datetime
    ) -> Any:
        status = StepStatus.SKIPPED if call.is_optional else StepStatus.FAILED
        self._save(
            call.name,
            status,
            input=call._input(),
            error=error,
            attempts=attempt,
            started_at=started,
        )
        if call.is_optional:
            return None
        raise StepFailed(call.name, error)

    def _save(
        self,
        name: str,
        status: StepStatus,
        *,
        input: Any = None,
        result: Any = None,
        error: dict[str, Any] | None = None,
        attempts: int = 1,
        started_at: datetime | None = None,
    ) -> StepRecord:
        """Write the step (fenced by the job's lease) before the run goes on."""
        with self._lock:
            old = self._records.get(name)
            if old is not None and old.status != StepStatus.RUNNING:
                seq = old.seq
            else:
                self._seq += 1
                seq = self._seq
        now = utcnow()
        rec = StepRecord(
            name,
            status,
            seq,
            input,
            result,
            error,
            attempts,
            started_at or now,
            None if status == StepStatus.RUNNING else now,
        )
        token = self._job.job.lease_token or ""
        saved, cancel = stored.save_step(self.app.store, self.run.id, token, rec)
        if not saved:
            raise LostClaim(f"run {self.run_id} was taken over by another worker")
        if cancel:
            self._cancel_seen = True
        with self._lock:
            self._records[name] = rec
        return rec

    def _mark_compensated(self, name: str) -> None:
        rec = self._records[name]
        self._save(
            name,
            StepStatus.COMPENSATED,
            input=rec.input,
            result=rec.result,
            attempts=rec.attempts,
            started_at=rec.started_at,
        )

    def compensations(self) -> list[tuple[int, str, Callable[[Any], Any], Any]]:
        """Completed steps' undo handlers, latest first, leaving out those already run."""
        done = {n for n, r in self._records.items() if r.status == StepStatus.COMPENSATED}
        todo = [c for c in self._compensations if c[1] not in done]
        return sorted(todo, key=lambda c: c[0], reverse=True)

    def until_seconds(self, until: float | None) -> float:
        """How long to park: until the wake time, never past the run's deadline."""
        limit = self.deadline.timestamp() if self.deadline else time.time() + 86400
        wake = limit if until is None else min(until, limit)
        return max(0.0, wake - time.time()) + (0.01 if until is None else 0.0)
