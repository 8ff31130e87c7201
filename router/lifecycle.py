"""The ticket lifecycle (DOMAIN.md "Lifecycle"): which staff action may follow which status.

received -> accepted / rejected (不予受理) / invalid (无效) -> dispatched (派单) -> handled ->
feedback given (反馈) -> callback (回访) -> closed (结案); abnormal closure (非正常结案);
transfer between departments; review (复核) re-opens a finished ticket.

Every status change anywhere goes through :func:`transition`: the staff API with staff
actions, the referral channel with the referring authority's (a withdrawn order closes its
ticket, a returned one is dispatched again), so one table says what may follow what.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ingest.errors import Refused


class Status(StrEnum):
    RECEIVED = "received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    INVALID = "invalid"
    DISPATCHED = "dispatched"
    HANDLED = "handled"
    FEEDBACK_GIVEN = "feedback_given"
    CALLBACK_DONE = "callback_done"
    CLOSED = "closed"
    CLOSED_ABNORMAL = "closed_abnormal"


OPEN_STATUSES = frozenset(
    {Status.RECEIVED, Status.ACCEPTED, Status.DISPATCHED, Status.HANDLED, Status.FEEDBACK_GIVEN}
)


class Actor(StrEnum):
    STAFF = "staff"
    AUTHORITY = "authority"  # the referring authority (12345, a regulator), by its work order


@dataclass(frozen=True)
class Action:
    kind: str
    from_statuses: frozenset[Status]
    to_status: Status | None  # None: the status stays (a note, an urge, a transfer)
    required: tuple[str, ...] = ()
    by: Actor = Actor.STAFF


_ANY = frozenset(Status)
_FINISHED = frozenset({Status.CLOSED, Status.CLOSED_ABNORMAL})
_ACCEPTED_OPEN = OPEN_STATUSES - {Status.RECEIVED}
_ACTIONS = (
    Action("accept", frozenset({Status.RECEIVED}), Status.ACCEPTED),
    Action("reject", frozenset({Status.RECEIVED, Status.ACCEPTED}), Status.REJECTED, ("reason",)),
    Action(
        "mark_invalid",
        frozenset({Status.RECEIVED, Status.ACCEPTED, Status.DISPATCHED}),
        Status.INVALID,
        ("reason",),
    ),
    Action(
        "dispatch",
        frozenset({Status.RECEIVED, Status.ACCEPTED}),
        Status.DISPATCHED,
        ("department",),
    ),
    Action("transfer", frozenset({Status.DISPATCHED}), None, ("department", "reason")),
    Action("urge", frozenset({Status.DISPATCHED, Status.HANDLED}), None),
    Action("handle", frozenset({Status.DISPATCHED}), Status.HANDLED, ("result",)),
    Action("feedback", frozenset({Status.HANDLED}), Status.FEEDBACK_GIVEN, ("channel",)),
    Action("callback", frozenset({Status.FEEDBACK_GIVEN}), Status.CALLBACK_DONE, ("satisfaction",)),
    Action(
        "close",
        frozenset({Status.CALLBACK_DONE, Status.FEEDBACK_GIVEN, Status.REJECTED, Status.INVALID}),
        Status.CLOSED,
    ),
    Action(
        "close_abnormal",
        frozenset({Status.DISPATCHED, Status.HANDLED, Status.FEEDBACK_GIVEN}),
        Status.CLOSED_ABNORMAL,
        ("reason",),
    ),
    Action(
        "review",
        frozenset({Status.FEEDBACK_GIVEN, Status.CALLBACK_DONE, Status.CLOSED}),
        Status.DISPATCHED,
        ("reason",),
    ),
    Action("note", _ANY, None, ("text",)),
    # Clock actions (router.clocks): the status stays, a named clock moves; each is recorded.
    # Not before acceptance: an item still under review has only the accept clock.
    Action("contact", _ACCEPTED_OPEN, None),  # first contact with the complainant made
    Action("extend", _ACCEPTED_OPEN, None, ("clock", "by", "reason")),  # 延期
    Action("pause", _ACCEPTED_OPEN, None, ("clock", "reason")),  # waiting for the complainant
    Action("resume", _ACCEPTED_OPEN, None, ("clock",)),
    # 撤单: the authority withdrew the order; a ticket already closed stays as it is.
    Action("withdraw", _ANY - _FINISHED, Status.CLOSED, by=Actor.AUTHORITY),
    # 退单 (退回重办): the authority did not accept the answer, whatever it was.
    Action("return", _ANY, Status.DISPATCHED, by=Actor.AUTHORITY),
)
ACTIONS: dict[str, Action] = {action.kind: action for action in _ACTIONS}
STAFF_ACTIONS = [action.kind for action in _ACTIONS if action.by is Actor.STAFF]


class LifecycleError(Refused):
    pass


class UnknownAction(LifecycleError):
    def __init__(self, kind: str, known: list[str]) -> None:
        super().__init__(f"unknown event kind {kind!r}; known: {', '.join(known)}")


class IllegalTransition(LifecycleError):
    def __init__(self, kind: str, status: str, allowed: list[str]) -> None:
        self.allowed = allowed
        allowed_text = ", ".join(allowed) or "nothing"
        super().__init__(f"cannot {kind} a ticket that is {status}; allowed now: {allowed_text}")


class MissingFields(LifecycleError):
    def __init__(self, kind: str, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(f"{kind} needs: {', '.join(missing)}")


def allowed_actions(status: str, by: Actor = Actor.STAFF) -> list[str]:
    return [a.kind for a in _ACTIONS if a.by is by and Status(status) in a.from_statuses]


def transition(
    status: str, kind: str, detail: dict[str, object], by: Actor = Actor.STAFF
) -> Status:
    """The status after ``kind`` by ``by``; raises a :class:`LifecycleError` saying what is
    allowed."""
    action = ACTIONS.get(kind)
    if action is None or action.by is not by:
        raise UnknownAction(kind, [a.kind for a in _ACTIONS if a.by is by])
    current = Status(status)
    if current not in action.from_statuses:
        raise IllegalTransition(kind, status, allowed_actions(status, by))
    missing = [name for name in action.required if detail.get(name) in (None, "")]
    if missing:
        raise MissingFields(kind, missing)
    return action.to_status or current
