"""Durable workflow definitions: `@app.workflow` options, versions, durations, name clashes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from jobforge import Forge, JobContext, ValidationError
from jobforge.durable.definitions import DEFAULT_TIMEOUT, parse_duration


@pytest.fixture
def forge(tmp_path: Path) -> Forge:
    return Forge(f"sqlite:///{tmp_path / 'never.db'}")


def v1(ctx: Any, input: dict[str, Any]) -> str:
    return "v1"


def v2(ctx: Any, input: dict[str, Any]) -> str:
    return "v2"


def v3(ctx: Any, input: dict[str, Any]) -> str:
    return "v3"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("24h", 86400.0),
        ("7d", 7 * 86400.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        (" 10 s ", 10.0),
        ("42", 42.0),
        (30, 30.0),
        (2.5, 2.5),
        (None, None),
    ],
)
def test_parse_duration(text: Any, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "soon", "10x", "-5s", "1h30m", "s", "5 days"])
def test_parse_duration_refuses_bad_input(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_duration(bad)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"Invalid duration {bad!r}")


def test_defaults_and_options_are_recorded(forge: Forge) -> None:
    @forge.workflow
    def plain(ctx: Any, input: dict[str, Any]) -> None:
        return None

    forge.workflow(name="custom", version=3, timeout="15m", deprecated=True)(v1)
    forge.workflow(name="no_limit", timeout=None)(v2)

    wf = forge.durable.get("plain")
    assert (wf.name, wf.version, wf.timeout, wf.deprecated) == ("plain", 1, DEFAULT_TIMEOUT, False)
    assert DEFAULT_TIMEOUT == 24 * 3600
    custom = forge.durable.get("custom")
    assert (custom.name, custom.version, custom.timeout, custom.deprecated) == (
        "custom",
        3,
        900.0,
        True,
    )
    assert custom.func is v1
    assert forge.durable.get("no_limit").timeout is None
    assert "plain" in forge.durable and "v1" not in forge.durable


def test_the_decorator_returns_the_function(forge: Forge) -> None:
    assert forge.workflow(name="x")(v1) is v1

    @forge.workflow(version=2)
    def y(ctx: Any, input: dict[str, Any]) -> int:
        return 7

    assert y(None, {}) == 7


def test_async_workflow_is_detected(forge: Forge) -> None:
    @forge.workflow
    async def a(ctx: Any, input: dict[str, Any]) -> None:
        return None

    forge.workflow(name="s")(v1)
    assert forge.durable.get("a").is_async
    assert not forge.durable.get("s").is_async


def test_latest_version_by_default_and_version_picks_one(forge: Forge) -> None:
    forge.workflow(name="pay", version=2)(v2)
    forge.workflow(name="pay", version=1)(v1)  # registration order does not matter
    forge.workflow(name="pay", version=3)(v3)
    assert forge.durable.get("pay").version == 3
    assert forge.durable.get("pay").func is v3
    assert forge.durable.get("pay", 1).func is v1
    assert forge.durable.get("pay", 2).func is v2
    assert sorted(forge.durable.versions["pay"]) == [1, 2, 3]


def test_unknown_name_and_version_are_refused_in_one_line(forge: Forge) -> None:
    forge.workflow(name="pay", version=1)(v1)
    forge.workflow(name="pay", version=2)(v2)
    forge.workflow(name="ship")(v3)
    with pytest.raises(ValidationError) as info:
        forge.durable.get("nope")
    assert str(info.value) == "Unknown workflow 'nope' (known: pay, ship)"
    with pytest.raises(ValidationError) as info:
        forge.durable.get("pay", 7)
    assert str(info.value) == "Workflow 'pay' has no version 7 (has: 1, 2)"


def test_unknown_workflow_with_nothing_registered(forge: Forge) -> None:
    with pytest.raises(ValidationError, match=r"^Unknown workflow 'x' \(known: none registered\)$"):
        forge.durable.get("x")


def test_same_version_twice_is_refused(forge: Forge) -> None:
    forge.workflow(name="pay", version=1)(v1)
    with pytest.raises(ValidationError) as info:
        forge.workflow(name="pay", version=1)(v2)
    assert str(info.value) == "Workflow 'pay' version 1 is registered twice"
    assert forge.durable.get("pay").func is v1


def test_a_workflow_named_like_a_job_type_is_refused(forge: Forge) -> None:
    @forge.job
    def charge(ctx: JobContext) -> None:
        pass

    with pytest.raises(ValidationError) as info:
        forge.workflow(name="charge")(v1)
    assert str(info.value) == "'charge' is already a job type"
    assert "charge" not in forge.durable


def test_a_job_named_like_a_workflow_is_refused(forge: Forge) -> None:
    forge.workflow(name="refund")(v1)

    def refund(ctx: JobContext) -> None:
        pass

    with pytest.raises(ValidationError, match="'refund' is registered twice"):
        forge.job(refund)
    assert "refund" not in forge.registry


def test_bad_timeout_is_refused_at_registration(forge: Forge) -> None:
    with pytest.raises(ValidationError, match="Invalid duration 'forever'"):
        forge.workflow(name="w", timeout="forever")(v1)
    assert "w" not in forge.durable


def test_starting_a_deprecated_version_logs_a_warning(
    forge: Forge, caplog: pytest.LogCaptureFixture
) -> None:
    forge.workflow(name="pay", version=1, deprecated=True)(v1)
    forge.workflow(name="pay", version=2)(v2)
    with caplog.at_level(logging.WARNING, logger="jobforge.durable"):
        assert forge.durable.starting("pay", None).version == 2
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert forge.durable.starting("pay", 1).version == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "deprecated" in warnings[0].getMessage()
    assert "pay" in warnings[0].getMessage() and "1" in warnings[0].getMessage()
