"""Running a claimed session: fold its log, decide the next step, perform it, repeat until
there is nothing to do (idle, or waiting on a client or a human).

Every step is decided from the log alone (``next_step``), so a worker that takes over after a
crash continues exactly where the log stops: a message cut short is closed with
``message_stop{stop_reason: interrupted}`` and the model is asked again.

Appends are fenced: each one expects the seq this worker last saw. If anything else was
appended meanwhile, the append fails and the worker reads what came: a user message, a client's
tool result or an approval are taken in and the append retried; an interrupt of the running turn
stops the step (the turn then ends ``cancelled``); anything else means another worker owns the
session now, and this one stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from engine.domain.agents import AgentBroken, PinnedVersion
from engine.domain.budgets import Budgets
from engine.domain.session_state import (
    TENANT_SUSPENDED,
    ChatMessage,
    SessionState,
    Turn,
    apply,
    catch_up,
    opening_message,
)
from engine.errors import BudgetExceeded, StreamMoved
from engine.events import (
    FROM_OUTSIDE,
    AgentConfig,
    ApprovalRequested,
    ContentBlock,
    Event,
    EventData,
    EventMeta,
    MessageDelta,
    MessageStart,
    MessageStop,
    SessionDone,
    SpendRecorded,
    ToolResult,
    ToolSpec,
    ToolUse,
    TurnStarted,
    TurnStatus,
    Usage,
    new_event,
)
from engine.ids import new_id
from engine.log.session_log import SessionLog
from engine.log.store import MAX_EVENTS_PER_APPEND
from engine.logging import get_logger
from engine.prices import PriceTable, billed_tokens
from engine.runtime.adapters.base import (
    Finish,
    ModelAdapter,
    ModelError,
    ModelRequest,
    TextDelta,
    ToolCall,
    UsageSoFar,
)
from engine.runtime.tools import SCHEMAS, ServerTools, ToolContext

log = get_logger("runtime")

# What others may append to a session while a worker runs it.
_OTHERS = FROM_OUTSIDE


class LostSession(Exception):
    """Another worker appended to the session: it owns it now."""


class _Interrupted(Exception):
    """The running turn was interrupted while this worker was appending to it."""


# --- deciding ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    turn: Turn


@dataclass(frozen=True)
class CloseMessage:
    turn: Turn
    message_id: str


@dataclass(frozen=True)
class CallModel:
    turn: Turn


@dataclass(frozen=True)
class RunTool:
    turn: Turn
    tool: ToolUse


@dataclass(frozen=True)
class Refuse:
    """A human denied the call: the model is told so."""

    turn: Turn
    tool: ToolUse


@dataclass(frozen=True)
class FinishTurn:
    turn: Turn
    status: TurnStatus
    error: str | None = None


Step = Start | CloseMessage | CallModel | RunTool | Refuse | FinishTurn


@dataclass(frozen=True)
class GiveUp:
    """The turn's next step kept failing: the turn ends ``failed`` (not a step ``next_step``
    decides: the worker does, from the tries its claims counted)."""

    turn: Turn
    error: str


# A model call that stops so, without calling a tool, completes its turn.
_COMPLETES = ("end_turn", "max_tokens")

# Steps that spend (or lead to spending), checked against budgets first; None: the turn waits.
_SPENDING = (Start, CallModel, RunTool, type(None))


def next_step(state: SessionState, config: AgentConfig) -> Step | None:
    """What the session needs next; None when it waits (idle, or on a client or a human)."""
    turn = state.current
    if turn is None:
        if not state.queue or state.archived:
            return None
        queued = state.queue[0]
        return (FinishTurn(queued, "cancelled", queued.cancel_error) if queued.interrupted
                else Start(queued))
    if turn.open_message is not None:
        return CloseMessage(turn, turn.open_message)
    if turn.interrupted:
        return FinishTurn(turn, "cancelled", turn.cancel_error)
    if turn.tool_uses:
        for tool in turn.tool_uses.values():
            decision = turn.approval(tool.tool_use_id)
            if decision == "deny":
                return Refuse(turn, tool)
            if tool.executor == "server" and decision in (None, "approve"):
                return RunTool(turn, tool)
        return None  # requires_action: a client's results, or a human's decision
    if turn.last_stop in _COMPLETES:
        return FinishTurn(turn, "completed")
    limits = config.limits
    if limits.max_turns is not None and turn.model_calls >= limits.max_turns:
        return FinishTurn(turn, "failed", f"the turn reached max_turns ({limits.max_turns})")
    if limits.max_tokens_per_turn is not None and turn.tokens >= limits.max_tokens_per_turn:
        return FinishTurn(turn, "failed",
                          f"the turn reached max_tokens_per_turn ({limits.max_tokens_per_turn})")
    return CallModel(turn)


def unrunnable_step(state: SessionState, reason: str) -> CloseMessage | FinishTurn | None:
    """What a session does when the agent version it pinned cannot be read: close a message
    cut short, then end each turn ``failed`` with why (once each, never retried)."""
    turn = state.current
    if turn is None:
        if not state.queue or state.archived:
            return None
        queued = state.queue[0]
        return FinishTurn(queued, "cancelled", queued.cancel_error) if queued.interrupted \
            else FinishTurn(queued, "failed", reason)
    if turn.open_message is not None:
        return CloseMessage(turn, turn.open_message)
    return FinishTurn(turn, "cancelled", turn.cancel_error) if turn.interrupted else FinishTurn(
        turn, "failed", reason)


# --- performing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff: float = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return max(backoff, retry_after or 0.0)


class AgentVersions(Protocol):
    """What a runner needs of ``Agents``: the version a session pinned (a re-run answers with
    the recorded session's config)."""

    async def version(
        self, tenant_id: str, agent_id: str, version: int | None, *, archived_too: bool = False
    ) -> PinnedVersion: ...


class SessionRunner:
    """Runs one session through ``store`` (the event store, or a re-run's scratch log) with
    ``tools`` (the server's, or a re-run's recorded results)."""

    def __init__(
        self, store: SessionLog, agents: AgentVersions, adapters: Mapping[str, ModelAdapter], *,
        tools: ServerTools, worker_id: str, tenant_id: str, session_id: str,
        retry: RetryPolicy | None = None, budgets: Budgets | None = None,
        tenant_active: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self._store = store
        self._tenant_active = tenant_active
        self._budgets = budgets
        self._prices = budgets.prices if budgets is not None else PriceTable()
        self._tools = tools
        self._agents = agents
        self._adapters = adapters
        self._worker_id = worker_id
        self._tenant_id = tenant_id
        self._session_id = session_id
        self._retry = retry or RetryPolicy()
        self._meta = EventMeta(actor=worker_id)
        self._last_seq = 0
        self._turn_id: str | None = None
        self.configs: dict[tuple[str, str, int], AgentConfig] = {}
        self.state: SessionState | None = None  # kept by the worker for the next claim
        # Calls cut by an interrupt, closed by the next step: message id -> (model, usage)
        self._cut: dict[str, tuple[str, Usage]] = {}
        # Tries of the session's next step, this one included (counted by the claim), and
        # what the worker is told when a step completes (it counts from 1 again).
        self.tries = 1
        self.max_tries = 0  # 0: no bound (a re-run)
        self.on_progress: Callable[[], Coroutine[Any, Any, None]] | None = None
        self.stopping = False  # set by a stopping worker: finish the step, start no other
        # What the step in progress appended, as stored, with the data it appended; and what
        # goes in front of its next append.
        self._appended: list[tuple[Event, EventData]] = []
        self._carried: list[EventData] = []

    async def run(self) -> None:
        """Advance the session until it has nothing to do (or ``stopping``). Raises
        LostSession.

        After a step whose appends were the stream's next events (nothing came between them),
        the state is brought up to date with those events and the next step is decided without
        reading the log: anything appended since then fences that step's first append, which
        then takes it in (as for anything that comes while a step runs). Before stopping on a
        session that seems to wait, the log is read all the same."""
        known = False  # the state holds everything up to the last append of this worker
        while not self.stopping:
            if not known or self.state is None:
                self.state = await catch_up(self._store, self._tenant_id, self._session_id,
                                            self.state)
            state = self.state
            if state.created.agent_id is None:
                return  # no agent: the session only records messages
            step = await self._decide(state)
            if step is None:
                if known:
                    known = False  # read the log before deciding that it waits
                    continue
                return
            self._last_seq = state.last_seq
            self._turn_id = step.turn.turn_id
            self._appended, self._carried = [], []
            known = False
            try:
                await self._perform(step, state)
            except _Interrupted:
                continue  # the next fold sees the interrupt
            known = self._apply_appended(state)
            if not isinstance(step, CloseMessage):  # closing a cut message is no progress
                await self._progressed()

    def _apply_appended(self, state: SessionState) -> bool:
        """Fold what the step appended, while it follows on; True if the state is then as
        recent as this worker's last append (nothing else came in between)."""
        appended, self._appended = self._appended, []
        for event, data in appended:
            if event.seq != state.last_seq + 1:
                return False
            apply(state, event, data)
        return bool(appended) and state.last_seq == self._last_seq

    async def _decide(self, state: SessionState) -> Step | GiveUp | None:
        """The next step; past ``max_tries`` tries of it, ending its turn instead (decided
        from the log alone: the agent's config may be what keeps failing)."""
        if self.max_tries and self.tries > self.max_tries:
            turn = state.current or (state.queue[0] if state.queue else None)
            if turn is not None:
                return GiveUp(turn, f"the turn's next step failed {self.max_tries} times in a"
                                    " row; the turn was ended (the server log says why)")
        try:
            config = await self._config(state)
        except AgentBroken as exc:  # its pinned version cannot be read: nothing can run
            return unrunnable_step(state, exc.message)
        return await self._within_budget(
            await self._admitted(next_step(state, config)), state)

    async def _progressed(self) -> None:
        if self.tries > 1 and self.on_progress is not None:
            await self.on_progress()
        self.tries = 1

    async def _admitted(self, step: Step | None) -> Step | None:
        """A suspended tenant's turn neither starts nor takes another step: it ends
        ``cancelled`` (suspending interrupts running turns; this catches one submitted in the
        same moment, or whose interrupt was never appended)."""
        if self._tenant_active is None or not isinstance(step, (Start, CallModel, RunTool)):
            return step
        if await self._tenant_active(self._tenant_id):
            return step
        return FinishTurn(step.turn, "cancelled", TENANT_SUSPENDED)

    async def _within_budget(self, step: Step | None, state: SessionState) -> Step | None:
        """Before a turn starts, a model call or a tool run, and while a turn waits on a client
        or a human: if a budget the session falls under is spent, the turn ends
        ``budget_exceeded`` instead."""
        turn = step.turn if step is not None else state.current
        if self._budgets is None or turn is None or not isinstance(step, _SPENDING):
            return step
        try:
            await self._budgets.check(self._tenant_id, state.created.agent_id, self._session_id)
        except BudgetExceeded as exc:
            return FinishTurn(turn, "budget_exceeded", exc.message)
        return step

    async def _config(self, state: SessionState) -> AgentConfig:
        """The pinned version's config: a version never changes, so it is read once (and
        kept in ``configs``, which a worker shares between its sessions)."""
        agent_id, version = state.created.agent_id, state.created.agent_version
        assert agent_id is not None
        key = (self._tenant_id, agent_id, version or 0)
        if key not in self.configs:
            found = await self._agents.version(self._tenant_id, agent_id, version,
                                               archived_too=True)
            if len(self.configs) >= 10_000:
                self.configs.clear()
            self.configs[key] = found.config
        return self.configs[key]

    async def _perform(self, step: Step | GiveUp, state: SessionState) -> None:
        match step:
            case GiveUp(turn, error):
                # One append: the cut message's close (if any) and the turn's end.
                closing = self._closing(turn, turn.open_message)
                await self._append(*closing, SessionDone(turn_id=turn.turn_id, status="failed",
                                                         error=error))
            case Start(turn):
                started = TurnStarted(turn_id=turn.turn_id, worker=self._worker_id)
                config = await self._config(state)
                if not _calls_model_first(config):
                    await self._append(started)
                    return
                # The step after a turn_started is its first model call, checked (tenant,
                # budgets) as this one just was: one step, whose first append carries it.
                self._carried = [started]
                await self._call_model(turn, state, config,
                                       [*state.conversation, opening_message(turn)])
            case CloseMessage(turn, message_id):
                await self._append(*self._closing(turn, message_id))
            case FinishTurn(turn, status, error):
                await self._append(SessionDone(turn_id=turn.turn_id, status=status, error=error))
            case CallModel(turn):
                await self._call_model(turn, state, await self._config(state),
                                       state.conversation)
            case RunTool(turn, tool):
                await self._run_tool(turn, tool, state, await self._config(state))
            case Refuse(turn, tool):
                approval_id, _ = turn.approvals[tool.tool_use_id]
                await self._append(ToolResult(
                    turn_id=turn.turn_id, tool_use_id=tool.tool_use_id, is_error=True,
                    content=[ContentBlock(text=f"a human denied this call ({approval_id})")]))

    def _closing(self, turn: Turn, message_id: str | None) -> list[EventData]:
        """The events that close a message cut short (none without one)."""
        if message_id is None:
            return []
        model, usage = self._cut.pop(message_id, ("", Usage()))
        return [MessageStop(message_id=message_id, stop_reason="interrupted", usage=usage),
                *self._spend(turn, message_id, model, usage, estimated=True)]

    async def _run_tool(self, turn: Turn, tool: ToolUse, state: SessionState,
                        config: AgentConfig) -> None:
        spec = next((t for t in config.tools if t.name == tool.name), None)
        assert state.created.agent_id is not None
        context = ToolContext(self._tenant_id, state.created.agent_id, self._session_id,
                              self._worker_id, tool_use_id=tool.tool_use_id)
        outcome = await self._tools.run(tool.name, tool.input, context,
                                        seconds=spec.timeout_seconds if spec else 30.0)
        await self._append(ToolResult(turn_id=turn.turn_id, tool_use_id=tool.tool_use_id,
                                      content=[ContentBlock(text=outcome.text)],
                                      is_error=outcome.is_error))

    async def _call_model(self, turn: Turn, state: SessionState, config: AgentConfig,
                          conversation: list[ChatMessage]) -> None:
        request = ModelRequest(config.model, config.system, conversation,
                               [_as_offered(tool) for tool in config.tools], state.model_calls,
                               max_tokens=config.limits.max_tokens_per_turn)
        adapter = self._adapters.get(config.model.adapter)
        if adapter is None:
            await self._append(SessionDone(
                turn_id=turn.turn_id, status="failed",
                error=f"the {config.model.adapter!r} adapter is not configured on this server"))
            return
        for attempt in range(1, self._retry.attempts + 1):
            message_id = new_id("msg")
            try:
                await self._stream(adapter, request, turn, message_id)
                return
            except ModelError as exc:
                log.info("runtime.model_error", session_id=self._session_id,
                         attempt=attempt, retryable=exc.retryable, error=exc.message)
                if not exc.retryable or attempt == self._retry.attempts:
                    await self._append(SessionDone(turn_id=turn.turn_id, status="failed",
                                                   error=f"the model failed: {exc.message}"))
                    return
                await asyncio.sleep(self._retry.delay(attempt, exc.retry_after))

    async def _stream(self, adapter: ModelAdapter, request: ModelRequest, turn: Turn,
                      message_id: str) -> None:
        """One model call as message_start, deltas, tool uses, message_stop. Every call is a
        message in the log, even one that fails at once: it is closed with
        ``stop_reason: error`` before the error goes up. Output is appended as it streams,
        one append in flight at a time (``_Pipe``). A call that completes the turn (it stops
        without calling a tool) is stored with the turn's ``session_done``: the step that
        follows it would only append that (``next_step``), with no check between (unless the worker
        is stopping: that step is then the next worker's)."""
        await self._append(MessageStart(turn_id=turn.turn_id, message_id=message_id,
                                        model=request.model.name))
        pipe = _Pipe(self._append)
        model, counted, deltas, tools = request.model.name, Usage(), 0, False
        try:
            # aclosing: an interrupt or a lost lease closes the provider's response at once
            async with contextlib.aclosing(adapter.stream(request)) as chunks:
                async for chunk in chunks:
                    match chunk:
                        case TextDelta(text):
                            deltas += 1
                            await pipe.add(MessageDelta(message_id=message_id, text=text))
                        case ToolCall():
                            tools = True
                            await pipe.add(*_tool_events(chunk, request, turn, message_id))
                        case UsageSoFar(usage):
                            counted = usage
                        case Finish(stop_reason, usage):
                            ends = stop_reason in _COMPLETES and not tools and not self.stopping
                            done = ([SessionDone(turn_id=turn.turn_id, status="completed")]
                                    if ends else [])
                            await pipe.flush(MessageStop(
                                message_id=message_id, stop_reason=stop_reason, usage=usage),
                                *self._spend(turn, message_id, model, usage), *done)
                            return
            raise ModelError("the model's stream ended without a stop", retryable=True)
        except ModelError:
            usage = _cut_short(counted, deltas)
            await pipe.flush(MessageStop(message_id=message_id, stop_reason="error", usage=usage),
                             *self._spend(turn, message_id, model, usage, estimated=True))
            raise
        except _Interrupted:  # closed by the next step, charged what was counted
            self._cut[message_id] = (model, _cut_short(counted, deltas))
            raise
        finally:
            pipe.cancel()

    def _spend(self, turn: Turn, message_id: str, model: str, usage: Usage, *,
               estimated: bool = False) -> list[EventData]:
        """The call's spend record, appended with its message_stop (none for a call that
        counted nothing)."""
        tokens = billed_tokens(usage)
        if tokens == 0 and usage.reasoning_tokens == 0:
            return []
        assert self.state is not None and self.state.created.agent_id is not None
        cost = self._prices.cost_nanos(model, usage)
        return [SpendRecorded(turn_id=turn.turn_id, message_id=message_id,
                              agent_id=self.state.created.agent_id, model=model, usage=usage,
                              tokens=tokens, cost_nanos=cost or 0, priced=cost is not None,
                              estimated=estimated)]

    async def _append(self, *datas: EventData) -> None:
        if self._carried:
            datas, self._carried = (*self._carried, *datas), []
        while True:
            try:
                events = await self._store.append(
                    self._session_id, [new_event(data, meta=self._meta) for data in datas],
                    tenant_id=self._tenant_id, stream_type="session",
                    expected_seq=self._last_seq,
                )
            except StreamMoved:
                await self._take_in_what_came()
                continue
            self._last_seq = events[-1].seq
            self._appended.extend(zip(events, datas, strict=True))
            return

    async def _take_in_what_came(self) -> None:
        came = await self._store.read_stream(self._session_id, tenant_id=self._tenant_id,
                                             after=self._last_seq, limit=1000)
        if not came:
            raise LostSession(f"append to {self._session_id} refused with nothing new")
        interrupted = False
        for event in came:
            if event.type not in _OTHERS:
                raise LostSession(f"{event.type} appended to {self._session_id} by another")
            if event.type == "session_interrupted":
                interrupted = interrupted or _turn_of(event.data) == self._turn_id
        self._last_seq = came[-1].seq
        if interrupted:
            raise _Interrupted


def _calls_model_first(config: AgentConfig) -> bool:
    """Whether a turn's first step after it starts is a model call (``next_step`` on a turn
    that has made no call and counted no token): unless its limits allow none."""
    limits = config.limits
    return limits.max_turns != 0 and limits.max_tokens_per_turn != 0


def _cut_short(counted: Usage, deltas: int) -> Usage:
    """What a call cut before its Finish is charged: what the provider counted so far (its
    input, with Anthropic), and one output token per delta streamed."""
    return msgspec.structs.replace(counted, output_tokens=max(counted.output_tokens, deltas))


def _tool_events(call: ToolCall, request: ModelRequest, turn: Turn,
                 message_id: str) -> list[EventData]:
    """The events a tool call becomes: the tool_use, with its approval_requested if the tool
    needs one, or with an error result if the agent cannot make that call (an unknown tool,
    input its schema refuses): such a call never reaches a client, and the model sees why."""
    spec = next((t for t in request.tools if t.name == call.name), None)
    use = ToolUse(turn_id=turn.turn_id, message_id=message_id, tool_use_id=call.tool_use_id,
                  name=call.name, input=call.input,
                  executor=spec.executor if spec is not None else "client")
    problem = _input_problem(spec, call)
    if problem is not None:
        return [use, ToolResult(turn_id=turn.turn_id, tool_use_id=call.tool_use_id,
                                content=[ContentBlock(text=problem)], is_error=True)]
    if spec is not None and spec.requires_approval:
        return [use, ApprovalRequested(approval_id=new_id("apr"), turn_id=turn.turn_id,
                                       tool_use_id=call.tool_use_id, name=call.name,
                                       input=call.input)]
    return [use]


def _as_offered(tool: ToolSpec) -> ToolSpec:
    """A built-in server tool is offered with its own input schema (and checked against it),
    whatever the agent's config says."""
    builtin = SCHEMAS.get(tool.name) if tool.executor == "server" else None
    if builtin is None:
        return tool
    return msgspec.structs.replace(tool, input_schema=builtin)


class _Pipe:
    """Appends a model's output while it streams: one append in flight at a time, and what
    arrives meanwhile goes into the next one (still an event per token, but not a commit per
    token). An append starts once the loop turns over, so that what arrives in the same moment
    joins it; a reply that has all come before then is stored in one append with its stop. No
    append holds more than the store takes (``MAX_EVENTS_PER_APPEND``). An append's error
    surfaces at the next ``add`` or ``flush``."""

    _MAX_BATCH = MAX_EVENTS_PER_APPEND

    def __init__(self, append: Callable[..., Coroutine[Any, Any, None]]) -> None:
        self._append = append
        self._pending: list[EventData] = []
        self._inflight: asyncio.Task[None] | None = None
        self._taken = False  # the task in flight has taken its batch

    async def add(self, *datas: EventData) -> None:
        self._pending.extend(datas)
        busy = self._inflight is not None and not self._inflight.done()
        if busy and len(self._pending) < self._MAX_BATCH:
            return
        await self._settle()
        self._taken = False
        self._inflight = asyncio.create_task(self._send())

    async def _send(self) -> None:
        await asyncio.sleep(0)  # what arrives meanwhile comes along
        self._taken = True
        batch = self._pending[:self._MAX_BATCH]
        self._pending = self._pending[self._MAX_BATCH:]
        if batch:
            await self._append(*batch)

    async def flush(self, *datas: EventData) -> None:
        """Append everything added, then ``datas``, which go in one append together (a
        message_stop and its spend_recorded are never apart); returns once stored."""
        assert len(datas) <= self._MAX_BATCH
        if self._inflight is not None and not self._taken:
            # Nothing taken yet: what it would have appended goes with ``datas``.
            self._inflight.cancel()
            self._inflight = None
        await self._settle()
        pending, self._pending = self._pending, []
        # What does not fit beside ``datas`` goes first, in full appends of its own.
        split = max(0, len(pending) + len(datas) - self._MAX_BATCH)
        for start in range(0, split, self._MAX_BATCH):
            await self._append(*pending[start:min(start + self._MAX_BATCH, split)])
        batch = [*pending[split:], *datas]
        if batch:
            await self._append(*batch)

    def cancel(self) -> None:
        if self._inflight is not None:
            self._inflight.cancel()

    async def _settle(self) -> None:
        if self._inflight is not None:
            task, self._inflight = self._inflight, None
            await task


class _TurnRef(msgspec.Struct):
    turn_id: str | None = None


_turn_ref = msgspec.json.Decoder(_TurnRef)


def _turn_of(data: msgspec.Raw) -> str | None:
    return _turn_ref.decode(data).turn_id


def _input_problem(spec: Any, call: ToolCall) -> str | None:
    if spec is None:
        return f"the agent has no tool named {call.name!r}"
    error = best_match(Draft202012Validator(spec.input_schema).iter_errors(call.input))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "input"
    return f"invalid input for {call.name!r} at {where}: {error.message}"
