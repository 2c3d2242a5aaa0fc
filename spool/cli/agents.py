"""``spool agents``: an agent's config is its model, system prompt, tools and limits; every
update makes a new version (sessions pin one)."""

from __future__ import annotations

import argparse
from typing import Any

from spool.cli.context import (
    Commands,
    Context,
    UsageError,
    action,
    add_limit,
    group,
    json_value,
    pairs,
    read_json,
)
from spool.cli.output import Column, attr, columns


def _model(value: Any) -> str:
    """``adapter:name`` as --model takes it (the scripted model's name is its adapter's)."""
    if not isinstance(value, dict):
        return ""
    adapter, name = value.get("adapter") or "", value.get("name") or ""
    return adapter if name in ("", adapter) else f"{adapter}:{name}"


COLUMNS = columns("id", "name", "version", "status", Column("MODEL", "model", _model),
                  ("ACTIVITY", "view.status"), "updated_at")
VERSION_COLUMNS = columns("version", Column("MODEL", "config.model", _model), "created_at")


def add_commands(commands: Commands) -> None:
    actions = group(commands, "agents", "agents: list, create, show, update, versions, archive")
    listing = action(actions, "list", "list the agents", list_)
    listing.add_argument("--status", choices=("active", "archived"))
    add_limit(listing)
    create_ = action(actions, "create", "create an agent", create,
                     "Create an agent from flags, a JSON config (--file), or both (flags win).")
    create_.add_argument("name", nargs="?", help="its name (or the file's)")
    _config_options(create_)
    action(actions, "show", "show an agent", show).add_argument("agent_id", metavar="AGENT")
    update_ = action(actions, "update", "change an agent: a new version", update)
    update_.add_argument("agent_id", metavar="AGENT")
    update_.add_argument("--name")
    _config_options(update_)
    versions_ = action(actions, "versions", "list an agent's versions", versions)
    versions_.add_argument("agent_id", metavar="AGENT")
    add_limit(versions_)
    action(actions, "archive", "archive an agent (its sessions keep their version)",
           archive).add_argument("agent_id", metavar="AGENT")


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", help="the config as JSON (\"-\": stdin)")
    parser.add_argument("--model", metavar="ADAPTER[:NAME]",
                        help="scripted, openai:gpt-4o-mini, anthropic:claude-...")
    parser.add_argument("--system", help="the system prompt")
    parser.add_argument("--tool", action="append", metavar="JSON",
                        help="a tool spec as JSON (repeat for more; replaces the file's tools)")
    parser.add_argument("--limit-turns", type=int, dest="max_turns", help="limits.max_turns")
    parser.add_argument("--metadata", action="append", metavar="KEY=VALUE")


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """The agent's fields from --file, then each flag given over it."""
    config: dict[str, Any] = {}
    if args.file:
        loaded = read_json(args.file)
        if not isinstance(loaded, dict):
            raise UsageError("--file: the agent config must be a JSON object")
        config.update(loaded)
    if getattr(args, "name", None):
        config["name"] = args.name
    if args.model:
        adapter, _, name = args.model.partition(":")
        config["model"] = {**config.get("model", {}), "adapter": adapter,
                           **({"name": name} if name else {})}
    if args.system is not None:
        config["system"] = args.system
    if args.tool:
        config["tools"] = [json_value(tool, "--tool") for tool in args.tool]
    if args.max_turns is not None:
        config["limits"] = {**config.get("limits", {}), "max_turns": args.max_turns}
    if args.metadata:
        config["metadata"] = {**config.get("metadata", {}), **pairs(args.metadata,
                                                                     "--metadata")}
    return config


def list_(ctx: Context) -> None:
    filters = {"status": ctx.args.status} if ctx.args.status else {}
    ctx.out.table(ctx.page(ctx.client().agents.list(**filters)), COLUMNS)


def create(ctx: Context) -> None:
    config = config_of(ctx.args)
    if "name" not in config:
        raise UsageError("an agent needs a name: `spool agents create NAME` or in --file")
    ctx.out.record(ctx.client().agents.create(**config))


def show(ctx: Context) -> None:
    ctx.out.record(ctx.client().agents.get(ctx.args.agent_id))


def update(ctx: Context) -> None:
    fields = config_of(ctx.args)
    if not fields:
        raise UsageError("nothing to change: give --file or a field's flag")
    agent = ctx.client().agents.update(ctx.args.agent_id, **fields)
    ctx.out.done(f"updated agent {ctx.args.agent_id}: version {attr(agent, 'version')}", agent)


def versions(ctx: Context) -> None:
    ctx.out.table(ctx.page(ctx.client().agents.versions(ctx.args.agent_id)), VERSION_COLUMNS)


def archive(ctx: Context) -> None:
    agent = ctx.client().agents.archive(ctx.args.agent_id)
    ctx.out.done(f"archived agent {ctx.args.agent_id}", agent)
