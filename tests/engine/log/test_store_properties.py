"""Property tests of the event store's guarantees (DESIGN.md, "Events"), against real Postgres.

Hypothesis generates programs of appends (random streams out of a small set, batches of 1..5
events with or without caller-chosen ids, ``expected_seq`` that is sometimes right and sometimes
wrong) and retries (an earlier request sent again as it was, with a stale ``expected_seq``, to
another stream, as a subset, or with one new event added). The programs run one request at a
time, where every outcome must match a plain in-Python model, and in concurrent rounds
(``asyncio.gather``), where the invariants must hold whatever order the appender chose.

All examples of a test share one database; each example names its streams with a fresh prefix
and checks the log relative to the head it started from, so every example sees a clean log.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.errors import Conflict, NotFound, SpoolError
from engine.events import Event, EventMeta, NewEvent, encode
from engine.log.store import EventStore

TENANT = "ten_prop"
STREAM_TYPE = "session"
STREAMS = 4
TYPES = ("thing_happened", "other_happened", "third_happened")
META = (b"{}", encode(EventMeta(actor="usr_1", request_id="req_1", causation_id="evt_1")))

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

EXAMPLES: dict[str, int] = {"sequential": 0, "concurrent": 0}


@pytest.fixture
def store(own_store: EventStore) -> EventStore:
    return own_store


# --- generated programs ------------------------------------------------------------------------

# JSON objects of any shape, written in different styles (the store must keep the bytes as they
# came). Strings may hold any character but lone surrogates, which no JSON encoder writes.
_chars = st.characters(blacklist_categories=("Cs",))
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_chars, max_size=8)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(_chars, max_size=6), inner, max_size=3),
    max_leaves=6,
)
_objects = st.dictionaries(st.text(_chars, max_size=6), _values, max_size=4)
_styles = {
    "compact": encode,
    "spaced": lambda value: json.dumps(value).encode(),
    "indented": lambda value: json.dumps(value, indent=2, ensure_ascii=False).encode(),
    "sorted": lambda value: json.dumps(value, sort_keys=True, separators=(",", ":")).encode(),
}
_data = st.builds(
    lambda value, style: _styles[style](value), _objects, st.sampled_from(sorted(_styles))
)


@dataclass(frozen=True)
class EventSpec:
    type: str
    data: bytes
    meta: bytes


@dataclass(frozen=True)
class AppendOp:
    stream: int
    events: list[EventSpec]
    with_ids: bool  # caller-chosen ids (idempotent), or left to the store
    expect: str  # "none" | "right" | "wrong"
    delta: int  # how far off a wrong expected_seq is


@dataclass(frozen=True)
class RetryOp:
    target: int  # an earlier request, modulo how many there are
    how: str  # "same" | "stale_expected" | "other_stream" | "subset" | "plus_new"
    stream: int  # for "other_stream"


_event_specs = st.builds(
    EventSpec, type=st.sampled_from(TYPES), data=_data, meta=st.sampled_from(META)
)
_append_ops = st.builds(
    AppendOp,
    stream=st.integers(0, STREAMS - 1),
    events=st.lists(_event_specs, min_size=1, max_size=5),
    with_ids=st.sampled_from([True, True, True, False]),
    expect=st.sampled_from(["none", "right", "wrong"]),
    delta=st.sampled_from([-2, -1, 1, 2, 7]),
)
_retry_ops = st.builds(
    RetryOp,
    target=st.integers(0, 1000),
    how=st.sampled_from(["same", "stale_expected", "other_stream", "subset", "plus_new"]),
    stream=st.integers(0, STREAMS - 1),
)
_ops = st.one_of(_append_ops, _retry_ops)


@dataclass(frozen=True)
class Request:
    stream: str
    events: tuple[NewEvent, ...]
    expected_seq: int | None


def _new(spec: EventSpec, with_id: bool) -> NewEvent:
    return NewEvent(
        type=spec.type, data=spec.data, id=uuid.uuid4() if with_id else None, meta=spec.meta
    )


def _expected(mode: str, delta: int, current: int) -> int | None:
    if mode == "none":
        return None
    if mode == "right":
        return current
    wrong = current + delta
    return wrong if wrong >= 0 else current + 1


def _build(
    op: AppendOp | RetryOp, streams: Sequence[str], sent: Sequence[Request], version: dict[str, int]
) -> Request | None:
    """The request an op stands for; ``version`` is what the sender believes each stream is at."""
    if isinstance(op, AppendOp):
        stream = streams[op.stream]
        events = tuple(_new(spec, op.with_ids) for spec in op.events)
        return Request(stream, events, _expected(op.expect, op.delta, version[stream]))
    if not sent:
        return None
    original = sent[op.target % len(sent)]
    if op.how == "same":
        return original
    if op.how == "stale_expected":
        return Request(original.stream, original.events, version[original.stream] + 1)
    if op.how == "other_stream":
        return Request(streams[op.stream], original.events, None)
    if op.how == "subset":
        return Request(original.stream, original.events[: (len(original.events) + 1) // 2], None)
    fresh = NewEvent(type=TYPES[0], data=b"{}", id=uuid.uuid4())
    return Request(original.stream, (*original.events, fresh), None)


async def _send(store: EventStore, request: Request) -> list[Event]:
    return await store.append(
        request.stream,
        list(request.events),
        tenant_id=TENANT,
        stream_type=STREAM_TYPE,
        expected_seq=request.expected_seq,
    )


# --- the model ------------------------------------------------------------------------------------

# An event as the model can predict it: everything but created_at (and the id, when the store
# assigns it).
Shape = tuple[uuid.UUID | None, str, str, int, int, str, bytes, bytes]


def shape(event: Event) -> Shape:
    return (
        event.id, event.stream_id, event.stream_type, event.seq, event.position, event.type,
        bytes(event.data), bytes(event.meta),
    )


@dataclass
class Model:
    """The store's contract for one request at a time, over a log that starts at ``head0``."""

    head0: int
    log: list[Shape] = field(default_factory=list)
    by_id: dict[uuid.UUID, Shape] = field(default_factory=dict)
    version: dict[str, int] = field(default_factory=dict)

    @property
    def head(self) -> int:
        return self.head0 + len(self.log)

    def apply(self, request: Request) -> tuple[str, list[Shape]]:
        """("written" | "retried", what append returns) or ("conflict", []).

        Ids the store assigns are None in what this returns; ``bind`` fills them in."""
        known = [self.by_id.get(new.id) for new in request.events if new.id is not None]
        if any(stored is not None for stored in known):
            if len(known) < len(request.events) or any(stored is None for stored in known):
                return "conflict", []
            return "retried", [stored for stored in known if stored is not None]
        current = self.version.get(request.stream, 0)
        if request.expected_seq is not None and request.expected_seq != current:
            return "conflict", []
        written: list[Shape] = []
        for offset, new in enumerate(request.events, start=1):
            written.append((
                new.id, request.stream, STREAM_TYPE, current + offset, self.head + offset,
                new.type, new.data, new.meta,
            ))
        self.log.extend(written)
        self.version[request.stream] = current + len(request.events)
        return "written", written

    def bind(self, got: Sequence[Event]) -> None:
        """Record the events just written (the last ``len(got)`` of the log), with the ids the
        store chose where the caller left them unset."""
        start = len(self.log) - len(got)
        for index, stored in enumerate(got, start=start):
            if self.log[index][0] is None:  # the store chose this id: it must be a new one
                assert stored.id not in self.by_id, "the store reused an event id"
                self.log[index] = (stored.id, *self.log[index][1:])
            event_id = self.log[index][0]
            assert event_id is not None
            self.by_id[event_id] = self.log[index]


# --- reading back and the log invariants ---------------------------------------------------------


async def read_log(store: EventStore, after: int) -> list[Event]:
    """Everything after ``after``, paged with a small limit; checked against one big read."""
    events: list[Event] = []
    cursor = after
    while page := await store.read_all(after=cursor, limit=7):
        events.extend(page)
        cursor = page[-1].position
    assert await store.read_all(after=after, limit=1000) == events
    return events


async def read_stream(store: EventStore, stream: str) -> list[Event]:
    events: list[Event] = []
    try:
        while page := await store.read_stream(
            stream, tenant_id=TENANT, after=events[-1].seq if events else 0, limit=5
        ):
            events.extend(page)
    except NotFound:
        assert events == []
    return events


async def check_log(store: EventStore, head0: int, streams: Sequence[str]) -> list[Event]:
    """The invariants any history must leave behind; returns the log after ``head0``."""
    log = await read_log(store, head0)
    # Positions are exactly head0+1 .. head0+N: ordered, no gap, no duplicate.
    assert [e.position for e in log] == list(range(head0 + 1, head0 + len(log) + 1))
    assert await store.head() == head0 + len(log)
    # Event ids are unique.
    assert len({e.id for e in log}) == len(log)
    # Only this example's streams were written, and only as the one type used.
    assert {e.stream_id for e in log} <= set(streams)
    assert all(e.stream_type == STREAM_TYPE for e in log)
    for stream in streams:
        in_log = [e for e in log if e.stream_id == stream]
        # Per stream, seq is exactly 1..k, and read_stream is that stream's slice of read_all.
        assert [e.seq for e in in_log] == list(range(1, len(in_log) + 1))
        assert await read_stream(store, stream) == in_log
        if in_log:
            version = await store.stream_version(stream, tenant_id=TENANT)
            assert version == len(in_log)
    return log


def assert_one_append(events: Sequence[Event]) -> None:
    """What one append returns is one contiguous run: one stream, consecutive seqs and positions,
    one transaction."""
    assert events
    first = events[0]
    assert [e.seq for e in events] == list(range(first.seq, first.seq + len(events)))
    assert [e.position for e in events] == list(range(first.position, first.position + len(events)))
    assert {e.stream_id for e in events} == {first.stream_id}
    assert {e.created_at for e in events} == {first.created_at}


# --- the properties ------------------------------------------------------------------------------


@SETTINGS
@given(ops=st.lists(_ops, min_size=3, max_size=30))
async def test_sequential_appends_and_retries_match_the_model(
    store: EventStore, ops: list[AppendOp | RetryOp]
) -> None:
    EXAMPLES["sequential"] += 1
    prefix = uuid.uuid4().hex[:10]
    streams = [f"{prefix}-{i}" for i in range(STREAMS)]
    head0 = await store.head()
    model = Model(head0)
    sent: list[Request] = []
    returned: list[list[Event]] = []

    for op in ops:
        version = {stream: model.version.get(stream, 0) for stream in streams}
        request = _build(op, streams, sent, version)
        if request is None:
            continue
        sent.append(request)
        outcome, expected = model.apply(request)
        event(f"sequential: some request {outcome}")
        if outcome == "conflict":
            # A wrong expected_seq, or ids partly used already: Conflict, nothing written.
            with pytest.raises(Conflict):
                await _send(store, request)
        else:
            got = await _send(store, request)
            if outcome == "written":
                model.bind(got)
                expected = model.log[len(model.log) - len(got):]
            assert [shape(e) for e in got] == expected
            assert_one_append(got)
            returned.append(got)
        assert await store.head() == model.head

    log = await check_log(store, head0, streams)
    # The final log is exactly the model's log.
    assert [shape(e) for e in log] == model.log
    # Whatever append returned, first time or on a retry, is exactly what is stored: the same
    # envelope, created_at, and data and meta byte for byte.
    stored = {e.id: e for e in log}
    for got in returned:
        assert got == [stored[e.id] for e in got]


@SETTINGS
@given(rounds=st.lists(st.lists(_ops, min_size=2, max_size=12), min_size=1, max_size=3))
async def test_concurrent_appends_and_retries_keep_the_invariants(
    store: EventStore, rounds: list[list[AppendOp | RetryOp]]
) -> None:
    EXAMPLES["concurrent"] += 1
    prefix = uuid.uuid4().hex[:10]
    streams = [f"{prefix}-{i}" for i in range(STREAMS)]
    head0 = await store.head()
    sent: list[Request] = []
    results: list[tuple[Request, list[Event] | Conflict]] = []

    for ops in rounds:
        version = {}
        for stream in streams:  # what a client would read before sending its expected_seq
            try:
                version[stream] = await store.stream_version(stream, tenant_id=TENANT)
            except NotFound:
                version[stream] = 0
        batch: list[Request] = []
        for op in ops:
            request = _build(op, streams, sent, version)
            if request is not None:
                sent.append(request)
                batch.append(request)
        outcomes = await asyncio.gather(
            *(_send(store, request) for request in batch), return_exceptions=True
        )
        for request, outcome in zip(batch, outcomes, strict=True):
            if not isinstance(outcome, list | Conflict):
                raise outcome
            results.append((request, outcome))
            event(f"concurrent: some request {type(outcome).__name__}")

    log = await check_log(store, head0, streams)
    stored = {e.id: e for e in log}
    succeeded = [(r, o) for r, o in results if isinstance(o, list)]

    # Nothing is written but what some successful append returned: a conflict writes nothing.
    assert set(stored) == {e.id for _, got in succeeded for e in got}
    for request, got in succeeded:
        # Every success returns exactly what is stored, as one contiguous run, for its events.
        assert got == [stored[e.id] for e in got]
        assert_one_append(got)
        assert [(e.type, bytes(e.data), bytes(e.meta)) for e in got] == [
            (new.type, new.data, new.meta) for new in request.events
        ]
        assert all(
            new.id is None or new.id == e.id for e, new in zip(got, request.events, strict=True)
        )

    # Requests whose ids no other request shares are not retries: when they succeed they wrote,
    # to their stream at exactly expected_seq + 1; when they fail, none of their ids is stored.
    users: dict[uuid.UUID, int] = {}
    for request in sent:
        for event_id in {new.id for new in request.events if new.id is not None}:
            users[event_id] = users.get(event_id, 0) + 1
    for request, outcome in results:
        if any(new.id is not None and users[new.id] > 1 for new in request.events):
            continue
        if isinstance(outcome, Conflict):
            assert not any(new.id in stored for new in request.events if new.id is not None)
            details = outcome.details
            assert details["expected_seq"] == request.expected_seq != details["actual_seq"]
        else:
            assert outcome[0].stream_id == request.stream
            if request.expected_seq is not None:
                assert outcome[0].seq == request.expected_seq + 1


def test_the_properties_really_ran_examples() -> None:
    """Guards against @given on an async test silently running nothing (keep it last of them)."""
    ran = {name: count for name, count in EXAMPLES.items() if count}
    if len(ran) < len(EXAMPLES):
        pytest.skip(f"the property tests did not run in this session: {EXAMPLES}")
    assert all(count >= 20 for count in ran.values()), EXAMPLES


# --- the same guarantees, pinned on the inputs that once broke them ------------------------------


async def test_append_and_retry_return_the_bytes_read_back(store: EventStore) -> None:
    """Data is stored byte for byte: not re-encoded (no reordered keys, no added spaces), so the
    append response, a retry's response and a read agree exactly."""
    data = b'{"type":"user_message","turn_id":"turn_1","content":[{"type":"text","text":"hi"}]}'
    new = NewEvent(type="user_message", data=data, id=uuid.uuid4(), meta=b'{ "actor" : "usr_1" }')
    original = await _send(store, Request("s-bytes", (new,), None))
    retried = await _send(store, Request("s-bytes", (new,), None))
    [stored] = await store.read_stream("s-bytes", tenant_id=TENANT)
    assert original == retried == [stored]
    assert (bytes(stored.data), bytes(stored.meta)) == (data, new.meta)


async def test_a_request_the_database_refuses_fails_alone(store: EventStore) -> None:
    """Group commit shares a transaction, not a fate: a request Postgres refuses (a stream id
    with a NUL character, which text cannot hold) fails by itself, and the requests queued with
    it are written."""
    head0 = await store.head()
    good = [Request(f"s-good-{i}", (NewEvent(type=TYPES[0], data=b"{}"),), None) for i in range(5)]
    bad = Request("s-bad\x00", (NewEvent(type=TYPES[0], data=b"{}"),), None)
    outcomes = await asyncio.gather(
        *(_send(store, request) for request in [*good, bad]), return_exceptions=True
    )
    assert all(isinstance(outcome, list) for outcome in outcomes[:-1]), outcomes
    assert isinstance(outcomes[-1], SpoolError)
    log = await read_log(store, head0)
    assert [e.stream_id for e in log] == [request.stream for request in good]
    assert [e.position for e in log] == list(range(head0 + 1, head0 + 6))
