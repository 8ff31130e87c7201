"""Progress inquiry (投诉进度查询): the public timeline of one complaint.

Two ways in: the unguessable link from the acknowledgement (its token's digest is stored in
``web_progress_tokens``), or the complaint number plus the contact given with it. The public
view is built from the ticket's events through an allow-list of steps; everything else
(routing traces, notes, overdue marks, actor ids and staff names) never leaves. Before the
router has made the ticket, the intake reservation shows "received".

A wrong number and a wrong contact must look the same from outside: both run the same
queries (a number that does not exist is compared against a dummy digest), give the same
404 body, and the caller holds every failed answer to a common minimum duration.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, insert, select
from sqlalchemy.orm import Session
from sqlmodel import col

from channels.settings import ChannelSettings
from channels.web.i18n import Translator, format_when
from ingest.draft import utc_iso
from router.calendar import WorkCalendar
from router.lifecycle import Status
from store.models import Complainant, Event, IntakeNumber, Ticket
from store.tickets import as_utc, merged_reservation
from store.web_models import WebProgressToken

_DUMMY_DIGEST = "0" * 16 + "$" + "0" * 64


def new_token() -> str:
    return secrets.token_urlsafe(24)  # 192 bits


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def contact_digest(contact: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(8)
    digest = hashlib.sha256(f"{salt}|{contact}".encode()).hexdigest()
    return f"{salt}${digest}"


def contact_matches(stored: str | None, contact: str | None) -> bool:
    """Constant-time; two anonymous sides match (a repeat of anonymous feedback)."""
    if stored is None or contact is None:
        return stored is None and contact is None
    salt, _, _ = stored.partition("$")
    return hmac.compare_digest(stored, contact_digest(contact, salt))


def issue_link(conn: Connection, *, number: str, contact: str | None, now: datetime) -> str | None:
    """A new progress token for ``number``; call inside ``Database.write``.

    For a number that already has links (the same form submitted again) a token is issued
    only to the same contact, so knowing someone's idempotency key is not enough to read
    their progress. ``None``: no link for this asker.
    """
    first = conn.execute(
        select(col(WebProgressToken.contact_digest))
        .where(col(WebProgressToken.number) == number)
        .order_by(col(WebProgressToken.id))
        .limit(1)
    ).first()
    if first is not None and not contact_matches(first[0], contact):
        return None
    digest = first[0] if first is not None else (contact_digest(contact) if contact else None)
    token = new_token()
    conn.execute(
        insert(WebProgressToken).values(
            number=number, token_sha256=token_digest(token), contact_digest=digest, created_at=now
        )
    )
    return token


@dataclass(frozen=True)
class Step:
    step: str
    at: datetime | None = None
    department: str | None = None


@dataclass(frozen=True)
class PublicProgress:
    number: str
    status: str
    received_at: datetime | None
    department: str | None
    due_at: datetime | None
    result: str | None
    steps: tuple[Step, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class _Rows:
    number: str
    link_digest: str | None
    has_link: bool
    ticket: Ticket | None
    complainant: Complainant | None
    reserved_at: datetime | None


def _rows(conn: Session, number: str) -> _Rows:
    link = conn.execute(
        select(col(WebProgressToken.contact_digest))
        .where(col(WebProgressToken.number) == number)
        .order_by(col(WebProgressToken.id))
        .limit(1)
    ).first()
    tickets = select(Ticket, Complainant).outerjoin(
        Complainant, col(Complainant.id) == col(Ticket.complainant_id)
    )
    found = conn.execute(tickets.where(col(Ticket.number) == number)).first()
    if found is None:
        # Told this number, then merged into an open ticket as a repeat: show that one.
        found = conn.execute(tickets.where(col(Ticket.id) == merged_reservation(number))).first()
    reserved = conn.execute(
        select(col(IntakeNumber.reserved_at)).where(col(IntakeNumber.number) == number)
    ).first()
    return _Rows(
        number=number,
        link_digest=link[0] if link else None,
        has_link=link is not None,
        ticket=found[0] if found else None,
        complainant=found[1] if found else None,
        reserved_at=as_utc(reserved[0]) if reserved else None,
    )


def _contact_ok(rows: _Rows, contact: str) -> bool:
    """The contact given with the first link, or any the complainant left (an email
    complaint's acknowledgement issues its link to the address; its phone still works)."""
    linked = rows.has_link and contact_matches(rows.link_digest, contact)
    complainant = rows.complainant
    if complainant is not None:
        known = [v for v in (complainant.phone, (complainant.email or "").lower()) if v]
        # Every candidate compared, no early exit.
        results = [hmac.compare_digest(v.encode(), contact.encode()) for v in known]
        return linked or any(results)
    if not rows.has_link:
        contact_matches(_DUMMY_DIGEST, contact)  # same work as a real comparison
    return linked


def _events(conn: Session, ticket_id: int) -> list[Event]:
    return list(
        conn.execute(
            select(Event).where(col(Event.ticket_id) == ticket_id).order_by(col(Event.id))
        ).scalars()
    )


def _view(
    conn: Session, rows: _Rows, settings: ChannelSettings, calendar: WorkCalendar
) -> PublicProgress | None:
    if rows.ticket is not None:
        assert rows.ticket.id is not None
        return public_view(rows.ticket, _events(conn, rows.ticket.id))
    if rows.reserved_at is not None:
        return received_view(rows.number, rows.reserved_at, settings, calendar)
    return None


def find_by_contact(
    conn: Connection, number: str, contact: str, settings: ChannelSettings, calendar: WorkCalendar
) -> PublicProgress | None:
    # ORM entities (Ticket, Complainant, Event) from the plain connection.
    with Session(bind=conn) as session:
        rows = _rows(session, number)
        if not _contact_ok(rows, contact):
            return None
        return _view(session, rows, settings, calendar)


def find_by_token(
    conn: Connection, token: str, settings: ChannelSettings, calendar: WorkCalendar
) -> PublicProgress | None:
    found = conn.execute(
        select(col(WebProgressToken.number)).where(
            col(WebProgressToken.token_sha256) == token_digest(token)
        )
    ).first()
    if found is None:
        return None
    with Session(bind=conn) as session:
        return _view(session, _rows(session, found[0]), settings, calendar)


def received_view(
    number: str, reserved_at: datetime, settings: ChannelSettings, calendar: WorkCalendar
) -> PublicProgress:
    expected = calendar.add(reserved_at, settings.time_limits.accept)
    return PublicProgress(
        number=number,
        status=Status.RECEIVED.value,
        received_at=reserved_at,
        department=None,
        due_at=None,
        result=None,
        steps=(Step("received", reserved_at), Step("expected_accept", expected)),
    )


# Event kind -> public step; a kind not listed here is internal and never shown.
_STEPS: dict[str, str] = {
    "accepted": "accepted",
    "accept": "accepted",
    "dispatched": "dispatched",
    "dispatch": "dispatched",
    "transfer": "transferred",
    "urge": "urged",
    "handle": "handled",
    "feedback": "feedback",
    "callback": "callback",
    "close": "closed",
    "close_abnormal": "closed",
    "reject": "rejected",
    "rejected": "rejected",  # the router's 不予受理 (a configured rule)
    "invalid": "invalid",
    "mark_invalid": "invalid",
    "closed_on_contact": "resolved",
    "review": "review",
}
_WITH_DEPARTMENT = frozenset({"dispatched", "transferred"})
_AWAITING_WORK = frozenset({Status.RECEIVED.value, Status.ACCEPTED.value, Status.DISPATCHED.value})


def public_view(ticket: Ticket, events: list[Event]) -> PublicProgress:
    steps = [Step("received", as_utc(ticket.received_at))]
    result: str | None = None
    handled: str | None = None
    for event in events:
        step = _STEPS.get(event.kind)
        if step is None:
            continue
        detail = event.detail or {}
        department = detail.get("department") if step in _WITH_DEPARTMENT else None
        steps.append(
            Step(step, as_utc(event.at), department if isinstance(department, str) else None)
        )
        if step == "handled" and isinstance(detail.get("result"), str):
            handled = detail["result"]
        elif step == "feedback":
            # The handling result becomes public once it has been fed back to the person.
            result = handled
        elif step == "resolved" and isinstance(detail.get("outcome"), str):
            result = detail["outcome"]
        elif step == "review":
            result = None
    # A deadline means something to the person only while the work is still to be done.
    open_ = ticket.status in _AWAITING_WORK
    return PublicProgress(
        number=ticket.number,
        status=ticket.status,
        received_at=as_utc(ticket.received_at),
        department=ticket.department,
        due_at=as_utc(ticket.due_at) if open_ else None,
        result=result,
        steps=tuple(steps),
    )


def department_names(settings: ChannelSettings, key: str | None) -> dict[str, str] | None:
    if key is None:
        return None
    try:
        department = settings.department(key)
    except KeyError:
        return {"key": key, "name": "承办部门", "name_en": "the handling department"}
    return {"key": key, "name": department.name, "name_en": department.name_en}


def step_label(
    step: Step, t: Translator, settings: ChannelSettings, when: str | None = None
) -> str:
    if step.step in _WITH_DEPARTMENT:
        names = department_names(settings, step.department)
        name = (names["name"] if t.lang == "zh" else names["name_en"]) if names else None
        return t(f"step_{step.step}", department=name or t("a_department"))
    if step.step == "expected_accept":
        return t("step_expected_accept", by=when or "")
    return t(f"step_{step.step}")


def progress_json(view: PublicProgress, settings: ChannelSettings) -> dict[str, Any]:
    zh, en = Translator("zh"), Translator("en")
    zone = ZoneInfo(settings.organisation.timezone)

    def iso(value: datetime | None) -> str | None:
        return utc_iso(value) if value else None

    def local(value: datetime | None, t: Translator) -> str | None:
        return format_when(value, zone, t.lang) if value else None

    return {
        "number": view.number,
        "status": view.status,
        "status_label": zh(f"status_{view.status}"),
        "status_label_en": en(f"status_{view.status}"),
        "received_at": iso(view.received_at),
        "department": department_names(settings, view.department),
        "due_at": iso(view.due_at),
        "result": view.result,
        "timeline": [
            {
                "step": step.step,
                "at": iso(step.at),
                "label": step_label(step, zh, settings, local(step.at, zh)),
                "label_en": step_label(step, en, settings, local(step.at, en)),
                "department": department_names(settings, step.department),
            }
            for step in view.steps
        ],
    }
