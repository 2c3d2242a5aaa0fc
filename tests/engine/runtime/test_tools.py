"""Server tools on their own: the built-in schemas, the timeout, unknown names."""

from __future__ import annotations

from engine.engine import Engine
from engine.events import AgentConfig, AgentCreated, new_event
from engine.runtime.tools import ServerTools, ToolContext


async def _context(engine: Engine) -> ToolContext:
    await engine.store.append("agt_x", [new_event(AgentCreated(config=AgentConfig(name="a")))],
                              tenant_id="ten_a", stream_type="agent")
    return ToolContext("ten_a", "agt_x", "ses_x", "wrk_test")


async def test_memory_round_trip_and_delete(engine: Engine) -> None:
    tools, context = ServerTools(engine.store, engine.tasks), await _context(engine)
    assert (await tools.run("memory_write", {"key": "k", "value": "v"}, context, 5)).text == (
        "stored")
    assert (await tools.run("memory_read", {"key": "k"}, context, 5)).text == "v"
    assert (await tools.run("memory_write", {"key": "k", "value": None}, context, 5)).text == (
        "deleted")
    assert "nothing stored" in (await tools.run("memory_read", {"key": "k"}, context, 5)).text


async def test_bad_input_unknown_tools_and_timeouts_are_error_results(engine: Engine) -> None:
    tools, context = ServerTools(engine.store, engine.tasks), await _context(engine)
    bad = await tools.run("memory_write", {"key": "k"}, context, 5)
    assert bad.is_error and "value" in bad.text
    extra = await tools.run("memory_read", {"key": "k", "more": 1}, context, 5)
    assert extra.is_error
    unknown = await tools.run("rm_rf", {}, context, 5)
    assert unknown.is_error and "rm_rf" in unknown.text
    slow = await tools.run("memory_read", {"key": "k"}, context, 1e-6)
    assert slow.is_error and "timed out" in slow.text
