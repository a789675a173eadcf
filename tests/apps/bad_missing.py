"""An invalid app: `report` depends on `extract`, which is not registered. Loading it must
fail before anything (its cron schedule included) is written."""

from __future__ import annotations

from jobforge import Forge, JobContext

app = Forge()


@app.job(depends_on=["extract"], cron="0 8 * * *")
def report(ctx: JobContext) -> None:
    return None


@app.job
def other(ctx: JobContext) -> None:
    return None
