"""Named SQL queries, kept in one `.sql` file per dialect."""

from __future__ import annotations

import re
from importlib import resources
from typing import LiteralString, cast

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, LiteralString]:
    """Split `-- name: x` sections into a dict; comments before a name are ignored."""
    parts = _NAME.split(text)
    out: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        out[name] = cast(LiteralString, body.strip())
    return out


def load_queries(package: str) -> dict[str, LiteralString]:
    return parse_queries(resources.files(package).joinpath("queries.sql").read_text())
