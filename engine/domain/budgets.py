"""Budgets and usage: limits per scope (the tenant, an agent, a session) in tokens and USD per
period (``day`` and ``month`` in UTC, or ``total``), checked against the spend the ``budgets``
view sums from ``spend_recorded`` events (engine/projections/budgets.py).

A check first waits until the view has applied the log as it stood when the check began: every
spend committed before it counts. So sessions racing a limit each overshoot it by at most the
model call they had in flight (the runtime checks before each model call and tool run).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

import asyncpg
import msgspec

from engine.domain.agents import Agents
from engine.errors import BudgetExceeded, InvalidRequest, NotFound
from engine.events import BudgetLimit, BudgetPeriod, BudgetSet, Event, EventMeta, new_event
from engine.ids import is_id
from engine.infra.db import connection
from engine.log.store import EventStore
from engine.pages import Page, check_limit, page_of
from engine.prices import NANOS_PER_USD, PriceTable, usd
from engine.projections.budgets import NAME as VIEW
from engine.projections.budgets import TOTAL_START
from engine.projections.runner import require

PERIODS: tuple[BudgetPeriod, ...] = ("total", "month", "day")
GROUPS = {"agent": "agent_id", "session": "session_id", "model": "model", "day": "day::text"}


# --- wire types --------------------------------------------------------------------------------


class LimitIn(msgspec.Struct, forbid_unknown_fields=True):
    tokens: Annotated[int, msgspec.Meta(ge=0, le=10**15)] | None = None
    usd: Annotated[float, msgspec.Meta(ge=0, le=1_000_000_000)] | None = None


class LimitsIn(msgspec.Struct, forbid_unknown_fields=True):
    total: LimitIn | None = None
    month: LimitIn | None = None
    day: LimitIn | None = None


class BudgetIn(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/budgets/{scope}``: the scope's limits, whole (``{}`` removes the budget)."""

    limits: LimitsIn


class PeriodStatus(msgspec.Struct):
    tokens: int | None  # the limit (null: none)
    usd: float | None
    spent_tokens: int
    spent_usd: float
    remaining_tokens: int | None
    remaining_usd: float | None
    exceeded: bool
    resets_at: datetime | None  # when the period starts over (null for total)


class Budget(msgspec.Struct):
    scope: str
    limits: dict[str, PeriodStatus]
    updated_at: datetime


class UsageRow(msgspec.Struct):
    key: str  # the agent id, session id, model or day (YYYY-MM-DD); "total" without group_by
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    tokens: int
    usd: float


# --- scopes ------------------------------------------------------------------------------------

ScopeKind = Literal["tenant", "agent", "session"]


@dataclass(frozen=True)
class Scope:
    kind: ScopeKind
    target: str | None  # the agent or session id

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}:{self.target}"

    def stream_id(self, tenant_id: str) -> str:
        """The scope's ``budget`` stream: ids are unique across tenants and kinds already."""
        return f"bud_{tenant_id if self.target is None else self.target}"


def parse_scope(text: str) -> Scope:
    if text == "tenant":
        return Scope("tenant", None)
    kind, _, target = text.partition(":")
    if kind == "agent" and is_id(target, "agt"):
        return Scope("agent", target)
    if kind == "session" and is_id(target, "ses"):
        return Scope("session", target)
    raise InvalidRequest("scope must be tenant, agent:<agent id> or session:<session id>",
                         field="scope")


def scopes_of(agent_id: str | None, session_id: str | None) -> list[str]:
    """The scopes a session's spend falls in."""
    scopes = ["tenant"]
    if agent_id is not None:
        scopes.append(f"agent:{agent_id}")
    if session_id is not None:
        scopes.append(f"session:{session_id}")
    return scopes


# --- the service -------------------------------------------------------------------------------


class Budgets:
    def __init__(self, pool: asyncpg.Pool, store: EventStore, agents: Agents, *,
                 prices: PriceTable | None = None, wait_seconds: float = 5.0) -> None:
        self._pool = pool
        self._store = store
        self._agents = agents
        self.prices = prices or PriceTable()
        self.wait_seconds = wait_seconds

    async def set(self, tenant_id: str, scope_text: str, body: BudgetIn, *,
                  meta: EventMeta | None = None) -> Event:
        scope = parse_scope(scope_text)
        limits = _limits(body)
        await self._check_target(tenant_id, scope)
        data = BudgetSet(scope=str(scope), limits=limits)
        [event] = await self._store.append(
            scope.stream_id(tenant_id), [new_event(data, meta=meta)], tenant_id=tenant_id,
            stream_type="budget")
        return event

    async def set_and_read(self, tenant_id: str, scope_text: str, body: BudgetIn, *,
                           meta: EventMeta | None = None) -> tuple[Budget | None, Event]:
        """``set``, then the budget as the view has it once it applied that write (None: the
        limits were empty, so the scope has no budget any more)."""
        event = await self.set(tenant_id, scope_text, body, meta=meta)
        if body.limits == LimitsIn():
            return None, event
        return await self.get(tenant_id, scope_text, min_position=event.position), event

    async def get(self, tenant_id: str, scope_text: str, *,
                  min_position: int | None = None) -> Budget:
        scope = str(parse_scope(scope_text))
        await require(self._pool, VIEW, min_position, self.wait_seconds)
        found = await self._read(tenant_id, [scope])
        if not found:
            raise NotFound(f"no budget is set for {scope}", details={"field": "scope"})
        return found[0]

    async def list_budgets(self, tenant_id: str, *, after: str | None = None, limit: int = 50,
                           min_position: int | None = None) -> Page[Budget]:
        check_limit(limit)
        await require(self._pool, VIEW, min_position, self.wait_seconds)
        async with connection(self._pool, "listing budgets") as conn:
            scopes = [row[0] for row in await conn.fetch(
                "SELECT DISTINCT scope FROM budget_limits WHERE tenant_id = $1 AND scope > $2"
                " ORDER BY scope LIMIT $3", tenant_id, after or "", limit + 1)]
        budgets = await self._read(tenant_id, scopes) if scopes else []
        return page_of(budgets, limit, lambda b: b.scope)

    async def check(self, tenant_id: str, agent_id: str | None, session_id: str | None) -> None:
        """BudgetExceeded (the scope and period in ``details``) when a budget the session
        falls under is spent; waits for the view to count every spend committed so far."""
        for budget in await self._read(tenant_id, scopes_of(agent_id, session_id), fresh=True):
            for period, status in budget.limits.items():
                if status.exceeded:
                    raise BudgetExceeded(
                        f"the {budget.scope} budget for {period} is spent",
                        details={"scope": budget.scope, "period": period,
                                 "limit": {"tokens": status.tokens, "usd": status.usd},
                                 "spent": {"tokens": status.spent_tokens,
                                           "usd": status.spent_usd}})

    async def usage(self, tenant_id: str, *, group_by: str | None = None,
                    start: date | None = None, end: date | None = None,
                    agent_id: str | None = None, session_id: str | None = None,
                    after: str | None = None, limit: int = 50,
                    min_position: int | None = None) -> Page[UsageRow]:
        """Spend summed over days ``start <= day < end``, one row per ``group_by`` key."""
        check_limit(limit)
        if group_by is not None and group_by not in GROUPS:
            raise InvalidRequest(f"group_by must be one of {', '.join(GROUPS)}",
                                 field="group_by")
        if start is not None and end is not None and end <= start:
            raise InvalidRequest("to must be after from", field="to")
        await require(self._pool, VIEW, min_position, self.wait_seconds)
        key = GROUPS[group_by] if group_by else "'total'"
        async with connection(self._pool, "reading usage") as conn:
            rows = await conn.fetch(
                f"SELECT {key}, sum(calls), sum(input_tokens), sum(output_tokens),"
                " sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens),"
                " sum(tokens), sum(cost_nanos) FROM spend WHERE tenant_id = $1"
                " AND ($2::date IS NULL OR day >= $2) AND ($3::date IS NULL OR day < $3)"
                " AND ($4::text IS NULL OR agent_id = $4)"
                " AND ($5::text IS NULL OR session_id = $5)"
                f" AND {key} > $6 GROUP BY 1 ORDER BY 1 LIMIT $7",
                tenant_id, start, end, agent_id, session_id, after or "", limit + 1)
        usage = [_usage_row(row) for row in rows]
        return page_of(usage, limit, lambda u: u.key)

    async def _check_target(self, tenant_id: str, scope: Scope) -> None:
        try:
            if scope.kind == "agent" and scope.target is not None:
                await self._agents.get(tenant_id, scope.target)
            elif scope.kind == "session" and scope.target is not None:
                await self._store.stream_version(scope.target, tenant_id=tenant_id)
        except NotFound as exc:
            raise NotFound(f"{scope.kind} {scope.target!r} not found",
                           details={"field": "scope"}) from exc

    async def _read(self, tenant_id: str, scopes: list[str], *,
                    fresh: bool = False) -> list[Budget]:
        """The budgets of ``scopes`` with what is spent in each current period. ``fresh``:
        first let the view apply the log as it stands (only when there is a budget at all)."""
        rows = await self._fetch(tenant_id, scopes)
        if rows and fresh:
            await require(self._pool, VIEW, await self._store.head(), self.wait_seconds,
                          field="budget")
            rows = await self._fetch(tenant_id, scopes)
        budgets: dict[str, Budget] = {}
        for row in rows:
            budget = budgets.setdefault(row["scope"], Budget(row["scope"], {}, row["updated_at"]))
            budget.limits[row["period"]] = _status(row)
        return list(budgets.values())

    async def _fetch(self, tenant_id: str, scopes: list[str]) -> list[Any]:
        today = datetime.now(UTC).date()
        async with connection(self._pool, "reading budgets") as conn:
            return list(await conn.fetch(
                "SELECT l.scope, l.period, l.tokens, l.cost_nanos, l.updated_at,"
                " coalesce(t.tokens, 0) AS spent_tokens,"
                " coalesce(t.cost_nanos, 0) AS spent_nanos"
                " FROM budget_limits l LEFT JOIN spend_totals t ON t.tenant_id = l.tenant_id"
                " AND t.scope = l.scope AND t.period = l.period AND t.period_start ="
                " CASE l.period WHEN 'day' THEN $3::date WHEN 'month' THEN $4::date"
                " ELSE $5::date END"
                " WHERE l.tenant_id = $1 AND l.scope = ANY($2::text[]) ORDER BY l.scope, l.period",
                tenant_id, scopes, today, today.replace(day=1), TOTAL_START))


def _limits(body: BudgetIn) -> dict[BudgetPeriod, BudgetLimit]:
    limits: dict[BudgetPeriod, BudgetLimit] = {}
    for period in PERIODS:
        limit = getattr(body.limits, period)
        if limit is None:
            continue
        if limit.tokens is None and limit.usd is None:
            raise InvalidRequest("a period's limit needs tokens, usd or both",
                                 field=f"limits.{period}")
        limits[period] = BudgetLimit(
            tokens=limit.tokens,
            cost_nanos=None if limit.usd is None else round(limit.usd * NANOS_PER_USD))
    return limits


def _usage_row(row: Any) -> UsageRow:
    calls, input_, output, cache_read, cache_write, reasoning, tokens, nanos = map(int, row[1:])
    return UsageRow(row[0], calls, input_, output, cache_read, cache_write, reasoning, tokens,
                    usd(nanos))


def _status(row: Any) -> PeriodStatus:
    tokens, nanos = row["tokens"], row["cost_nanos"]
    spent_tokens, spent_nanos = int(row["spent_tokens"]), int(row["spent_nanos"])
    return PeriodStatus(
        tokens=tokens, usd=None if nanos is None else usd(nanos),
        spent_tokens=spent_tokens, spent_usd=usd(spent_nanos),
        remaining_tokens=None if tokens is None else max(tokens - spent_tokens, 0),
        remaining_usd=None if nanos is None else usd(max(nanos - spent_nanos, 0)),
        exceeded=(tokens is not None and spent_tokens >= tokens)
        or (nanos is not None and spent_nanos >= nanos),
        resets_at=_resets_at(row["period"]))


def _resets_at(period: str) -> datetime | None:
    today = datetime.now(UTC).date()
    if period == "day":
        return datetime.combine(today + timedelta(days=1), time(), UTC)
    if period == "month":
        first = (today.replace(day=28) + timedelta(days=4)).replace(day=1)
        return datetime.combine(first, time(), UTC)
    return None
