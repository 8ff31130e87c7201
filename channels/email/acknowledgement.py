"""The mails Shouli writes itself (pure rendering, no I/O): the acknowledgement (受理回执) to a
complainant and the urge (催办) notice to a department. Chinese first, then English.

Both are automatic mail: ``Auto-Submitted`` (RFC 3834) and ``X-Auto-Response-Suppress`` keep
well-behaved servers from answering them with out-of-office replies (a mail loop with our
own intake otherwise). The acknowledgement threads under the complainant's mail
(``In-Reply-To``/``References``) and carries the complaint number in brackets in the subject,
so a reply to it finds its ticket. The urge notice names no complainant and quotes nothing
of the complaint: mailboxes of departments are shared and forwarded; staff read the ticket
in the system.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from zoneinfo import ZoneInfo

from channels.email.settings import OutboundSmtp
from channels.settings import ChannelSettings
from channels.web.i18n import format_limit, format_when
from router.lifecycle import OPEN_STATUSES

ACK_SUBJECT = "您的投诉已受理 / Your complaint has been received"
REFUSED_SUBJECT = "您的投诉已登记，不予受理 / Your complaint was recorded but not accepted"
INVALID_SUBJECT = "您的投诉已登记，无法办理 / Your complaint was recorded but cannot be handled"
URGE_SUBJECT = "催办通知 / Urge notice"
DISPATCH_SUBJECT = "派单通知 / New complaint for your department"
DUE_SOON_SUBJECT = "时限预警 / Due soon"
BREACHED_SUBJECT = "超时提醒 / Overdue"
ESCALATED_SUBJECT = "超期未办结升级 / Unresolved, raised to major"
RESULT_SUBJECT = "投诉处理结果 / The result of your complaint"
# The clocks by the words staff use (config: clocks.definitions); others show their name.
CLOCK_NAMES = {
    "accept": ("受理", "acceptance"),
    "first_contact": ("首次联系投诉人", "first contact with the complainant"),
    "handle": ("办理", "handling"),
    "feedback": ("反馈结果", "feeding back the result"),
    "callback": ("回访", "the satisfaction callback"),
    "referral": ("转办工单办结时限", "the referring order's deadline"),
}


@dataclass(frozen=True)
class TicketFacts:
    """What the mails say about a ticket, read just before sending (not when queued)."""

    number: str
    status: str
    department: str | None
    due_at: datetime | None
    reason: str | None = None  # why it was not accepted (不予受理) or is invalid (无效)


def _names(settings: ChannelSettings, key: str | None) -> tuple[str, str] | None:
    if key is None:
        return None
    try:
        department = settings.department(key)
    except KeyError:
        return ("承办部门", "responsible department")
    return (department.name, department.name_en)


def _message(
    server: OutboundSmtp,
    *,
    recipient: str,
    subject: str,
    message_id: str,
    now: datetime,
    auto: str,
) -> EmailMessage:
    message = EmailMessage()
    local, _, domain = server.from_address.rpartition("@")
    message["From"] = Address(display_name=server.from_name or "", username=local, domain=domain)
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = auto
    message["X-Auto-Response-Suppress"] = "All"
    return message


def acknowledgement(
    settings: ChannelSettings,
    server: OutboundSmtp,
    *,
    recipient: str,
    message_id: str,
    ticket: TicketFacts,
    progress_url: str | None,
    in_reply_to: str | None,
    reply_to: str | None,
    now: datetime,
) -> EmailMessage:
    """The 受理回执: the number, what happens next and by when, the progress link, the
    hotline, and that a reply (number kept in the subject) adds to the complaint."""
    org = settings.organisation
    zone = ZoneInfo(org.timezone)
    refused = ticket.status in ("rejected", "invalid")
    subject = ACK_SUBJECT
    if refused:
        subject = REFUSED_SUBJECT if ticket.status == "rejected" else INVALID_SUBJECT
    message = _message(
        server,
        recipient=recipient,
        subject=f"[{ticket.number}] {subject}",
        message_id=message_id,
        now=now,
        auto="auto-replied",
    )
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    if reply_to:
        message["Reply-To"] = reply_to
    names = _names(settings, ticket.department)
    limit = settings.time_limits.handle[settings.routing.default_severity]
    due = ticket.due_at if ticket.status in OPEN_STATUSES else None
    zh = [
        "您好：",
        "",
        f"您的投诉已受理，投诉编号：{ticket.number}。",
        f"我们已将您的投诉转交{names[0]}办理。" if names else "我们将把您的投诉转交责任部门办理。",
        f"办理时限：{format_when(due, zone, 'zh')}前办结并答复您。"
        if due
        else f"我们将在{format_limit(limit, 'zh')}内办结并答复您。",
    ]
    en = [
        "Dear complainant,",
        "",
        f"Your complaint has been received and registered under number {ticket.number}.",
        f"It has been passed to the {names[1]} for handling."
        if names
        else "It will be passed to the responsible department for handling.",
        f"We will handle it and reply to you by {format_when(due, zone, 'en')}."
        if due
        else f"We will handle it and reply to you within {format_limit(limit, 'en')}.",
    ]
    if refused:
        zh, en = _refusal(ticket)
    if progress_url:
        zh.append(f"查询办理进度：{progress_url}")
        en.append(f"Follow its progress: {progress_url}")
    zh.append(f"如有疑问，请拨打服务热线 {org.hotline}。")
    en.append(f"Questions? Call our hotline {org.hotline}.")
    if reply_to:
        zh.append("如需补充投诉内容，请直接回复本邮件（请保留邮件主题中的投诉编号）。")
        en.append("To add to your complaint, reply to this mail (keep the number in the subject).")
    else:
        zh.append("本邮件由系统自动发送，请勿回复。")
        en.append("This mail was sent automatically; replies are not read.")
    zh += ["", org.name]
    en += ["", org.name_en]
    message.set_content("\n".join([*zh, "", "-" * 40, "", *en]) + "\n", charset="utf-8")
    return message


def _refusal(ticket: TicketFacts) -> tuple[list[str], list[str]]:
    """The opening of a 不予受理 / 无效 answer: recorded under its number, and why."""
    reason = ticket.reason or "不符合受理条件 (it does not meet the conditions for handling)"
    if ticket.status == "rejected":
        zh_what, en_what = "不予受理", "cannot be accepted for handling"
    else:
        zh_what, en_what = "无法作为有效投诉办理", "cannot be handled as a valid complaint"
    zh = [
        "您好：",
        "",
        f"您的投诉已登记，投诉编号：{ticket.number}。",
        f"经审核，您的投诉{zh_what}，原因：{reason}。",
        "如对此有异议或有新的情况，请与我们联系说明。",
    ]
    en = [
        "Dear complainant,",
        "",
        f"Your complaint has been recorded under number {ticket.number}.",
        f"It {en_what}. Reason: {reason}.",
        "If you disagree or have new facts, please tell us.",
    ]
    return zh, en


def urge_notice(
    settings: ChannelSettings,
    server: OutboundSmtp,
    *,
    recipient: str,
    message_id: str,
    department: str,
    ticket: TicketFacts,
    urged_at: datetime | None,
    now: datetime,
) -> EmailMessage:
    """The 催办 notice to a department's mailbox: the number and the deadline, nothing else
    about the complaint or the person (the department reads the ticket in the system)."""
    zone = ZoneInfo(settings.organisation.timezone)
    message = _message(
        server,
        recipient=recipient,
        subject=f"[{ticket.number}] {URGE_SUBJECT}",
        message_id=message_id,
        now=now,
        auto="auto-generated",
    )
    name, name_en = _names(settings, department) or ("承办部门", "responsible department")
    when_zh = f"（{format_when(urged_at, zone, 'zh')}）" if urged_at else ""
    when_en = f" ({format_when(urged_at, zone, 'en')})" if urged_at else ""
    zh = [
        f"{name}：",
        "",
        f"投诉 {ticket.number} 的投诉人再次联系我们催办{when_zh}。",
        f"该投诉的办理时限为 {format_when(ticket.due_at, zone, 'zh')}，请尽快办理。"
        if ticket.due_at
        else "请尽快办理。",
        "投诉详情请登录投诉受理系统查看，本邮件不含投诉内容。",
    ]
    en = [
        f"To the {name_en},",
        "",
        f"The complainant of complaint {ticket.number} has contacted us again to urge its"
        f" handling (催办){when_en}.",
        f"It is due by {format_when(ticket.due_at, zone, 'en')}; please deal with it promptly."
        if ticket.due_at
        else "Please deal with it promptly.",
        "Read the complaint in the complaint system; this mail carries none of its content.",
    ]
    org = settings.organisation
    zh += ["", org.name]
    en += ["", org.name_en]
    message.set_content("\n".join([*zh, "", "-" * 40, "", *en]) + "\n", charset="utf-8")
    return message


@dataclass(frozen=True)
class DispatchFacts:
    """What a dispatch notice may say beyond the ticket's number and deadline: the matter and,
    unless the complainant asked for confidentiality, who to contact (the department owns
    the first contact with the complainant from here, often within 24 hours)."""

    subject: str
    category: str
    complainant_name: str | None
    complainant_phone: str | None


def dispatch_notice(
    settings: ChannelSettings,
    server: OutboundSmtp,
    *,
    recipient: str,
    message_id: str,
    department: str,
    ticket: TicketFacts,
    matter: DispatchFacts,
    confidential: bool,
    now: datetime,
) -> EmailMessage:
    """The 派单通知 to a department's mailbox. A confidential complainant (是否保密) is never in
    it: not the name, not the phone, not the complaint's own words."""
    zone = ZoneInfo(settings.organisation.timezone)
    message = _message(
        server,
        recipient=recipient,
        subject=f"[{ticket.number}] {DISPATCH_SUBJECT}",
        message_id=message_id,
        now=now,
        auto="auto-generated",
    )
    name, name_en = _names(settings, department) or ("承办部门", "responsible department")
    category = settings.category(matter.category)
    category_zh, category_en = (category.name, category.name_en) if category else ("", "")
    due_zh = format_when(ticket.due_at, zone, "zh") if ticket.due_at else None
    due_en = format_when(ticket.due_at, zone, "en") if ticket.due_at else None
    zh = [f"{name}：", "", f"投诉 {ticket.number}（{category_zh}）已派至贵部门办理。"]
    en = [
        f"To the {name_en},",
        "",
        f"Complaint {ticket.number} ({category_en}) is yours to handle.",
    ]
    if due_zh and due_en:
        zh.append(f"办理时限：{due_zh}。")
        en.append(f"It is due by {due_en}.")
    if confidential:
        zh.append("投诉人要求保密：请通过投诉受理系统与客服中心联系投诉人，本邮件不含投诉人信息。")
        en.append(
            "The complainant asked for confidentiality: contact them through the complaint"
            " system and the service centre; this mail carries nothing about them."
        )
    else:
        zh.append(f"事项：{matter.subject}")
        en.append(f"Matter: {matter.subject}")
        who = "，".join(p for p in (matter.complainant_name, matter.complainant_phone) if p)
        if who:
            zh.append(f"投诉人：{who}")
            en.append(f"Complainant: {who}")
    zh.append("投诉详情请登录投诉受理系统查看。")
    en.append("Read the complaint in the complaint system.")
    org = settings.organisation
    zh += ["", org.name]
    en += ["", org.name_en]
    message.set_content("\n".join([*zh, "", "-" * 40, "", *en]) + "\n", charset="utf-8")
    return message


def clock_notice(
    settings: ChannelSettings,
    server: OutboundSmtp,
    *,
    recipient: str,
    message_id: str,
    department: str,
    ticket: TicketFacts,
    clock: str,
    due_at: datetime | None,
    breached: bool,
    now: datetime,
    escalated_after: str | None = None,
) -> EmailMessage:
    """A clock is due soon or past due, or (``escalated_after``) the complaint is unresolved
    that long and now major: the number, which limit and when, nothing about the complaint
    or the person (like the urge notice: departmental mailboxes are shared)."""
    zone = ZoneInfo(settings.organisation.timezone)
    subject = BREACHED_SUBJECT if breached else DUE_SOON_SUBJECT
    message = _message(
        server,
        recipient=recipient,
        subject=f"[{ticket.number}] {ESCALATED_SUBJECT if escalated_after else subject}",
        message_id=message_id,
        now=now,
        auto="auto-generated",
    )
    name, name_en = _names(settings, department) or ("承办部门", "responsible department")
    what_zh, what_en = CLOCK_NAMES.get(clock, (clock, clock))
    handling, handling_en = _names(settings, ticket.department) or ("", "")
    when_zh = format_when(due_at, zone, "zh") if due_at else "（未知）"
    when_en = format_when(due_at, zone, "en") if due_at else "(unknown)"
    if breached:
        line_zh = (
            f"投诉 {ticket.number}（承办：{handling}）的{what_zh}时限 {when_zh} 已过，尚未完成。"
        )
        line_en = (
            f"The time limit for {what_en} on complaint {ticket.number} (handled by"
            f" {handling_en}) ran out at {when_en} and it is not done."
        )
    else:
        line_zh = f"投诉 {ticket.number}（承办：{handling}）的{what_zh}时限 {when_zh} 即将到期。"
        line_en = (
            f"The time limit for {what_en} on complaint {ticket.number} (handled by"
            f" {handling_en}) runs out at {when_en}."
        )
    zh = [f"{name}：", "", line_zh, "投诉详情请登录投诉受理系统查看，本邮件不含投诉内容。"]
    en = [
        f"To the {name_en},",
        "",
        line_en,
        "Read the complaint in the complaint system; this mail carries none of its content.",
    ]
    org = settings.organisation
    zh += ["", org.name]
    en += ["", org.name_en]
    message.set_content("\n".join([*zh, "", "-" * 40, "", *en]) + "\n", charset="utf-8")
    return message


BATCH_SUBJECT = "批量投诉 / Batch complaint"


def batch_notice(
    settings: ChannelSettings,
    server: OutboundSmtp,
    *,
    recipient: str,
    message_id: str,
    department: str,
    ticket: TicketFacts,
    batch: str,
    area: str,
    members: int,
    now: datetime,
) -> EmailMessage:
    """A batch (批量投诉) was opened: the coordinating office is told once, with the batch,
    the place, how many complaints and the first member's number; nothing about the people."""
    message = _message(
        server,
        recipient=recipient,
        subject=f"[{ticket.number}] {BATCH_SUBJECT}: {area}",
        message_id=message_id,
        now=now,
        auto="auto-generated",
    )
    name, name_en = _names(settings, department) or ("协调部门", "coordinating office")
    handling, handling_en = _names(settings, ticket.department) or ("", "")
    zh = [
        f"{name}：",
        "",
        f"{area} 已有 {members} 位不同的投诉人就同一事项投诉，已合并为批量投诉 {batch}"
        f"（首件 {ticket.number}，承办：{handling}），请按批量投诉紧急处理。",
        "后续同类投诉将自动并入该批。投诉详情请登录投诉受理系统查看，本邮件不含投诉内容。",
    ]
    en = [
        f"To the {name_en},",
        "",
        f"{members} different complainants have complained about the same matter in {area};"
        f" their complaints are now batch {batch} (first {ticket.number}, handled by"
        f" {handling_en}). Please treat it as urgent.",
        "Later complaints of the same matter join the batch. Read the complaints in the"
        " complaint system; this mail carries none of their content.",
    ]
    org = settings.organisation
    zh += ["", org.name]
    en += ["", org.name_en]
    message.set_content("\n".join([*zh, "", "-" * 40, "", *en]) + "\n", charset="utf-8")
    return message


def result_mail(
    settings: ChannelSettings,
    server: OutboundSmtp,
    *,
    recipient: str,
    message_id: str,
    ticket: TicketFacts,
    result: str,
    in_reply_to: str | None,
    reply_to: str | None,
    now: datetime,
) -> EmailMessage:
    """The result fed back (反馈) by mail: what was done, and what to do if they disagree;
    in the thread of their complaint when it came by mail."""
    org = settings.organisation
    message = _message(
        server,
        recipient=recipient,
        subject=f"[{ticket.number}] {RESULT_SUBJECT}",
        message_id=message_id,
        now=now,
        auto="auto-generated",
    )
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    if reply_to:
        message["Reply-To"] = reply_to
    zh = [
        "您好：",
        "",
        f"您的投诉（编号 {ticket.number}）已办理，处理结果如下：",
        "",
        result,
        "",
        f"如对处理结果不满意，请回复本邮件或拨打服务热线 {org.hotline}，我们将重新办理。"
        if reply_to
        else f"如对处理结果不满意，请拨打服务热线 {org.hotline}，我们将重新办理。",
    ]
    en = [
        "Dear complainant,",
        "",
        f"Your complaint {ticket.number} has been handled. The result (in Chinese above):",
        "",
        result,
        "",
        f"If you are not satisfied, reply to this mail or call our hotline {org.hotline}."
        if reply_to
        else f"If you are not satisfied, call our hotline {org.hotline}.",
    ]
    zh += ["", org.name]
    en += ["", org.name_en]
    message.set_content("\n".join([*zh, "", "-" * 40, "", *en]) + "\n", charset="utf-8")
    return message
