"""The ``referrals:`` section of ``config.yaml``: who may send us work orders, how their
payloads map to ticket fields, and how replies go back.

Pure pydantic on purpose: ``channels.settings`` imports this module, so it must not import
anything of the service (store, router, queue) itself.

A *source* is one upstream authority (a city's 12345 hotline, a regulator's system). It has
its own webhook secret, a named *mapping* (field paths in its payload -> ticket fields, value
maps, date formats), the liaison desk that is the first contact for its orders, an optional
drop folder, an optional ``mail`` section (orders arriving in a referral mailbox, see
``channels.referral.mail``) and an optional reply route (a signed webhook, or an email sent
through ``email.outbound``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from ingest.phone import known_region
from ingest.references import KnownKeys
from ingest.sections import Section, env_secret


class UpdateKind(StrEnum):
    """What a work order message asks for. ``new`` makes a ticket; the rest change one."""

    NEW = "new"
    URGE = "urge"  # 催办: a reminder to the handling department
    EXTENSION = "extension"  # 延期: a new completion deadline
    WITHDRAWAL = "withdrawal"  # 撤单: closed with the reason
    RETURNED = "returned"  # 退单 / 退回重办: the answer was not accepted, handle again
    SUPERVISION = "supervision"  # 督办: the authority supervises it, severity raised


class RequestType(StrEnum):
    """诉求类型 of a 12345 work order."""

    CONSULTATION = "consultation"  # 咨询
    HELP = "help"  # 求助
    COMPLAINT = "complaint"  # 投诉
    REPORT = "report"  # 举报
    SUGGESTION = "suggestion"  # 建议


# Ticket fields a payload path can fill (ReferralMapping.fields keys).
MAPPABLE_FIELDS: tuple[str, ...] = (
    "reference",  # the authority's order number (工单编号): the idempotency key
    "kind",  # new order or update (催办, 延期, 撤单, 退单, 督办); absent: new
    "update_id",  # the update's own id, so a re-sent update is applied once
    "subject",
    "body",  # 诉求内容
    "name",  # 诉求人
    "phone",  # 来电号码 / 联系电话
    "email",
    "address",  # 诉求地址
    "request_type",  # 诉求类型
    "category",  # the authority's category label, mapped to a category key
    "dispatched_at",  # 派单时间
    "handling_unit",  # 承办单位
    "sign_for_deadline",  # 签收时限
    "contact_deadline",  # 联系时限 (first contact with the complainant)
    "deadline",  # 办结时限 (completion); for an extension, the new one
    "confidential",  # 是否保密
    "reason",  # why: the urge's text, the withdrawal's or return's reason
)

# Fields of a reply that ReferralMapping.reply_fields may rename for the authority's system.
REPLY_FIELDS: tuple[str, ...] = (
    "type",
    "source",
    "reference",
    "number",
    "result_code",
    "result",
    "handler",
    "handled_at",
    "department",
    "signed_at",
    "desk",
)

DEFAULT_KINDS: dict[str, UpdateKind] = {
    **{kind.value: kind for kind in UpdateKind},
    "派单": UpdateKind.NEW,
    "新单": UpdateKind.NEW,
    "交办": UpdateKind.NEW,
    "转办": UpdateKind.NEW,
    "催办": UpdateKind.URGE,
    "延期": UpdateKind.EXTENSION,
    "撤单": UpdateKind.WITHDRAWAL,
    "撤销": UpdateKind.WITHDRAWAL,
    "退单": UpdateKind.RETURNED,
    "退回": UpdateKind.RETURNED,
    "退回重办": UpdateKind.RETURNED,
    "督办": UpdateKind.SUPERVISION,
}
DEFAULT_REQUEST_TYPES: dict[str, RequestType] = {
    **{kind.value: kind for kind in RequestType},
    "咨询": RequestType.CONSULTATION,
    "求助": RequestType.HELP,
    "投诉": RequestType.COMPLAINT,
    "举报": RequestType.REPORT,
    "建议": RequestType.SUGGESTION,
}
DEFAULT_BOOLEANS: dict[str, bool] = {
    "是": True,
    "否": False,
    "保密": True,
    "不保密": False,
    "true": True,
    "false": False,
    "yes": True,
    "no": False,
    "y": True,
    "n": False,
    "1": True,
    "0": False,
}

_KEY = r"^[a-z][a-z0-9_-]*$"


def _check_zone(value: str | None) -> str | None:
    if value is not None:
        try:
            ZoneInfo(value)
        except Exception as exc:
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai)") from exc
    return value


class ReferralMapping(Section):
    """How one kind of work order names things: ticket field -> path in the payload.

    A path is dotted: ``工单编号`` or ``order.complainant.phone``; a number picks a list item
    (``items.0.text``). XML payloads are read as nested elements under the root element
    (``<工单><工单编号>..</工单编号></工单>`` -> ``工单编号``), attributes as ``@name``.
    """

    format: Literal["json", "xml"] = "json"
    fields: dict[str, str] = Field(description="ticket field -> path in the payload")
    kinds: dict[str, UpdateKind] = Field(
        default_factory=dict, description="added to the built-in 派单/催办/延期/撤单/退单/督办"
    )
    request_types: dict[str, RequestType] = Field(
        default_factory=dict, description="added to the built-in 咨询/求助/投诉/举报/建议"
    )
    categories: dict[str, str] = Field(
        default_factory=dict, description="the authority's category label -> category key"
    )
    departments: dict[str, str] = Field(
        default_factory=dict,
        description="承办单位 label -> department key (used when a returned order names one)",
    )
    booleans: dict[str, bool] = Field(
        default_factory=dict, description="added to the built-in 是/否, true/false, 1/0"
    )
    date_formats: tuple[str, ...] = Field(
        default=(), description="strptime formats tried before ISO 8601"
    )
    timezone: str | None = Field(
        default=None, description="zone of times without an offset; None: the organisation's"
    )
    reply_fields: dict[str, str] = Field(
        default_factory=dict, description="reply field -> key in the reply sent back"
    )
    reply_time_format: str | None = Field(
        default=None, description="strftime format of reply times; None: ISO 8601 with offset"
    )

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(MAPPABLE_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown ticket field(s) {', '.join(unknown)}; known: {', '.join(MAPPABLE_FIELDS)}"
            )
        if any(not path.strip() or ".." in path for path in value.values()):
            raise ValueError("a path must not be empty or contain '..'")
        if "reference" not in value:
            raise ValueError("must map reference (the order number, e.g. 工单编号)")
        if "body" not in value and "subject" not in value:
            raise ValueError("must map body (诉求内容) or subject")
        return value

    @field_validator("reply_fields")
    @classmethod
    def _known_reply_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(REPLY_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown reply field(s) {', '.join(unknown)}; known: {', '.join(REPLY_FIELDS)}"
            )
        return value

    @field_validator("date_formats")
    @classmethod
    def _strptime_formats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for fmt in value:
            if not re.search(r"%[YmdHMS]", fmt):
                raise ValueError(f"{fmt!r} is not a strptime format like '%Y-%m-%d %H:%M:%S'")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _check_zone(value)

    def kind_of(self, label: str) -> UpdateKind | None:
        return self.kinds.get(label) or DEFAULT_KINDS.get(label) or DEFAULT_KINDS.get(label.lower())

    def request_type_of(self, label: str) -> RequestType | None:
        found = self.request_types.get(label) or DEFAULT_REQUEST_TYPES.get(label)
        return found or DEFAULT_REQUEST_TYPES.get(label.lower())

    def boolean_of(self, label: str) -> bool | None:
        if label in self.booleans:
            return self.booleans[label]
        return DEFAULT_BOOLEANS.get(label.strip().lower())

    def reply_key(self, field: str) -> str:
        return self.reply_fields.get(field, field)


class _Secret(Section):
    secret: str | None = Field(
        default=None, min_length=16, description="inline secret: development and tests only"
    )
    secret_env: str | None = Field(
        default=None, description="environment variable holding the secret (preferred)"
    )

    def current_secret(self) -> str | None:
        if self.secret_env:
            return env_secret(self.secret_env)
        return self.secret


class WebhookReply(_Secret):
    """Replies POSTed as JSON, signed like inbound requests (X-Shouli-Signature)."""

    url: str

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("use an http:// or https:// URL")
        return value


class ReplyRoute(Section):
    """Exactly one of ``webhook`` or ``email``."""

    webhook: WebhookReply | None = None
    email: str | None = Field(
        default=None, description="reply by mail to this address (sent through email.outbound)"
    )

    @field_validator("email")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value.strip()):
            raise ValueError("must be an email address like feedback@12345.example.gov.cn")
        return value.strip().lower() if value is not None else None

    @model_validator(mode="after")
    def _exactly_one(self) -> ReplyRoute:
        if (self.webhook is None) == (self.email is None):
            raise ValueError("give exactly one of webhook or email")
        return self


class MailFormat(StrEnum):
    """Where a mailed work order is read from."""

    AUTO = "auto"  # an attached .json/.xml/.csv order file if there is one, else the body
    BODY = "body"  # ``key：value`` lines in the body, read by the source's mapping
    JSON = "json"  # an attached JSON file (one order)
    XML = "xml"  # an attached XML file (one order)
    CSV = "csv"  # an attached CSV file: a header row, then one order per row


class MailReferral(Section):
    """Work orders this source sends by mail to a referral mailbox (``email.mailboxes`` with
    ``referral: true``).

    Only mail whose From is in ``senders`` is read as an order; the envelope sender is not
    available over IMAP, so From is what we can check, and ``require_dkim`` is what makes it
    trustworthy: then a DKIM signature of the From domain (or its parent) must verify.
    """

    senders: tuple[str, ...] = Field(
        min_length=1, description="allowed From addresses, or @domain for a whole domain"
    )
    require_dkim: bool = Field(
        default=False, description="a mail without a passing, aligned DKIM signature is refused"
    )
    format: MailFormat = MailFormat.AUTO

    @field_validator("senders")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(v.strip().lower() for v in value)
        for item in cleaned:
            local, at, domain = item.rpartition("@")
            if not at or "." not in domain or any(c.isspace() for c in item) or "@" in local:
                raise ValueError(f"{item!r} is neither an address (a@b.cn) nor a domain (@b.cn)")
        return cleaned

    def allows(self, address: str | None) -> bool:
        if not address or "@" not in address:
            return False
        address = address.strip().lower()
        return address in self.senders or "@" + address.rpartition("@")[2] in self.senders


class ReferralSource(_Secret):
    key: str = Field(pattern=_KEY, description="in the URL: POST /api/referrals/{key}")
    name: str = Field(min_length=1, description="the authority, e.g. 示例市12345政务服务便民热线")
    previous_secret_env: str | None = Field(
        default=None, description="the secret being rotated out; accepted until removed"
    )
    mapping: str = Field(description="a key of referrals.mappings")
    liaison_desk: str = Field(
        min_length=1, max_length=200, description="first contact (首问) for this source's orders"
    )
    liaison_department: str | None = Field(default=None, description="the desk's department")
    reply: ReplyRoute | None = None
    sign_for_confirmations: bool = Field(
        default=False, description="send a 签收 confirmation when the ticket is registered"
    )
    drop_folder: Path | None = Field(
        default=None, description="directory where this source delivers order files"
    )
    mail: MailReferral | None = Field(
        default=None, description="orders by mail to a referral mailbox (sender allowlist, DKIM)"
    )
    max_body_bytes: int = Field(default=1_048_576, ge=256, le=50 * 1_048_576)

    def secrets(self) -> list[str]:
        """Every secret a request may be signed with (current first, then the rotated one)."""
        found = [self.current_secret()]
        if self.previous_secret_env:
            found.append(env_secret(self.previous_secret_env))
        return [s for s in found if s]


class ReplySettings(Section):
    max_attempts: int = Field(default=8, ge=1, le=100, description="then a dead letter")
    retry_base_seconds: float = Field(default=30.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    timeout_seconds: float = Field(default=10.0, gt=0)
    default_result_code: str = Field(
        default="handled", description="result code when the handle event gives none"
    )


class LetterSettings(Section):
    """``POST /api/letters``: letters, visits and faxes registered by staff, with scans."""

    max_scan_bytes: int = Field(default=10 * 1_048_576, ge=1024)
    max_scans: int = Field(default=20, ge=0, le=200)
    scan_types: tuple[str, ...] = (
        "application/pdf",
        "image/jpeg",
        "image/png",
        "image/tiff",
    )


class ReferralSettings(Section):
    signature_max_age_seconds: int = Field(
        default=300, ge=10, le=3600, description="older (or as much in the future): refused"
    )
    poll_seconds: float = Field(default=2.0, gt=0, description="worker sweep interval")
    drop_folder_min_age_seconds: float = Field(
        default=1.0, ge=0, description="a file in the drop folder is read once this old"
    )
    default_region: str = Field(default="CN", description="region of numbers without +country")
    supervision_severity: Literal["important", "major"] = Field(
        default="major", description="severity a supervision order (督办) raises a ticket to"
    )
    replies: ReplySettings = ReplySettings()
    letters: LetterSettings = LetterSettings()
    sources: tuple[ReferralSource, ...] = ()
    mappings: dict[str, ReferralMapping] = Field(default_factory=dict)
    dkim_keys: dict[str, str] = Field(
        default_factory=dict,
        description="DKIM key records by name (selector._domainkey.domain), used instead of "
        "DNS for those names: for networks without public DNS; other names go to DNS",
    )

    @field_validator("dkim_keys")
    @classmethod
    def _dkim_records(cls, value: dict[str, str]) -> dict[str, str]:
        cleaned: dict[str, str] = {}
        for name, record in value.items():
            key = name.strip().lower().rstrip(".")
            if "._domainkey." not in key:
                raise ValueError(f"{name!r}: name it selector._domainkey.domain")
            if not re.search(r"(^|;)\s*p=", record):
                raise ValueError(f"{name!r}: not a DKIM key record (v=DKIM1; k=rsa; p=...)")
            cleaned[key] = record.strip()
        return cleaned

    _known_region = field_validator("default_region")(known_region)

    @field_validator("mappings")
    @classmethod
    def _mapping_names(cls, value: dict[str, ReferralMapping]) -> dict[str, ReferralMapping]:
        for name in value:
            if not re.fullmatch(_KEY, name):
                raise ValueError(f"mapping name {name!r}: lower case letters, digits, _ and -")
        return value

    def source(self, key: str) -> ReferralSource | None:
        return next((s for s in self.sources if s.key == key), None)

    def mapping_of(self, source: ReferralSource) -> ReferralMapping:
        return self.mappings[source.mapping]

    def cross_reference_problems(self, known: KnownKeys) -> list[tuple[str, str]]:
        """Names that must point at other sections (called by channels.settings)."""
        problems: list[tuple[str, str]] = []
        seen: set[str] = set()
        folders: dict[Path, int] = {}
        for index, source in enumerate(self.sources):
            where = f"referrals.sources.{index}"
            if source.key in seen:
                problems.append((f"{where}.key", f"duplicate source {source.key!r}"))
            seen.add(source.key)
            if source.mapping not in self.mappings:
                problems.append(
                    (
                        f"{where}.mapping",
                        f"unknown mapping {source.mapping!r} "
                        f"(known: {', '.join(sorted(self.mappings)) or 'none'})",
                    )
                )
            problems.extend(
                known.department(f"{where}.liaison_department", source.liaison_department or None)
            )
            if not source.secret and not source.secret_env:
                problems.append((where, "give secret_env (preferred) or secret"))
            if source.reply is not None:
                webhook = source.reply.webhook
                if webhook is not None and not webhook.secret and not webhook.secret_env:
                    problems.append(
                        (f"{where}.reply.webhook", "give secret_env (preferred) or secret")
                    )
            elif source.sign_for_confirmations:
                problems.append(
                    (
                        f"{where}.sign_for_confirmations",
                        "needs a reply route (reply.webhook or reply.email)",
                    )
                )
            if source.drop_folder is not None:
                folder = source.drop_folder
                if folder in folders:
                    problems.append(
                        (
                            f"{where}.drop_folder",
                            f"already the drop folder of referrals.sources.{folders[folder]}",
                        )
                    )
                folders.setdefault(folder, index)
        for name, mapping in self.mappings.items():
            where = f"referrals.mappings.{name}"
            problems.extend(known.categories_in(f"{where}.categories", mapping.categories))
            problems.extend(known.departments_in(f"{where}.departments", mapping.departments))
        return problems

    def mail_problems(
        self, *, referral_mailboxes: Sequence[str], outbound_configured: bool
    ) -> list[tuple[str, str]]:
        """What ties this section to ``email``: ``referral_mailboxes`` are the paths of the
        mailboxes marked ``referral: true`` (``email.mailboxes.3``)."""
        problems: list[tuple[str, str]] = []
        with_mail = [s for s in self.sources if s.mail is not None]
        if referral_mailboxes and not with_mail:
            problems.extend(
                (
                    f"{where}.referral",
                    "a referral mailbox needs a source with mail.senders "
                    "(referrals.sources.N.mail); without one every mail to it is a complaint",
                )
                for where in referral_mailboxes
            )
        allowed: dict[str, str] = {}
        for index, source in enumerate(self.sources):
            where = f"referrals.sources.{index}"
            if source.mail is not None:
                if not referral_mailboxes:
                    problems.append(
                        (
                            f"{where}.mail",
                            "no mailbox receives it: mark one of email.mailboxes referral: true",
                        )
                    )
                for sender in source.mail.senders:
                    if sender in allowed:
                        problems.append(
                            (
                                f"{where}.mail.senders",
                                f"{sender!r} is already allowed for source {allowed[sender]!r}; "
                                "a sender must name one source",
                            )
                        )
                    allowed.setdefault(sender, source.key)
            if source.reply is not None and source.reply.email and not outbound_configured:
                problems.append(
                    (
                        f"{where}.reply.email",
                        "replies by email are sent through email.outbound, which is not set",
                    )
                )
        return problems
