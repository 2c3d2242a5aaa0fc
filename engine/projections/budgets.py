"""The ``budgets`` projection: limits (``budget_limits``, from ``budget_set``) and spend
(``spend`` per session, model and UTC day; ``spend_totals`` per scope and period, from
``spend_recorded``).

``spend_totals`` holds, for every scope a spend falls in (its tenant, its agent, its session) and
every period (its day, its month, all time), the running sums a budget is checked against: one
row read per limit, however long the history. Spend is summed per page in Python and written
with one statement per table (rows as arrays, unnested): a few statements per thousand events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from engine.events import BudgetSet, Event, SpendRecorded, decoded
from engine.log.store import Committed

NAME = "budgets"
TOTAL_START = date(1970, 1, 1)  # the one period_start of the "total" period

_SPEND_COLUMNS = ("calls", "input_tokens", "output_tokens", "cache_read_tokens",
                  "cache_write_tokens", "reasoning_tokens", "tokens", "cost_nanos")


def period_starts(day: date) -> dict[str, date]:
    """The start of each period ``day`` falls in."""
    return {"day": day, "month": day.replace(day=1), "total": TOTAL_START}


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


class BudgetsProjection:
    name = NAME

    def touches(self, event: Event) -> bool:
        return event.type in _SPEND_TYPES or event.type in _BUDGET_TYPES

    async def apply(self, conn: Any, events: Sequence[Committed]) -> bool:
        spend: dict[tuple[str, str, date], list[Any]] = {}
        totals: dict[tuple[str, str, str, date], list[int]] = defaultdict(lambda: [0, 0])
        wrote = False
        for tenant_id, event in events:
            if event.type == "spend_recorded":
                data = decoded(event, _SPEND_TYPES)
                if isinstance(data, SpendRecorded):
                    _add_spend(spend, totals, tenant_id, event, data)
            elif event.type == "budget_set":
                data = decoded(event, _BUDGET_TYPES)
                if isinstance(data, BudgetSet):
                    await _set_limits(conn, tenant_id, event, data)
                    wrote = True
        if spend:
            await _write_spend(conn, spend, totals)
            wrote = True
        return wrote


_SPEND_TYPES = frozenset({"spend_recorded"})
_BUDGET_TYPES = frozenset({"budget_set"})


def _add_spend(spend: dict[tuple[str, str, date], list[Any]],
               totals: dict[tuple[str, str, str, date], list[int]],
               tenant_id: str, event: Event, data: SpendRecorded) -> None:
    day = utc_day(event.created_at)
    usage = data.usage
    row = spend.setdefault((event.stream_id, data.model, day),
                           [tenant_id, data.agent_id, 0, 0, 0, 0, 0, 0, 0, 0])
    for i, value in enumerate((1, usage.input_tokens, usage.output_tokens,
                               usage.cache_read_tokens, usage.cache_write_tokens,
                               usage.reasoning_tokens, data.tokens, data.cost_nanos), start=2):
        row[i] += value
    for scope in ("tenant", f"agent:{data.agent_id}", f"session:{event.stream_id}"):
        for period, start in period_starts(day).items():
            total = totals[(tenant_id, scope, period, start)]
            total[0] += data.tokens
            total[1] += data.cost_nanos


async def _write_spend(conn: Any, spend: dict[tuple[str, str, date], list[Any]],
                       totals: dict[tuple[str, str, str, date], list[int]]) -> None:
    """One statement per table for the whole page: rows as arrays, unnested (each key once:
    the page's sums are made above), added to what is there."""
    sums = ", ".join(f"{c} = spend.{c} + excluded.{c}" for c in _SPEND_COLUMNS)
    await conn.execute(
        "INSERT INTO spend (session_id, model, day, tenant_id, agent_id, "
        + ", ".join(_SPEND_COLUMNS) + ") SELECT * FROM unnest($1::text[], $2::text[],"
        " $3::date[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[],"
        " $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[])"
        f" ON CONFLICT (session_id, model, day) DO UPDATE SET {sums}",
        *_columns([(*key, *row) for key, row in spend.items()]),
    )
    await conn.execute(
        "INSERT INTO spend_totals (tenant_id, scope, period, period_start, tokens, cost_nanos)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::bigint[],"
        " $6::bigint[]) ON CONFLICT (tenant_id, scope, period, period_start)"
        " DO UPDATE SET tokens = spend_totals.tokens + excluded.tokens,"
        " cost_nanos = spend_totals.cost_nanos + excluded.cost_nanos",
        *_columns([(*key, tokens, cost) for key, (tokens, cost) in totals.items()]),
    )


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows (at least one) as one list per column, for unnest."""
    return [list(column) for column in zip(*rows, strict=True)]


async def _set_limits(conn: Any, tenant_id: str, event: Event, data: BudgetSet) -> None:
    """A budget_set holds the scope's limits whole: the rows are replaced."""
    await conn.execute("DELETE FROM budget_limits WHERE tenant_id = $1 AND scope = $2",
                       tenant_id, data.scope)
    if data.limits:
        await conn.executemany(
            "INSERT INTO budget_limits (tenant_id, scope, period, tokens, cost_nanos,"
            " updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
            [(tenant_id, data.scope, period, limit.tokens, limit.cost_nanos, event.created_at)
             for period, limit in data.limits.items()],
        )
