"""Retry backoff: exponential steps, capped, with "equal jitter" in [step/2, step]."""

from __future__ import annotations

import random

import pytest

from jobforge.retry import DEFAULT_BACKOFF, DEFAULT_BACKOFF_MAX, backoff_delay


class FixedRandom(random.Random):
    """A real Random whose `random()` always returns one chosen value."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_defaults_are_sane() -> None:
    assert DEFAULT_BACKOFF == 1.0
    assert DEFAULT_BACKOFF_MAX == 300.0


@pytest.mark.parametrize(
    ("attempt", "step"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (9, 256.0)],
)
def test_exponential_step(attempt: int, step: float) -> None:
    # r = 0 gives exactly half the step, r -> 1 approaches the whole step.
    assert backoff_delay(attempt, 1.0, 1000.0, FixedRandom(0.0)) == pytest.approx(step / 2)
    assert backoff_delay(attempt, 1.0, 1000.0, FixedRandom(1.0)) == pytest.approx(step)


def test_base_scales_the_step() -> None:
    assert backoff_delay(3, 0.05, 100.0, FixedRandom(1.0)) == pytest.approx(0.2)
    assert backoff_delay(1, 2.5, 100.0, FixedRandom(0.0)) == pytest.approx(1.25)


def test_attempt_zero_or_negative_uses_the_base_step() -> None:
    assert backoff_delay(0, 3.0, 100.0, FixedRandom(1.0)) == pytest.approx(3.0)
    assert backoff_delay(-4, 3.0, 100.0, FixedRandom(1.0)) == pytest.approx(3.0)


@pytest.mark.parametrize("attempt", [6, 10, 50, 1000])
def test_step_is_capped(attempt: int) -> None:
    cap = 30.0
    assert backoff_delay(attempt, 1.0, cap, FixedRandom(1.0)) == pytest.approx(cap)
    assert backoff_delay(attempt, 1.0, cap, FixedRandom(0.0)) == pytest.approx(cap / 2)


def test_huge_attempt_does_not_overflow() -> None:
    # 2 ** 5000 is an int; multiplying it by a float must not blow up before the cap applies.
    delay = backoff_delay(5000, 1, 60, FixedRandom(0.5))
    assert delay == pytest.approx(45.0)


@pytest.mark.parametrize(
    ("attempt", "base", "cap"), [(1, 1.0, 300.0), (4, 0.5, 300.0), (12, 1.0, 60.0)]
)
def test_jitter_stays_within_half_step_and_step(attempt: int, base: float, cap: float) -> None:
    step = min(cap, base * 2 ** (attempt - 1))
    rng = random.Random(1234)
    delays = [backoff_delay(attempt, base, cap, rng) for _ in range(2000)]
    assert all(step / 2 <= d <= step for d in delays)
    # Jitter actually spreads the values over the range (not a constant).
    assert max(delays) - min(delays) > step * 0.4
    assert len(set(delays)) > 1900


def test_jitter_without_rng_uses_module_random() -> None:
    delays = {backoff_delay(3, 1.0, 300.0) for _ in range(200)}
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert len(delays) > 1


def test_same_seed_same_delays() -> None:
    a = [backoff_delay(n, 1.0, 300.0, random.Random(7)) for n in range(1, 8)]
    b = [backoff_delay(n, 1.0, 300.0, random.Random(7)) for n in range(1, 8)]
    assert a == b
