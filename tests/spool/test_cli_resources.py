"""Each resource's commands as a process against a live server: list, create, show and the
actions, their --json parsed and checked against what the API holds, the tables a pipe gets
(tab-separated, no escapes) and the colours a terminal gets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.api.conftest import LiveApp
from tests.conftest import ADMIN_TOKEN
from tests.helpers_cli import ESCAPE, Spool

SCRIPTED = {"adapter": "scripted", "script": [{"text": "hello from the script"}]}


def _table(out: str) -> list[dict[str, str]]:
    """A pipe's table: a tab-separated header, then a row per line."""
    header, *rows = out.splitlines()
    names = header.split("\t")
    return [dict(zip(names, row.split("\t"), strict=True)) for row in rows]


def _record(out: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in out.splitlines())


def _agent_file(tmp_path: Path, **fields: Any) -> str:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"name": "helper", "model": SCRIPTED, **fields}))
    return str(path)


def test_tenants_as_the_admin(live_app: LiveApp, tmp_path: Path) -> None:
    admin = Spool(tmp_path, SPOOL_BASE_URL=live_app.base_url, SPOOL_API_KEY=ADMIN_TOKEN)
    made = admin.json("tenants", "create", "globex")
    assert made["name"] == "globex" and made["status"] == "active"
    listed = _table(admin.ok("tenants", "list", "--all"))
    assert {"ID": made["id"], "NAME": "globex", "STATUS": "active",
            "CREATED_AT": made["created_at"]} in listed
    assert _record(admin.ok("tenants", "show", made["id"]))["name"] == "globex"
    assert admin.ok("tenants", "suspend", made["id"]) == f"suspended tenant {made['id']}\n"
    assert admin.json("tenants", "show", made["id"])["status"] == "suspended"
    assert admin.json("tenants", "resume", made["id"])["status"] == "active"
    # The admin acts on a tenant with --tenant-id (Spool-Tenant).
    board = admin.json("boards", "create", "ops", "--tenant-id", made["id"])
    boards = live_app.request("GET", "/v1/boards", live_app.key(made["id"])).json()["data"]
    assert [b["id"] for b in boards] == [board["id"]]


def test_keys(cli: Spool) -> None:
    made = cli.json("keys", "create", "ci", "--role", "viewer")
    assert made["key"].startswith("spk_") and made["role"] == "viewer"
    shown = cli.run("keys", "create", "ci 2")
    assert shown.returncode == 0 and "shown only this once" in shown.stderr
    listed = cli.json("keys", "list")
    assert {key["name"] for key in listed} >= {"ci", "ci 2"}
    assert all(key.get("key") is None for key in listed)  # never shown again
    assert cli.ok("keys", "revoke", made["id"]) == f"revoked key {made['id']}\n"
    viewer = cli.run("boards", "list", SPOOL_API_KEY=made["key"])
    assert viewer.returncode == 1 and "unauthorized" in viewer.stderr


def test_agents(cli: Spool, tmp_path: Path) -> None:
    made = cli.json("agents", "create", "--file", _agent_file(tmp_path), "--system", "be brief")
    assert (made["name"], made["version"], made["system"]) == ("helper", 1, "be brief")
    assert made["model"]["adapter"] == "scripted"
    cli.until(lambda agents: [a["id"] for a in agents] == [made["id"]], "agents", "list")
    row = next(r for r in _table(cli.ok("agents", "list")) if r["ID"] == made["id"])
    assert (row["NAME"], row["VERSION"], row["STATUS"], row["MODEL"]) == (
        "helper", "1", "active", "scripted")
    assert _record(cli.ok("agents", "show", made["id"]))["system"] == "be brief"
    out = cli.ok("agents", "update", made["id"], "--system", "be kind")
    assert out == f"updated agent {made['id']}: version 2\n"
    versions = cli.json("agents", "versions", made["id"])
    assert [v["version"] for v in versions] == [1, 2]
    assert [v["config"]["system"] for v in versions] == ["be brief", "be kind"]
    assert cli.json("agents", "archive", made["id"])["status"] == "archived"
    cli.until(lambda agents: [a["id"] for a in agents] == [made["id"]],
                "agents", "list", "--status", "archived")
    named = cli.json("agents", "create", "plain", "--model", "openai:gpt-4o-mini")
    assert named["model"]["adapter"] == "openai" and named["model"]["name"] == "gpt-4o-mini"
    # -o id: the id alone, for $(...) in a script; a list's ids a line each.
    bare = cli.ok("agents", "create", "bare", "-o", "id")
    assert re.fullmatch(r"agt_\w+\n", bare)
    cli.until(lambda agents: len(agents) == 3, "agents", "list", "--all")
    assert bare.strip() in cli.ok("agents", "list", "-o", "id").splitlines()
    assert cli.ok("agents", "archive", bare.strip(), "-o", "id") == bare


def test_sessions(cli: Spool, tmp_path: Path) -> None:
    agent = cli.json("agents", "create", "--file", _agent_file(tmp_path))
    made = cli.json("sessions", "create", "--agent", agent["id"], "--title", "first",
                      "--metadata", "team=ops")
    assert (made["agent_id"], made["title"], made["metadata"]) == (agent["id"], "first",
                                                                    {"team": "ops"})
    assert cli.ok("send", made["id"], "hi") == "hello from the script\n"
    cli.until(lambda found: [s["turns"] for s in found] == [1], "sessions", "list")
    listed = _table(cli.ok("sessions", "list", "--agent", agent["id"]))
    assert [(r["ID"], r["TITLE"]) for r in listed] == [(made["id"], "first")]
    shown = cli.json("sessions", "show", made["id"])
    assert shown["status"] == "idle" and shown["usage"]["output_tokens"] == 4
    state = cli.json("sessions", "state", made["id"])
    assert [m["text"] for m in state["conversation"]] == ["hi", "hello from the script"]
    assert cli.json("sessions", "state", made["id"], "--at", "1")["conversation"] == []
    events = cli.json("sessions", "events", made["id"])
    assert events[0]["type"] == "session_created" and events[-1]["type"] == "session_done"
    lines = cli.ok("sessions", "events", made["id"], "--after", "1").splitlines()
    assert lines[0].startswith("#2  ") and "user_message" in lines[0] and '"hi"' in lines[0]
    assert len(lines) == len(events) - 1
    assert cli.json("sessions", "queue", made["id"]) == []
    assert cli.ok("sessions", "interrupt", made["id"]) == \
        f"session {made['id']} had no turn running\n"
    assert cli.ok("sessions", "archive", made["id"]) == f"archived session {made['id']}\n"
    assert cli.json("sessions", "show", made["id"])["status"] == "archived"


def test_boards_and_tasks(cli: Spool) -> None:
    board = cli.json("boards", "create", "launch", "--description", "v1")
    assert cli.json("boards", "show", board["id"])["description"] == "v1"
    assert cli.json("boards", "update", board["id"], "--name", "launch v1")["name"] == \
        "launch v1"
    first = cli.json("tasks", "create", "write docs", "--board", board["id"],
                       "--priority", "high")
    second = cli.json("tasks", "create", "ship", "--board", board["id"],
                        "--depends-on", first["id"])
    assert second["status"] == "blocked"  # until its dependency is done
    cli.until(lambda tasks: len(tasks) == 2, "tasks", "list", "--board", board["id"])
    rows = _table(cli.ok("tasks", "list", "--board", board["id"]))
    assert {(r["TITLE"], r["STATUS"], r["PRIORITY"]) for r in rows} == {
        ("write docs", "inbox", "high"), ("ship", "blocked", "normal")}
    assert cli.ok("tasks", "update", first["id"], "--status", "done") == \
        f"updated task {first['id']}\n"
    cli.until(lambda task: task["status"] != "blocked", "tasks", "show", second["id"])
    comment = cli.json("tasks", "comment", first["id"], "looks good")
    assert comment["body"] == "looks good"
    assert [c["body"] for c in cli.json("tasks", "comments", first["id"])] == ["looks good"]
    cli.until(lambda snapshot: snapshot["counts"]["done"] == 1,
                "boards", "snapshot", board["id"])
    printed = cli.ok("boards", "snapshot", board["id"])
    assert printed.startswith(f"launch v1 ({board['id']}) at position ")
    assert "write docs" in printed and "ship" in printed
    cli.ok("tasks", "delete", second["id"])
    cli.until(lambda tasks: [t["id"] for t in tasks] == [first["id"]],
                "tasks", "list", "--board", board["id"])
    cli.ok("boards", "delete", board["id"])
    assert cli.run("boards", "show", board["id"]).returncode == 1


def test_approvals(cli: Spool, tmp_path: Path) -> None:
    agent = cli.json("agents", "create", "--file", _approving_agent(tmp_path))
    session = cli.json("sessions", "create", "--agent", agent["id"])
    waiting = cli.start("send", session["id"], "remember k", "--follow")
    waiting.wait_for("approval apr_", stream="stderr")
    [pending] = cli.until(bool, "approvals", "list", "--session", session["id"])
    assert (pending["tool_name"], pending["status"]) == ("memory_write", "pending")
    assert _record(cli.ok("approvals", "show", pending["id"]))["status"] == "pending"
    assert cli.ok("approvals", "deny", pending["id"], "--reason", "not now") == \
        f"denied {pending['id']}\n"
    assert waiting.wait() == 0
    cli.until(lambda pending: pending == [], "approvals", "list")  # none pending
    [denied] = cli.json("approvals", "list", "--status", "all")
    assert (denied["status"], denied["reason"]) == ("denied", "not now")


def test_budgets_and_usage(cli: Spool, tmp_path: Path) -> None:
    agent = cli.json("agents", "create", "--file", _agent_file(tmp_path))
    session = cli.json("sessions", "create", "--agent", agent["id"])
    cli.ok("send", session["id"], "hi")
    budget = cli.json("budgets", "set", f"agent:{agent['id']}", "--tokens", "1000",
                        "--period", "day")
    assert budget["scope"] == f"agent:{agent['id']}"
    assert budget["limits"]["day"]["tokens"] == 1000
    cli.until(bool, "budgets", "list")
    rows = _table(cli.ok("budgets", "list"))
    assert [r["SCOPE"] for r in rows] == [f"agent:{agent['id']}"]
    assert rows[0]["DAY"].endswith("/1000 tokens")
    assert cli.json("budgets", "show", f"agent:{agent['id']}")["limits"]["day"][
        "spent_tokens"] >= 0
    cli.ok("budgets", "delete", f"agent:{agent['id']}")
    cli.until(lambda budgets: budgets == [], "budgets", "list")
    assert cli.run("budgets", "set", "tenant").returncode == 2  # no limit given
    [row] = cli.until(bool, "usage", "list", "--group-by", "agent")
    assert (row["key"], row["calls"], row["output_tokens"]) == (agent["id"], 1, 4)
    table = _table(cli.ok("usage", "list", "--group-by", "model"))
    assert [(r["KEY"], r["CALLS"]) for r in table] == [("scripted", "1")]


def test_a_terminal_gets_a_coloured_table_and_a_pipe_none(cli: Spool) -> None:
    cli.ok("boards", "create", "launch")
    cli.until(bool, "boards", "list")
    piped = cli.ok("boards", "list")  # ok() also checks: no escape sequence at all
    assert piped.splitlines()[0] == "ID\tNAME\tDESCRIPTION\tUPDATED_AT"
    coloured = cli.run("tasks", "list", FORCE_COLOR="1", COLUMNS="120")
    assert coloured.returncode == 0
    board = cli.json("boards", "list")[0]["id"]
    cli.ok("tasks", "create", "t", "--board", board)
    cli.until(bool, "tasks", "list")
    tty = cli.run("tasks", "list", FORCE_COLOR="1", COLUMNS="160")
    assert ESCAPE.search(tty.stdout), tty.stdout  # rich's styles
    assert "\t" not in tty.stdout and "TITLE" in tty.stdout
    no_color = cli.run("tasks", "list", FORCE_COLOR="1", NO_COLOR="1", COLUMNS="160")
    assert "\x1b[3" not in no_color.stdout  # no colour (bold headers may stay)


def _approving_agent(tmp_path: Path) -> str:
    """An agent whose first reply calls memory_write, which needs an approval."""
    script = [{"text": "let me write that down",
               "tool_calls": [{"name": "memory_write", "input": {"key": "k", "value": "v"}}]},
              {"text": "all done now"}]
    tool = {"name": "memory_write", "executor": "server", "input_schema": {"type": "object"},
            "requires_approval": True}
    return _agent_file(tmp_path, model={"adapter": "scripted", "script": script}, tools=[tool])
