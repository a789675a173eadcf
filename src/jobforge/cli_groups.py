"""`jobforge group ...` and `jobforge job definitions`: the registry, its groups, group runs."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from jobforge.app import Forge
from jobforge.cli import AppOpt, DbOpt, JsonOpt, _dump, cli, job_cli, out
from jobforge.errors import AppLoadError, PayloadError, ValidationError
from jobforge.loader import load_app
from jobforge.registry import GroupPlan

group_cli = typer.Typer(no_args_is_help=True, help="Job groups from the registry.")
cli.add_typer(group_cli, name="group")

ParamsOpt = Annotated[
    str | None,
    typer.Option(
        "--params", help='Payload overrides per job, as JSON: {"job-name": {"field": value}}.'
    ),
]


def _registry_app(app_ref: str | None, db: str | None = None) -> Forge:
    """These commands read the registry, so an app is required (and is validated on load)."""
    if not app_ref:
        raise AppLoadError(
            "This command needs your app: pass --app module:attr or set JOBFORGE_APP"
        )
    app = load_app(app_ref)
    if db:
        app.use_url(db)
    return app


def _deps(names: Any) -> str:
    return ", ".join(names) or "-"


@group_cli.command("list")
def group_list(app_ref: AppOpt = None, as_json: JsonOpt = False) -> None:
    """Groups with their number of jobs."""
    counts = _registry_app(app_ref).groups()
    if as_json:
        _dump([{"group": g, "jobs": n} for g, n in counts.items()])
        return
    table = Table("group", "jobs")
    for group, n in counts.items():
        table.add_row(escape(group), str(n))
    out.print(table)


@group_cli.command("show")
def group_show(
    name: Annotated[str, typer.Argument(help="The group.")],
    app_ref: AppOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A group's jobs with what each depends on."""
    jobs = _registry_app(app_ref).group_jobs(name)
    if as_json:
        _dump({"group": name, "jobs": [d.to_dict() for d in jobs]})
        return
    table = Table("job", "depends on", "queue", "description", title=f"group {escape(name)}")
    for d in jobs:
        table.add_row(
            escape(d.name),
            escape(_deps(d.depends_on)),
            escape(d.queue),
            escape(d.description or ""),
        )
    out.print(table)


@group_cli.command("enqueue")
def group_enqueue(
    name: Annotated[str | None, typer.Argument(help="The group (or --all).")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Every registered job.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; write nothing.")
    ] = False,
    params: ParamsOpt = None,
    app_ref: AppOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enqueue a group (with the jobs it depends on from other groups) as one workflow."""
    if (name is None) == (not all_jobs):
        raise ValidationError("Give a group name or --all (not both)")
    overrides = _params(params)
    app = _registry_app(app_ref, db)
    if all_jobs:
        plan = app.enqueue_all(overrides, dry_run=dry_run)
    else:
        assert name is not None
        plan = app.enqueue_group(name, overrides, dry_run=dry_run)
    if as_json:
        _dump(plan.to_dict())
    else:
        _print_plan(plan)


def _params(text: str | None) -> dict[str, dict[str, Any]]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"--params is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise PayloadError('--params must be a JSON object of objects: {"job-name": {...}}')
    return value


def _print_plan(plan: GroupPlan) -> None:
    title = f"{'would enqueue' if plan.dry_run else 'enqueued'} {escape(plan.target)}"
    table = Table("job", "group", "included as", "depends on", "payload", title=title)
    for j in plan.jobs:
        table.add_row(
            escape(j.name),
            escape(j.group or "-"),
            escape(j.reason),
            escape(_deps(j.depends_on)),
            escape(json.dumps(j.payload)),
        )
    out.print(table)
    if plan.workflow_id:
        sys.stdout.write(plan.workflow_id + "\n")


@job_cli.command("definitions")
def job_definitions(app_ref: AppOpt = None, as_json: JsonOpt = False) -> None:
    """The registry: every job type with its group and dependencies."""
    app = _registry_app(app_ref)
    if as_json:
        _dump([d.to_dict() for d in app.registry.values()])
        return
    table = Table("job", "group", "depends on", "queue", "retries", "description")
    for d in app.registry.values():
        table.add_row(
            escape(d.name),
            escape(d.group or "-"),
            escape(_deps(d.depends_on)),
            escape(d.queue),
            str(d.retries),
            escape(d.description or ""),
        )
    out.print(table)
