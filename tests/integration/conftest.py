"""Fixtures of the HTTP API tests (tests/integration/test_api_*.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobforge import Forge, apikeys
from jobforge.api.server import create_api
from tests.apps.api_app import register
from tests.integration.api_support import CHEAP_SCRYPT, TestClient, key


@pytest.fixture
def forge(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Forge]:
    """The API test app (tests/apps/api_app.py) on the test's database, with cheap keys."""
    monkeypatch.setattr(apikeys, "_SCRYPT", CHEAP_SCRYPT)
    app = register(Forge(db_url))
    yield app
    app.close()


@pytest.fixture
def client(forge: Forge) -> Iterator[TestClient]:
    """An in-process client of the API (auth on), started and stopped with its lifespan."""
    with TestClient(create_api(forge)) as c:
        yield c


@pytest.fixture
def admin(forge: Forge) -> dict[str, str]:
    """Headers with an admin key of tenant `acme`."""
    return key(forge, "acme")
