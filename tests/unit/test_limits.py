"""Concurrency and rate limits without a database: a limit's budget, which candidates a claim
takes under the budgets, and the one-line messages that refuse an invalid limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobforge import Forge, ValidationError
from jobforge.limits import MAX_WINDOW, Limit, pick, scopes_of


@pytest.fixture
def forge(tmp_path: Path) -> Any:
    """An app whose database these tests never open (checked afterwards)."""
    app = Forge(f"sqlite:///{tmp_path / 'never.db'}")
    yield app
    assert app._store is None, "declaring a limit opened the database"
    assert not (tmp_path / "never.db").exists()


# -- budget -------------------------------------------------------------------------------------
def test_budget_of_a_concurrency_limit_ignores_recent_starts() -> None:
    lim = Limit("type", "send", max_running=3)
    assert lim.scope == "type:send"
    assert [lim.budget(running, 1000) for running in range(5)] == [3, 2, 1, 0, 0]


def test_budget_of_a_rate_limit_ignores_running_jobs() -> None:
    lim = Limit("queue", "emails", max_started=5, per=1.0)
    assert lim.scope == "queue:emails"
    assert [lim.budget(1000, started) for started in (0, 1, 4, 5, 9)] == [5, 4, 1, 0, 0]


def test_budget_with_both_caps_is_the_tighter_one_and_never_negative() -> None:
    lim = Limit("type", "x", max_running=4, max_started=10, per=60)
    assert lim.budget(0, 0) == 4  # running cap binds
    assert lim.budget(1, 8) == 2  # rate cap binds
    assert lim.budget(3, 3) == 1
    assert lim.budget(4, 0) == 0
    assert lim.budget(0, 10) == 0
    assert lim.budget(7, 12) == 0  # over both caps (e.g. a limit lowered on redeploy)


def test_scopes_of_a_job() -> None:
    assert scopes_of("send", "emails") == ("type:send", "queue:emails")


# -- pick ---------------------------------------------------------------------------------------
def cands(*rows: tuple[str, str]) -> list[tuple[object, str, str]]:
    """Candidates j0, j1, ... of (type, queue), in run order."""
    return [(f"j{i}", t, q) for i, (t, q) in enumerate(rows)]


def test_pick_without_limits_takes_candidates_in_order_up_to_slots() -> None:
    c = cands(("a", "q"), ("b", "q"), ("c", "r"), ("d", "r"))
    assert pick(c, {}, 3) == ["j0", "j1", "j2"]
    assert pick(c, {}, 10) == ["j0", "j1", "j2", "j3"]
    assert pick(c, {}, 0) == []
    assert pick([], {"type:a": 5}, 4) == []


def test_pick_skips_jobs_over_budget_but_keeps_taking_later_ones() -> None:
    c = cands(("send", "q"), ("send", "q"), ("send", "q"), ("other", "q"), ("send", "q"))
    # Two sends fit; the third and fifth are held back, `other` behind them is still taken.
    assert pick(c, {"type:send": 2}, 10) == ["j0", "j1", "j3"]
    assert pick(c, {"type:send": 0}, 10) == ["j3"]


def test_pick_applies_a_queue_budget_across_types() -> None:
    c = cands(("a", "emails"), ("b", "emails"), ("c", "emails"), ("a", "default"))
    assert pick(c, {"queue:emails": 2}, 10) == ["j0", "j1", "j3"]


def test_pick_needs_budget_in_every_scope_a_job_falls_under() -> None:
    c = cands(("send", "emails"), ("send", "emails"), ("send", "other"), ("ping", "emails"))
    budgets = {"type:send": 2, "queue:emails": 1}
    # j0 uses one of each; j1 has type budget but no queue budget left; j2 is in another
    # queue; j3 has no queue budget left.
    assert pick(c, budgets, 10) == ["j0", "j2"]
    assert budgets == {"type:send": 2, "queue:emails": 1}, "pick changed the caller's budgets"


def test_pick_counts_a_held_back_job_against_no_budget() -> None:
    c = cands(("send", "emails"), ("ping", "emails"), ("send", "default"))
    # j0 is refused by its type; that must not use up the queue's only slot for j1.
    assert pick(c, {"type:send": 0, "queue:emails": 1}, 10) == ["j1"]


def test_pick_stops_at_slots_even_with_budget_left() -> None:
    c = cands(*[("send", "q")] * 6)
    assert pick(c, {"type:send": 5}, 2) == ["j0", "j1"]
    assert pick(c, {"type:send": 5}, 10) == ["j0", "j1", "j2", "j3", "j4"]


def test_pick_ignores_budgets_of_scopes_the_jobs_are_not_in() -> None:
    c = cands(("a", "q"), ("b", "q"))
    assert pick(c, {"type:zzz": 0, "queue:other": 0}, 10) == ["j0", "j1"]


# -- declaring limits on the app ----------------------------------------------------------------
def test_app_limits_are_kept_in_declaration_order(forge: Forge) -> None:
    a = forge.limit(queue="emails", max_started=100, per=60)
    b = forge.limit(type="send", max_running=5)
    c = forge.limit(type="emails", max_running=1)  # a type named like a queue: another scope
    d = forge.limit(type="both", max_running=2, max_started=3, per=MAX_WINDOW)
    assert forge.limits == [a, b, c, d]
    assert a == Limit("queue", "emails", None, 100, 60)
    assert (b.kind, b.name, b.max_running, b.max_started, b.per) == ("type", "send", 5, None, None)
    assert c.scope == "type:emails" and d.per == 86400


BAD_LIMITS: list[tuple[dict[str, Any], str]] = [
    ({"type": "send"}, "Limit on type:send: give max_running or max_started"),
    ({"queue": "emails", "per": 5}, "Limit on queue:emails: give max_running or max_started"),
    ({"type": "send", "max_running": 0}, "Limit on type:send: max_running must be >= 1"),
    ({"type": "send", "max_running": -3}, "Limit on type:send: max_running must be >= 1"),
    ({"type": "send", "max_started": 0, "per": 1}, "max_started must be >= 1"),
    ({"type": "send", "max_started": 5}, "max_started needs per= seconds (0 < per <= 86400)"),
    ({"type": "send", "max_started": 5, "per": 0}, "max_started needs per= seconds"),
    ({"type": "send", "max_started": 5, "per": -1}, "max_started needs per= seconds"),
    ({"type": "send", "max_started": 5, "per": 86400.5}, "max_started needs per= seconds"),
    ({"queue": "q", "max_running": 1, "max_started": 1, "per": 90000}, "Limit on queue:q: "),
    ({"queue": "q", "type": "t", "max_running": 1}, "A limit applies to one queue or one type"),
    ({"max_running": 1}, "A limit applies to one queue or one type"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_LIMITS)
def test_invalid_limits_are_refused_with_one_line(
    forge: Forge, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        forge.limit(**kwargs)
    text = str(info.value)
    assert message in text
    assert "\n" not in text.strip()
    assert forge.limits == [], "a refused limit was kept"


def test_the_same_scope_twice_is_refused_and_the_first_kept(forge: Forge) -> None:
    first = forge.limit(type="send", max_running=2)
    with pytest.raises(ValidationError) as info:
        forge.limit(type="send", max_started=10, per=1)
    assert str(info.value) == "type:send is limited twice"
    with pytest.raises(ValidationError, match="queue:send is limited twice"):
        forge.limit(queue="send", max_running=1)
        forge.limit(queue="send", max_running=1)
    assert forge.limits == [first, Limit("queue", "send", max_running=1)]


def test_limit_kind_must_be_queue_or_type() -> None:
    with pytest.raises(ValidationError) as info:
        Limit("tenant", "acme", max_running=1)
    assert str(info.value) == "A limit applies to a queue or a type, not 'tenant'"
