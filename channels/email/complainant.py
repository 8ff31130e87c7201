"""Who is complaining: the subject convention, else the sender's display name; their phone.

Organisations ask complainants to write the subject as "Complaint Matter + Your Name"
(投诉事项+姓名), and people write it in every variation: full-width ＋ and ：, extra spaces,
"投诉：张三", a category in brackets after the name, "【紧急】" in front, "转发：" or "Re:" from
their client. :func:`split_subject` reads all of those; it returns no name rather than a wrong
one (a sentence, an address, a number is never a name), and then the From display name is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ingest.draft import Complainant
from ingest.phone import PhoneKind, PhoneNumber, find_phones

if TYPE_CHECKING:
    from channels.email.parse import ParsedMail

__all__ = ["SubjectConvention", "body_phones", "complainant", "complainant_from", "split_subject"]


@dataclass(frozen=True, slots=True)
class SubjectConvention:
    matter: str | None
    name: str | None
    anonymous: bool = False
    """The complainant wrote 匿名 / anonymous where the name goes."""

    @property
    def follows(self) -> bool:
        return self.name is not None or self.anonymous


_NONE: Final = SubjectConvention(None, None)

_FOLD: Final = str.maketrans({"＋": "+", "﹢": "+", "：": ":", "\u3000": " ", "\xa0": " "})
_SPACES_RE: Final = re.compile(r"\s+")
# Reply and forward prefixes clients add, possibly several: "Re: 转发: Fw:" ...
_PREFIX_RE: Final = re.compile(
    r"^\s*(?:(?:re|fw|fwd|aw|wg|sv|vs|回复|回覆|答复|答覆|转发|轉發|转寄|轉寄)\s*(?:\[\d+\])?\s*:"
    r"|[\[【]\s*(?:转发|轉發|fwd?|回复)\s*[\]】])\s*",
    re.IGNORECASE,
)
# "投诉：张三". Only known labels: "关于：小区噪音" must not make 小区噪音 a name.
_COLON_RE: Final = re.compile(
    r"^(?P<label>投诉事项|投诉内容|投诉|投诉人|举报|举报人|反映|反映人|来信人|姓名|署名|"
    r"complaint|complainant|name|from)\s*:\s*(?P<rest>.+)$",
    re.IGNORECASE,
)
_NAME_LABELS: Final = frozenset({"投诉人", "举报人", "反映人", "来信人", "姓名", "署名"})
_NAME_LABELS_EN: Final = frozenset({"complainant", "name", "from"})
# Where a name ends and a trailing category begins: brackets and list punctuation always;
# a hyphen only after a Han character ("余琍-路灯损坏"), or with spaces around it, since Latin
# names have hyphens ("Mary-Jane Smith").
_TAIL_RE: Final = re.compile(
    r"[（(【\[〔<《，,；;、/|]|\s+[-－—–]+\s*|(?<=[\u3400-\u9fff])\s*[-－—–]"
)
_ANONYMOUS: Final = frozenset(
    {"匿名", "匿名者", "匿名用户", "不愿透露", "不便透露", "anonymous", "anon"}
)
# Han names are one to six characters; minority names join parts with a middle dot
# (阿卜杜拉·买买提). Longer runs of Han characters are sentences, not names.
_HAN: Final = r"[\u3400-\u9fff\U00020000-\U0003134f]"
_HAN_NAME_RE: Final = re.compile(
    rf"^(?:{_HAN}{{1,6}}|{_HAN}{{1,10}}(?:[·•・]{_HAN}{{1,10}}){{1,3}})$"
)
_HAN_SPACED_RE: Final = re.compile(rf"(?<={_HAN}) (?={_HAN})")
_LATIN_NAME_RE: Final = re.compile(
    r"^[^\W\d_][^\W\d_'.\-]*(?:[ '.\-][^\W\d_][^\W\d_'.\-]*){0,4}\.?$"
)
_PHONE_LIKE_RE: Final = re.compile(r"^[\d\s()+\-]{5,}$")


def _clean(subject: str) -> str:
    text = _SPACES_RE.sub(" ", subject.translate(_FOLD)).strip()
    while True:
        stripped = _PREFIX_RE.sub("", text, count=1)
        if stripped == text:
            return text
        text = stripped.strip()


def _name_and_tail(text: str) -> tuple[str, str]:
    text = text.strip()
    match = _TAIL_RE.search(text)
    if match is None or match.start() == 0:
        name, tail = text, ""
    else:
        name, tail = text[: match.start()].strip(), text[match.start() :].strip()
    return _HAN_SPACED_RE.sub("", name), tail  # "张 三" is 张三


def _is_name(text: str) -> bool:
    if not text or len(text) > 40:
        return False
    if re.search(_HAN, text):
        return _HAN_NAME_RE.match(text) is not None
    return _LATIN_NAME_RE.match(text) is not None


def _result(label: str, rest: str, *, label_is_matter: bool = True) -> SubjectConvention:
    """The convention read from ``label`` (the matter, or a name label) and ``rest``."""
    name, tail = _name_and_tail(rest)
    base = label.strip(" +:-") if label_is_matter else ""
    if base and tail:
        matter: str | None = base + tail  # "投诉事项（噪音扰民）", as written
    else:
        matter = base or tail.strip("（）()【】[]〔〕 -－—–") or None
    if name.casefold() in _ANONYMOUS:
        return SubjectConvention(matter, None, anonymous=True)
    if not _is_name(name):
        return _NONE
    return SubjectConvention(matter, name)


def split_subject(subject: str) -> SubjectConvention:
    """Matter and name of a subject written "Matter + Name" (or "投诉：Name"), else nothing."""
    text = _clean(subject)
    if not text:
        return _NONE
    if "+" in text:
        segments = text.split("+")
        # "噪音+张三+13812345678": a phone number at the end is not the name.
        while len(segments) > 1 and _PHONE_LIKE_RE.match(segments[-1].strip()):
            segments.pop()
        if len(segments) > 1:
            found = _result("+".join(segments[:-1]).strip(), segments[-1])
            if found.follows:
                return found
    match = _COLON_RE.match(text)
    if match is not None:
        label = match.group("label")
        is_name_label = label in _NAME_LABELS or label.lower() in _NAME_LABELS_EN
        return _result(label, match.group("rest"), label_is_matter=not is_name_label)
    return _NONE


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
