"""Every projection, in one registry: what the engine runs and what checks rebuild or verify."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.projections.agents import AgentsProjection
from engine.projections.approvals import ApprovalsProjection
from engine.projections.budgets import BudgetsProjection
from engine.projections.runner import Projection
from engine.projections.session_runs import SessionRuns
from engine.projections.tasks import TasksProjection


@dataclass(frozen=True)
class View:
    make: Callable[[], Projection]
    # table -> the columns the projection owns (None: all), in the order rows are inserted
    tables: dict[str, tuple[str, ...] | None]
    # Events per page of a rebuild. A rebuild is one transaction: each update of a row leaves
    # a version nothing can prune before it commits, so rows that every page updates (a
    # tenant's or an agent's totals) grow chains each lookup walks. Views with such rows read
    # bigger pages (budgets over 1M events: 22k -> 72k events/s with 5,000); the others keep
    # 1,000 (tasks is ~12% slower with 5,000: its tables are analyzed later as they grow).
    page: int = 1000
    # Workers wait on it: a page it applied may hold work (a session wanted, an approval
    # decided, a task unblocked). No worker waits on the others (a budget check polls).
    wakes_workers: bool = False


VIEWS: dict[str, View] = {
    "session_runs": View(SessionRuns, {"session_runs": ("session_id", "tenant_id",
                                                        "wanted_position")}, wakes_workers=True),
    "approvals": View(ApprovalsProjection, {"approvals": None}, wakes_workers=True),
    "tasks": View(TasksProjection, {"boards": None, "tasks": None, "task_dependencies": None},
                  wakes_workers=True),
    "budgets": View(BudgetsProjection, {"budget_limits": None, "spend": None,
                                        "spend_totals": None}, page=5000),
    "agents": View(AgentsProjection, {"agents": None, "session_summaries": None}, page=5000),
}
