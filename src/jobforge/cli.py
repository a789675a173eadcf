"""The `jobforge` command line: worker, enqueue, job inspection and control, migrations."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jobforge.app import Forge
from jobforge.errors import JobforgeError, JobNotFound, ValidationError
from jobforge.jobs import Job, JobStatus, parse_payload_text
from jobforge.loader import APP_ENV, load_app
from jobforge.store.factory import ENV_VAR, open_store, resolve_url
from jobforge.worker.worker import Worker, WorkerConfig
from jobforge.workflows.records import EdgeRecord

T = TypeVar("T")

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
job_cli = typer.Typer(no_args_is_help=True, help="Inspect and control jobs.")
db_cli = typer.Typer(no_args_is_help=True, help="Database schema.")
cli.add_typer(job_cli, name="job")
cli.add_typer(db_cli, name="db")

# Piped output is read by people too: do not squeeze tables into 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

DbOpt = Annotated[
    str | None,
    typer.Option("--db", envvar=ENV_VAR, help="Database URL (default sqlite:///jobforge.db)."),
]
AppOpt = Annotated[
    str | None, typer.Option("--app", envvar=APP_ENV, help="Your app, as module:attr.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def main() -> None:
    """Entry point: one-line errors and a non-zero exit for anything jobforge refuses."""
    import jobforge.cli_groups  # registers `jobforge group`, `job definitions`
    import jobforge.cli_runs  # registers `jobforge run`
    import jobforge.cli_schedules  # registers `jobforge schedule`
    import jobforge.cli_serve  # registers `jobforge serve`, `jobforge apikey`
    import jobforge.cli_workflow  # noqa: F401 - registers `jobforge workflow`

    try:
        cli()
    except JobforgeError as exc:
        # escape: a message quoting user input ("[bold]x") must not be read as markup
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)


def _app(app_ref: str | None, db: str | None) -> Forge:
    """The user's app when given (so job types are checked), else a bare one."""
    if app_ref:
        app = load_app(app_ref)
        if db:
            app.use_url(db)
        return app
    return Forge(resolve_url(db), allow_unknown_types=True)


def _dump(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# -- worker ----------------------------------------------------------------------------
@cli.command()
def worker(
    app_ref: AppOpt = None,
    db: DbOpt = None,
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues (default all).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs run at once.")] = 4,
    prefetch: Annotated[
        int | None,
        typer.Option(min=0, help="Jobs claimed ahead of free slots (default: adapts, <= 64)."),
    ] = None,
    burst: Annotated[bool, typer.Option(help="Exit when no runnable job is left.")] = False,
    lease_seconds: Annotated[float, typer.Option(min=1, help="Lease per claim.")] = 30.0,
    grace: Annotated[
        float, typer.Option(min=0, help="Seconds running jobs get at shutdown.")
    ] = 30.0,
    poll_interval: Annotated[float, typer.Option(min=0.05, help="Fallback poll.")] = 2.0,
    rescue_interval: Annotated[float, typer.Option(min=0.1)] = 5.0,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Run jobs until SIGTERM/SIGINT (graceful), or until idle with --burst."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = load_app(app_ref)
    if db:
        app.use_url(db)
    if not app.registry and not app.durable.versions:
        raise ValidationError(f"App {app_ref or ''} registers no jobs or workflows: nothing to run")
    config = WorkerConfig(
        queues=[q.strip() for q in queues.split(",") if q.strip()] if queues else None,
        concurrency=concurrency,
        prefetch=prefetch,
        burst=burst,
        lease_seconds=lease_seconds,
        grace_period=grace,
        poll_interval=poll_interval,
        rescue_interval=rescue_interval,
    )
    app.store  # noqa: B018 - open and migrate now, so a bad URL fails before we start
    asyncio.run(_run_worker(Worker(app, config)))
    _exit_past_lingering_handlers()


def _exit_past_lingering_handlers() -> None:
    """A handler thread still running after the grace period cannot be stopped, and Python
    would wait for it at exit; its job is already released, so exit without waiting."""
    deadline = time.monotonic() + 0.5
    for thread in threading.enumerate():
        if thread.name.startswith("jobforge-job"):
            thread.join(max(0.0, deadline - time.monotonic()))  # idle ones end at once
    if any(t.name.startswith("jobforge-job") and t.is_alive() for t in threading.enumerate()):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


async def _run_worker(w: Worker) -> None:
    loop = asyncio.get_running_loop()
    signals = {"count": 0}

    def on_signal() -> None:
        signals["count"] += 1
        if signals["count"] == 1:
            logging.getLogger("jobforge.worker").info("stopping: finishing running jobs")
            w.request_stop()
        else:
            w.config.grace_period = 0  # second signal: release running jobs now
            w.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    stats = await w.run()
    err.print(f"worker done: claimed={stats.claimed} finished={stats.finished}", highlight=False)


# -- enqueue ---------------------------------------------------------------------------
@cli.command()
def enqueue(
    type_name: Annotated[str, typer.Argument(metavar="TYPE", help="Job type (handler name).")],
    payload: Annotated[str, typer.Option(help="JSON object.")] = "{}",
    queue: Annotated[str | None, typer.Option()] = None,
    priority: Annotated[int | None, typer.Option(help="Higher runs first.")] = None,
    delay: Annotated[float | None, typer.Option(help="Seconds to wait before running.")] = None,
    retries: Annotated[int | None, typer.Option()] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per attempt.")] = None,
    depends_on: Annotated[
        list[str] | None, typer.Option("--depends-on", help="Parent job id (repeatable).")
    ] = None,
    dependency_timeout: Annotated[
        float | None, typer.Option(help="Seconds the job may wait for its parents.")
    ] = None,
    unique_key: Annotated[
        str | None, typer.Option(help="Print the unfinished job with this key, if there is one.")
    ] = None,
    app_ref: AppOpt = None,
    db: DbOpt = None,
) -> None:
    """Enqueue one job and print its id."""
    data = parse_payload_text(payload)
    app = _app(app_ref, db)
    job_id = app.enqueue(
        type_name, data, queue=queue, priority=priority, delay=delay, retries=retries,
        timeout=timeout, depends_on=depends_on or None, dependency_timeout=dependency_timeout,
        unique_key=unique_key,
    )  # fmt: skip
    sys.stdout.write(job_id + "\n")


# -- job -------------------------------------------------------------------------------
def _find(app: Forge, ref: str) -> Job:
    job = app.get_job(ref)
    if job is None:
        raise JobNotFound(f"Job not found: {ref}")
    return job


def job_json(job: Job, parents: list[EdgeRecord]) -> dict[str, Any]:
    """A job as JSON, with the edges from its parents."""
    data = job.to_dict()
    data["parents"] = [
        {
            "job_id": "job_" + e.parent_id.hex,
            "dependency_type": e.kind,
            "condition": e.condition,
            "status": e.status,
        }
        for e in parents
    ]
    return data


@job_cli.command("show")
def job_show(
    ref: Annotated[str, typer.Argument(metavar="ID")],
    include_dependencies: Annotated[
        bool, typer.Option("--include-dependencies", help="Also show parents and children.")
    ] = False,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One job, by UUID or job_… id."""
    app = _app(None, db)
    job = _find(app, ref)
    into, children = app.dependencies(ref)
    if as_json:
        data = job_json(job, into)
        if include_dependencies:
            data["children"] = [e.to_dict() for e in children]
        _dump(data)
        return
    table = Table(show_header=False, box=None)
    for key, value in job.to_dict().items():
        if key == "errors" or value is None:
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)
        table.add_row(f"[bold]{key}[/bold]", str(value))
    out.print(table)
    for i, e in enumerate(job.errors, start=1):
        out.print(
            f"[bold red]error {i}[/bold red] attempt {e.get('attempt')} at {e.get('time')}: "
            f"{e.get('type')}: {e.get('message')}",
            highlight=False,
        )
    if job.errors and job.errors[-1].get("traceback"):
        out.print(job.errors[-1]["traceback"].rstrip(), highlight=False, markup=False)
    if include_dependencies:
        print_edges(app, into, children)


def print_edges(app: Forge, into: list[EdgeRecord], children: list[EdgeRecord]) -> None:
    """A table of a job's edges, with the other end's state."""
    table = Table("direction", "job_id", "name", "job status", "type", "condition", "edge status")
    for direction, edges in (("parent", into), ("child", children)):
        for e in edges:
            other = e.parent_id if direction == "parent" else e.child_id
            j = app.get_job(str(other))
            table.add_row(
                direction, "job_" + other.hex, (j.name or j.type) if j else "?",
                j.status.value if j else "?", e.kind, e.condition or "", e.status,
            )  # fmt: skip
    out.print(table)


@job_cli.command("explain")
def job_explain(
    ref: Annotated[str, typer.Argument(metavar="ID")], db: DbOpt = None, as_json: JsonOpt = False
) -> None:
    """Why is this job waiting, or why was it skipped?"""
    explanation = _app(None, db).explain(ref)
    if as_json:
        _dump(explanation.to_dict())
    else:
        out.print(explanation.text(), highlight=False, markup=False)


@job_cli.command("list")
def job_list(
    status: Annotated[str | None, typer.Option(help="|".join(s.value for s in JobStatus))] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    type_name: Annotated[str | None, typer.Option("--type")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    dependency_status: Annotated[
        str | None, typer.Option(help="none|waiting|satisfied|failed")
    ] = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow's jobs.")] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Jobs, newest first."""
    app = _app(None, db)
    jobs = app.list_jobs(
        status=status, queue=queue, type=type_name, limit=limit,
        dependency_status=dependency_status, workflow=workflow,
    )  # fmt: skip
    if as_json:
        parents = app.job_parents_edges(jobs)
        _dump([job_json(j, parents[j.id]) for j in jobs])
        return
    table = Table(
        "job_id", "name", "type", "queue", "status", "deps", "prio", "attempts", "progress",
        "created",
    )  # fmt: skip
    table.add_column("result / last error", max_width=40, overflow="ellipsis", no_wrap=True)
    for column in table.columns:
        column.no_wrap = True
    table.columns[0].min_width = 36  # ids are copied from here: never cut them
    for j in jobs:
        detail = j.errors[-1]["message"] if j.status == JobStatus.FAILED and j.errors else j.result
        table.add_row(
            j.job_id, j.name or "", j.type, j.queue, _styled(j.status), j.dependency_status,
            str(j.priority),
            f"{j.attempts}/{j.max_attempts}", f"{j.progress}%",
            j.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "" if detail is None else json.dumps(detail, default=str),
        )  # fmt: skip
    out.print(table)


def _styled(status: JobStatus) -> str:
    colour = {
        JobStatus.SUCCEEDED: "green",
        JobStatus.FAILED: "red",
        JobStatus.PARTIAL_SUCCESS: "yellow",
        JobStatus.RUNNING: "cyan",
    }.get(status)
    return f"[{colour}]{status.value}[/{colour}]" if colour else status.value


def _control(action: Callable[[Forge, str], Job], ref: str, db: str | None, as_json: bool) -> None:
    job = action(_app(None, db), ref)
    if as_json:
        _dump(job.to_dict())
    else:
        out.print(f"{job.job_id} {job.status.value}", highlight=False)


@job_cli.command("cancel")
def job_cancel(
    ref: Annotated[str, typer.Argument(metavar="ID")], db: DbOpt = None, as_json: JsonOpt = False
) -> None:
    """Cancel a job that has not finished (a running job's outcome is then discarded)."""
    _control(Forge.cancel_job, ref, db, as_json)


@job_cli.command("retry")
def job_retry(
    ref: Annotated[str, typer.Argument(metavar="ID")], db: DbOpt = None, as_json: JsonOpt = False
) -> None:
    """Queue a failed, cancelled or skipped job again with a fresh attempt budget."""
    _control(Forge.retry_job, ref, db, as_json)


# -- db --------------------------------------------------------------------------------
@db_cli.command("migrate")
def db_migrate(db: DbOpt = None) -> None:
    """Apply pending schema migrations (also done automatically on first use)."""
    store = open_store(db, migrate=False)
    before = store.schema_version()
    after = store.migrate()
    store.close()
    out.print(f"schema at version {after} (was {before})", highlight=False)
