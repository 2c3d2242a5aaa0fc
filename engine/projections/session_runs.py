"""The ``session_runs`` projection: which sessions need a worker.

It marks a session *wanted* at the position of every event a worker must react to (a user
message, a tool result, an interrupt, an approval's decision). Being a projection, it is exactly
once and complete: an event committed while every worker was down is still found. The lease
columns of its rows belong to the workers (engine/runtime/schedule.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from engine.events import WAKES_A_WORKER, Event
from engine.log.store import Committed

WORK_CHANNEL = "spool_session_runs"  # NOTIFY: sessions were marked wanted


class SessionRuns:
    """The projection. Only sessions with an agent get a row (at ``session_created``): a
    session without one only records messages, and never costs a worker anything."""

    name = "session_runs"

    def touches(self, event: Event) -> bool:
        return event.stream_type == "session" and (
            event.type == "session_created" or event.type in WAKES_A_WORKER)

    async def apply(self, conn: Any, events: Sequence[Committed]) -> bool:
        created: list[tuple[str, str, int]] = []
        wanted: dict[str, int] = {}
        for tenant_id, event in events:
            if event.stream_type != "session":
                continue
            if event.type == "session_created" and _has_agent(event.data):
                created.append((event.stream_id, tenant_id, event.position))
            elif event.type in WAKES_A_WORKER:
                wanted[event.stream_id] = event.position
        if created:
            await conn.executemany(
                "INSERT INTO session_runs (session_id, tenant_id, wanted_position, done_position)"
                " VALUES ($1, $2, $3, $3) ON CONFLICT (session_id) DO NOTHING", created,
            )
        if wanted:
            changed = await conn.execute(
                "UPDATE session_runs r SET wanted_position = w.position"
                " FROM unnest($1::text[], $2::bigint[]) AS w(session_id, position)"
                " WHERE r.session_id = w.session_id",
                list(wanted), list(wanted.values()),
            )
            if changed != "UPDATE 0":  # workers in every process hear it at commit
                await conn.execute("SELECT pg_notify($1, '')", WORK_CHANNEL)
                return True
        return bool(created)


class _AgentRef(msgspec.Struct):
    agent_id: str | None = None


_agent_ref = msgspec.json.Decoder(_AgentRef)


def _has_agent(data: msgspec.Raw) -> bool:
    return _agent_ref.decode(data).agent_id is not None
