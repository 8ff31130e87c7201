"""Accepting one item at the edge: reserve its number, then hand the draft off durably.

Used by every channel whose sender must be told the complaint number in the answer
(HTTP 201). Only when :func:`accept` returns may the sender be told "accepted"; if it raises
``QueueUnavailable`` or a store error, answer "try again later" (HTTP 503): the reservation
stays, so the retry gets the same number and re-publishing is harmless (the router is
idempotent on the same key). Referral orders use :func:`decide_then_hand_off` directly, with
their replay guard and order record in the same transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from channels.runtime import Runtime
from ingest.draft import TicketDraft
from store.intake import is_known, reserve_number
from store.numbering import period_of

A = TypeVar("A")


@dataclass(frozen=True)
class EdgeDecision(Generic[A]):
    """What an edge decided in one transaction: the sender's answer, and the draft (with its
    reserved number) to publish once that transaction has committed."""

    accepted: A
    draft: TicketDraft | None = None
    why: str | None = None  # merged into an open ticket as a repeat: the match


async def decide_then_hand_off(
    runtime: Runtime,
    decide: Callable[[Connection], EdgeDecision[A]],
    *,
    durable: Awaitable[object] | None = None,
    undo: Callable[[], Awaitable[None]] | None = None,
) -> EdgeDecision[A]:
    """Run ``decide`` in one store transaction, then hand its draft off.

    An ``IntegrityError`` means a concurrent request with the same key decided first: the
    one retry finds its answer. If the hand-off raises (answer 503), the retry finds the
    reservation and publishes again; the router is idempotent on the key.

    ``durable``: what must be stored before the draft may be handed off (the raw original,
    written while ``decide`` runs). ``undo``: what to take back when that or the hand-off
    fails after ``decide`` committed (a replay guard's claim, so the sender's retry is not
    taken for a replay).
    """
    for attempt in range(2):
        try:
            decision = await runtime.database.write(decide)
            break
        except IntegrityError:
            if attempt:
                raise
    try:
        if durable is not None:
            await durable
        if decision.draft is not None:
            await runtime.handoff.submit(decision.draft)
    except BaseException:
        if undo is not None:
            await undo()
        raise
    return decision


class RepeatAnswer(Protocol):
    """What the router's repeat rule will make of a draft (``router.repeats.RepeatAnswer``)."""

    @property
    def open(self) -> str | None: ...  # a repeat of this open ticket: no ticket of its own

    @property
    def repeat_of(self) -> str | None: ...  # a ticket of its own, linked to this closed one


RepeatQuestion = Callable[[Connection, TicketDraft], RepeatAnswer]


@dataclass(frozen=True)
class Accepted:
    number: str
    new: bool  # False: accepted before, or a repeat of an open ticket (answer 200, not 201)
    repeat_of_open: bool = False  # ``number`` is the open ticket the router will urge
    repeat_of: str | None = None  # the new ticket will be linked to this closed one


async def accept(
    runtime: Runtime,
    draft: TicketDraft,
    *,
    repeats: RepeatQuestion | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Accepted:
    """Reserve the draft's number and hand it off. ``repeats``: the router's repeat rule, for
    an edge whose answer says "this is a repeat of TS..." (``RepeatRule.answer``); the router
    still makes the decision, this only asks what it will be. A repeat of an open ticket gets
    that ticket's number and no reservation, and its draft is handed off all the same (the
    router urges the open ticket); a retry of an item that already has a number keeps it.
    """
    settings = runtime.settings
    period = period_of(
        settings.organisation.number_prefix,
        draft.received_at,
        ZoneInfo(settings.organisation.timezone),
    )
    channel, source_key = draft.idempotency_key

    def decide(conn: Connection) -> EdgeDecision[Accepted]:
        answer = repeats(conn, draft) if repeats is not None else None
        if (
            answer is not None
            and answer.open is not None
            and not is_known(conn, (channel, source_key))
        ):
            return EdgeDecision(Accepted(answer.open, new=False, repeat_of_open=True), draft)
        number, new, made = reserve_number(
            conn, channel=channel, source_key=source_key, period=period, now=clock()
        )
        ready = None if made else draft.model_copy(update={"number": number})
        repeat_of = answer.repeat_of if answer is not None else None
        return EdgeDecision(Accepted(number=number, new=new, repeat_of=repeat_of), ready)

    return (await decide_then_hand_off(runtime, decide)).accepted
