"""Load a `module:attr` app reference, as the worker and CLI take it."""

from __future__ import annotations

import importlib
import os
import sys

from jobforge.app import Forge
from jobforge.errors import AppLoadError, ValidationError

APP_ENV = "JOBFORGE_APP"


def load_app(ref: str | None) -> Forge:
    """Import `module:attr` (the cwd is importable, as with uvicorn) and check it is a Forge."""
    ref = ref or os.environ.get(APP_ENV)
    if not ref:
        raise AppLoadError("No app given: pass --app module:attr or set JOBFORGE_APP")
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise AppLoadError(f"Invalid app reference {ref!r}: expected module:attr")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"Cannot load app {ref!r}: {exc}") from None
    app = getattr(module, attr, None)
    if app is None:
        raise AppLoadError(f"Cannot load app {ref!r}: module {module_name!r} has no {attr!r}")
    if not isinstance(app, Forge):
        raise AppLoadError(
            f"Cannot load app {ref!r}: {attr!r} is a {type(app).__name__}, not a Forge"
        )
    try:
        app.validate()
    except ValidationError as exc:
        raise AppLoadError(f"Invalid app {ref!r}: {exc}") from None
    return app
