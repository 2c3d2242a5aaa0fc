"""`spool replay` as a subprocess against the test database: the timeline (deltas joined, one
block per turn, times), `--json`, `--at` (the same state as the API's), a session that does
not exist, and `--follow` seeing a turn that runs after it started."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys

from engine.settings import Settings
from tests.api.conftest import Api
from tests.helpers import approved_client_call, say, seq_of, settle
from tests.helpers_processes import cli_env, spool_cli


def _spool(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return spool_cli("replay", *args, database_url=database_url, timeout=60)


async def test_the_timeline_joins_deltas_and_groups_turns(api: Api, settings: Settings) -> None:
    assert settings.database_url is not None
    _, sid, events = await approved_client_call(api)
    done = await asyncio.to_thread(_spool, sid, database_url=settings.database_url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"session {sid} (tenant {events[0]['data']['tenant_id']}): " \
        f"{len(events)} events"
    body = [line for line in lines[1:] if line]
    assert all(re.match(r"^ +#\d+  \d\d:\d\d:\d\d\.\d{3}  +\+\d+\.\d{3}s  ", line)
               for line in body), body
    text = "\n".join(body)
    models = [line for line in body if "model scripted" in line]
    assert len(models) == 2  # one line per model call, not per delta
    assert 'model scripted: "let me look" (tool_use, ' in models[0]
    assert re.search(r'"found it" \(end_turn, \d+ in / 2 out, \$\d\.\d{6}, \d+\.\d{3}s\)',
                     models[1])
    assert 'turn 1 submitted (turn_' in text and '"look up x"' in text
    assert re.search(r"turn 1 started by wrk_", text)
    assert 'tool call toolu_0_0 lookup {"word": "x"} (client)' in text
    assert re.search(r'approval apr_\w+ approve: "fine"', text)
    assert 'tool result toolu_0_0 (lookup): "x is a letter"' in text
    assert re.search(r"turn 1 completed after \d+\.\d{3}s \(2 model calls, \d+ tokens", text)
    # Lines inside the turn are indented under its start.
    started = body.index(next(line for line in body if "started by" in line))
    assert body[started + 1].split("s  ", 1)[1].startswith("  model scripted")
    assert "" in lines  # a blank line before each turn's block
    # The message line comes before the calls it made, in log order otherwise.
    assert text.index("let me look") < text.index("tool call toolu_0_0")

    as_json = await asyncio.to_thread(_spool, sid, "--json", database_url=settings.database_url)
    assert as_json.returncode == 0, as_json.stderr
    entries = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [e["kind"] for e in entries] == [
        "session_created", "user_message", "turn_started", "message", "tool_use",
        "approval_requested", "approval_resolved", "tool_result", "message", "turn_done"]
    first, second = (e for e in entries if e["kind"] == "message")
    assert (first["text"], first["tool_use_ids"], first["stop_reason"]) == (
        "let me look", ["toolu_0_0"], "tool_use")
    assert first["seq"] == seq_of(events, "message_start")
    assert first["last_seq"] == seq_of(events, "spend_recorded")  # its spend is on its line
    assert second["text"] == "found it" and second["usage"]["output_tokens"] == 2
    assert all(e["since_previous"] >= 0 for e in entries) and entries[0]["since_previous"] == 0
    assert entries[-1]["status"] == "completed" and entries[-1]["turn"] == 1


async def test_at_prints_the_state_the_api_returns(api: Api, settings: Settings) -> None:
    assert settings.database_url is not None
    url = settings.database_url
    key, sid, events = await approved_client_call(api)
    at = seq_of(events, "approval_resolved")
    shown = await asyncio.to_thread(_spool, sid, "--at", str(at), database_url=url)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"session {sid} at #{at} of {events[-1]['seq']} (")
    assert "): requires_action\n" in shown.stdout
    assert "waiting on the client: toolu_0_0" in shown.stdout
    assert 'tool call toolu_0_0 lookup {"word": "x"} (client, approval approve)' in shown.stdout
    assert '  user: "look up x"' in shown.stdout

    as_json = await asyncio.to_thread(_spool, sid, "--at", str(at), "--json", database_url=url)
    assert as_json.returncode == 0, as_json.stderr
    from_api = (await api.request("GET", f"/v1/sessions/{sid}/state?at={at}", key)).json()
    assert json.loads(as_json.stdout) == from_api

    past = await asyncio.to_thread(_spool, sid, "--at", "999", database_url=url)
    assert past.returncode == 1 and "at must be between 1 and" in past.stderr


async def test_a_session_that_does_not_exist_is_exit_1(api: Api, settings: Settings) -> None:
    assert settings.database_url is not None
    missing = await asyncio.to_thread(_spool, "ses_nothing", database_url=settings.database_url)
    assert missing.returncode == 1
    assert "no session 'ses_nothing'" in missing.stderr and missing.stdout == ""
    both = await asyncio.to_thread(_spool, "ses_x", "--at", "1", "--follow",
                                   database_url=settings.database_url)
    assert both.returncode == 2 and "do not go together" in both.stderr


async def _line_with(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> str:
    async with asyncio.timeout(20):
        while True:
            line = (await stream.readline()).decode()
            assert line, f"the output ended before {needle!r}: {seen}"
            seen.append(line)
            if needle in line:
                return line


async def test_follow_prints_what_is_appended_after_it_started(
    api: Api, settings: Settings,
) -> None:
    assert settings.database_url is not None
    key, sid, _ = await approved_client_call(api)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spool.cli", "replay", sid, "--follow",
        env=cli_env(settings.database_url), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    seen: list[str] = []
    try:
        await _line_with(process.stdout, "following (Ctrl-C to stop)", seen)
        await _line_with(process.stdout, "turn 1 completed", seen)  # the history first
        sent = await say(api, key, sid, "and again")
        assert sent.status_code == 202
        await settle(api, key, sid, "idle")
        await _line_with(process.stdout, 'turn 2 submitted', seen)
        reply = await _line_with(process.stdout, "model scripted", seen)
        assert '"You said: and again" (end_turn' in reply  # joined, with its usage and spend
        await _line_with(process.stdout, "turn 2 completed", seen)
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert sum("turn 1 completed" in line for line in seen) == 1  # nothing printed twice


async def test_rerun_reports_deterministic_or_the_first_difference(
    api: Api, settings: Settings,
) -> None:
    assert settings.database_url is not None
    url = settings.database_url
    _, sid, events = await approved_client_call(api)
    same = await asyncio.to_thread(_spool, sid, "--rerun", database_url=url)
    assert same.returncode == 0, same.stderr
    assert same.stdout == f"deterministic: {len(events)} of {len(events)} events match\n"

    # A log that says the turn failed, where the same inputs make it complete.
    async with api.app.state.engine._pool.acquire() as conn:
        await conn.execute("UPDATE events SET data = replace(data::text, '\"completed\"',"
                           " '\"failed\"')::json WHERE stream_id = $1 AND type = 'session_done'",
                           sid)
    done = seq_of(events, "session_done")
    differs = await asyncio.to_thread(_spool, sid, "--rerun", database_url=url)
    assert differs.returncode == 1
    lines = differs.stdout.splitlines()
    assert lines[0] == f"differs at #{done} ({done - 1} events match before it): " \
        f"event #{done} differs"
    assert '"status": "failed"' in lines[1] and '"status": "completed"' in lines[2]
    as_json = await asyncio.to_thread(_spool, sid, "--rerun", "--json", database_url=url)
    report = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and report["deterministic"] is False
    assert report["difference"]["seq"] == done and report["matched"] == done - 1
