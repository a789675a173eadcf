"""Cron schedules without a database: which ticks are due at a moment (missed ticks collapse
unless `catch_up`), timezones across daylight saving changes, and one-line refusals of bad
cron expressions, timezones and targets."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobforge import Forge, JobContext, UnknownJobType, ValidationError
from jobforge.deps import MissingDependency
from jobforge.registry import GroupNotFound
from jobforge.schedules import MAX_CATCH_UP, Schedule, make


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def at(s: Schedule, next_run_at: datetime, catch_up: bool | None = None) -> Schedule:
    changes: dict[str, object] = {"next_run_at": next_run_at}
    if catch_up is not None:
        changes["catch_up"] = catch_up
    return dataclasses.replace(s, **changes)  # type: ignore[arg-type]


def as_utc(ticks: list[datetime]) -> list[datetime]:
    return [t.astimezone(UTC) for t in ticks]


def following(s: Schedule, start: datetime, n: int) -> list[datetime]:
    out, moment = [], start
    for _ in range(n):
        moment = s.next_after(moment)
        out.append(moment.astimezone(UTC))
    return out


HOURLY = make("hourly", "0 * * * *", job="t")


# -- due ticks -----------------------------------------------------------------------------------
def test_a_tick_is_due_from_its_moment_on() -> None:
    s = at(HOURLY, utc(2026, 1, 1, 10))
    ticks, nxt = s.due_ticks(utc(2026, 1, 1, 10))
    assert as_utc(ticks) == [utc(2026, 1, 1, 10)]
    assert nxt == utc(2026, 1, 1, 11)
    ticks, nxt = s.due_ticks(utc(2026, 1, 1, 10, 59, 59))
    assert as_utc(ticks) == [utc(2026, 1, 1, 10)] and nxt == utc(2026, 1, 1, 11)


def test_missed_ticks_collapse_into_the_latest() -> None:
    s = at(HOURLY, utc(2026, 1, 1, 10))
    ticks, nxt = s.due_ticks(utc(2026, 1, 1, 15, 30))
    assert as_utc(ticks) == [utc(2026, 1, 1, 15)]
    assert nxt == utc(2026, 1, 1, 16)
    # days of downtime: still one tick, the latest
    ticks, nxt = s.due_ticks(utc(2026, 1, 4, 7, 5))
    assert as_utc(ticks) == [utc(2026, 1, 4, 7)] and nxt == utc(2026, 1, 4, 8)


def test_catch_up_returns_every_missed_tick_oldest_first() -> None:
    s = at(HOURLY, utc(2026, 1, 1, 10), catch_up=True)
    ticks, nxt = s.due_ticks(utc(2026, 1, 1, 15, 30))
    assert as_utc(ticks) == [utc(2026, 1, 1, h) for h in range(10, 16)]
    assert nxt == utc(2026, 1, 1, 16)
    ticks, nxt = s.due_ticks(utc(2026, 1, 1, 10))
    assert as_utc(ticks) == [utc(2026, 1, 1, 10)] and nxt == utc(2026, 1, 1, 11)


def test_catch_up_is_bounded_per_pass() -> None:
    s = at(make("m", "* * * * *", job="t", catch_up=True), utc(2026, 1, 1))
    ticks, nxt = s.due_ticks(utc(2026, 1, 3))
    assert len(ticks) == MAX_CATCH_UP
    assert as_utc(ticks)[-1] == utc(2026, 1, 1) + timedelta(minutes=MAX_CATCH_UP - 1)
    assert nxt == utc(2026, 1, 1) + timedelta(minutes=MAX_CATCH_UP)  # the rest next pass


# -- timezones -----------------------------------------------------------------------------------
def test_timezone_across_the_spring_dst_change() -> None:
    """02:00 in Paris: 01:00 UTC in winter, 00:00 UTC in summer. On 2026-03-29 02:00 does not
    exist (the clocks jump from 02:00 to 03:00): the day still gets one tick, at 03:00 CEST."""
    s = make("paris", "0 2 * * *", job="t", timezone="Europe/Paris")
    assert following(s, utc(2026, 3, 27, 12), 4) == [
        utc(2026, 3, 28, 1),
        utc(2026, 3, 29, 1),
        utc(2026, 3, 30, 0),
        utc(2026, 3, 31, 0),
    ]
    caught = at(s, utc(2026, 3, 28, 1), catch_up=True)
    ticks, nxt = caught.due_ticks(utc(2026, 3, 30, 12))
    assert as_utc(ticks) == [utc(2026, 3, 28, 1), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0)]
    assert nxt.astimezone(UTC) == utc(2026, 3, 31, 0)
    collapsed = at(s, utc(2026, 3, 28, 1))
    ticks, _ = collapsed.due_ticks(utc(2026, 3, 30, 12))
    assert as_utc(ticks) == [utc(2026, 3, 30, 0)]


def test_timezone_across_the_autumn_dst_change_fires_once_a_day() -> None:
    """On 2026-10-25 Paris clocks go back from 03:00 CEST to 02:00 CET, so 02:00 happens
    twice; a daily "0 2 * * *" schedule must still fire once that day, not twice."""
    s = make("paris", "0 2 * * *", job="t", timezone="Europe/Paris")
    ticks = following(s, utc(2026, 10, 23, 12), 3)
    local_days = [t.astimezone(ZoneInfo("Europe/Paris")).date() for t in ticks]
    assert local_days == [
        datetime(2026, 10, 24).date(),
        datetime(2026, 10, 25).date(),
        datetime(2026, 10, 26).date(),
    ], ticks


def test_offset_timezone_without_dst() -> None:
    s = make("kolkata", "30 9 * * 1-5", job="t", timezone="Asia/Kolkata")
    # Friday 2026-11-20 then Monday 2026-11-23, at 04:00 UTC (UTC+05:30)
    assert following(s, utc(2026, 11, 20, 0), 2) == [utc(2026, 11, 20, 4), utc(2026, 11, 23, 4)]


# -- refusals ------------------------------------------------------------------------------------
CRON_HELP = "expected 5 fields (minute hour day-of-month month day-of-week)"


@pytest.mark.parametrize(
    "expr", ["61 * * * *", "0 0 * * * *", "* * * *", "", "@daily", "0 25 * * *"]
)
def test_bad_cron_expressions_are_refused(expr: str) -> None:
    with pytest.raises(ValidationError) as err:
        make("s", expr, job="t")
    assert str(err.value) == f"Invalid cron expression {expr!r}: {CRON_HELP}"


@pytest.mark.parametrize("tz", ["Mars/Olympus", "../etc/passwd", "", "utc+2"])
def test_unknown_timezones_are_refused(tz: str) -> None:
    with pytest.raises(ValidationError) as err:
        make("s", "0 2 * * *", job="t", timezone=tz)
    assert str(err.value) == f"Unknown timezone {tz!r}"


def test_bad_targets_and_names_are_refused() -> None:
    one = "A schedule needs exactly one target: a job, a group or a workflow"
    with pytest.raises(ValidationError, match=f"^{one}$"):
        make("s", "0 2 * * *")
    with pytest.raises(ValidationError, match=f"^{one}$"):
        make("s", "0 2 * * *", job="t", group="g")
    with pytest.raises(ValidationError, match=r"^Invalid schedule name 'a b'$"):
        make("a b", "0 2 * * *", job="t")
    with pytest.raises(ValidationError, match=r"^Schedule 's' cannot depend on itself$"):
        make("s", "0 2 * * *", job="t", depends_on=["s"])


def test_app_schedules_are_checked(tmp_path: Path) -> None:
    app = Forge(f"sqlite:///{tmp_path / 'never.db'}")

    @app.job(cron="0 2 * * *", timezone="Europe/Paris")
    def extract(ctx: JobContext) -> None:
        return None

    s = app.schedules["extract"]
    assert (s.cron, s.timezone, s.target_kind, s.target) == ("0 2 * * *", "Europe/Paris",
                                                             "job", "extract")  # fmt: skip
    with pytest.raises(ValidationError, match=r"^Schedule 'extract' is defined twice$"):
        app.schedule("extract", "0 3 * * *", job="extract")
    with pytest.raises(ValidationError, match=r"^Invalid cron expression '61 \* \* \* \*'"):
        app.schedule("bad", "61 * * * *", job="extract")
    with pytest.raises(ValidationError, match=r"^Unknown timezone 'Nowhere/Land'$"):
        app.schedule("bad", "0 2 * * *", job="extract", timezone="Nowhere/Land")
    assert set(app.schedules) == {"extract"}
    app.validate()

    app.schedule("report", "0 8 * * *", job="report-job")
    with pytest.raises(UnknownJobType) as err:
        app.validate()
    assert str(err.value) == "Unknown job type 'report-job' (schedule 'report')"
    del app.schedules["report"]
    app.schedule("report2", "0 8 * * *", job="extract", depends_on=["ghost"])
    with pytest.raises(MissingDependency) as err2:
        app.validate()
    assert str(err2.value) == "Schedule not found: ghost (required by report2)"
    del app.schedules["report2"]
    app.schedule("nightly", "0 3 * * *", group="nope")
    with pytest.raises(GroupNotFound, match=r"^Group not found: nope"):
        app.validate()
    assert app._store is None and not (tmp_path / "never.db").exists()


def test_a_job_whose_cron_is_refused_is_not_registered(tmp_path: Path) -> None:
    """A decoration that raises leaves nothing behind: not the schedule, not the job."""
    app = Forge(f"sqlite:///{tmp_path / 'never.db'}")
    with pytest.raises(ValidationError, match="Invalid cron expression"):

        @app.job(cron="0 0 0 * * *")
        def broken(ctx: JobContext) -> None:
            return None

    assert app.schedules == {}
    assert "broken" not in app.registry


def test_catch_up_across_the_autumn_dst_change_fires_once_a_day() -> None:
    paris = ZoneInfo("Europe/Paris")
    s = at(make("paris", "0 2 * * *", job="t", timezone="Europe/Paris"), utc(2026, 10, 24, 0),
           catch_up=True)  # fmt: skip
    ticks, nxt = s.due_ticks(utc(2026, 10, 27, 12))
    assert as_utc(ticks) == [utc(2026, 10, 24, 0), utc(2026, 10, 25, 0), utc(2026, 10, 26, 1),
                             utc(2026, 10, 27, 1)]  # fmt: skip
    assert [t.astimezone(paris).hour for t in ticks] == [2, 2, 2, 2]
    assert nxt.astimezone(UTC) == utc(2026, 10, 28, 1)
    # an hourly schedule keeps both 02:30s: they are an hour apart
    hourly = make("hourly", "30 * * * *", job="t", timezone="Europe/Paris")
    assert following(hourly, utc(2026, 10, 24, 23, 45), 3) == [
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 30),
        utc(2026, 10, 25, 2, 30),
    ]
