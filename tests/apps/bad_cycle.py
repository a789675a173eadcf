"""An invalid app: extract -> transform -> load -> extract is a cycle (each arrow: the
right-hand job depends on the left-hand one). Loading it must fail before anything is written."""

from __future__ import annotations

from jobforge import Forge, JobContext

app = Forge()


@app.job(depends_on=["load"], cron="0 2 * * *")
def extract(ctx: JobContext) -> None:
    return None


@app.job(depends_on=["extract"])
def transform(ctx: JobContext) -> None:
    return None


@app.job(depends_on=["transform"])
def load(ctx: JobContext) -> None:
    return None
