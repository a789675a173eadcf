"""Edge conditions over a parent's result, in CEL (Common Expression Language).

CEL is side-effect free and cannot reach Python objects, so user text is never evaluated
as Python. Programs are compiled once and cached by source text. `celpy` is imported on
first use: it takes a fifth of a second, which every CLI command would otherwise pay.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jobforge.errors import ValidationError

if TYPE_CHECKING:
    import celpy


class ConditionError(ValidationError):
    """Invalid condition expression."""

    code = "bad_condition"


@lru_cache(maxsize=1024)
def compile_condition(source: str) -> celpy.Runner:
    """Parse a CEL expression; raises ConditionError naming the problem."""
    import celpy
    from celpy.celparser import CELParseError

    env = celpy.Environment()
    try:
        return env.program(env.compile(source))
    except CELParseError as exc:
        detail = " ".join(str(exc).split())
        raise ConditionError(f"Invalid condition {source!r}: {detail}") from None


def evaluate(source: str, result: Any) -> bool:
    """True when the condition holds for a parent's `result`.

    The result is bound as `result`, and when it is an object its top-level fields are
    also bound by name, so `validation_status == 'valid'` reads `result.validation_status`.
    A condition that errors (say, a missing field) or is not a boolean does not hold.
    """
    from celpy.adapter import json_to_cel
    from celpy.celtypes import BoolType
    from celpy.evaluation import CELEvalError

    program = compile_condition(source)
    variables: dict[str, Any] = {}
    if isinstance(result, dict):
        variables.update({k: v for k, v in result.items() if isinstance(k, str)})
    variables["result"] = result
    activation = json_to_cel(variables)
    try:
        value = program.evaluate(activation)  # type: ignore[arg-type]
    except (CELEvalError, KeyError, TypeError, ValueError):
        return False
    # CEL booleans are their own type (an int subclass): anything else does not hold.
    return isinstance(value, BoolType) and bool(value)
