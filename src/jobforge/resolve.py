"""Resolving what to enqueue: registered defaults and per-call options, checked up front."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jobforge.errors import UnknownJobType, ValidationError
from jobforge.jobs import JobStatus, NewJob, PayloadEncoder, new_ids, untagged, utcnow
from jobforge.tasks import JobOptions, default_options

if TYPE_CHECKING:
    from jobforge.app import Forge


@dataclass(frozen=True, slots=True)
class _Fixed:
    """What a job type and one options object fix for every job enqueued with them."""

    queue: str
    priority: int
    max_attempts: int
    timeout: float | None
    tenant_id: str | None
    trace_id: str | None
    correlation_id: str | None
    retry_backoff: float
    retry_backoff_max: float
    delay: timedelta | None
    run_at: datetime | None
    payload_defaults: dict[str, Any]  # the registration's `defaults`, under each payload
    unique_key: str | None


class Resolver:
    """Applies registered defaults and per-call options; refuses bad input before writing.

    Everything but the id, payload and times is worked out once per (type, options object)
    and reused: a bulk enqueue of 10,000 specs of one type validates its options once.
    """

    def __init__(self, app: Forge, now: datetime | None, defaults: Mapping[str, Any]) -> None:
        self._app = app
        self._now = now
        self._defaults = defaults
        self._encode = PayloadEncoder(app.max_payload_bytes)
        # Keyed by the options object's id; the entry keeps the object alive.
        self._fixed: dict[tuple[str, int], tuple[JobOptions, _Fixed]] = {}
        self._ids: list[uuid.UUID] = []

    def __call__(
        self, type_name: str, payload: Any, o: JobOptions, name: str | None = None
    ) -> NewJob:
        hit = self._fixed.get((type_name, id(o)))
        f = hit[1] if hit is not None else self._fix(type_name, o, name)
        now = self._now or utcnow()
        when = f.run_at or (now + f.delay if f.delay else now)
        if not self._ids:
            self._ids = new_ids(256)
        if f.payload_defaults:
            payload = {**f.payload_defaults, **payload}
        return NewJob(
            self._ids.pop(), type_name, f.queue, self._encode(payload),
            f.priority, when, JobStatus.SCHEDULED if when > now else JobStatus.QUEUED,
            f.max_attempts, f.timeout, f.tenant_id, f.trace_id, f.correlation_id, now,
            f.retry_backoff, f.retry_backoff_max, unique_key=f.unique_key,
        )  # fmt: skip

    def _fix(self, type_name: str, options: JobOptions, name: str | None) -> _Fixed:
        app = self._app
        definition = app.registry.get(type_name) or app.builtins.get(type_name)
        if definition is None and not app.allow_unknown_types:
            known = ", ".join(sorted(app.registry)) or "none registered"
            where = f" (workflow job {name!r})" if name else ""
            raise UnknownJobType(f"Unknown job type {type_name!r}{where} (known: {known})")
        missing = {k: v for k, v in self._defaults.items() if getattr(options, k) is None}
        o = replace(options, **missing) if missing else options
        base = default_options() if definition is None else vars(definition)
        retries = o.retries if o.retries is not None else base["retries"]
        if retries < 0:
            raise ValidationError("retries must be >= 0")
        if o.delay is not None and o.delay < 0:
            raise ValidationError("delay must be >= 0 seconds")
        if o.run_at is not None and o.run_at.tzinfo is None:
            raise ValidationError("run_at must be timezone-aware")
        fixed = _Fixed(
            queue=o.queue or (definition.queue if definition else app.default_queue),
            priority=o.priority if o.priority is not None else base["priority"],
            max_attempts=retries + 1,
            timeout=o.timeout if o.timeout is not None else base["timeout"],
            tenant_id=untagged(o.tenant_id),
            trace_id=o.trace_id,
            correlation_id=o.correlation_id,
            retry_backoff=base["backoff"],
            retry_backoff_max=base["backoff_max"],
            delay=timedelta(seconds=o.delay) if o.delay else None,
            run_at=o.run_at,
            payload_defaults=definition.defaults if definition is not None else {},
            unique_key=o.unique_key,
        )
        self._fixed[(type_name, id(options))] = (options, fixed)
        return fixed
