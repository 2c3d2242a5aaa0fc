"""``spool export`` and ``spool import`` as processes: a session exported to a file and imported
into another tenant (a second import writes nothing), the tenant's export, stdin, the progress
bar only on a terminal, and a bad line named by the command before anything is sent."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.conftest import LiveApp
from tests.helpers_cli import ESCAPE, Spool


def _session(cli: Spool, tmp_path: Path, text: str) -> str:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"name": "a", "model": {"adapter": "scripted"}}))
    agent = cli.json("agents", "create", "--file", str(path))["id"]
    session: str = cli.json("sessions", "create", "--agent", agent)["id"]
    cli.ok("send", session, text)
    return session


def test_a_session_exported_to_a_file_imports_into_another_tenant(
        live_app: LiveApp, cli: Spool, tmp_path: Path) -> None:
    session = _session(cli, tmp_path, "hello")
    exported = cli.ok("export", session)
    lines = [json.loads(line) for line in exported.splitlines()]
    assert lines[0]["kind"] == "session" and lines[0]["session_id"] == session
    events = cli.json("sessions", "events", session, "--all")
    assert [line["seq"] for line in lines[1:]] == [e["seq"] for e in events]
    file = tmp_path / "s.jsonl"
    file.write_text(exported)

    other = Spool(tmp_path, SPOOL_BASE_URL=live_app.base_url,
                  SPOOL_API_KEY=live_app.key(live_app.tenant("target"), "owner"))
    done = other.run("import", str(file))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar on a pipe
    [row] = [line.split("\t") for line in done.stdout.splitlines()[1:]]
    assert row[0] == session and row[1].startswith("ses_") and row[1] != session
    assert row[2:] == [str(len(events)), str(len(events))]
    state = other.json("sessions", "state", row[1])
    assert [m["text"] for m in state["conversation"]] == ["hello", "You said: hello"]
    again = other.json("import", str(file))
    assert again["sessions"] == [{"from": session, "id": row[1], "events": len(events),
                                  "written": 0}]
    piped = other.run("import", "-", input=exported, FORCE_COLOR="1")
    assert piped.returncode == 0, piped.stderr
    assert ESCAPE.search(piped.stderr) or "importing" in piped.stderr  # a bar, on a terminal


def test_the_tenant_export_holds_every_session(cli: Spool, tmp_path: Path) -> None:
    first, second = _session(cli, tmp_path, "one"), _session(cli, tmp_path, "two")
    lines = [json.loads(line) for line in cli.ok("export", "--tenant").splitlines()]
    assert lines[0]["kind"] == "tenant"
    headers = [line["session_id"] for line in lines if line.get("kind") == "session"]
    assert sorted(headers) == sorted([first, second])
    again = cli.run("export", "--tenant", "--json")  # JSON Lines either way
    assert again.returncode == 0
    events = [line for line in map(json.loads, again.stdout.splitlines()) if "kind" not in line]
    assert events == [line for line in lines if "kind" not in line]  # headers: exported_at


def test_a_bad_line_is_named_before_anything_is_sent(cli: Spool, tmp_path: Path) -> None:
    session = _session(cli, tmp_path, "hello")
    good = cli.ok("export", session).splitlines()
    file = tmp_path / "bad.jsonl"
    file.write_text("\n".join([*good[:2], "{not json", *good[2:]]) + "\n")
    done = cli.run("import", str(file))
    assert done.returncode == 2
    assert f"{file}:3: not JSON" in done.stderr
    assert cli.run("export").returncode == 2  # neither a session nor --tenant
    refused = cli.run("import", "-", input=json.dumps({"kind": "nonsense"}) + "\n")
    assert refused.returncode == 1 and "invalid_request" in refused.stderr
