"""One lifecycle for every status change: staff actions and the referring authority's."""

from __future__ import annotations

import pytest

from router.lifecycle import (
    Actor,
    IllegalTransition,
    Status,
    UnknownAction,
    allowed_actions,
    transition,
)


def test_an_authority_withdrawal_closes_any_open_ticket_and_cannot_close_a_closed_one() -> None:
    for status in (Status.RECEIVED, Status.DISPATCHED, Status.HANDLED, Status.FEEDBACK_GIVEN):
        assert transition(status, "withdraw", {}, Actor.AUTHORITY) is Status.CLOSED
    for status in (Status.CLOSED, Status.CLOSED_ABNORMAL):
        with pytest.raises(IllegalTransition):
            transition(status, "withdraw", {}, Actor.AUTHORITY)


def test_a_returned_order_dispatches_its_ticket_again_from_any_status() -> None:
    for status in Status:
        assert transition(status, "return", {}, Actor.AUTHORITY) is Status.DISPATCHED


def test_staff_cannot_use_the_authoritys_actions_nor_the_authority_staffs() -> None:
    with pytest.raises(UnknownAction, match="unknown event kind 'withdraw'"):
        transition(Status.DISPATCHED, "withdraw", {})
    with pytest.raises(UnknownAction, match="unknown event kind 'handle'"):
        transition(Status.DISPATCHED, "handle", {"result": "fixed"}, Actor.AUTHORITY)
    assert "withdraw" not in allowed_actions("dispatched")
    assert "return" not in allowed_actions("closed")
    assert allowed_actions("closed", Actor.AUTHORITY) == ["return"]
