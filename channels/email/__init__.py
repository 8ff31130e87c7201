"""The email channel's parsing core: pure functions over raw RFC 5322 bytes.

The SMTP listener and the IMAP poller both call :func:`parse_mail` on the raw bytes they
stored, :func:`idempotency_key` for the draft's ``source_key``, :func:`complainant` for the
draft's complainant, and drop mail whose ``kind`` is not NORMAL (recording it instead).
"""

from channels.email.attachments import ParsedAttachment
from channels.email.complainant import (
    SubjectConvention,
    body_phones,
    complainant,
    complainant_from,
    split_subject,
)
from channels.email.noise import MailKind
from channels.email.parse import ParsedMail, idempotency_key, parse_mail

__all__ = [
    "MailKind",
    "ParsedAttachment",
    "ParsedMail",
    "SubjectConvention",
    "body_phones",
    "complainant",
    "complainant_from",
    "idempotency_key",
    "parse_mail",
    "split_subject",
]
