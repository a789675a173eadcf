from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobforge import Forge
from tests.e2e.helpers import Workers
from tests.e2e.serving import Servers


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """Start `jobforge worker` processes; every one left running is killed afterwards."""
    ws = Workers(tmp_path)
    try:
        yield ws
    finally:
        ws.cleanup()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    """Start `jobforge serve` processes; each one left running is stopped afterwards."""
    started = Servers(tmp_path)
    try:
        yield started
    finally:
        started.cleanup()


@pytest.fixture
def forge(db_url: str) -> Iterator[Forge]:
    """The test's own view of the database (a separate process from every worker)."""
    app = Forge(db_url, allow_unknown_types=True)
    app.store  # noqa: B018 - create and migrate now, so counts work from the start
    yield app
    app.close()


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    """Where `sleepy` jobs write a file as they start."""
    path = tmp_path / "markers"
    path.mkdir()
    return path
