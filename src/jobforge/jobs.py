"""The job record, its statuses, and the rules a payload must follow."""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import uuid
from _json import encode_basestring_ascii, make_encoder
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from jobforge.errors import PayloadError, PayloadTooLarge, ValidationError

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
DEFAULT_QUEUE = "default"


class JobStatus(StrEnum):
    """Lifecycle of a job. `failed` is the dead-letter state (attempts exhausted)."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    WAITING = "waiting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL_SUCCESS = "partial_success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {
        JobStatus.SUCCEEDED,
        JobStatus.PARTIAL_SUCCESS,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.SKIPPED,
    }
)
CANCELLABLE = frozenset(
    {JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.WAITING, JobStatus.RUNNING}
)
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SKIPPED})


def utcnow() -> datetime:
    return datetime.now(UTC)


_V7_BITS = (0x7 << 76) | (0x2 << 62)  # version 7, RFC 9562 variant
_RAND_62 = (1 << 62) - 1
_clock_lock = threading.Lock()
_last = [0, -1]  # the last (millisecond, 12-bit sequence) handed out by this process


def new_id() -> uuid.UUID:
    return new_ids(1)[0]


def new_ids(n: int) -> list[uuid.UUID]:
    """`n` time-ordered version-7 UUIDs (RFC 9562): a millisecond clock, a 12-bit sequence
    within it, then 62 random bits; strictly increasing within a process.

    Ids made later sort later, so a big enqueue adds to the right edge of every index on
    them instead of all over it (a 100,000-job workflow is written about a fifth faster),
    and equal-priority jobs due at the same time are claimed in creation order. One read of
    the OS's randomness for all of them; each UUID is set up the way `uuid.UUID.__init__`
    ends (its two slots) without re-checking an int made right here.
    """
    with _clock_lock:
        ms, seq = max(time.time_ns() // 1_000_000, _last[0]), 0
        if ms == _last[0]:
            seq = _last[1] + 1
        # Past 4,096 ids in a millisecond the clock field runs ahead (RFC 9562, 6.2).
        first = (ms << 12) + seq
        _last[:] = divmod(first + n - 1, 4096)
    raw = os.urandom(8 * n)
    make, set_slot, from_bytes = object.__new__, object.__setattr__, int.from_bytes
    out = []
    for i in range(n):
        u = make(uuid.UUID)
        at, step = divmod(first + i, 4096)
        value = at << 80 | _V7_BITS | step << 64 | from_bytes(raw[8 * i : 8 * i + 8]) & _RAND_62
        set_slot(u, "int", value)
        set_slot(u, "is_safe", uuid.SafeUUID.unknown)
        out.append(u)
    return out


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while an enqueue builds its rows (no I/O inside).

    A bulk enqueue allocates objects that all stay alive, so every full collection
    meanwhile rescans them all for nothing: ~1 s of a 100,000-job workflow. Reference
    counting still frees everything as usual. Concurrent and nested pauses are counted;
    the last one out restores the collector as the first one found it.
    """
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def as_uuid(value: Any) -> uuid.UUID:
    """A UUID from a driver value: already one on PostgreSQL, text on SQLite."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


DEFAULT_TENANT = "default"  # owns rows without a tenant


def untagged(tenant_id: str | None) -> str | None:
    """How a tenant is stored: the default tenant as NULL, so the two spellings are one."""
    return None if tenant_id == DEFAULT_TENANT else tenant_id


def readable_id(job_uuid: uuid.UUID) -> str:
    """The `job_<32 hex>` form shown to people; it is the UUID in another spelling."""
    return "job_" + job_uuid.hex


def parse_job_ref(ref: str) -> uuid.UUID:
    """Accept either the UUID or the `job_…` id."""
    text = ref.strip()
    if text.startswith("job_"):
        text = text[4:]
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValidationError(f"Invalid job id: {ref!r}") from None


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    """One structured error, appended to a job's `errors` list per failed attempt."""

    type: str
    message: str
    traceback: str | None
    attempt: int
    time: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PartialSuccess:
    """Return this from a handler to end the job as `partial_success`."""

    result: Any = None
    errors: list[Any] = field(default_factory=list)


@dataclass(slots=True)
class NewJob:
    """What `insert_jobs` writes: a fully resolved job, ids and times included."""

    id: uuid.UUID
    type: str
    queue: str
    payload_json: str
    priority: int
    scheduled_at: datetime
    status: JobStatus
    max_attempts: int
    timeout: float | None
    tenant_id: str | None
    trace_id: str | None
    correlation_id: str | None
    created_at: datetime
    retry_backoff: float
    retry_backoff_max: float
    workflow_id: uuid.UUID | None = None
    name: str | None = None
    optional: bool = False
    dependency_deadline: datetime | None = None
    unique_key: str | None = None
    # Filled in by deps.plan_insert from the edges:
    dependency_status: str = "none"
    pending_parents: int = 0
    depth: int = 0
    has_children: bool = False
    has_parallel_children: bool = False

    @property
    def label(self) -> str:
        """How errors name it: its workflow name, else its type (it has no id yet)."""
        return self.name or f"the new {self.type} job"


@dataclass(frozen=True, slots=True)
class NewEdge:
    id: uuid.UUID
    parent_id: uuid.UUID
    child_id: uuid.UUID
    kind: str
    condition: str | None
    workflow_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class NewWorkflow:
    id: uuid.UUID
    name: str
    description: str | None
    failure_policy: str
    priority: int
    timeout: float | None
    deadline: datetime | None
    metadata_json: str
    tenant_id: str | None
    trace_id: str | None
    correlation_id: str | None
    created_at: datetime

    def params(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "failure_policy": self.failure_policy,
            "priority": self.priority,
            "timeout": self.timeout,
            "deadline": self.deadline,
            "metadata": self.metadata_json,
            "tenant_id": self.tenant_id,
            "trace_id": self.trace_id,
            "correlation_id": self.correlation_id,
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class Job:
    """A job as stored."""

    id: uuid.UUID
    type: str
    queue: str
    status: JobStatus
    payload: dict[str, Any]
    priority: int
    scheduled_at: datetime
    attempts: int
    max_attempts: int
    timeout: float | None
    progress: int
    progress_message: str | None
    result: Any
    result_url: str | None
    errors: list[dict[str, Any]]
    tenant_id: str | None
    trace_id: str | None
    correlation_id: str | None
    retry_backoff: float
    retry_backoff_max: float
    worker_id: str | None
    lease_token: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    workflow_id: uuid.UUID | None = None
    name: str | None = None
    dependency_status: str = "none"
    pending_parents: int = 0
    optional: bool = False
    reason: str | None = None
    cancel_requested: bool = False
    depth: int = 0
    dependency_deadline: datetime | None = None
    unique_key: str | None = None

    @property
    def job_id(self) -> str:
        return readable_id(self.id)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (ISO 8601 UTC times), as printed by `--json`."""
        out: dict[str, Any] = {"id": str(self.id), "job_id": self.job_id}
        for name in self.__slots__:
            if name in ("id", "lease_token"):
                continue
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = iso(value)
            elif name == "workflow_id" and value is not None:
                value = "wf_" + value.hex
            out[name] = value
        return out


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class PayloadEncoder:
    """Validates payloads (JSON objects within the size limit) and returns their JSON text.

    Holds one C encoder from `_json` (what `json.dumps` runs underneath, minus about a
    microsecond of Python set-up per call). Use one per enqueue call: after a failed encode
    its circular-reference markers may be stale, and the failure ends the call.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._encode = make_encoder(
            {}, _not_serialisable, encode_basestring_ascii, None, ":", ",", False, False, False
        )

    def __call__(self, payload: Any) -> str:
        if not isinstance(payload, dict):
            raise PayloadError(f"Payload must be a JSON object, got {type(payload).__name__}")
        try:
            text = "".join(self._encode(payload, 0))
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"Payload is not JSON-serialisable: {exc}") from None
        if "\\u0000" in text:
            raise PayloadError(
                "Payload contains a NUL character (\\u0000), which PostgreSQL cannot store"
            )
        size = len(text)  # non-ASCII is escaped, so characters are bytes
        if size > self.max_bytes:
            raise PayloadTooLarge(
                f"Payload is {size} bytes, over the limit of {self.max_bytes} bytes"
            )
        return text


def _not_serialisable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode_payload(payload: Any, max_bytes: int) -> str:
    """Validate one payload and return its JSON text."""
    return PayloadEncoder(max_bytes)(payload)


def parse_payload_text(text: str) -> dict[str, Any]:
    """Parse user-supplied JSON text into a payload object, with a one-line error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"Payload is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PayloadError(f"Payload must be a JSON object, got {type(value).__name__}")
    return value


def encode_result(value: Any) -> str | None:
    """Results must be JSON; anything else is stored as its string form."""
    if value is None:
        return None
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(repr(value))
