"""Rebuild and verify a projection by replaying the log from position 0.

Both build the view afresh in temporary tables of the same names (a temporary table hides the
real one for unqualified names, so a projection's own SQL writes into it unchanged):

* ``verify`` does it in one REPEATABLE READ transaction whose snapshot is fixed by reading the
  live checkpoint first: the rebuild stops at that position and is compared with the live rows
  *as of that same position*, whatever the live runner does meanwhile. Nothing is written.
* ``rebuild`` holds the checkpoint row (the live runner waits on it), replays up to the log
  head, then swaps the contents of the live tables for the rebuilt ones and moves the
  checkpoint, all in one transaction: readers see the old view or the new one, never a mix.

Only the columns a projection owns are compared (``session_runs``' lease columns belong to the
workers). Rebuilding ``session_runs`` forgets leases and what workers marked done: every
session with an agent is looked at once more, which finds nothing to do where nothing is due.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from engine.errors import InvalidRequest
from engine.infra.db import translate_errors
from engine.log.store import read_log_page
from engine.projections.views import VIEWS, View

_ANALYZE_FROM_BLOCKS = 4  # a temporary table is first analyzed at 8 blocks (64 kB)


@dataclass
class Drift:
    """Rows that differ between the live view and a rebuild at the same position."""

    position: int
    only_live: dict[str, list[Any]] = field(default_factory=dict)
    only_rebuilt: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not any(self.only_live.values()) and not any(self.only_rebuilt.values())


def view(name: str) -> View:
    if name not in VIEWS:
        raise InvalidRequest(f"no projection {name!r}; there are {', '.join(VIEWS)}",
                             field="name")
    return VIEWS[name]


Progress = Callable[[int, int], None]  # (position reached, position to reach)


async def verify(pool: asyncpg.Pool, name: str, progress: Progress | None = None) -> Drift:
    found = view(name)
    with translate_errors(f"verifying projection {name}"):
        async with pool.acquire() as conn:
            transaction = conn.transaction(isolation="repeatable_read")
            await transaction.start()
            try:  # rolled back whatever happens: verify writes nothing
                position = await _checkpoint(conn, name, lock=False)
                await _build(conn, found, until=position, progress=progress)
                drift = Drift(position)
                for table, columns in found.tables.items():
                    drift.only_live[table] = await _except(conn, table, columns, "public",
                                                           "pg_temp")
                    drift.only_rebuilt[table] = await _except(conn, table, columns, "pg_temp",
                                                              "public")
                return drift
            finally:
                await transaction.rollback()


async def rebuild(pool: asyncpg.Pool, name: str, progress: Progress | None = None) -> int:
    """Rebuild ``name`` from position 0 and swap it in; returns the position it reached."""
    found = view(name)
    with translate_errors(f"rebuilding projection {name}"):
        async with pool.acquire() as conn, conn.transaction():
            await _checkpoint(conn, name, lock=True)  # the live runner waits behind this
            head = int(await conn.fetchval("SELECT position FROM log_head WHERE id = 1"))
            await _build(conn, found, until=head, progress=progress)
            tables = list(found.tables)
            await conn.execute("TRUNCATE " + ", ".join(f"public.{t}" for t in tables))
            for table in tables:
                await conn.execute(f"INSERT INTO public.{table} SELECT * FROM pg_temp.{table}")
            await conn.execute("UPDATE projection_checkpoints SET position = $2 WHERE name = $1",
                               name, head)
            return head


async def _checkpoint(conn: Any, name: str, *, lock: bool) -> int:
    if lock:  # (verify writes nothing: a projection never run has no row, position 0)
        await conn.execute(
            "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING", name)
    position = await conn.fetchval(
        "SELECT position FROM projection_checkpoints WHERE name = $1"
        + (" FOR UPDATE" if lock else ""), name)
    return int(position or 0)


async def _build(conn: Any, found: View, *, until: int, progress: Progress | None) -> None:
    for table in found.tables:
        await conn.execute(f"CREATE TEMP TABLE {table} (LIKE public.{table} INCLUDING DEFAULTS"
                           " INCLUDING CONSTRAINTS INCLUDING INDEXES) ON COMMIT DROP")
    projection, after = found.make(), 0
    analyzed = dict.fromkeys(found.tables, 0)
    while after < until:
        page = [c for c in await read_log_page(conn, after=after, limit=found.page)
                if c[1].position <= until]
        if not page:
            return
        await projection.apply(conn, page)
        await _analyze_grown(conn, analyzed)
        after = page[-1][1].position
        if progress is not None:
            progress(after, until)


async def _analyze_grown(conn: Any, analyzed: dict[str, int]) -> None:
    """ANALYZE each temporary table whose size has doubled since it was last analyzed
    (``analyzed``: table -> its blocks then). Autovacuum never sees a temporary table, and the
    projection's prepared statements keep the plans made while it was empty (a sequential scan
    per statement: a rebuild of the tasks view went quadratic, ~12k events/s over 1M events)
    until an ANALYZE gives the planner the table's size and invalidates them."""
    sizes = await conn.fetch(
        "SELECT t, pg_relation_size(('pg_temp.' || t)::regclass) / 8192"
        " FROM unnest($1::text[]) AS t", list(analyzed))
    for table, blocks in sizes:
        if blocks >= 2 * max(analyzed[table], _ANALYZE_FROM_BLOCKS):
            await conn.execute(f"ANALYZE pg_temp.{table}")
            analyzed[table] = blocks


async def _except(conn: Any, table: str, columns: Sequence[str] | None, left: str,
                  right: str) -> list[Any]:
    """Rows of ``left.table`` not in ``right.table`` (as JSON: json columns have no =)."""
    shown = "to_jsonb(t)"
    if columns:
        shown = "jsonb_build_object(" + ", ".join(f"'{c}', {c}" for c in columns) + ")"
    rows = await conn.fetch(
        f"SELECT {shown} FROM {left}.{table} t EXCEPT SELECT {shown} FROM {right}.{table} t"
        " LIMIT 100")
    return [json.loads(row[0]) for row in rows]
