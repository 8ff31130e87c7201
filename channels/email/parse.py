"""Raw RFC 5322 bytes in, :class:`ParsedMail` out: the pure core of the email channel.

Shared by the SMTP listener and the IMAP poller; no I/O, no clock, no configuration. The caller
stores the raw bytes and each attachment's ``data`` in the blob store and builds the draft.

How a mail becomes text (issue 3 §3):

* the stdlib parser (``policy.default`` semantics) finds the MIME structure; every part is then
  decoded from its own bytes by :mod:`.charset`, never the whole message as UTF-8;
* headers are decoded from their raw source by :mod:`.headers` (RFC 2047, RFC 2231, 8-bit);
* ``multipart/alternative``: text/plain is preferred; the HTML alternative is used when there is
  no plain part or it is blank, and is rendered to text (:mod:`.html`), never kept as markup;
* a forwarded ``message/rfc822`` is kept as an ``.eml`` attachment AND its text is appended to
  the body under a "转发的邮件 / Forwarded message" marker; its own attachments are extracted;
* winmail.dat (TNEF) is unpacked; uuencoded blocks in text bodies become attachments;
* noise (auto-replies, bounces, delivery reports) is classified by :mod:`.noise`.

:func:`parse_mail` never raises: a message the parser cannot handle still yields a ParsedMail
with its top-level headers, the raw text decoded leniently and an ``unparseable`` defect, so the
listener can file it (or dead-letter it) with the reason instead of crashing. Nesting too deep
to walk is not such a failure: the tree is built only as deep as it is read (:mod:`.nesting`),
and the parts below are counted in one ``over limit`` defect.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.message import Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from typing import Final

from channels.email.attachments import ParsedAttachment
from channels.email.charset import DEFAULT_EXPECTED, decode_bytes, expected_charsets
from channels.email.headers import (
    decode_header,
    describe,
    message_id,
    message_ids,
    parse_addresses,
    parse_params,
    unfold,
    valid_address,
)
from channels.email.mime import (
    POLICY,
    Walker,
    first_header,
    ids_in_headers,
    parse_message,
    raw_headers,
)
from channels.email.noise import MailKind, ReportInfo, classify

__all__ = ["ParsedMail", "idempotency_key", "parse_mail"]


@dataclass(frozen=True, slots=True)
class ParsedMail:
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str
    from_name: str | None
    from_address: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: datetime | None
    """Always timezone-aware (a zone-less ``-0000`` Date is read as UTC)."""
    body_text: str
    attachments: tuple[ParsedAttachment, ...]
    charset_decisions: tuple[str, ...]
    """How parts and headers were decoded when the label was not simply right (no PII)."""
    defects: tuple[str, ...]
    """Structural problems: stdlib defect classes per part, our own ``unparseable: ...``."""
    kind: MailKind
    bounce_of: str | None
    """Message-ID of the original mail a bounce or delivery report is about, when found."""
    kind_reason: str | None = None
    """Why ``kind`` is not NORMAL: the header or pattern that decided (no PII)."""
    notes: tuple[str, ...] = ()
    """Other observations for the intake record: "winmail.dat unpacked", "uuencoded file"."""


_TRACE_HEADERS: Final = frozenset(
    {
        "received",
        "return-path",
        "delivered-to",
        "x-original-to",
        "x-received",
        "received-spf",
        "authentication-results",
        "arc-seal",
        "arc-message-signature",
        "arc-authentication-results",
        "x-envelope-from",
        "x-envelope-to",
    }
)


# --------------------------------------------------------------------------------------------
# The whole message.


def _charset_hint(msg: Message) -> str | None:
    """The first text part's charset: what raw 8-bit headers are most likely written in."""
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            _, params = parse_params(first_header(raw_headers(part), "content-type"))
            if "charset" in params:
                return str(params["charset"])
    return None


_MONTHS: Final = {
    m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)
}
# RFC 5322 §3.3 as nearly every client writes it: "Wed, 01 May 2024 09:11:58 +0800".
_DATE_RE: Final = re.compile(
    r"^\s*(?:[A-Z][a-z]{2},\s*)?(\d{1,2}) ([A-Z][a-z]{2}) (\d{4}) "
    r"(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\s*$"
)


def _date(raw: str | None, defects: list[str]) -> datetime | None:
    if not raw:
        return None
    match = _DATE_RE.match(raw)
    if (
        match is not None
        and match.group(2) in _MONTHS
        and match.group(8) + match.group(9) != "0000"
    ):
        day, month, year, hour, minute, second, sign, tz_hours, tz_minutes = match.groups()
        offset = timedelta(hours=int(tz_hours), minutes=int(tz_minutes))
        try:
            return datetime(
                int(year),
                _MONTHS[month],
                int(day),
                int(hour),
                int(minute),
                int(second),
                tzinfo=timezone(-offset if sign == "-" else offset),
            )
        except ValueError:
            pass  # 31 Feb and the like: let the stdlib parser have its say
    try:
        value = parsedate_to_datetime(unfold(raw).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append("message: unparseable Date")
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _addresses(values: list[str], hint: str | None) -> tuple[str, ...]:
    found = [address for _, address in parse_addresses(values, hint) if address]
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class _Envelope:
    """The top-level header fields: read from the header block alone, so that a body the
    parser cannot walk never costs the sender, the subject or the ids."""

    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str
    from_name: str | None
    from_address: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: datetime | None
    decisions: tuple[str, ...]
    defects: tuple[str, ...]
    notes: tuple[str, ...] = ()


# Where the sender is read from when the first From holds no valid address (issue 14 §7), in
# order: RFC 5322 §3.6.2 Sender, a further From (some mailers add one), Reply-To, and the
# Return-Path the delivering server wrote (the envelope sender, RFC 5321 §4.4).
_SENDER_FALLBACKS: Final = (
    ("sender", "Sender", slice(0, 1)),
    ("from", "a second From", slice(1, None)),
    ("reply-to", "Reply-To", slice(0, 1)),
    ("return-path", "Return-Path (the envelope sender)", slice(0, 1)),
)


def _sender(headers: dict[str, list[str]], hint: str | None) -> tuple[str, str, str | None]:
    """``(display name, address, note)``: the first valid address of From, else the fallbacks.

    The note says which header gave the address when it was not the first From; no address
    anywhere gives ``("", "", note)``, never a garbage one.
    """
    senders = parse_addresses(headers.get("from", [])[:1], hint)
    first = next(((n, a) for n, a in senders if valid_address(a)), None)
    if first is not None:
        return first[0], first[1], None
    why = "From header holds no valid address" if headers.get("from") else "no From header"
    for name, shown, which in _SENDER_FALLBACKS:
        found = parse_addresses(headers.get(name, [])[which], hint)
        taken = next(((n, a) for n, a in found if valid_address(a)), None)
        if taken is not None:
            return taken[0], taken[1], f"sender: {why}; address taken from {shown}"
    return "", "", f"sender: {why}, nor any other sender header"


def _envelope(headers: dict[str, list[str]], hint: str | None) -> _Envelope:
    subject = decode_header(first_header(headers, "subject"), hint)
    from_name, from_address, sender_note = _sender(headers, hint)
    if from_name.strip().lower() == from_address.lower():
        from_name = ""  # "bob@example.com <bob@example.com>" names nobody
    defects: list[str] = []
    date = _date(first_header(headers, "date"), defects)
    return _Envelope(
        message_id=message_id(first_header(headers, "message-id")),
        in_reply_to=next(iter(message_ids(first_header(headers, "in-reply-to"))), None),
        references=message_ids(" ".join(headers.get("references", []))),
        subject=str(subject),
        from_name=from_name.strip() or None,
        from_address=from_address or None,
        to=_addresses(headers.get("to", []), hint),
        cc=_addresses(headers.get("cc", []), hint),
        date=date,
        decisions=tuple(describe(note, "subject") for note in subject.notes),
        defects=tuple(defects),
        notes=(sender_note,) if sender_note else (),
    )


def _parse(raw: bytes) -> ParsedMail:
    msg = parse_message(raw)
    headers = raw_headers(msg)
    hint = None if raw.isascii() else _charset_hint(msg)
    envelope = _envelope(headers, hint)

    walker = Walker(hint)
    walker.walk(msg)
    defects = [*walker.defects, *envelope.defects]

    content_type = msg.get_content_type()
    report = (
        ReportInfo(walker.report_type, tuple(walker.report_actions))
        if walker.report_type is not None
        else None
    )
    verdict = classify(
        headers,
        content_type=content_type,
        subject=envelope.subject,
        from_address=envelope.from_address,
        report=report,
        has_attached_message=walker.attached_message,
    )
    bounce_of = None
    if verdict.kind in (MailKind.BOUNCE, MailKind.DELIVERY_REPORT):
        own = envelope.message_id
        bounce_of = next((mid for mid in walker.original_ids if mid != own), None)
        if bounce_of is None:
            bounce_of = next(
                (mid for mid in ids_in_headers("\n".join(walker.body)) if mid != own), None
            )

    body = "\n\n".join(text.strip() for text in walker.body if text.strip())
    return ParsedMail(
        message_id=envelope.message_id,
        in_reply_to=envelope.in_reply_to,
        references=envelope.references,
        subject=envelope.subject,
        from_name=envelope.from_name,
        from_address=envelope.from_address,
        to=envelope.to,
        cc=envelope.cc,
        date=envelope.date,
        body_text=body,
        attachments=tuple(walker.attachments),
        charset_decisions=tuple(dict.fromkeys((*envelope.decisions, *walker.decisions))),
        defects=tuple(defects),
        kind=verdict.kind,
        bounce_of=bounce_of,
        kind_reason=verdict.reason,
        notes=(*envelope.notes, *walker.notes),
    )


_SUBJECT_LINE_RE: Final = re.compile(
    rb"^subject:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE
)


def _bare_envelope(raw: bytes) -> _Envelope:
    """The subject found by pattern: all that is left when even the header block fails."""
    subject = ""
    match = _SUBJECT_LINE_RE.search(raw[:16384])
    if match is not None:
        try:
            subject = str(decode_header(match.group(1).decode("ascii", "surrogateescape")))
        except Exception:  # the fallback must not fail on the same input
            subject = ""
    return _Envelope(None, None, (), subject, None, None, (), (), None, (), ())


def _unparseable(raw: bytes, error: BaseException) -> ParsedMail:
    """What is left of a mail the parser could not handle: its headers, its text decoded
    leniently. The header block alone (``headersonly``: no MIME structure) still names the
    sender and the Message-ID, so the mail can be acknowledged and deduplicated."""
    try:
        head = BytesParser(policy=POLICY).parsebytes(raw, headersonly=True)
        envelope = _envelope(raw_headers(head), None)
    except Exception:  # the fallback must not fail on the same input
        envelope = _bare_envelope(raw)
    decoded = decode_bytes(raw, None)
    decisions = list(envelope.decisions)
    if decoded.note:
        decisions.append(describe(decoded.note, "raw message"))
    return ParsedMail(
        message_id=envelope.message_id,
        in_reply_to=envelope.in_reply_to,
        references=envelope.references,
        subject=envelope.subject,
        from_name=envelope.from_name,
        from_address=envelope.from_address,
        to=envelope.to,
        cc=envelope.cc,
        date=envelope.date,
        body_text=decoded.text.replace("\r\n", "\n"),
        attachments=(),
        charset_decisions=tuple(decisions),
        defects=(f"unparseable: {type(error).__name__}", *envelope.defects),
        kind=MailKind.NORMAL,
        bounce_of=None,
        notes=envelope.notes,
    )


def parse_mail(raw: bytes, expected: Sequence[str] = DEFAULT_EXPECTED) -> ParsedMail:
    """Parse one raw message. Never raises (see the module docstring).

    ``expected``: the charsets unlabelled 8-bit text is tried in first (config
    ``email.expected_charsets``); each such choice is in ``charset_decisions``.
    """
    with expected_charsets(expected):
        try:
            return _parse(raw)
        except Exception as error:  # any input at all must give a ParsedMail, never a crash
            return _unparseable(raw, error)


# --------------------------------------------------------------------------------------------
# Identity.

_MAX_KEY: Final = 400


def _hashable_content(raw: bytes) -> bytes:
    """The raw message without transit headers, with LF line ends and no trailing ones.

    The same mail fetched over IMAP carries the Received / Return-Path / Delivered-To headers
    the receiving server added, and possibly different line ends, than the copy that came in
    over SMTP; neither may make it look like a different mail.
    """
    text = raw.replace(b"\r\n", b"\n")
    end = text.find(b"\n\n")
    head, rest = (text, b"") if end < 0 else (text[: end + 1], text[end + 1 :])
    kept: list[bytes] = []
    skipping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower().decode("ascii", "replace")
        skipping = name in _TRACE_HEADERS or name.startswith(("x-spam", "x-virus"))
        if not skipping:
            kept.append(line)
    # Trailing line ends differ by transport (an SMTP client's terminating CRLF, an IMAP
    # server's storage) without making it a different mail.
    return (b"\n".join(kept) + rest).rstrip(b"\r\n")


def idempotency_key(raw: bytes, parsed: ParsedMail) -> str:
    """The mail's identity for deduplication: its Message-ID, else a content hash.

    ``<id@host>`` as written; ``sha256:<hex>`` of the content without transit headers when
    there is no Message-ID; ``message-id-sha256:<hex>`` for a Message-ID too long to be a key.
    """
    if parsed.message_id:
        if len(parsed.message_id) <= _MAX_KEY:
            return parsed.message_id
        return (
            "message-id-sha256:"
            + hashlib.sha256(parsed.message_id.encode("utf-8", "surrogateescape")).hexdigest()
        )
    return "sha256:" + hashlib.sha256(_hashable_content(raw)).hexdigest()
