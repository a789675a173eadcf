"""Retry backoff: exponential, capped, with jitter (pure functions)."""

from __future__ import annotations

import random

DEFAULT_BACKOFF = 1.0
DEFAULT_BACKOFF_MAX = 300.0


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before the attempt after `attempt` (1-based).

    "Equal jitter": half the exponential step is fixed and half random, so retries of
    many jobs failing together spread out, yet each still waits at least half its step.
    """
    # Clamp the exponent: 2.0 ** 1024 raises OverflowError (jobs may allow many retries).
    step: float = min(cap, base * 2.0 ** min(max(0, attempt - 1), 1000))
    r: float = (rng or random).random()
    return step / 2 + r * step / 2
