"""A reply (or 签收 confirmation) as a mail to the source's ``reply.email``.

The same payload as the signed webhook (the mapping's reply field names) goes as a JSON
attachment for the authority's system, with a readable Chinese text for its staff. The
Message-ID is derived from the outbox row, so every retry of one reply carries the same id
and the receiving side can drop a copy it already has (a 4xx after DATA does not prove the
mail was not taken). ``Auto-Submitted: auto-generated`` (RFC 3834) keeps auto-responders
from answering it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from channels.email.outbound import Delivery
from channels.email.settings import OutboundSmtp
from channels.referral.settings import REPLY_FIELDS, ReferralMapping, ReferralSource

_CODE = re.compile(r"(?<!\d)([2-5]\d\d)(?!\d)")
_LABELS = {
    "reference": "工单编号",
    "number": "受理编号",
    "result_code": "办理结果",
    "result": "答复内容",
    "handler": "办理人",
    "handled_at": "办结时间",
    "department": "承办部门",
    "signed_at": "签收时间",
    "desk": "签收人",
}


def canonical(payload: dict[str, Any], mapping: ReferralMapping | None) -> dict[str, str]:
    """The payload by our field names (it is keyed by the mapping's reply names)."""
    found: dict[str, str] = {}
    for field in REPLY_FIELDS:
        key = mapping.reply_key(field) if mapping else field
        if payload.get(key) is not None:
            found[field] = str(payload[key])
    return found


def reply_message(
    source: ReferralSource,
    payload: dict[str, Any],
    body: bytes,
    *,
    mapping: ReferralMapping | None,
    outbound: OutboundSmtp,
    to: str,
    delivery_id: str,
    now: datetime | None = None,
) -> EmailMessage:
    fields = canonical(payload, mapping)
    sign_for = fields.get("type") == "sign_for"
    reference, number = fields.get("reference", ""), fields.get("number", "")
    message = EmailMessage()
    message["From"] = Address(
        display_name=outbound.from_name or "", addr_spec=outbound.from_address
    )
    message["To"] = to
    what = "签收确认" if sign_for else "办理结果"
    message["Subject"] = f"【{what}】工单 {reference}（受理编号 {number}）"
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = f"<referral.{delivery_id}@{outbound.domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message["X-Shouli-Delivery"] = delivery_id
    message.set_content(_text(source, fields, sign_for))
    message.add_attachment(
        body, maintype="application", subtype="json", filename=f"{number or 'reply'}.json"
    )
    return message


def _text(source: ReferralSource, fields: dict[str, str], sign_for: bool) -> str:
    reference = fields.get("reference", "")
    order: tuple[str, ...]
    if sign_for:
        order = ("reference", "number", "desk", "signed_at")
        opening = f"贵单位转办的工单 {reference} 已签收。"
    else:
        order = (
            "reference",
            "number",
            "result_code",
            "handler",
            "department",
            "handled_at",
            "result",
        )
        opening = f"贵单位转办的工单 {reference} 已办结，办理结果如下。"
    lines = [f"{source.name}：", "", opening, ""]
    lines.extend(f"{_LABELS[f]}：{fields[f]}" for f in order if fields.get(f))
    lines += [
        "",
        "附件 JSON 为结构化回复（字段与接口回复相同），供系统导入。",
        "本邮件由系统自动发送，请勿直接回复。",
    ]
    return "\n".join(lines) + "\n"


def smtp_code(delivery: Delivery) -> int | None:
    """The SMTP reply code in a delivery's detail ("451 ...", "refused [550]"); 250 when it
    was sent (DATA accepted)."""
    if delivery.sent:
        return 250
    found = _CODE.search(delivery.detail)
    return int(found.group(1)) if found else None
