"""Helpers for the HTTP API tests: the in-process client, API keys, a real server on a
thread, an SSE reader, and waiting with deadlines."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

from jobforge import Forge, apikeys

with warnings.catch_warnings():
    # Starlette >= 1.x wants `httpx2` for its TestClient and warns when it falls back to
    # `httpx` (which the test extras install); the client works the same with either.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

__all__ = ["TestClient"]

T = TypeVar("T")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
# scrypt at its real cost (~80 ms) for every key of every test would cost more than the
# tests themselves; the cost is stored with each hash, so verifying follows it.
CHEAP_SCRYPT = {"n": 2**4, "r": 1, "p": 1}
ALL_PERMISSIONS = tuple(p for p in apikeys.PERMISSIONS if p != "admin")
JSON = {"content-type": "application/json"}


def key(forge: Forge, tenant: str, *permissions: str) -> dict[str, str]:
    """Headers carrying a new API key of `tenant` (admin unless permissions are given)."""
    _, token = apikeys.create(forge.store, tenant, permissions or ("admin",))
    return {"Authorization": f"Bearer {token}"}


def unknown(kind: str) -> str:
    """A well-formed id of `kind` ("job", "wf", "run") that names nothing."""
    return f"{kind}_{uuid.uuid4().hex}"


def error(response: httpx.Response, status: int, code: str | None = None) -> str:
    """Assert the error shape and status; returns the message."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json() if response.content else None


def enqueue(client: TestClient, headers: dict[str, str], type: str = "add", **body: Any) -> str:
    """POST /jobs (202); the new job's id. `add` jobs get a valid payload by default."""
    body.setdefault("payload", {"a": 1, "b": 2} if type == "add" else {})
    response = client.post("/jobs", json={"type": type, **body}, headers=headers)
    return str(ok(response, 202)["job_id"])


def at(text: str) -> datetime:
    """An API timestamp as an aware datetime (compare these, not the text: a whole second
    is written without its fraction)."""
    assert ISO_Z.match(text), text
    return datetime.fromisoformat(text)


def wait_until(cond: Callable[[], T | None], timeout: float = 10.0, what: str = "it") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(0.02)


def routes(api: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path template) the app serves, read from its OpenAPI document (the
    router's own list nests included routers differently across FastAPI versions)."""
    return {(m.upper(), path) for path, ops in api.openapi()["paths"].items() for m in ops}


@contextmanager
def serving(api: FastAPI) -> Iterator[str]:
    """`api` under a real uvicorn on a free loopback port (its own thread); yields the
    base URL."""
    config = uvicorn.Config(api, host="127.0.0.1", port=0, log_level="warning",
                            lifespan="on", timeout_graceful_shutdown=2)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), what="uvicorn to start")
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "uvicorn did not stop"


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The events of an open `text/event-stream` response: {"id", "event", "data"}."""
    fields: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in fields:
                yield {**fields, "data": json.loads(fields["data"])}
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
