"""`jobforge workflow ...`: create from a file, inspect, graph, cancel, retry, resume."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from jobforge.app import Forge
from jobforge.cli import AppOpt, DbOpt, JsonOpt, _app, _dump, _styled, cli, out, print_edges
from jobforge.errors import ValidationError
from jobforge.workflows.export import FORMATS, duration, unknown_format
from jobforge.workflows.files import load_workflow_file
from jobforge.workflows.records import WorkflowRecord

workflow_cli = typer.Typer(no_args_is_help=True, help="DAG workflows.")
cli.add_typer(workflow_cli, name="workflow")

IdArg = Annotated[str, typer.Argument(metavar="ID", help="The workflow's id (wf_…).")]
TERMINAL = ("succeeded", "failed", "cancelled")


def workflow_json(app: Forge, wf: WorkflowRecord) -> dict[str, Any]:
    """The workflow with its stats and jobs, as `workflow show --json` prints it."""
    data = wf.to_dict()
    data["jobs"] = [
        {
            "name": j.name,
            "id": j.job_id,
            "type": j.type,
            "status": j.status.value,
            "dependency_status": j.dependency_status,
            "started_at": j.to_dict()["started_at"],
            "completed_at": j.to_dict()["completed_at"],
            "result": j.result,
            "reason": j.reason,
        }
        for j in app.workflow_jobs(wf.workflow_id)
    ]
    return data


def _get(app: Forge, ref: str) -> WorkflowRecord:
    return app._workflow_or_raise(ref)


@workflow_cli.command("create")
def create(
    file: Annotated[str, typer.Option("--file", "-f", help="Workflow definition (JSON or YAML).")],
    app_ref: AppOpt = None,
    db: DbOpt = None,
) -> None:
    """Validate a workflow file, enqueue all its jobs and edges at once, print its id."""
    wf = load_workflow_file(file)
    try:
        workflow_id = _app(app_ref, db).enqueue_workflow(wf)
    except ValidationError as exc:
        raise type(exc)(f"{file}: {exc}") from None
    sys.stdout.write(workflow_id + "\n")


@workflow_cli.command("list")
def list_(
    status: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Workflows, newest first."""
    app = _app(None, db)
    try:
        wfs = app.list_workflows(status=status, limit=limit)
    except ValueError:
        raise ValidationError(f"Unknown workflow status {status!r}") from None
    if as_json:
        _dump([w.to_dict() for w in wfs])
        return
    table = Table("workflow_id", "name", "status", "policy", "jobs", "done %", "created")
    for w in wfs:
        s = w.stats()
        table.add_row(
            w.workflow_id, w.name, w.status, w.failure_policy, str(s["total"]),
            f"{s['completion_percentage']}", w.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )  # fmt: skip
    out.print(table)


def _status_view(app: Forge, wf: WorkflowRecord) -> Table:
    s = wf.stats()
    head = Table.grid(padding=(0, 2))
    head.add_row(f"[bold]{wf.name}[/bold] {wf.workflow_id}", f"status: {wf.status}")
    head.add_row(
        ProgressBar(total=100, completed=s["completion_percentage"], width=40),
        f"{s['completion_percentage']}% of {s['total']} jobs",
    )
    counts = "  ".join(f"{k}: {s[k]}" for k in ("waiting", "queued", "running", "succeeded",
                                               "failed", "skipped", "cancelled"))  # fmt: skip
    head.add_row(counts, wf.reason or "")
    jobs = Table("name", "job_id", "type", "status", "deps", "duration", "result / reason")
    for j in app.workflow_jobs(wf.workflow_id):
        d = duration(j)
        detail = j.reason if j.reason else ("" if j.result is None else str(j.result))
        jobs.add_row(
            j.name or "", j.job_id, j.type, _styled(j.status), j.dependency_status,
            "" if d is None else f"{d:.2f}s", detail[:50],
        )  # fmt: skip
    grid = Table.grid()
    grid.add_row(head)
    grid.add_row(jobs)
    return grid


@workflow_cli.command("show")
def show(ref: IdArg, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """A workflow: status, stats and every job."""
    app = _app(None, db)
    wf = _get(app, ref)
    if as_json:
        _dump(workflow_json(app, wf))
    else:
        out.print(_status_view(app, wf))


@workflow_cli.command("status")
def status(
    ref: IdArg,
    watch: Annotated[bool, typer.Option(help="Refresh until the workflow ends.")] = False,
    interval: Annotated[float, typer.Option(min=0.1)] = 1.0,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Status and stats, with a progress bar; `--watch` keeps it live."""
    app = _app(None, db)
    wf = _get(app, ref)
    if as_json:
        _dump({"workflow_id": wf.workflow_id, "status": wf.status, "stats": wf.stats()})
        return
    if not watch:
        out.print(_status_view(app, wf))
        return
    with Live(_status_view(app, wf), console=out, refresh_per_second=4) as live:
        while wf.status not in TERMINAL:
            time.sleep(interval)
            wf = _get(app, ref)
            live.update(_status_view(app, wf))


@workflow_cli.command("dependencies")
def dependencies(
    ref: Annotated[str, typer.Argument(metavar="JOB_ID")],
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A job's parents and children, with each edge's kind, condition and status."""
    app = _app(None, db)
    into, children = app.dependencies(ref)
    if as_json:
        _dump({
            "job_id": app._job_or_raise(ref).job_id,
            "check": app.check_dependencies(ref),
            "parents": [e.to_dict() for e in into],
            "children": [e.to_dict() for e in children],
        })  # fmt: skip
        return
    print_edges(app, into, children)


@workflow_cli.command("graph")
def graph(
    ref: Annotated[str, typer.Argument(metavar="ID", help="A workflow (wf_…) or a job (job_…).")],
    fmt: Annotated[
        str, typer.Option("--format", help="dot, mermaid, json or svg (a picture)")
    ] = "dot",
    db: DbOpt = None,
) -> None:
    """The workflow's graph, or a job's neighbourhood, as DOT, Mermaid, JSON or SVG."""
    if fmt not in FORMATS:
        raise unknown_format(fmt)
    app = _app(None, db)
    text = app.job_graph(ref, fmt) if ref.startswith("job_") else app.workflow_graph(ref, fmt)
    sys.stdout.write(text)


def _control(verb: str, ref: str, db: str | None, as_json: bool) -> None:
    app = _app(None, db)
    wf = getattr(app, f"{verb}_workflow")(ref)
    if as_json:
        _dump(wf.to_dict())
    else:
        out.print(f"{wf.workflow_id} {wf.status}", highlight=False)


@workflow_cli.command("cancel")
def cancel(ref: IdArg, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Cancel jobs not yet started; running ones are asked to stop (ctx.cancel_requested)."""
    _control("cancel", ref, db, as_json)


@workflow_cli.command("retry")
def retry(ref: IdArg, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Re-run failed jobs and the skipped/cancelled jobs after them; keep successes."""
    _control("retry", ref, db, as_json)


@workflow_cli.command("resume")
def resume(ref: IdArg, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Resume a paused workflow (manual policy) as under continue_on_failure."""
    _control("resume", ref, db, as_json)
