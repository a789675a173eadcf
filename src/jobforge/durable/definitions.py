"""`@app.workflow`: durable workflow definitions, several versions per name."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobforge.errors import ValidationError

log = logging.getLogger("jobforge.durable")

DEFAULT_TIMEOUT = 24 * 3600.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: float | str | None) -> float | None:
    """Seconds from 30, 30.5, "30s", "15m", "24h" or "7d"."""
    if value is None or isinstance(value, int | float):
        return None if value is None else float(value)
    m = _DURATION.match(value)
    if not m:
        raise ValidationError(f"Invalid duration {value!r}: use seconds, or e.g. '15m', '24h'")
    return float(m.group(1)) * _UNIT[m.group(2)]


@dataclass(frozen=True, slots=True)
class DurableWorkflow:
    """One version of a durable workflow: a function of (ctx, input) whose steps are recorded."""

    name: str
    version: int
    func: Callable[..., Any]
    timeout: float | None
    deprecated: bool

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)


class DurableRegistry:
    """Every registered version of every durable workflow."""

    def __init__(self) -> None:
        self.versions: dict[str, dict[int, DurableWorkflow]] = {}

    def add(self, wf: DurableWorkflow) -> None:
        known = self.versions.setdefault(wf.name, {})
        if wf.version in known:
            raise ValidationError(f"Workflow {wf.name!r} version {wf.version} is registered twice")
        known[wf.version] = wf

    def __contains__(self, name: object) -> bool:
        return name in self.versions

    def get(self, name: str, version: int | None = None) -> DurableWorkflow:
        """The given version, or the latest; an unknown name or version is refused."""
        known = self.versions.get(name)
        if not known:
            names = ", ".join(sorted(self.versions)) or "none registered"
            raise ValidationError(f"Unknown workflow {name!r} (known: {names})")
        if version is None:
            return known[max(known)]
        if version not in known:
            have = ", ".join(str(v) for v in sorted(known))
            raise ValidationError(f"Workflow {name!r} has no version {version} (has: {have})")
        return known[version]

    def starting(self, name: str, version: int | None) -> DurableWorkflow:
        """The version a new run uses; a deprecated one is logged."""
        wf = self.get(name, version)
        if wf.deprecated:
            log.warning("starting deprecated workflow %s version %d", name, wf.version)
        return wf
