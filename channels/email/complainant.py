"""Who is complaining: the subject convention (:mod:`.subject`), else the sender's display
name; their address and phone.

The subject convention returns no name rather than a wrong one (a sentence, an address, a
number, a phrase is never a name), and then the From display name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from channels.email.subject import SubjectConvention, split_subject
from ingest.draft import Complainant
from ingest.phone import PhoneKind, PhoneNumber, find_phones

if TYPE_CHECKING:
    from channels.email.parse import ParsedMail

__all__ = ["SubjectConvention", "body_phones", "complainant", "complainant_from", "split_subject"]


def _display_name(parsed: ParsedMail) -> str | None:
    name = (parsed.from_name or "").strip().strip("\"'").strip()
    if not name or "@" in name or len(name) > 200:
        return None
    return name


def complainant_from(parsed: ParsedMail) -> tuple[str | None, str | None]:
    """``(name, matter)``: from the subject convention, else the From display name.

    A complainant who wrote 匿名 (anonymous) in the name slot gets no name, not their
    display name: they asked not to be named.
    """
    convention = split_subject(parsed.subject)
    if convention.anonymous:
        return None, convention.matter
    return convention.name or _display_name(parsed), convention.matter


def body_phones(parsed: ParsedMail) -> list[PhoneNumber]:
    """Callable phone numbers in the body, first occurrence first (the phone channel's rules)."""
    return find_phones(parsed.body_text) if parsed.body_text else []


def complainant(parsed: ParsedMail) -> Complainant:
    """The draft's complainant: name by the convention, the sender's address, the first
    mobile number in the body (else the first number of any kind)."""
    name, _ = complainant_from(parsed)
    phones = body_phones(parsed)
    phone = next((p for p in phones if p.kind is PhoneKind.MOBILE), phones[0] if phones else None)
    # Lower-cased: repeat and storm lookups compare stored addresses as they are.
    sender = (parsed.from_address or "").strip().lower()
    address = sender if sender and len(sender) <= 320 else None
    return Complainant(
        name=name,
        phone=phone.e164 if phone else None,
        phone_raw=phone.raw if phone else None,
        email=address,
        anonymous=split_subject(parsed.subject).anonymous,
    )
