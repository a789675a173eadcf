"""`jobforge run ...`: start, inspect, cancel, resume and retry durable workflow runs."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from jobforge.app import Forge
from jobforge.cli import AppOpt, DbOpt, JsonOpt, _app, _dump, cli, out
from jobforge.durable.records import RunRecord
from jobforge.errors import PayloadError
from jobforge.jobs import iso, parse_payload_text
from jobforge.loader import load_app

run_cli = typer.Typer(no_args_is_help=True, help="Durable workflow runs.")
cli.add_typer(run_cli, name="run")

RunArg = Annotated[str, typer.Argument(metavar="RUN_ID", help="The run's id (run_…).")]


def _show(app: Forge, run: RunRecord, as_json: bool) -> None:
    steps = app.run_steps(run.run_id)
    if as_json:
        _dump({**run.to_dict(), "steps": [s.to_dict() for s in steps]})
        return
    out.print(
        f"run {run.run_id}  {escape(run.name)} v{run.version}  [bold]{run.status.value}[/bold]",
        highlight=False,
    )
    if run.current_step:
        out.print(f"current step: {escape(run.current_step)}", highlight=False)
    if run.output is not None:
        out.print(f"output: {escape(json.dumps(run.output))}", highlight=False)
    if run.error:
        out.print(f"error: {escape(str(run.error.get('message')))}", highlight=False)
        if "compensation" in run.error:
            failed = run.error["compensation_error"].get("message")
            out.print(f"compensation of {escape(run.error['compensation'])} failed: "
                      f"{escape(str(failed))}", highlight=False)  # fmt: skip
    table = Table("#", "step", "status", "attempts", "result / error", "completed")
    for s in steps:
        detail = s.error.get("message") if s.error else json.dumps(s.result)
        table.add_row(str(s.seq), escape(s.name), s.status.value, str(s.attempts),
                      escape(str(detail)[:80]), iso(s.completed_at) or "-")  # fmt: skip
    out.print(table)


@run_cli.command("start")
def start(
    name: Annotated[str, typer.Argument(help="The workflow's name.")],
    input: Annotated[str, typer.Option("--input", help="JSON object.")] = "{}",
    version: Annotated[int | None, typer.Option()] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    app_ref: AppOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a run of a registered workflow and print its id."""
    data = parse_payload_text(input)
    app = load_app(app_ref)
    if db:
        app.use_url(db)
    run_id = app.start_workflow(name, data, version=version, idempotency_key=idempotency_key)
    if as_json:
        _dump(app.get_run(run_id).to_dict())
    else:
        sys.stdout.write(run_id + "\n")


@run_cli.command("show")
def show(run_id: RunArg, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """A run and its steps."""
    app = _app(None, db)
    _show(app, app.get_run(run_id), as_json)


@run_cli.command("list")
def list_(
    status: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Runs, newest first."""
    runs = _app(None, db).list_runs(status, limit)
    if as_json:
        _dump([r.to_dict() for r in runs])
        return
    table = Table("run_id", "workflow", "version", "status", "current step", "created")
    for r in runs:
        table.add_row(r.run_id, escape(r.name), str(r.version), r.status.value,
                      escape(r.current_step or "-"), iso(r.created_at) or "")  # fmt: skip
    out.print(table)


@run_cli.command("cancel")
def cancel(run_id: RunArg, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Roll the run back (compensations, latest first); it ends cancelled."""
    app = _app(None, db)
    _show(app, app.cancel_run(run_id), as_json)


@run_cli.command("resume")
def resume(run_id: RunArg, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Make a sleeping or waiting run due now."""
    app = _app(None, db)
    _show(app, app.resume_run(run_id), as_json)


@run_cli.command("retry")
def retry(run_id: RunArg, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Re-run a failed run from its failed step; completed steps keep their results."""
    app = _app(None, db)
    _show(app, app.retry_run(run_id), as_json)


@run_cli.command("event")
def event(
    run_id: RunArg,
    name: Annotated[str, typer.Argument(help="The event's name.")],
    data: Annotated[str, typer.Option("--data", help="JSON value.")] = "null",
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send an event to a run waiting for it."""
    try:
        value: Any = json.loads(data)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"--data is not valid JSON: {exc}") from None
    app = _app(None, db)
    app.send_event(run_id, name, value)
    _show(app, app.get_run(run_id), as_json)
