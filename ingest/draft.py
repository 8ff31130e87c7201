"""The one envelope every channel produces: a frozen, versioned ticket draft.

A channel adapter parses what arrived, stores the raw original in the blob store, and hands
off a :class:`TicketDraft`. The router completes it into a ticket. Channels never route: the
only decisions a draft carries are the ones the sender or the first-contact agent made
(an explicit category, an on-the-spot resolution).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from ingest.storable import Storable

DRAFT_SCHEMA_VERSION: Final = 1


class Channel(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    WEB = "web"
    FEEDBACK = "feedback"
    REFERRAL = "referral"
    LETTER = "letter"
    API = "api"


class FirstContactKind(StrEnum):
    AGENT = "agent"
    MAILBOX = "mailbox"
    WEB = "web"
    REGULATOR = "regulator"
    DESK = "desk"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Complainant(_Frozen):
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, description="E.164 when it could be normalised")
    phone_raw: str | None = Field(default=None, description="the number exactly as given")
    email: str | None = Field(default=None, max_length=320)
    account: str | None = Field(
        default=None, max_length=64, description="account number (户号), normalised"
    )
    anonymous: bool = False

    @property
    def contactable(self) -> bool:
        return bool(self.phone or self.phone_raw or self.email)


class FirstContact(_Frozen):
    """Who first received the complaint (首问责任人): they own it until it is answered."""

    kind: FirstContactKind
    id: str = Field(min_length=1, max_length=200)
    department: str | None = None


class ResolvedOnContact(_Frozen):
    """The first receiver closed the complaint on the spot (现场/直接办结)."""

    outcome: str = Field(min_length=1, max_length=4000)
    answer_code: str | None = Field(default=None, description="scripted answer used (规范应答)")


def _as_utc(value: datetime | None) -> datetime | None:
    # Stored as UTC everywhere: SQLite keeps no offset, so a +08:00 time would come back
    # eight hours off.
    return value.astimezone(UTC) if value is not None else None


class ReferralOrder(_Frozen):
    source: str = Field(min_length=1, max_length=100)
    reference: str = Field(min_length=1, max_length=200)
    deadline: AwareDatetime | None = None

    _utc_deadline = field_validator("deadline")(_as_utc)


class MailKind(StrEnum):
    """What an inbound mail is; only ``normal`` mail may become a ticket."""

    NORMAL = "normal"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    DELIVERY_REPORT = "delivery_report"


class MailThread(_Frozen):
    """Where an inbound mail belongs: the router threads replies onto their ticket, records
    auto-replies and bounces without a ticket, and folds a sender's storm into follow-ups."""

    kind: MailKind = MailKind.NORMAL
    sender: str | None = Field(default=None, max_length=320, description="From, lower-cased")
    message_id: str | None = Field(default=None, max_length=1000)
    in_reply_to: str | None = Field(default=None, max_length=1000)
    references: tuple[str, ...] = Field(default=(), max_length=100)
    subject_numbers: tuple[str, ...] = Field(
        default=(), max_length=10, description="complaint numbers quoted in the subject"
    )
    bounce_of: str | None = Field(
        default=None, max_length=1000, description="Message-ID a bounce or report is about"
    )


class AttachmentRef(_Frozen):
    """Metadata of a file already written to the content-addressed blob store."""

    filename: str = Field(max_length=500)
    content_type: str = Field(max_length=200)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class TicketDraft(_Frozen):
    """What a channel hands to the queue. Versioned: a router refuses versions it does not know."""

    schema_version: Literal[1] = DRAFT_SCHEMA_VERSION
    channel: Channel
    source_key: str = Field(
        min_length=1,
        max_length=500,
        description="the channel's own identity of the inbound item (Message-ID, call id, ...)",
    )
    received_at: AwareDatetime
    complainant: Complainant = Complainant()
    subject: str = Field(default="", max_length=200_000)  # whole: cut only for display
    body: str = Field(default="", max_length=200_000)
    incident_at: AwareDatetime | None = None
    category: str | None = Field(
        default=None, description="a category key chosen by the complainant or the agent"
    )
    first_contact: FirstContact
    resolved_on_contact: ResolvedOnContact | None = None
    referral: ReferralOrder | None = None
    attachments: tuple[AttachmentRef, ...] = ()
    raw_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="blob of the raw original as received, for audit and re-parsing",
    )
    number: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{1,6}\d{6}-\d{6,}$",
        description="reserved at intake when the sender's answer had to carry it",
    )
    repeat_of: str | None = Field(
        default=None, description="an earlier, closed ticket this complaint repeats (重复投诉)"
    )
    dissatisfied: bool = Field(
        default=False,
        description="the complainant says an earlier, closed complaint's result did not satisfy",
    )
    notes: tuple[str, ...] = Field(
        default=(), description="channel observations recorded as intake events (no PII)"
    )
    mail: MailThread | None = Field(
        default=None, description="email only: threading headers and the mail's kind"
    )

    _utc_times = field_validator("received_at", "incident_at")(_as_utc)

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        # Every channel's text passes here, so this is the one place that guarantees both
        # databases take it: PostgreSQL refuses NUL and UTF-8 refuses lone surrogates, and a
        # refused row after a success answer would be a lost complaint.
        if not isinstance(data, dict):
            return data
        cleaned = Storable.clean(data)
        if not cleaned.changed:
            return data
        value = dict(cleaned.value)
        value["notes"] = (*tuple(value.get("notes") or ()), cleaned.note())
        return value

    @field_validator("source_key")
    @classmethod
    def _strip_source_key(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> TicketDraft:
        return cls.model_validate_json(data)

    @property
    def idempotency_key(self) -> tuple[str, str]:
        return (self.channel.value, self.source_key)


def utc_iso(value: datetime) -> str:
    """UTC ISO 8601 with a Z, the form the ticket JSON uses."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
