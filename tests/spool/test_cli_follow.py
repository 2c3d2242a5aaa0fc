"""``spool send --follow`` (the reply printed while the turn still runs) and ``spool tail``
(a session's events and the tenant's firehose, resumed after the connection drops, each event
printed once) as processes against a live server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.api.conftest import LiveApp
from tests.helpers_cli import ESCAPE, Proxy, Spool


def _agent(cli: Spool, tmp_path: Path, script: list[dict[str, Any]],
           tools: list[dict[str, Any]] | None = None) -> str:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"name": "a", "model": {"adapter": "scripted", "script": script},
                                "tools": tools or []}))
    agent: str = cli.json("agents", "create", "--file", str(path))["id"]
    session: str = cli.json("sessions", "create", "--agent", agent)["id"]
    return session


def _approving(cli: Spool, tmp_path: Path) -> str:
    script = [{"text": "let me write that down",
               "tool_calls": [{"name": "memory_write", "input": {"key": "k", "value": "v"}}]},
              {"text": "all done now"}]
    tool = {"name": "memory_write", "executor": "server", "input_schema": {"type": "object"},
            "requires_approval": True}
    return _agent(cli, tmp_path, script, [tool])


def _seqs(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.match(r"#(\d+)  ", line))]


def test_send_follow_prints_the_reply_while_the_turn_runs(cli: Spool, tmp_path: Path) -> None:
    session = _approving(cli, tmp_path)
    follow = cli.start("send", session, "remember k", "--follow")
    # The first reply is on stdout while the turn waits for a person: it was not held back
    # until the turn's end.
    follow.wait_for("^let me write that down$")
    [note] = follow.wait_for(r"^approval apr_\w+ needed for memory_write", stream="stderr")
    approval = note.split()[1]
    assert follow.proc.poll() is None
    assert cli.ok("approvals", "approve", approval) == f"approved {approval}\n"
    assert follow.wait() == 0, follow.output()
    assert follow.stdout == ["let me write that down", "all done now"]
    assert any(line.startswith("tool call memory_write") for line in follow.stderr)
    assert not ESCAPE.search(follow.output())


def test_send_follow_json_is_the_turns_events_as_json_lines(cli: Spool,
                                                            tmp_path: Path) -> None:
    session = _agent(cli, tmp_path, [{"text": "one two three"}])
    done = cli.run("send", session, "go", "--follow", "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["type"] == "user_message"
    deltas = [e["data"]["text"] for e in events if e["type"] == "message_delta"]
    assert len(deltas) == 3 and "".join(deltas) == "one two three"  # a word each
    assert events[-1]["type"] == "session_done" and events[-1]["data"]["status"] == "completed"
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    # Without --follow: the reply, once the turn is done; --json: its events as one array.
    assert cli.ok("send", session, "again") == "You said: again\n"
    whole = cli.json("send", session, "third")
    assert whole[-1]["type"] == "session_done"


def test_a_turn_that_fails_exits_1_with_its_error(cli: Spool, tmp_path: Path) -> None:
    session = _agent(cli, tmp_path, [{"error": "the model is down"}])
    done = cli.run("send", session, "hi", "--follow")
    assert done.returncode == 1
    assert "error: the turn ended failed: " in done.stderr
    assert "the model is down" in done.stderr
    busy = cli.run("send", "ses_missing", "hi")
    assert busy.returncode == 1 and "not_found" in busy.stderr


def test_a_client_tool_is_answered_with_tool_results(cli: Spool, tmp_path: Path) -> None:
    lookup = {"name": "lookup", "executor": "client", "input_schema": {"type": "object"}}
    session = _agent(cli, tmp_path, [
        {"text": "looking", "tool_calls": [{"name": "lookup", "input": {"word": "x"}}]},
        {"text": "x is a letter"}], [lookup])
    follow = cli.start("send", session, "what is x", "--follow")
    follow.wait_for(r'^tool call lookup toolu_0_0 lookup \{"word":"x"\} \(client\)$',
                    stream="stderr")
    cli.until(lambda found: found["status"] == "requires_action", "sessions", "show", session)
    assert cli.ok("sessions", "tool-results", session, "--result", "toolu_0_0", "a letter") == \
        f"sent 1 tool result(s) to session {session}\n"
    assert follow.wait() == 0, follow.output()
    assert follow.stdout == ["looking", "x is a letter"]
    assert 'tool result toolu_0_0 "a letter"' in follow.stderr
    assert cli.run("sessions", "tool-results", session).returncode == 2  # none given


def test_a_turn_queued_behind_a_running_one_can_be_removed(cli: Spool, tmp_path: Path) -> None:
    session = _approving(cli, tmp_path)
    running = cli.start("send", session, "remember k", "--follow")
    [note] = running.wait_for(r"^approval apr_", stream="stderr")
    refused = cli.run("send", session, "and this")
    assert refused.returncode == 1 and "conflict, HTTP 409" in refused.stderr
    queued = cli.start("send", session, "later", "--mode", "enqueue")
    [turn] = cli.until(bool, "sessions", "queue", session)
    assert turn["content"] == "later"
    assert cli.ok("sessions", "dequeue", session, turn["turn_id"]) == \
        f"removed turn {turn['turn_id']} from the queue\n"
    assert cli.json("sessions", "queue", session) == []
    cli.ok("approvals", "deny", note.split()[1])
    assert running.wait() == 0
    assert queued.wait() == 1  # its turn ends, cancelled, when its place in the queue comes
    assert "error: the turn ended cancelled" in "\n".join(queued.stderr), queued.output()


def test_tail_resumes_after_the_connection_drops(live_app: LiveApp, cli: Spool,
                                                 tmp_path: Path) -> None:
    session = _agent(cli, tmp_path, [])
    cli.ok("send", session, "first")
    proxy = Proxy(("127.0.0.1", int(live_app.base_url.rsplit(":", 1)[1])))
    tail = cli.start("tail", session, SPOOL_BASE_URL=proxy.url)
    try:
        tail.wait_for("session_done  completed")
        proxy.cut()  # a dropped connection: the stream comes back by itself
        cli.ok("send", session, "second")
        tail.wait_for("session_done  completed", count=2)
        proxy.refusing = True  # and a server that stays away for a while
        proxy.cut()
        proxy.wait_refused(2)
        cli.ok("send", session, "third")
        proxy.refusing = False
        tail.wait_for("session_done  completed", count=3)
        assert tail.proc.poll() is None
    finally:
        code = tail.interrupt()
        proxy.close()
    assert code == 130
    seqs = _seqs(tail.stdout)
    assert seqs == list(range(1, len(seqs) + 1)), tail.output()  # each event once, in order
    events = cli.json("sessions", "events", session, "--all")
    assert len(seqs) == len(events)
    assert any("user_message" in line and '"third"' in line for line in tail.stdout)
    assert not ESCAPE.search(tail.output())


def test_tail_after_a_cursor_and_as_json(cli: Spool, tmp_path: Path) -> None:
    session = _agent(cli, tmp_path, [])
    cli.ok("send", session, "first")
    tail = cli.start("tail", session, "--after", "3", "--json")
    try:
        tail.wait_for('"type":"session_done"')
    finally:
        tail.interrupt()
    events = [json.loads(line) for line in tail.stdout]
    assert events[0]["seq"] == 4
    assert events[-1]["type"] == "session_done"


def test_tail_tenant_follows_every_stream_by_position(cli: Spool, tmp_path: Path) -> None:
    first = _agent(cli, tmp_path, [])
    tail = cli.start("tail", "--tenant")
    try:
        tail.wait_for(rf"@\d+  {first}  .*session_created")
        second = cli.json("sessions", "create")["id"]
        cli.ok("send", first, "hello")
        tail.wait_for(rf"@\d+  {first}  .*session_done  completed")
        tail.wait_for(rf"@\d+  {second}  .*session_created")
    finally:
        tail.interrupt()
    positions = [int(m.group(1)) for line in tail.stdout if (m := re.match(r"@(\d+)  ", line))]
    assert positions == sorted(set(positions))
    assert any("agent_created" in line for line in tail.stdout)
    usage = cli.run("tail")
    assert usage.returncode == 2 and "give a SESSION, or --tenant" in usage.stderr
