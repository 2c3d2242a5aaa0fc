"""Re-running a session from its log, a determinism check (``spool replay --rerun``).

The session's turns are run again by the runtime's own ``SessionRunner`` against a scratch log
in memory, never against the store: nothing is appended anywhere and no tool runs. The model
is an adapter fed the recorded outputs (each call's deltas and tool calls in their order, and
its stop with its usage, or its error), server tools answer with the recorded results, and
what came from outside the worker is taken from the recording when it is due: user messages,
a client's tool results, approvals decided, interrupts, the archive, and a turn ended because
a budget was spent (a decision that depends on other sessions' spend).

Every event the re-run appends is compared with the recorded event it should equal, ignoring
what is fresh by design (message and approval ids, the worker's id, the price of a call,
which depends on the server's price table). The first that differs is reported; if none
does, the log is deterministic up to its end. A log cut anywhere (mid-turn, mid-message)
matches up to its end: the re-run then stops.

A recorded call with no stop (its worker died mid-message) or stopped ``interrupted`` feeds
what was recorded and then gives nothing more; the re-run then does what the runtime does
after a crash: a new runner folds the scratch log and carries on. Appends are batched by
timing, so an input that lands between two of a worker's events in the recording may land
after the batch in the re-run; it is still taken in before the runner's next append, as the
real one was.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from engine.domain.agents import PinnedVersion
from engine.errors import StreamMoved
from engine.events import (
    FROM_OUTSIDE,
    AgentConfig,
    Event,
    MessageDelta,
    MessageStart,
    MessageStop,
    NewEvent,
    SessionCreated,
    ToolUse,
    decode_data,
    decode_meta,
)
from engine.runtime.adapters.base import (
    Chunk,
    Finish,
    ModelError,
    ModelRequest,
    TextDelta,
    ToolCall,
)
from engine.runtime.tools import Outcome, ServerTools, ToolContext
from engine.runtime.turns import LostSession, RetryPolicy, SessionRunner

# What the log gives a re-run rather than the re-run making it: what others append, but a
# tool_result, which is an input only when a client's (see _is_input).
_INPUTS = FROM_OUTSIDE - {"tool_result"}
_FRESH = frozenset({"message_id", "approval_id", "worker", "cost_nanos", "priced"})
_WORKER = "wrk_rerun"


class Difference(msgspec.Struct):
    """The first recorded event (``seq``) the re-run did not make: ``got`` is what it made
    instead, or None if it stopped (waiting, or finished) where the log goes on."""

    seq: int
    expected: dict[str, Any]
    got: dict[str, Any] | None
    note: str


class RerunReport(msgspec.Struct):
    session_id: str
    events: int  # in the recorded log
    matched: int  # recorded events the re-run reproduced or took in, from the first
    deterministic: bool
    difference: Difference | None


class _Diverged(Exception):
    def __init__(self, difference: Difference) -> None:
        super().__init__(difference.note)
        self.difference = difference


class _Ended(Exception):
    """The re-run goes on where the recorded log ends."""


def _comparable(type_: str, data: bytes) -> dict[str, Any]:
    fields: dict[str, Any] = msgspec.json.decode(data)
    return {"type": type_, **{k: v for k, v in fields.items() if k not in _FRESH}}


def _is_input(event: Event) -> bool:
    if event.type in _INPUTS:
        return True
    if event.type == "tool_result":  # a client's, not one a worker appended
        return not (decode_meta(event).actor or "").startswith("wrk_")
    if event.type == "session_done":  # a budget is spent: other sessions' spend decided it
        return bool(msgspec.json.decode(event.data).get("status") == "budget_exceeded")
    return False


class _Scratch:
    """The log the re-run appends to (a ``SessionLog``, as ``SessionRunner`` needs): each
    append is compared with the recording, and the recorded events, renumbered, are kept."""

    def __init__(self, recorded: Sequence[Event]) -> None:
        self.recorded = recorded
        self.log: list[Event] = [recorded[0]]
        self.next = 1  # the index in ``recorded`` of the next event not in the log
        self.message: int | None = None  # the recorded index of the open call's start
        self.stuck = asyncio.Event()  # the runner waits on something the log does not hold
        # Kept here, not only raised: an append inside the runner's pipe may be cancelled
        # before its error is looked at.
        self.difference: Difference | None = None
        self.over = False  # the re-run went past the end of the recording

    @property
    def ended(self) -> bool:
        return self.over or self.next >= len(self.recorded)

    def take_inputs(self) -> bool:
        took = False
        while not self.ended and _is_input(self.recorded[self.next]):
            self._keep(self.recorded[self.next])
            self.next += 1
            took = True
        return took

    def _keep(self, event: Event) -> Event:
        kept = msgspec.structs.replace(event, seq=len(self.log) + 1)
        self.log.append(kept)
        return kept

    async def read_stream(self, stream_id: str, *, tenant_id: str, after: int = 0,
                          limit: int = 100) -> list[Event]:
        return self.log[after:after + limit]

    async def read_whole_stream(self, stream_id: str, *, tenant_id: str) -> list[Event]:
        return list(self.log)

    async def append(self, stream_id: str, events: Sequence[NewEvent], *, tenant_id: str,
                     stream_type: str, expected_seq: int | None = None) -> list[Event]:
        if expected_seq != len(self.log) or self.take_inputs():
            actual = len(self.log)
            raise StreamMoved(
                f"expected_seq {expected_seq} but stream {stream_id!r} is at {actual}",
                details={"expected_seq": expected_seq, "actual_seq": actual},
            )
        matched: list[Event] = []
        inputs: list[Event] = []
        at = self.next
        for new in events:
            while at < len(self.recorded) and _is_input(self.recorded[at]):
                inputs.append(self.recorded[at])
                at += 1
            if at >= len(self.recorded):
                self.over = True
                self.stuck.set()
                raise _Ended
            want = self.recorded[at]
            got, expected = _comparable(new.type, new.data), _comparable(want.type, want.data)
            if got != expected:
                self.difference = Difference(want.seq, expected, got,
                                             f"event #{want.seq} differs")
                self.stuck.set()
                raise _Diverged(self.difference)
            if want.type == "message_start":
                self.message = at
            matched.append(want)
            at += 1
        self.next = at
        kept = [self._keep(event) for event in matched]
        for event in inputs:  # landed inside the batch in the recording: now after it
            self._keep(event)
        return kept


@dataclass
class _Call:
    chunks: list[Chunk]
    stop: MessageStop | None
    error: str | None = None
    retryable: bool = False


def _calls(recorded: Sequence[Event]) -> dict[int, _Call]:
    """Each recorded model call by the index of its ``message_start``."""
    calls: dict[int, _Call] = {}
    open_: dict[str, _Call] = {}
    for index, event in enumerate(recorded):
        data = decode_data(event)
        if isinstance(data, MessageStart):
            open_[data.message_id] = calls[index] = _Call([], None)
        elif isinstance(data, MessageDelta) and data.message_id in open_:
            open_[data.message_id].chunks.append(TextDelta(data.text))
        elif isinstance(data, ToolUse) and data.message_id in open_:
            open_[data.message_id].chunks.append(
                ToolCall(data.tool_use_id, data.name, dict(data.input)))
        elif isinstance(data, MessageStop):
            call = open_.pop(data.message_id, None)
            if call is not None:
                call.stop = data
                if data.stop_reason == "error":
                    call.retryable, call.error = _after_error(recorded, index)
    return calls


def _after_error(recorded: Sequence[Event], stop: int) -> tuple[bool, str]:
    """Whether a failed call was retried (the next call starts before its turn ends), and the
    error the turn reported."""
    for event in recorded[stop + 1:]:
        if event.type == "message_start":
            return True, "recorded error"
        if event.type == "session_done":
            error = msgspec.json.decode(event.data).get("error") or "recorded error"
            return False, str(error).removeprefix("the model failed: ")
    return True, "recorded error"


class _PinnedAgent:
    """The agent as the session pinned it: every version asked for is the recorded config."""

    def __init__(self, config: AgentConfig) -> None:
        self._config = config

    async def version(self, tenant_id: str, agent_id: str, version: int | None, *,
                      archived_too: bool = False) -> PinnedVersion:
        return PinnedVersion(version or 0, self._config)


class _RecordedModel:
    """The model, fed the recorded output of the call the re-run's message matched."""

    def __init__(self, scratch: _Scratch) -> None:
        self._scratch = scratch
        self._calls = _calls(scratch.recorded)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[Chunk, None]:
        call = self._calls.get(self._scratch.message or -1)
        for chunk in call.chunks if call else []:
            yield chunk
            # Let the runner's append of it finish first, so nothing waits in its pipe if the
            # recording stops after this chunk (the dead worker had appended it).
            for _ in range(3):
                await asyncio.sleep(0)
        stop = call.stop if call else None
        if call is not None and stop is not None and stop.stop_reason == "error":
            raise ModelError(call.error or "recorded error", retryable=call.retryable)
        if stop is None or stop.stop_reason == "interrupted":
            self._scratch.stuck.set()  # cut here in the recording: as a dead worker
            await asyncio.Event().wait()
        assert stop is not None
        yield Finish(stop.stop_reason, stop.usage)


class _RecordedTools(ServerTools):
    """Server tools answer with the recorded results; none runs."""

    def __init__(self, scratch: _Scratch) -> None:
        self._scratch = scratch
        self._results: dict[str, Outcome] = {}
        for event in scratch.recorded:
            if event.type == "tool_result" and not _is_input(event):
                data = msgspec.json.decode(event.data)
                text = "".join(block.get("text", "") for block in data.get("content", []))
                self._results.setdefault(data["tool_use_id"],
                                         Outcome(text, bool(data.get("is_error"))))

    async def run(self, name: str, tool_input: dict[str, Any], context: ToolContext,
                  seconds: float) -> Outcome:
        found = self._results.get(context.tool_use_id or "")
        if found is None:  # the recording ends before the result
            self._scratch.stuck.set()
            await asyncio.Event().wait()
        assert found is not None
        return found


async def rerun(recorded: Sequence[Event], config: AgentConfig | None, *,
                patience: float = 10.0) -> RerunReport:
    """Re-run the session ``recorded`` (its whole log, or any prefix of it) with ``config``
    (the agent version it pinned; None for a session without an agent: nothing runs)."""
    created = decode_data(recorded[0])
    assert isinstance(created, SessionCreated)
    scratch = _Scratch(recorded)
    if created.agent_id is None or config is None:
        scratch.over = True  # messages are only recorded: nothing to re-run
    model, tools = _RecordedModel(scratch), _RecordedTools(scratch)
    restarted = False
    while not scratch.ended and scratch.difference is None:
        before = scratch.next
        scratch.stuck.clear()
        assert config is not None and created.agent_id is not None
        runner = SessionRunner(
            scratch, _PinnedAgent(config), {config.model.adapter: model}, tools=tools,
            worker_id=_WORKER, tenant_id=created.tenant_id, session_id=recorded[0].stream_id,
            retry=RetryPolicy(base_delay=0.0, max_delay=0.0))
        if not await _run_once(runner, scratch, patience) and not scratch.ended:
            scratch.difference = _stopped(scratch, f"the re-run made no progress in "
                                          f"{patience:.0f}s")
        if scratch.ended or scratch.difference is not None or scratch.next > before:
            restarted = False
            continue
        if scratch.take_inputs():
            continue
        if scratch.stuck.is_set() and not restarted:
            restarted = True  # as after a crash: a new runner folds the log and goes on
            continue
        scratch.difference = _stopped(scratch, "the re-run stops (waiting, or done) where "
                                      "the log goes on")
    difference = scratch.difference
    matched = len(recorded) if difference is None else difference.seq - 1
    return RerunReport(recorded[0].stream_id, len(recorded), matched, difference is None,
                       difference)


def _stopped(scratch: _Scratch, note: str) -> Difference:
    want = scratch.recorded[scratch.next]
    return Difference(want.seq, _comparable(want.type, want.data), None, f"{note} (#{want.seq})")


async def _run_once(runner: SessionRunner, scratch: _Scratch, patience: float) -> bool:
    """One runner until it returns (waiting, or idle), is stuck on what the recording does not
    hold, loses the session to an input it cannot take in (a budget's session_done), or goes
    wrong. False if none of that happened within ``patience`` seconds."""
    task = asyncio.create_task(runner.run())
    stuck = asyncio.create_task(scratch.stuck.wait())
    try:
        done, _ = await asyncio.wait({task, stuck}, timeout=patience,
                                     return_when=asyncio.FIRST_COMPLETED)
        return bool(done)
    finally:
        for pending in (task, stuck):
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, _Ended, _Diverged, LostSession):
                await pending
