"""Budgets per scope (``tenant``, ``agent:<id>``, ``session:<id>``): list, set, get, delete."""

from __future__ import annotations

from collections.abc import Mapping

from spool import _core
from spool._async._paging import AsyncPager
from spool._async._resources._base import AsyncResource, fields
from spool._models import Budget, BudgetDeleted, BudgetPage
from spool._operations import operation

Limit = Mapping[str, int | float | None]  # {"tokens": ..., "usd": ...}


class AsyncBudgets(AsyncResource):
    @operation("list_budgets")
    def list(self, *, limit: int | None = None,
             min_position: int | None = None) -> AsyncPager[Budget]:
        return self._sender.pager(self._sender.call(
            "list_budgets", params={"limit": limit, "min_position": min_position}), BudgetPage)

    @operation("set_budget")
    async def set(self, scope: str, *, total: Limit | None = None, month: Limit | None = None,
                  day: Limit | None = None) -> Budget | BudgetDeleted:
        """The scope's limits, whole: a period not given has none (none at all deletes the
        budget, answered by ``BudgetDeleted``)."""
        limits = fields({"total": total, "month": month, "day": day})
        response = await self._sender.send(
            self._sender.call("set_budget", scope, json={"limits": limits}))
        if "deleted" in _core.json_of(response):
            return _core.answer(response, BudgetDeleted)
        return _core.answer(response, Budget)

    @operation("get_budget")
    async def get(self, scope: str, *, min_position: int | None = None) -> Budget:
        return await self._sender.model(self._sender.call(
            "get_budget", scope, params={"min_position": min_position}), Budget)

    @operation("delete_budget")
    async def delete(self, scope: str) -> BudgetDeleted:
        return await self._sender.model(self._sender.call("delete_budget", scope),
                                        BudgetDeleted)
