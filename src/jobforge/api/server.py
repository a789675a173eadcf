"""The ASGI app: routes, error bodies, auth, the request size limit and the feed's listener."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from importlib.metadata import version
from typing import Any

import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from jobforge.api import dependencies, feed, jobs, ops, runs, workflows
from jobforge.api.errors import install
from jobforge.apikeys import Verifier
from jobforge.app import Forge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MIN_BODY_BYTES = 16 * 1024 * 1024  # a large workflow definition, with its payloads


class BodyLimit:
    """Refuse a request body over `limit` bytes with 413 before any route reads it.

    A declared Content-Length is checked at once; a chunked body is counted as it comes,
    then handed on whole (bodies are small next to the limit)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                await self._too_large(send)
                return
        body, sent = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then wait for the disconnect, as the server would

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        text = (
            f'{{"error":{{"code":"payload_too_large","message":"Request body over '
            f'{self.limit} bytes"}}}}'
        ).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(text)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": text})


def create_api(forge: Forge, *, auth: bool = True) -> FastAPI:
    """The HTTP API over `forge`; with `auth` every route but /health needs an API key."""
    hub = feed.FeedHub(forge.store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        hub.start()
        try:
            yield
        finally:
            hub.stop()

    api = FastAPI(
        title="jobforge",
        version=version("jobforge"),
        description="Durable background jobs, DAG workflows and durable runs over HTTP. "
        'Send `Authorization: Bearer KEY`; errors are `{"error": {"code", "message"}}`.',
        lifespan=lifespan,
    )
    api.state.forge = forge
    api.state.verifier = Verifier(forge.store) if auth else None
    api.state.feed = hub
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ops.StoreCollector(forge.store))
    api.state.metrics = registry
    install(api)
    for module in (jobs, dependencies, workflows, runs, feed, ops):
        api.include_router(module.router)
    api.add_middleware(BodyLimit, limit=max(MIN_BODY_BYTES, 2 * forge.max_payload_bytes))
    return api


class ApiServer(uvicorn.Server):
    """uvicorn that ends the event streams as it shuts down, then returns normally."""

    def __init__(self, config: uvicorn.Config, hub: feed.FeedHub) -> None:
        super().__init__(config)
        self._hub = hub

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._hub.close()  # else open streams hold the shutdown until its timeout
        await super().shutdown(sockets)

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Once shut down, uvicorn raises the stop signal again so that its default action
        # ends the process: SIGTERM would exit 143 before a worker beside us has stopped.
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()
