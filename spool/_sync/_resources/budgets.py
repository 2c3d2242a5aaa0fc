# Generated from spool/_async/_resources/budgets.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""Budgets per scope (``tenant``, ``agent:<id>``, ``session:<id>``): list, set, get, delete."""

from __future__ import annotations

from collections.abc import Mapping

from spool import _core
from spool._sync._paging import Pager
from spool._sync._resources._base import Resource, fields
from spool._models import Budget, BudgetDeleted, BudgetPage
from spool._operations import operation

Limit = Mapping[str, int | float | None]  # {"tokens": ..., "usd": ...}


class Budgets(Resource):
    @operation("list_budgets")
    def list(self, *, limit: int | None = None,
             min_position: int | None = None) -> Pager[Budget]:
        return self._sender.pager(self._sender.call(
            "list_budgets", params={"limit": limit, "min_position": min_position}), BudgetPage)

    @operation("set_budget")
    def set(self, scope: str, *, total: Limit | None = None, month: Limit | None = None,
            day: Limit | None = None) -> Budget | BudgetDeleted:
        """The scope's limits, whole: a period not given has none (none at all deletes the
        budget, answered by ``BudgetDeleted``)."""
        limits = fields({"total": total, "month": month, "day": day})
        response = self._sender.send(
            self._sender.call("set_budget", scope, json={"limits": limits}))
        if "deleted" in _core.json_of(response):
            return _core.answer(response, BudgetDeleted)
        return _core.answer(response, Budget)

    @operation("get_budget")
    def get(self, scope: str, *, min_position: int | None = None) -> Budget:
        return self._sender.model(self._sender.call(
            "get_budget", scope, params={"min_position": min_position}), Budget)

    @operation("delete_budget")
    def delete(self, scope: str) -> BudgetDeleted:
        return self._sender.model(self._sender.call("delete_budget", scope),
                                  BudgetDeleted)
