"""A payload read through a source's mapping: the work order in our terms.

Pure functions over the parsed payload. Every problem is collected and reported keyed by the
*payload's* field path (``办结时限``, ``order.deadlines.complete``): that is the name the
sender knows, and what the 422 answer (or a drop folder's ``.error.txt``) names.

Two deliberate leniencies: an authority's category label that the mapping does not know
leaves the category to our keyword rules (with a note) rather than refusing the complaint,
since authorities rename categories more often than we update config; and so does a
承办单位 the mapping does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from channels.referral.payload import MISSING, get_path
from channels.referral.settings import (
    DEFAULT_KINDS,
    DEFAULT_REQUEST_TYPES,
    ReferralMapping,
    RequestType,
    UpdateKind,
)
from ingest.errors import Refused

_LIMITS = {"reference": 200, "update_id": 200, "subject": 1000, "name": 200, "email": 320}
_TEXT_LIMIT = 20_000
_BODY_LIMIT = 100_000
# Deadlines given as a date only mean the end of that day, local time.
_END_OF_DAY = time(23, 59, 59)


class MappingError(Refused):
    """The payload does not fit the mapping; ``fields`` maps payload paths to problems."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        super().__init__("; ".join(f"{path}: {problem}" for path, problem in fields.items()))


@dataclass(frozen=True)
class MappedOrder:
    kind: UpdateKind
    reference: str
    update_id: str | None = None
    subject: str | None = None
    body: str | None = None
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    address: str | None = None
    request_type: RequestType | None = None
    request_label: str | None = None
    category: str | None = None
    category_label: str | None = None  # given but not mapped
    dispatched_at: datetime | None = None
    handling_unit: str | None = None
    department: str | None = None
    sign_for_deadline: datetime | None = None
    contact_deadline: datetime | None = None
    deadline: datetime | None = None
    confidential: bool = False
    reason: str | None = None
    # How the message reached us, when that is worth keeping (the mail's DKIM result):
    # notes on a new order's ticket, or in the detail of an update's event. Never PII.
    notes: tuple[str, ...] = ()

    @property
    def is_new(self) -> bool:
        return self.kind is UpdateKind.NEW


class _Reader:
    def __init__(self, data: dict[str, Any], mapping: ReferralMapping, zone: ZoneInfo) -> None:
        self.data = data
        self.mapping = mapping
        self.zone = zone
        self.problems: dict[str, str] = {}

    def path(self, field: str) -> str | None:
        return self.mapping.fields.get(field)

    def raw(self, field: str) -> Any:
        path = self.path(field)
        if path is None:
            return MISSING
        value = get_path(self.data, path)
        if isinstance(value, dict) and "#text" in value:
            value = value["#text"]  # an XML element with attributes and text
        return value

    def fail(self, field: str, problem: str) -> None:
        self.problems.setdefault(self.path(field) or field, problem)

    def text(self, field: str, limit: int | None = None) -> str | None:
        value = self.raw(field)
        if value is MISSING or value is None:
            return None
        if isinstance(value, bool) or isinstance(value, dict | list):
            self.fail(field, "must be text")
            return None
        text = str(value).strip()
        limit = limit or _LIMITS.get(field, _TEXT_LIMIT)
        if len(text) > limit:
            self.fail(field, f"longer than {limit} characters")
            return None
        return text or None

    def when(self, field: str) -> datetime | None:
        text = self.text(field, 100)
        if text is None:
            return None
        parsed = parse_time(text, self.mapping.date_formats, self.zone)
        if parsed is None:
            formats = ", ".join([*self.mapping.date_formats, "ISO 8601"])
            self.fail(field, f"{text!r} is not a date and time (formats: {formats})")
        return parsed

    def flag(self, field: str) -> bool:
        value = self.raw(field)
        if value is MISSING or value is None or value == "":
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return bool(value)
        if isinstance(value, str):
            found = self.mapping.boolean_of(value)
            if found is not None:
                return found
        known = ", ".join([*self.mapping.booleans, "是", "否", "true", "false", "1", "0"])
        self.fail(field, f"{value!r} is not a yes/no value (one of: {known})")
        return False


def parse_time(text: str, formats: tuple[str, ...], zone: ZoneInfo) -> datetime | None:
    """A time from the payload, in UTC; without an offset it is local time in ``zone``, and
    a date alone is the end of that day."""
    for fmt in formats:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if not any(code in fmt for code in ("%H", "%I", "%M", "%S")):
            parsed = datetime.combine(parsed.date(), _END_OF_DAY)
        return _aware(parsed, zone)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if len(text) == 10:  # 2026-11-30
        parsed = datetime.combine(parsed.date(), _END_OF_DAY)
    return _aware(parsed, zone)


def _aware(value: datetime, zone: ZoneInfo) -> datetime:
    # In UTC from here on: SQLite keeps a datetime's wall time and drops its offset, and the
    # store reads every time back as UTC.
    aware = value.replace(tzinfo=zone) if value.tzinfo is None else value
    return aware.astimezone(UTC)


def map_order(data: dict[str, Any], mapping: ReferralMapping, timezone: str) -> MappedOrder:
    """The work order (or update) in ``data``; raises :class:`MappingError` listing every
    problem by payload path."""
    reader = _Reader(data, mapping, ZoneInfo(mapping.timezone or timezone))
    reference = reader.text("reference")
    if reference is None and "reference" not in reader.problems:
        reader.fail("reference", "required: the order number")

    kind = UpdateKind.NEW
    kind_label = reader.text("kind", 50)
    if kind_label is not None:
        found = mapping.kind_of(kind_label)
        if found is None:
            known = ", ".join(sorted({*mapping.kinds, *DEFAULT_KINDS}))
            reader.fail("kind", f"unknown order kind {kind_label!r} (one of: {known})")
        else:
            kind = found

    request_type = None
    request_label = reader.text("request_type", 50)
    if request_label is not None:
        request_type = mapping.request_type_of(request_label)
        if request_type is None:
            known = ", ".join(sorted({*mapping.request_types, *DEFAULT_REQUEST_TYPES}))
            reader.fail("request_type", f"unknown request type {request_label!r} ({known})")

    category = category_label = None
    label = reader.text("category", 200)
    if label is not None:
        category = mapping.categories.get(label)
        category_label = None if category else label

    handling_unit = reader.text("handling_unit", 200)
    order = MappedOrder(
        kind=kind,
        reference=reference or "",
        update_id=reader.text("update_id"),
        subject=reader.text("subject"),
        body=reader.text("body", _BODY_LIMIT),
        name=reader.text("name"),
        phone=reader.text("phone", 100),
        email=reader.text("email"),
        address=reader.text("address", 500),
        request_type=request_type,
        request_label=request_label,
        category=category,
        category_label=category_label,
        dispatched_at=reader.when("dispatched_at"),
        handling_unit=handling_unit,
        department=mapping.departments.get(handling_unit) if handling_unit else None,
        sign_for_deadline=reader.when("sign_for_deadline"),
        contact_deadline=reader.when("contact_deadline"),
        deadline=reader.when("deadline"),
        confidential=reader.flag("confidential"),
        reason=reader.text("reason", 4000),
    )
    if order.is_new and not (order.body or order.subject):
        field = "body" if "body" in mapping.fields else "subject"
        if reader.path(field) not in reader.problems:
            reader.fail(field, "required: what the complainant asks (诉求内容)")
    if order.kind is UpdateKind.EXTENSION and order.deadline is None:
        if "deadline" not in mapping.fields:
            reader.fail("deadline", "an extension (延期) needs the new deadline; map deadline")
        elif reader.path("deadline") not in reader.problems:
            reader.fail("deadline", "required for an extension (延期): the new deadline")
    if reader.problems:
        raise MappingError(reader.problems)
    return order
