"""The bundled example app: ETL jobs, a job registry with groups and cron, a durable workflow."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from jobforge import Forge, JobContext, PartialSuccess, RunContext

app = Forge()  # reads JOBFORGE_DATABASE_URL, default sqlite:///jobforge.db


@app.job(queue="etl", retries=3, timeout=60)
def extract(ctx: JobContext, source: str) -> dict[str, object]:
    """Pretend to read rows from a source, reporting progress as it goes."""
    for step in range(1, 5):
        ctx.progress(step * 25, f"read batch {step}/4 from {source}")
    return {"source": source, "rows": 10 * len(source)}


@app.job(queue="etl", retries=2, backoff=0.2)
def flaky_load(ctx: JobContext, table: str) -> dict[str, object]:
    """Fails on its first attempt, to show retries with backoff."""
    if ctx.attempt == 1:
        raise ConnectionError(f"warehouse busy while loading {table}")
    return {"table": table, "loaded": True, "attempt": ctx.attempt}


@app.job(retries=0)
async def send_report(ctx: JobContext, recipients: list[str]) -> PartialSuccess:
    """An async job that reaches only some recipients: ends as partial_success."""
    await asyncio.sleep(0.01)
    sent = [r for r in recipients if "@" in r]
    failed = [
        {"type": "BadAddress", "message": f"cannot send to {r!r}"}
        for r in recipients
        if "@" not in r
    ]
    return PartialSuccess({"sent": sent}, failed)


@app.job(retries=0)
def divide(ctx: JobContext, a: float, b: float) -> float:
    """Fails for good when b is 0: the job ends in the dead-letter state `failed`."""
    return a / b


@app.job(priority=5)
def noop(ctx: JobContext, n: int = 0) -> int:
    return n + random.randint(0, 0)


# -- a registry with groups: "feed" needs two jobs of the "scoring" group ----------------------
@app.job(name="match-scores", group="scoring", cron="0 2 * * *", timezone="Europe/Paris")
def match_scores(ctx: JobContext) -> dict[str, int]:
    """Score every match (also runs nightly at 02:00 Paris time)."""
    return {"scored": 120}


@app.job(name="affinity", group="scoring", depends_on=["match-scores"])
def affinity(ctx: JobContext) -> dict[str, int]:
    """User affinities, from the match scores."""
    return {"users": 40}


@app.job(
    name="feed-build",
    group="feed",
    depends_on=["match-scores", "affinity"],
    defaults={"batchSize": 100},
    examples=[{"batchSize": 10}],
)
def feed_build(ctx: JobContext, batchSize: int) -> dict[str, int]:
    """Build every user's feed in batches."""
    return {"batches": 40 // batchSize + 1}


@app.job(name="feed-publish", group="feed", depends_on=["feed-build"])
def feed_publish(ctx: JobContext) -> str:
    """Publish the built feeds."""
    return "published"


# The feed group every morning, once the nightly scores of the same day are in.
app.schedule("morning-feed", "30 6 * * *", group="feed", timezone="Europe/Paris",
             depends_on=["match-scores"])  # fmt: skip


# -- a durable workflow: each step recorded, rolled back in reverse when one fails for good -----
def reserve_stock(items: list[str]) -> dict[str, object]:
    return {"reservation_id": f"res-{len(items)}", "items": items}


def charge_card(card: str, amount: int) -> dict[str, object]:
    if card.startswith("0000"):
        raise ValueError(f"card {card} declined")
    return {"charge_id": f"ch-{amount}"}


def release_stock(reservation: dict[str, object]) -> None:
    print(f"released {reservation['reservation_id']}")


@app.workflow(version=1, timeout="1h")
def checkout(ctx: RunContext, input: dict[str, Any]) -> dict[str, Any]:
    """Reserve stock, charge the card, confirm; undo the reservation if the charge fails."""
    stock = ctx.step("reserve_stock", reserve_stock, input["items"]).compensate(release_stock).run()
    charge = ctx.step("charge_card", charge_card, input["card"], input["amount"]).retry(1).run()
    return {"reservation": stock["reservation_id"], "charge": charge["charge_id"]}
