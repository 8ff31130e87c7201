"""Numbers reserved at intake, so an HTTP answer can carry the complaint number at once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select
from sqlmodel import col

from store.models import IntakeNumber, Ticket
from store.numbering import allocate_numbers


def reserve_number(
    conn: Connection, *, channel: str, source_key: str, period: str, now: datetime
) -> tuple[str, bool, bool]:
    """(number, newly reserved, ticket already made) for this item; call inside ``write``.

    The same (channel, source_key) always gets the same number. Two edges racing on one
    key: the loser's insert violates the unique key and its transaction (with its counter
    increment) rolls back; its retry then finds the winner's reservation.
    """
    found = conn.execute(
        select(col(IntakeNumber.number)).where(
            col(IntakeNumber.channel) == channel,
            col(IntakeNumber.source_key) == source_key,
        )
    ).scalar_one_or_none()
    if found is not None:
        made = conn.execute(select(col(Ticket.id)).where(col(Ticket.number) == found)).first()
        return found, False, made is not None
    existing_ticket = conn.execute(
        select(col(Ticket.number)).where(
            col(Ticket.channel) == channel,
            col(Ticket.source_key) == source_key,
        )
    ).scalar_one_or_none()
    if existing_ticket is not None:
        return existing_ticket, False, True
    (number,) = allocate_numbers(conn, period, 1)
    conn.execute(
        insert(IntakeNumber).values(
            channel=channel, source_key=source_key, number=number, reserved_at=now
        )
    )
    return number, True, False


def is_known(conn: Connection, key: tuple[str, str]) -> bool:
    """This (channel, source_key) was reserved a number or made into a ticket before."""
    channel, source_key = key
    for table in (IntakeNumber, Ticket):
        found = conn.execute(
            select(col(table.number)).where(
                col(table.channel) == channel, col(table.source_key) == source_key
            )
        ).first()
        if found is not None:
            return True
    return False
