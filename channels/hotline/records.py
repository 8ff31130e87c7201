"""The call record (one hotline call, as an agent files it or an export row holds it) and the
ticket draft it becomes.

The same :class:`CallRecord` is the body of ``POST /api/calls`` and what every import row is
mapped to, so both paths validate alike and make the same draft:

* ``source_key`` is the call id: the same call filed twice (or filed by the agent and then
  imported from the nightly export) is one ticket;
* the complainant's phone is the E.164 form of the contact number the caller gave, else of
  the caller ID; the original text is kept in ``phone_raw``; a withheld caller who leaves
  no callback number is anonymous (unless they gave their name: then they are a named
  complainant without a number, and the router's validity rule sees them so); a number that
  cannot be placed is kept as given and flagged in the notes, never "fixed";
* the agent is the first contact (首问责任人) with their team; a call closed on the spot
  (直接办结) carries the scripted answer code (规范应答);
* a call outside service hours says so in the notes (``after_hours``); the calendar starts
  its clocks at the next working period.

Notes are recorded as intake events and must hold no personal data: phone flags, never digits.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from channels.hotline.settings import Direction, Outcome
from ingest.draft import (
    Channel,
    Complainant,
    FirstContact,
    FirstContactKind,
    ResolvedOnContact,
    TicketDraft,
)
from ingest.phone import PhoneKind, PhoneNumber, normalise_phone
from router.calendar import WorkCalendar
from router.repeats import ADDRESS_LABEL, account_line

# An agent's clock may run a little ahead of ours; more than this is a wrong date.
FUTURE_TOLERANCE = timedelta(minutes=10)
SUBJECT_CHARS = 100


class CallRecord(BaseModel):
    """One hotline call. Field names are the API's and the default import headers."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    call_id: str = Field(min_length=1, max_length=200, description="the call's id (idempotency)")
    caller_number: str | None = Field(
        default=None, max_length=100, description="caller ID (来电号码); empty: withheld"
    )
    contact_number: str | None = Field(
        default=None, max_length=100, description="callback number the caller gave (联系电话)"
    )
    hotline_number: str | None = Field(
        default=None, max_length=32, description="hotline called (被叫号码)"
    )
    agent_id: str | None = Field(
        default=None, max_length=200, description="agent (坐席工号); default: the token's agent"
    )
    started_at: AwareDatetime = Field(description="call start, with a UTC offset")
    ended_at: AwareDatetime | None = None
    duration_seconds: int | None = Field(default=None, ge=0, le=86_400)
    direction: Direction = "inbound"
    recording_ref: str | None = Field(default=None, max_length=500, description="录音编号")
    ivr_path: str | None = Field(default=None, max_length=200, description="IVR 路径")
    category: str | None = Field(default=None, max_length=64, description="the agent's choice")
    summary: str = Field(min_length=1, max_length=20_000, description="通话摘要")
    request: str | None = Field(default=None, max_length=20_000, description="诉求")
    complainant_name: str | None = Field(default=None, max_length=200)
    complainant_address: str | None = Field(default=None, max_length=500)
    account_number: str | None = Field(default=None, max_length=64, description="户号")
    outcome: Outcome = Field(default="dispatch", description="resolved (直接办结) or dispatch")
    resolution: str | None = Field(
        default=None, max_length=4000, description="what the caller was told (resolved calls)"
    )
    answer_code: str | None = Field(default=None, max_length=64, description="规范应答 code")
    dissatisfied: bool = Field(
        default=False,
        description="the caller is unhappy with the result of an earlier, closed complaint",
    )

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        # Agent UIs and exports send "" for an empty box; that is "not given", not a value.
        if isinstance(data, dict):
            return {
                k: (None if isinstance(v, str) and not v.strip() else v) for k, v in data.items()
            }
        return data

    @property
    def ends_at(self) -> datetime | None:
        if self.ended_at is not None:
            return self.ended_at
        if self.duration_seconds is not None:
            return self.started_at + timedelta(seconds=self.duration_seconds)
        return None


def record_problems(
    record: CallRecord, *, categories: frozenset[str], now: datetime, strict: bool = True
) -> dict[str, str]:
    """Field -> reason for what pydantic cannot see field by field. ``strict`` (the API)
    also asks for the resolution of a call closed on the spot; an export may lack it."""
    problems: dict[str, str] = {}
    if record.started_at > now + FUTURE_TOLERANCE:
        problems["started_at"] = "is in the future"
    if record.ended_at is not None and record.ended_at < record.started_at:
        problems["ended_at"] = "is before started_at"
    if record.category is not None and record.category not in categories:
        problems["category"] = f"unknown category; one of: {', '.join(sorted(categories))}"
    if strict and record.outcome == "resolved" and not record.resolution:
        problems["resolution"] = "required when outcome is resolved (直接办结)"
    return problems


@dataclass(frozen=True)
class CallContext:
    """What turning a record into a draft needs besides the record."""

    region: str
    calendar: WorkCalendar


# Exports repeat numbers (the same callers, the same hotline, "匿名"), and normalising is the
# costliest step of an import row; the function is pure, so its results can be shared.
_normalise = lru_cache(maxsize=8192)(normalise_phone)


def caller_phone(record: CallRecord, region: str) -> tuple[PhoneNumber, list[str]]:
    """The number to call the complainant back on, and the notes it needs (no digits)."""
    caller = _normalise(record.caller_number, region)
    notes: list[str] = []
    chosen = caller
    if record.contact_number:
        given = _normalise(record.contact_number, region)
        if given.kind is not PhoneKind.ANONYMOUS:
            chosen = given
            if caller.kind is PhoneKind.ANONYMOUS:
                notes.append("caller_withheld")
    if chosen.kind is PhoneKind.ANONYMOUS:
        notes.append("caller_withheld")
    elif chosen.kind is PhoneKind.INVALID:
        notes.append(f"phone_invalid: {', '.join(f for f in chosen.flags if f != 'invalid')}")
    elif chosen.kind is PhoneKind.SERVICE:
        # 12345 or another hotline transferring the call: the raw stays, it is no callback.
        notes.append("phone_service_number")
    elif chosen.e164 is None and "no_area_code" in chosen.flags:
        notes.append("phone_no_area_code")
    return chosen, list(dict.fromkeys(notes))


def call_draft(
    record: CallRecord,
    *,
    agent_id: str,
    department: str | None,
    context: CallContext,
    raw_sha256: str | None = None,
    extra_notes: tuple[str, ...] = (),
) -> TicketDraft:
    phone, notes = caller_phone(record, context.region)
    anonymous = phone.kind is PhoneKind.ANONYMOUS
    if not context.calendar.in_service_hours(record.started_at):
        notes.append("after_hours")
    notes.append(_call_note(record))
    resolved = None
    if record.outcome == "resolved":
        text = record.resolution or (
            f"直接办结（规范应答 {record.answer_code}）" if record.answer_code else "直接办结"
        )
        resolved = ResolvedOnContact(outcome=text, answer_code=record.answer_code)
    return TicketDraft(
        channel=Channel.PHONE,
        source_key=record.call_id,
        # In UTC: the store keeps UTC, and SQLite would drop any other offset silently.
        received_at=record.started_at.astimezone(UTC),
        complainant=Complainant(
            name=record.complainant_name,
            phone=phone.e164,
            phone_raw=None if anonymous else phone.raw,
            account=normalise_account(record.account_number) if record.account_number else None,
            anonymous=anonymous and not record.complainant_name,
        ),
        subject=_subject(record.summary),
        body=call_body(record),
        category=record.category,
        first_contact=FirstContact(kind=FirstContactKind.AGENT, id=agent_id, department=department),
        resolved_on_contact=resolved,
        raw_sha256=raw_sha256,
        dissatisfied=record.dissatisfied,
        notes=(*notes, *extra_notes),
    )


def call_body(record: CallRecord) -> str:
    lines = [record.summary]
    if record.request:
        lines.append(f"诉求：{record.request}")
    if record.complainant_address:
        lines.append(f"{ADDRESS_LABEL}{record.complainant_address}")
    if record.account_number:
        lines.append(account_line(normalise_account(record.account_number)))
    return "\n".join(lines)


def normalise_account(account: str) -> str:
    """户号 as typed (full-width digits, spaces) to one comparable form."""
    return "".join(unicodedata.normalize("NFKC", account).split()).upper()


def _subject(summary: str) -> str:
    first = summary.strip().splitlines()[0].strip() if summary.strip() else ""
    return first if len(first) <= SUBJECT_CHARS else first[: SUBJECT_CHARS - 1] + "…"


def _call_note(record: CallRecord) -> str:
    """The call's own facts, none of them personal: direction, line, length, IVR, recording."""
    parts: list[str] = [record.direction]
    if record.hotline_number:
        parts.append(f"line {record.hotline_number}")
    ends = record.ends_at
    if ends is not None:
        parts.append(f"{int((ends - record.started_at).total_seconds())} s")
    if record.ivr_path:
        parts.append(f"IVR {record.ivr_path}")
    if record.recording_ref:
        parts.append(f"recording {record.recording_ref}")
    return "call: " + ", ".join(parts)
