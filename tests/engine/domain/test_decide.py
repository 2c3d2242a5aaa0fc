"""The read-decide-append retry: a stream that moved is read and decided again, a few times;
any other error is the answer at once."""

from __future__ import annotations

import pytest

from engine.domain.decide import ATTEMPTS, retrying
from engine.errors import Conflict, StreamMoved


def moved() -> StreamMoved:
    return StreamMoved("expected_seq 1 but stream 's' is at 2",
                       details={"expected_seq": 1, "actual_seq": 2})


async def test_a_moved_stream_is_decided_again() -> None:
    attempts: list[int] = []

    async def attempt() -> str:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise moved()
        return "appended"

    assert await retrying(attempt) == "appended"
    assert len(attempts) == 3


async def test_it_gives_up_with_the_last_stream_moved() -> None:
    attempts: list[StreamMoved] = []

    async def attempt() -> None:
        attempts.append(moved())
        raise attempts[-1]

    with pytest.raises(StreamMoved) as info:
        await retrying(attempt)
    assert len(attempts) == ATTEMPTS
    assert info.value is attempts[-1]


async def test_another_conflict_is_not_retried() -> None:
    attempts: list[int] = []

    async def attempt() -> None:
        attempts.append(1)
        raise Conflict("that turn is running; interrupt it instead")

    with pytest.raises(Conflict) as info:
        await retrying(attempt)
    assert not isinstance(info.value, StreamMoved)
    assert attempts == [1]
