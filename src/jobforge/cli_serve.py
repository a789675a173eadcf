"""`jobforge serve` (the HTTP API, optionally with a worker) and `jobforge apikey ...`."""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from contextlib import nullcontext
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from jobforge import apikeys
from jobforge.cli import AppOpt, DbOpt, JsonOpt, _app, _dump, cli, err, out
from jobforge.errors import ConfigError, ValidationError
from jobforge.worker.background import background_worker
from jobforge.worker.worker import WorkerConfig

log = logging.getLogger("jobforge.api")
key_cli = typer.Typer(no_args_is_help=True, help="API keys of the HTTP API.")
cli.add_typer(key_cli, name="apikey")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """Bind first: a taken port fails with one line, port 0 gets a real number, and the
    printed URL accepts connections at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP; without it
    # Nagle holds each response body for the client's delayed ACK (40 ms per request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # connections queue from now on, before the app has started
    except OSError as exc:
        sock.close()
        raise ConfigError(f"Cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


@cli.command()
def serve(
    app_ref: AppOpt = None,
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port.")] = 8000,
    with_worker: Annotated[
        bool, typer.Option("--with-worker", help="Also run a worker in this process.")
    ] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="The worker's jobs at once.")] = 4,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="No API keys: loopback addresses only.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json, docs at /docs) until SIGTERM/SIGINT."""
    import uvicorn

    from jobforge.api import create_api
    from jobforge.api.server import ApiServer

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if no_auth and not is_loopback(host):
        raise ConfigError(f"--no-auth is allowed only on a loopback address, not {host}")
    app = _app(app_ref, db)
    if with_worker and not app.registry and not app.durable.versions:
        raise ValidationError("--with-worker needs --app with jobs or workflows to run")
    app.store  # noqa: B018 - open and migrate now, so a bad URL fails before we listen
    sock = _bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}"
    if no_auth:
        log.warning("auth is OFF (--no-auth, loopback only): every request acts as admin")
    api = create_api(app, auth=not no_auth)
    config = uvicorn.Config(
        api, log_level=log_level.lower(), access_log=False, timeout_graceful_shutdown=5
    )
    worker = WorkerConfig(concurrency=concurrency) if with_worker else None
    with background_worker(app, worker) if worker else nullcontext():
        sys.stdout.write(f"jobforge API on {url} (docs {url}/docs)\n")
        sys.stdout.flush()
        ApiServer(config, api.state.feed).run(sockets=[sock])


# -- API keys --------------------------------------------------------------------------
@key_cli.command("create")
def key_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    permissions: Annotated[
        str, typer.Option(help=f"Comma-separated: {', '.join(apikeys.PERMISSIONS)}.")
    ],
    name: Annotated[str | None, typer.Option(help="A note: who or what uses it.")] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key and print it once: only a slow hash of it is kept."""
    key, token = apikeys.create(_app(None, db).store, tenant, permissions.split(","), name)
    if as_json:
        _dump({**key.to_dict(), "key": token})
        return
    sys.stdout.write(token + "\n")
    err.print(
        f"API key {key.id} for tenant {escape(key.tenant_id)} "
        f"({', '.join(sorted(key.permissions))}). It is not shown again.",
        highlight=False,
    )


@key_cli.command("list")
def key_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Keys (never their secrets): tenant, permissions, created, last used, revoked."""
    keys = apikeys.list_keys(_app(None, db).store, tenant)
    if as_json:
        _dump([k.to_dict() for k in keys])
        return
    table = Table("id", "tenant", "name", "permissions", "created", "last used", "revoked")
    for k in keys:
        d = k.to_dict()
        table.add_row(
            k.id, escape(k.tenant_id), escape(k.name or ""), ",".join(d["permissions"]),
            d["created_at"], d["last_used_at"] or "", d["revoked_at"] or "",
        )  # fmt: skip
    out.print(table)


@key_cli.command("revoke")
def key_revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (see list).")],
    db: DbOpt = None,
) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    key = apikeys.revoke(_app(None, db).store, key_id)
    err.print(f"revoked API key {key.id} (tenant {escape(key.tenant_id)})", highlight=False)
