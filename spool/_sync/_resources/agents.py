# Generated from spool/_async/_resources/agents.py (scripts/generate_sdk.py): do not edit.
# ruff: noqa
"""Agents: create, list, get, update (a new version each time), versions, archive, heartbeat;
``agents.tokens``: the runtime tokens an agent's heartbeats are sent with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from spool._sync._paging import Pager
from spool._sync._resources._base import Resource, fields
from spool._sync._sender import Sender
from spool._models import (
    Agent,
    AgentPage,
    AgentToken,
    AgentTokenPage,
    AgentVersion,
    AgentVersionPage,
    Event,
    EventAccepted,
)
from spool._operations import operation


class AgentTokens(Resource):
    @operation("create_token")
    def create(self, agent_id: str, *, name: str | None = None) -> AgentToken:
        """A runtime token (``token``, shown in this answer only) for the agent's heartbeats."""
        return self._sender.model(
            self._sender.call("create_token", agent_id, json=fields({"name": name})), AgentToken)

    @operation("list_tokens")
    def list(self, agent_id: str, *, limit: int | None = None) -> Pager[AgentToken]:
        return self._sender.pager(
            self._sender.call("list_tokens", agent_id, params={"limit": limit}), AgentTokenPage)

    @operation("revoke_token")
    def revoke(self, agent_id: str, token_id: str) -> AgentToken:
        return self._sender.model(
            self._sender.call("revoke_token", agent_id, token_id), AgentToken)


class Agents(Resource):
    def __init__(self, sender: Sender) -> None:
        super().__init__(sender)
        self.tokens = AgentTokens(sender)

    @operation("create_agent")
    def create(self, *, name: str, model: Mapping[str, Any] | None = None,
               idempotency_key: str | None = None, **config: Any) -> Agent:
        """``config``: ``system``, ``tools``, ``limits``, ``metadata`` (docs/openapi.json's
        ``AgentConfig``); ``model`` defaults to the scripted adapter."""
        body = fields({"name": name, "model": model, **config})
        return self._sender.model(self._sender.call(
            "create_agent", json=body, idempotency_key=idempotency_key), Agent)

    @operation("list_agents")
    def list(self, *, status: Literal["active", "archived"] | None = None,
             limit: int | None = None, min_position: int | None = None) -> Pager[Agent]:
        """``status`` is filtered here, page by page (the API lists every agent)."""
        call = self._sender.call(
            "list_agents", params={"limit": limit, "min_position": min_position})
        keep = None if status is None else (lambda agent: agent.status == status)
        return Pager(self._sender, call, AgentPage, keep=keep)

    @operation("get_agent")
    def get(self, agent_id: str, *, min_position: int | None = None) -> Agent:
        return self._sender.model(self._sender.call(
            "get_agent", agent_id, params={"min_position": min_position}), Agent)

    @operation("update_agent")
    def update(self, agent_id: str, *, idempotency_key: str | None = None,
               **changes: Any) -> Agent:
        """Only the fields given change (``system=None`` clears the system prompt)."""
        return self._sender.model(self._sender.call(
            "update_agent", agent_id, json=changes, idempotency_key=idempotency_key), Agent)

    @operation("list_versions")
    def versions(self, agent_id: str, *, limit: int | None = None) -> Pager[AgentVersion]:
        return self._sender.pager(self._sender.call(
            "list_versions", agent_id, params={"limit": limit}), AgentVersionPage)

    @operation("archive_agent")
    def archive(self, agent_id: str) -> Agent:
        return self._sender.model(self._sender.call("archive_agent", agent_id), Agent)

    @operation("heartbeat")
    def heartbeat(self, agent_id: str, *, note: str | None = None,
                  token: str | None = None) -> Event:
        """Sent with one of the agent's runtime tokens: ``token``, or the client's key."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        call = self._sender.call("heartbeat", agent_id, json=fields({"note": note}),
                                 headers=headers)
        return (self._sender.model(call, EventAccepted)).event
