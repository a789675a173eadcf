"""The HTTP API: `create_api(forge)` returns the ASGI app that `jobforge serve` runs."""

from __future__ import annotations

from jobforge.api.server import create_api

__all__ = ["create_api"]
