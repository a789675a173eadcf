"""Job ids and the JSON view of a job."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from jobforge import Job, JobStatus, ValidationError
from jobforge.jobs import (
    CANCELLABLE,
    RETRYABLE,
    TERMINAL,
    iso,
    new_id,
    new_ids,
    parse_job_ref,
    readable_id,
)

U = uuid.UUID("0f8e2b9c-1234-4abc-8def-0123456789ab")


def test_readable_id_is_the_uuid_hex() -> None:
    assert readable_id(U) == "job_0f8e2b9c12344abc8def0123456789ab"


@pytest.mark.parametrize(
    "ref",
    [
        str(U),
        str(U).upper(),
        U.hex,
        "job_" + U.hex,
        "job_" + str(U),
        f"  job_{U.hex}\n",
        f" {U} ",
    ],
)
def test_parse_job_ref_accepts_both_forms(ref: str) -> None:
    assert parse_job_ref(ref) == U


def test_parse_job_ref_round_trips_new_ids() -> None:
    for u in [uuid.uuid4() for _ in range(10)] + new_ids(10):
        assert parse_job_ref(readable_id(u)) == u
        assert parse_job_ref(str(u)) == u


def test_new_ids_are_unique_time_ordered_version_7_uuids() -> None:
    before = time.time()
    # More than 4,096 in one call: the sequence carries into the millisecond field.
    ids = new_ids(10_000) + [new_id() for _ in range(50)] + new_ids(3)
    after = time.time()
    assert len(set(ids)) == len(ids)
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert all(a < b for a, b in itertools.pairwise(ids))  # strictly increasing
    assert before - 0.002 <= (ids[0].int >> 80) / 1000 <= after
    assert (ids[-1].int >> 80) / 1000 <= after + 0.1  # carried ahead by a few ms at most
    assert len({u.int & ((1 << 62) - 1) for u in ids}) == len(ids)  # 62 random bits each


@pytest.mark.parametrize(
    "ref",
    ["", "   ", "job_", "job_xyz", "not-a-uuid", "job_" + U.hex[:-1], U.hex + "00", "12345"],
)
def test_parse_job_ref_refuses_garbage(ref: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_job_ref(ref)
    assert str(info.value) == f"Invalid job id: {ref!r}"
    assert info.value.code == "invalid"


def test_status_sets() -> None:
    assert JobStatus.SUCCEEDED.is_terminal
    assert JobStatus.FAILED.is_terminal
    assert not JobStatus.RUNNING.is_terminal
    assert not JobStatus.SCHEDULED.is_terminal
    assert TERMINAL.isdisjoint(CANCELLABLE)
    assert RETRYABLE <= TERMINAL
    assert JobStatus.RUNNING in CANCELLABLE


def make_job(**overrides: object) -> Job:
    t = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    fields: dict[str, object] = dict(
        id=U,
        type="send_email",
        queue="default",
        status=JobStatus.RUNNING,
        payload={"to": "a@example.com"},
        priority=3,
        scheduled_at=t,
        attempts=1,
        max_attempts=4,
        timeout=None,
        progress=40,
        progress_message="half",
        result=None,
        result_url=None,
        errors=[],
        tenant_id=None,
        trace_id="tr",
        correlation_id=None,
        retry_backoff=1.0,
        retry_backoff_max=300.0,
        worker_id="host:1:abc",
        lease_token="secret-token",
        lease_expires_at=t + timedelta(seconds=30),
        created_at=t,
        updated_at=t,
        started_at=t,
        completed_at=None,
    )
    fields.update(overrides)
    return Job(**fields)  # type: ignore[arg-type]


def test_to_dict_has_both_ids_and_utc_z_times() -> None:
    job = make_job()
    d = job.to_dict()
    assert d["id"] == str(U)
    assert d["job_id"] == "job_" + U.hex == job.job_id
    assert d["scheduled_at"] == "2026-03-04T05:06:07.891011Z"
    assert d["created_at"] == "2026-03-04T05:06:07.891011Z"
    assert d["lease_expires_at"] == "2026-03-04T05:06:37.891011Z"
    assert d["completed_at"] is None
    assert d["status"] == "running"
    assert d["payload"] == {"to": "a@example.com"}
    assert d["progress"] == 40


def test_to_dict_converts_other_timezones_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    job = make_job(created_at=datetime(2026, 1, 1, 2, 0, 0, tzinfo=plus2))
    assert job.to_dict()["created_at"] == "2026-01-01T00:00:00Z"


def test_to_dict_hides_the_lease_token_and_covers_every_other_field() -> None:
    d = make_job().to_dict()
    assert "lease_token" not in d
    assert "secret-token" not in json.dumps(d)
    expected = {name for name in Job.__dataclass_fields__ if name != "lease_token"} | {"job_id"}
    assert set(d) == expected


def test_to_dict_is_json_serialisable() -> None:
    d = make_job(result={"n": [1, 2]}, errors=[{"type": "X", "message": "m"}]).to_dict()
    back = json.loads(json.dumps(d))
    assert back["result"] == {"n": [1, 2]}
    assert back["status"] == "running"
    for key in ("scheduled_at", "created_at", "updated_at", "started_at", "lease_expires_at"):
        assert back[key].endswith("Z")
        assert datetime.fromisoformat(back[key].replace("Z", "+00:00")).tzinfo is not None


def test_iso() -> None:
    assert iso(None) is None
    assert iso(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00Z"
