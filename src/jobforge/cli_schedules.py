"""`jobforge schedule ...`: cron schedules stored in the database, fired by the workers."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from jobforge import schedules
from jobforge.cli import AppOpt, DbOpt, JsonOpt, _app, _dump, cli, out
from jobforge.jobs import iso, parse_payload_text
from jobforge.schedules import Schedule
from jobforge.store import schedules as stored
from jobforge.workflows.files import read_definition

schedule_cli = typer.Typer(no_args_is_help=True, help="Cron schedules.")
cli.add_typer(schedule_cli, name="schedule")

NameArg = Annotated[str, typer.Argument(help="The schedule's name.")]


def _table() -> Table:
    return Table("name", "cron", "timezone", "target", "depends on", "state", "next run",
                 "last run", "source")  # fmt: skip


def _row(s: Schedule) -> list[str]:
    target = f"{s.target_kind} {s.target}"
    return [
        escape(s.name), escape(s.cron), escape(s.timezone), escape(target),
        escape(", ".join(s.depends_on) or "-"), "paused" if s.paused else "active",
        iso(s.next_run_at) or "-", iso(s.last_run_at) or "-", s.source,
    ]  # fmt: skip


@schedule_cli.command("list")
def schedule_list(app_ref: AppOpt = None, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Every stored schedule (with --app, the app's own are stored first)."""
    app = _app(app_ref, db)
    if app_ref:
        stored.sync(app.store, list(app.schedules.values()))
    found = app.list_schedules()
    if as_json:
        _dump([s.to_dict() for s in found])
        return
    table = _table()
    for s in found:
        table.add_row(*_row(s))
    out.print(table)


@schedule_cli.command("add")
def schedule_add(
    name: NameArg,
    cron: Annotated[str, typer.Option("--cron", help='5 fields, e.g. "0 2 * * *".')],
    job: Annotated[str | None, typer.Option("--job", help="Enqueue this job type.")] = None,
    group: Annotated[str | None, typer.Option("--group", help="Enqueue this group.")] = None,
    workflow_file: Annotated[
        str | None, typer.Option("--workflow-file", help="Enqueue this workflow (JSON/YAML).")
    ] = None,
    payload: Annotated[
        str | None, typer.Option("--payload", help="Job payload, or group params, as JSON.")
    ] = None,
    timezone: Annotated[str, typer.Option("--timezone", "--tz")] = "UTC",
    depends_on: Annotated[
        list[str] | None,
        typer.Option("--depends-on", help="A schedule whose same-day run each tick waits for."),
    ] = None,
    catch_up: Annotated[
        bool, typer.Option("--catch-up", help="Fire every tick missed while no worker ran.")
    ] = False,
    app_ref: AppOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store a schedule; the workers fire it from its next tick on."""
    app = _app(app_ref, db)
    definition = None if workflow_file is None else read_definition(workflow_file)
    body = None if payload is None else parse_payload_text(payload)
    s = schedules.make(name, cron, job=job, group=group, workflow=definition, payload=body,
                       timezone=timezone, depends_on=tuple(depends_on or ()),
                       catch_up=catch_up, source="cli")  # fmt: skip
    if app_ref:
        schedules.check_target(app, s)
    added = app.add_schedule(s)
    if as_json:
        _dump(added.to_dict())
    else:
        out.print(f"schedule {escape(name)}: next run {iso(added.next_run_at)}", highlight=False)


@schedule_cli.command("remove")
def schedule_remove(name: NameArg, db: DbOpt = None) -> None:
    """Delete a schedule (its past runs' jobs stay)."""
    _app(None, db).remove_schedule(name)
    out.print(f"schedule {escape(name)} removed", highlight=False)


@schedule_cli.command("pause")
def schedule_pause(name: NameArg, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Stop firing until resumed."""
    _show(_app(None, db).pause_schedule(name, True), as_json)


@schedule_cli.command("resume")
def schedule_resume(name: NameArg, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Fire again from the next tick on (ticks missed while paused are not run)."""
    _show(_app(None, db).pause_schedule(name, False), as_json)


@schedule_cli.command("show")
def schedule_show(name: NameArg, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """A schedule and its latest runs."""
    app = _app(None, db)
    s = stored.get(app.store, name)
    runs = app.schedule_runs(name)
    if as_json:
        _dump({**s.to_dict(), "runs": [r.to_dict() for r in runs]})
        return
    _show(s, False)
    table = Table("tick", "enqueued", "note", title="runs")
    for r in runs:
        d = r.to_dict()
        table.add_row(d["tick"], d["job_id"] or d["workflow_id"] or "-", escape(r.note or ""))
    out.print(table)


def _show(s: Schedule, as_json: bool) -> None:
    if as_json:
        _dump(s.to_dict())
        return
    table = _table()
    table.add_row(*_row(s))
    out.print(table)
    if s.payload and s.target_kind != "workflow":
        out.print(f"payload: {escape(json.dumps(s.payload))}", highlight=False)
