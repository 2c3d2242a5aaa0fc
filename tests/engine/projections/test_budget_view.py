"""The ``budgets`` projection against real Postgres.

The property: for random logs of spend records (sessions of a few agents, a few models, spread
over days and months) and budget changes (set, replaced, removed), with events the view must
skip (other types, data that does not decode), applied in random pages, the view equals a
from-scratch fold: spend per session, model and day; running totals per scope and period; and
each scope's last limits.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from hypothesis import given
from hypothesis import strategies as st

from engine.events import BudgetLimit, BudgetSet, Event, SpendRecorded, Usage, encode
from engine.ids import new_id
from engine.log.store import Committed
from engine.prices import billed_tokens
from engine.projections.budgets import BudgetsProjection, period_starts
from tests.helpers_projections import VIEW_SETTINGS, apply_in_slices

SESSIONS = 4
AGENTS = 2
MODELS = ("m-small", "m-large")
START = datetime(2026, 1, 30, 22, tzinfo=UTC)  # days and a month boundary within reach



_count = st.integers(0, 5000)
_usage = st.builds(Usage, input_tokens=_count, output_tokens=_count, cache_read_tokens=_count,
                   cache_write_tokens=_count, reasoning_tokens=_count)
_limit = st.builds(BudgetLimit, tokens=st.none() | st.integers(0, 10**6),
                   cost_nanos=st.none() | st.integers(0, 10**12))
_ops = st.one_of(
    st.tuples(st.just("spend"), st.integers(0, SESSIONS - 1), st.sampled_from(MODELS),
              _usage, st.integers(0, 10**9), st.integers(0, 40)),  # hours after START
    st.tuples(st.just("budget"), st.integers(0, SESSIONS + AGENTS),
              st.dictionaries(st.sampled_from(["total", "month", "day"]), _limit, max_size=3)),
    st.tuples(st.just("other"), st.sampled_from([
        ("spend_noted", b'{"x":1}'),
        ("spend_recorded", b'{"type":"spend_recorded","tokens":"many"}'),
        ("budget_set", b'{"type":"budget_set","scope":"tenant","limits":{"week":{}}}')])),
)


class Log:
    def __init__(self) -> None:
        self.tenant_id = f"ten_{uuid.uuid4().hex[:12]}"
        self.sessions = [new_id("ses") for _ in range(SESSIONS)]
        self.agents = [new_id("agt") for _ in range(AGENTS)]
        self.scopes = ["tenant", *(f"agent:{a}" for a in self.agents),
                       *(f"session:{s}" for s in self.sessions)]
        self.events: list[Committed] = []
        self.seqs: dict[str, int] = defaultdict(int)

    def agent_of(self, session_index: int) -> str:
        return self.agents[session_index % AGENTS]

    def add(self, op: tuple[Any, ...]) -> None:
        match op:
            case ("spend", index, model, usage, cost, hours):
                data = SpendRecorded(turn_id="turn_1", message_id=new_id("msg"),
                                     agent_id=self.agent_of(index), model=model, usage=usage,
                                     tokens=billed_tokens(usage), cost_nanos=cost)
                self._append(self.sessions[index], "session", "spend_recorded", encode(data),
                             START + timedelta(hours=hours))
            case ("budget", index, limits):
                scope = self.scopes[index]
                self._append(f"bud_{scope}", "budget", "budget_set",
                             encode(BudgetSet(scope=scope, limits=limits)), START)
            case ("other", (type_, data)):
                self._append(self.sessions[0], "session", type_, data, START)

    def _append(self, stream_id: str, stream_type: str, type_: str, data: bytes,
                at: datetime) -> None:
        self.seqs[stream_id] += 1
        event = Event(id=uuid.uuid4(), stream_id=stream_id, stream_type=stream_type,
                      seq=self.seqs[stream_id], position=len(self.events) + 1, type=type_,
                      data=msgspec.Raw(data), meta=msgspec.Raw(b"{}"), created_at=at)
        self.events.append((self.tenant_id, event))


def expected(log: Log) -> tuple[dict[Any, list[Any]], dict[Any, list[int]], dict[Any, Any]]:
    """The view folded from scratch, event by event."""
    spend: dict[Any, list[Any]] = {}
    totals: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    limits: dict[Any, Any] = {}
    for _, event in log.events:
        try:
            data = msgspec.json.decode(event.data, type=SpendRecorded | BudgetSet)
        except msgspec.ValidationError:
            continue
        if event.type == "spend_recorded" and isinstance(data, SpendRecorded):
            day = event.created_at.date()
            u = data.usage
            row = spend.setdefault((event.stream_id, data.model, day),
                                   [data.agent_id, 0, 0, 0, 0, 0, 0, 0, 0])
            for i, value in enumerate((1, u.input_tokens, u.output_tokens, u.cache_read_tokens,
                                       u.cache_write_tokens, u.reasoning_tokens, data.tokens,
                                       data.cost_nanos), start=1):
                row[i] += value
            for scope in ("tenant", f"agent:{data.agent_id}", f"session:{event.stream_id}"):
                for period, start in period_starts(day).items():
                    totals[(scope, period, start)][0] += data.tokens
                    totals[(scope, period, start)][1] += data.cost_nanos
        elif event.type == "budget_set" and isinstance(data, BudgetSet):
            for key in [k for k in limits if k[0] == data.scope]:
                del limits[key]
            for period, limit in data.limits.items():
                limits[(data.scope, period)] = (limit.tokens, limit.cost_nanos)
    return spend, dict(totals), limits


async def actual(conn: Any, tenant_id: str) -> tuple[dict[Any, list[Any]], dict[Any, list[int]],
                                                     dict[Any, Any]]:
    spend = {(r["session_id"], r["model"], r["day"]): [
        r["agent_id"], r["calls"], r["input_tokens"], r["output_tokens"], r["cache_read_tokens"],
        r["cache_write_tokens"], r["reasoning_tokens"], r["tokens"], r["cost_nanos"]]
        for r in await conn.fetch("SELECT * FROM spend WHERE tenant_id = $1", tenant_id)}
    totals = {(r["scope"], r["period"], r["period_start"]): [r["tokens"], r["cost_nanos"]]
              for r in await conn.fetch("SELECT * FROM spend_totals WHERE tenant_id = $1",
                                        tenant_id)}
    limits = {(r["scope"], r["period"]): (r["tokens"], r["cost_nanos"])
              for r in await conn.fetch("SELECT * FROM budget_limits WHERE tenant_id = $1",
                                        tenant_id)}
    return spend, totals, limits


@VIEW_SETTINGS
@given(ops=st.lists(_ops, min_size=1, max_size=60), cuts=st.sets(st.integers(1, 60), max_size=8))
async def test_the_view_equals_a_fold_from_scratch(
    pool: asyncpg.Pool, ops: list[tuple[Any, ...]], cuts: set[int],
) -> None:
    log = Log()
    for op in ops:
        log.add(op)
    async with pool.acquire() as conn:
        await apply_in_slices(conn, BudgetsProjection(), log.events, cuts)
        assert await actual(conn, log.tenant_id) == expected(log)


def test_period_starts_cover_day_month_and_all_time() -> None:
    assert period_starts(date(2026, 2, 17)) == {
        "day": date(2026, 2, 17), "month": date(2026, 2, 1), "total": date(1970, 1, 1)}
