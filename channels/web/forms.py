"""The two forms' rules, field by field.

Pure functions of the received fields, the settings and the clock: every rule answers with a
message key from ``channels.web.i18n`` next to the field it belongs to, so the same rule
gives the JSON ``fields`` of the API and the message beside the field on the page.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from channels.settings import ChannelSettings
from channels.web.i18n import RATINGS, ZH, Translator
from channels.web.settings import WebSettings, format_size
from channels.web.uploads import ReceivedForm, Upload
from ingest.phone import PhoneKind, PhoneNumber, normalise_phone

KEY_FIELD = "idempotency_key"
_KEY = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]{1,64}@[A-Za-z0-9.-]+\.[A-Za-z]{2,63}$")
_CALLABLE = frozenset({PhoneKind.MOBILE, PhoneKind.LANDLINE, PhoneKind.OTHER})
NAME_MAX = 50
CONTACT_MAX = 120
TEXT_MAX = 2000
# A clock a little ahead of ours (a phone set 2 minutes fast) is not "the future".
_SKEW = timedelta(minutes=10)
_OLDEST = timedelta(days=366 * 10)


@dataclass(frozen=True)
class Problem:
    """A message key and its values, rendered in the asker's language."""

    key: str
    values: tuple[tuple[str, object], ...] = ()


Problems = dict[str, list[Problem]]


def _add(problems: Problems, field: str, key: str, **values: object) -> None:
    problems.setdefault(field, []).append(Problem(key, tuple(values.items())))


@dataclass(frozen=True)
class Contact:
    raw: str
    phone: PhoneNumber | None = None
    email: str | None = None

    @property
    def canonical(self) -> str:
        """What a later progress inquiry must match: E.164, or the email in lower case."""
        if self.phone is not None and self.phone.e164:
            return self.phone.e164
        return (self.email or "").lower()

    @property
    def via(self) -> str:
        return "via_email" if self.email else "via_sms"


def parse_contact(raw: str, region: str = "CN") -> Contact | None:
    """A mobile (or landline) number or an email address; ``None`` when it is neither."""
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text or len(text) > CONTACT_MAX:
        return None
    if "@" in text:
        if not _EMAIL.match(text):
            return None
        local, _, domain = text.rpartition("@")
        return Contact(raw=raw.strip(), email=f"{local}@{domain.lower()}")
    phone = normalise_phone(text, region)
    if phone.e164 is None or phone.kind not in _CALLABLE:
        return None
    return Contact(raw=raw.strip(), phone=phone)


def canonical_contact(raw: str, region: str = "CN") -> str | None:
    contact = parse_contact(raw, region)
    return contact.canonical if contact else None


def parse_incident(raw: str, zone: ZoneInfo) -> datetime | None:
    """``datetime-local`` (``2026-11-20T14:30``), with seconds, a space, a date alone, or ISO
    with an offset. Without an offset the time is the organisation's local time."""
    text = unicodedata.normalize("NFKC", raw).strip().replace(" ", "T", 1)
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


@dataclass(frozen=True)
class ComplaintForm:
    name: str
    contact: Contact
    incident_at: datetime
    category: str
    details: str


@dataclass(frozen=True)
class FeedbackForm:
    name: str
    contact: Contact | None
    overall: str
    aspects: tuple[tuple[str, str], ...]
    content: str
    suggestions: str


def _text(form: ReceivedForm, name: str) -> str:
    # NFC so that the same words typed on two systems compare equal; CR LF as LF.
    return unicodedata.normalize("NFC", form.get(name)).replace("\r\n", "\n").strip()


def _check_length(problems: Problems, field: str, value: str, maximum: int) -> None:
    if len(value) > maximum:
        _add(problems, field, "msg_too_long", max=maximum)


def idempotency_key(form: ReceivedForm, header: str | None) -> tuple[str | None, bool]:
    """(key, valid). The form's hidden field, else the ``Idempotency-Key`` header."""
    key = form.get(KEY_FIELD).strip() or (header or "").strip()
    if not key:
        return None, True
    return key, bool(_KEY.match(key))


def check_complaint(
    form: ReceivedForm, settings: ChannelSettings, now: datetime
) -> tuple[ComplaintForm | None, Problems]:
    web = settings.web
    problems: Problems = {}
    name = _text(form, "name")
    if not name:
        _add(problems, "name", "msg_required")
    _check_length(problems, "name", name, NAME_MAX)
    raw_contact = _text(form, "contact")
    contact = parse_contact(raw_contact, settings.hotline.default_region)
    if not raw_contact:
        _add(problems, "contact", "msg_required")
    elif contact is None:
        _add(problems, "contact", "msg_contact")
    incident = _incident(problems, _text(form, "incident_at"), settings, now)
    category = _text(form, "category")
    if not category:
        _add(problems, "category", "msg_required")
    elif settings.category(category) is None:
        _add(problems, "category", "msg_category")
    details = _text(form, "details")
    if not details:
        _add(problems, "details", "msg_required")
    elif len(details) < web.details_min_chars:
        _add(problems, "details", "msg_details_short", min=web.details_min_chars)
    elif len(details) > web.details_max_chars:
        _add(problems, "details", "msg_details_long", max=web.details_max_chars)
    file_problems(problems, form, web)
    if problems or contact is None or incident is None:
        return None, problems
    return ComplaintForm(name, contact, incident, category, details), problems


def _incident(
    problems: Problems, raw: str, settings: ChannelSettings, now: datetime
) -> datetime | None:
    if not raw:
        _add(problems, "incident_at", "msg_required")
        return None
    incident = parse_incident(raw, ZoneInfo(settings.organisation.timezone))
    if incident is None:
        _add(problems, "incident_at", "msg_incident_invalid")
    elif incident > now + _SKEW:
        _add(problems, "incident_at", "msg_incident_future")
    elif incident < now - _OLDEST:
        _add(problems, "incident_at", "msg_incident_old")
    else:
        return incident.astimezone(UTC)
    return None


def check_feedback(
    form: ReceivedForm, settings: ChannelSettings
) -> tuple[FeedbackForm | None, Problems]:
    problems: Problems = {}
    name = _text(form, "name")
    _check_length(problems, "name", name, NAME_MAX)
    raw_contact = _text(form, "contact")
    contact = parse_contact(raw_contact, settings.hotline.default_region) if raw_contact else None
    if raw_contact and contact is None:
        _add(problems, "contact", "msg_contact")
    overall = _text(form, "overall")
    if not overall:
        _add(problems, "overall", "msg_required")
    elif overall not in RATINGS:
        _add(problems, "overall", "msg_rating")
    aspects = []
    for aspect in settings.web.feedback_aspects:
        value = _text(form, f"aspect_{aspect.key}")
        if value and value not in RATINGS:
            _add(problems, f"aspect_{aspect.key}", "msg_rating")
        elif value:
            aspects.append((aspect.key, value))
    content = _text(form, "content")
    suggestions = _text(form, "suggestions")
    _check_length(problems, "content", content, TEXT_MAX)
    _check_length(problems, "suggestions", suggestions, TEXT_MAX)
    file_problems(problems, form, settings.web)
    if problems:
        return None, problems
    return FeedbackForm(name, contact, overall, tuple(aspects), content, suggestions), problems


def accepted_kinds(web: WebSettings) -> str:
    return ", ".join(e.kind for e in web.evidence)


def file_problems(problems: Problems, form: ReceivedForm, web: WebSettings) -> None:
    for upload in form.uploads:
        _file_problem(problems, upload, web)


def _file_problem(problems: Problems, upload: Upload, web: WebSettings) -> None:
    name = upload.filename
    if upload.problem == "type":
        real = upload.real or "unknown"
        if real != "unknown" and f"real_{real}" in ZH:
            # ``real`` names a catalogue entry, translated when rendered.
            _add(
                problems,
                upload.form_field,
                "msg_file_type_real",
                name=name,
                real=f"real_{real}",
                kinds=accepted_kinds(web),
            )
        else:
            _add(problems, upload.form_field, "msg_file_type", name=name, kinds=accepted_kinds(web))
    elif upload.problem == "too_large":
        limit = web.limit_for(upload.kind) if upload.kind else web.largest_file
        _add(
            problems,
            upload.form_field,
            "msg_file_too_large",
            name=name,
            limit=format_size(limit or 0),
        )
    elif upload.problem == "total":
        _add(
            problems,
            upload.form_field,
            "msg_file_total",
            name=name,
            limit=format_size(web.max_total_size),
        )
    elif upload.problem == "count":
        _add(problems, upload.form_field, "msg_file_count", name=name, max=web.max_files)
    elif upload.problem == "empty":
        _add(problems, upload.form_field, "msg_file_empty", name=name)


def render_problems(problems: Problems, t: Translator) -> dict[str, str]:
    """Field -> message(s) in the asker's language, as the page and the API show them."""
    rendered = {}
    for field, items in problems.items():
        texts = []
        for problem in items:
            values = {k: t(str(v)) if k == "real" else v for k, v in problem.values}
            texts.append(t(problem.key, **values))
        rendered[field] = " ".join(texts)
    return rendered


def key_problem() -> Problems:
    return {KEY_FIELD: [Problem("msg_key")]}
