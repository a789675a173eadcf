"""The claim under concurrency and rate limits (`app.limit(...)`), inside the claim's
transaction: budgets from the database's own counts, under a lock per scope."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobforge.limits import Limit, pick, scopes_of

if TYPE_CHECKING:
    from jobforge.store.sql import Cursor, Row, SQLStore


def claim(
    store: SQLStore, cur: Cursor, params: dict[str, Any], limits: Sequence[Limit]
) -> list[Row]:
    """Claim what the limits allow; workers claiming at once cannot overshoot, as each takes
    the scopes' locks before it counts."""
    store._lock_keys(cur, sorted("limit:" + lim.scope for lim in limits))
    budgets = {lim.scope: lim.budget(*_usage(store, cur, lim)) for lim in limits}
    full = [lim for lim in limits if budgets[lim.scope] == 0]
    candidates = store._run(
        cur, "claim_candidates", types=params["types"], queues=params["queues"],
        full_types=[lim.name for lim in full if lim.kind == "type"],
        full_queues=[lim.name for lim in full if lim.kind == "queue"],
        limit=params["limit"] * 4,
    ).fetchall()  # fmt: skip
    ids = pick(((r["id"], r["type"], r["queue"]) for r in candidates), budgets, params["limit"])
    if not ids:
        return []
    rows = list(store._run(cur, "claim_ids", ids=ids, **params).fetchall())
    rated = {lim.scope for lim in limits if lim.max_started is not None}
    for r in rows:
        for scope in scopes_of(r["type"], r["queue"]):
            if scope in rated:
                store._run(cur, "log_start", scope=scope)
    return rows


def _usage(store: SQLStore, cur: Cursor, limit: Limit) -> tuple[int, int]:
    """(jobs of the scope running now, jobs of the scope started within `per`)."""
    running = started = 0
    if limit.max_running is not None:
        found = store._run(cur, "count_running", kind=limit.kind, name=limit.name)
        running = found.fetchone()["n"]
    if limit.max_started is not None and limit.per is not None:
        found = store._run(cur, "count_starts", scope=limit.scope, per=limit.per)
        started = found.fetchone()["n"]
    return running, started
