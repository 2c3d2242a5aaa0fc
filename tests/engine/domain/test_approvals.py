"""The approval decision (engine/domain/approvals.py), on a session state made by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.domain.approvals import resolution
from engine.domain.session_state import SessionState, Turn
from engine.errors import Conflict
from engine.events import ApprovalResolved, SessionCreated


def _state(turn: Turn | None) -> SessionState:
    now = datetime.now(UTC)
    return SessionState("ses_x", SessionCreated(tenant_id="ten_x"), now, now, current=turn)


def _waiting(decided: str | None = None, *, interrupted: bool = False) -> Turn:
    return Turn("trn_1", [], started=True, interrupted=interrupted,
                approvals={"toolu_1": ("apr_1", decided)})


def test_a_pending_approval_of_the_running_turn_is_decided() -> None:
    assert resolution(_state(_waiting()), "apr_1", "deny", "no") == ApprovalResolved(
        approval_id="apr_1", turn_id="trn_1", tool_use_id="toolu_1", decision="deny",
        reason="no")


@pytest.mark.parametrize("turn", [
    _waiting("approve"), _waiting(interrupted=True), None,
], ids=["decided", "interrupted", "no turn"])
def test_an_approval_not_waiting_is_a_conflict(turn: Turn | None) -> None:
    with pytest.raises(Conflict) as caught:
        resolution(_state(turn), "apr_1", "approve", None)
    assert caught.value.details == {"field": "approval_id"}


def test_another_approval_id_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        resolution(_state(_waiting()), "apr_2", "approve", None)
