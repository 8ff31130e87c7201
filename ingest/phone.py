"""The one phone-number normaliser every channel uses (hotline caller ID, email bodies, web form).

Everything goes through :func:`normalise_phone` so that a complainant who calls, e-mails and
fills in the web form ends up with the same E.164 string, and duplicate detection works across
channels. The rules, in the order they are applied:

* the raw string is always kept exactly as given (``PhoneNumber.raw`` / ``Complainant.phone_raw``);
* nothing is ever "repaired": letters are never read as keypad digits, a missing area code is
  never filled in from the organisation's own city, a 10-digit mobile is never padded. A number
  we cannot place keeps ``e164=None`` and says why in ``flags``;
* withheld callers (匿名, unknown, "0", blank, ...) are ANONYMOUS, not INVALID, because the
  hotline must still accept the complaint and knows it cannot call back;
* short service numbers (95598, 12345, 110, ...) are SERVICE with no E.164 form: outside China
  "+8695598" reaches nobody, and storing it would suggest a callable number.

Full numbers are personal data: use :attr:`PhoneNumber.display` or :func:`mask_phone` anywhere a
number could reach a log line or a screen that is not the case file itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

import phonenumbers
from phonenumbers import (
    CountryCodeSource,
    Leniency,
    NumberParseException,
    PhoneNumberFormat,
    PhoneNumberMatcher,
    PhoneNumberType,
    ValidationResult,
)

__all__ = ["PhoneKind", "PhoneNumber", "find_phones", "mask_phone", "normalise_phone"]


class PhoneKind(StrEnum):
    MOBILE = "mobile"
    LANDLINE = "landline"
    SERVICE = "service"
    TOLL_FREE = "toll_free"
    ANONYMOUS = "anonymous"
    INVALID = "invalid"
    OTHER = "other"


@dataclass(frozen=True)
class PhoneNumber:
    raw: str
    """Exactly as given (``""`` for ``None``), so an agent can still read what the caller said."""
    e164: str | None
    """``+8613812345678``; ``None`` whenever the number cannot be called as it stands."""
    kind: PhoneKind
    extension: str | None
    region: str | None
    """ISO region of the number ("CN", "HK", ...), ``None`` when unknown."""
    flags: tuple[str, ...]

    @property
    def display(self) -> str:
        """Masked form for logs and UIs: ``+86 138****5678``. Never the full number.

        Short service numbers are the one exception: they are public (95598 is printed on every
        electricity bill), not personal data, and masking a five-digit code leaves nothing
        useful to an agent who needs to see which hotline forwarded the call.
        """
        if self.kind is PhoneKind.ANONYMOUS:
            return "(anonymous)"
        main = _strip_extension(_LABEL_RE.sub("", _fold(self.raw).strip(), count=1))[0]
        if self.kind is PhoneKind.SERVICE:
            shown = _digits(main)
            if shown.startswith("0086"):
                shown = shown[4:]
            elif main.lstrip(" (").startswith("+") and shown.startswith("86"):
                shown = shown[2:]
        elif self.e164 is not None:
            shown = _mask_e164(self.e164)
        else:
            digits = _digits(main)
            if "dash_extension" in self.flags and self.extension:
                digits = digits.removesuffix(self.extension)
            shown = _mask_digit_run(digits) or "(invalid)"
        if self.extension:
            shown += f" ext. {self.extension}"
        return shown


# --------------------------------------------------------------------------------------------
# Text folding. One character in, one character out: find_phones/mask_phone report spans in
# the caller's original text, so folding must never change string length (NFKC can).

_FOLD_TABLE: Final[dict[int, str]] = {
    **{0xFF01 + i: chr(0x21 + i) for i in range(94)},  # full-width ASCII: ０-９ ＋ （ ） － ＃ ...
    0x3000: " ",  # ideographic space
    0x00A0: " ",
    0x2002: " ",
    0x2003: " ",
    0x2009: " ",
    0x202F: " ",
    0x2010: "-",
    0x2011: "-",
    0x2012: "-",
    0x2013: "-",
    0x2014: "-",
    0x2015: "-",
    0x2212: "-",
    0xFE63: "-",
    0x30FC: "-",
    0xFE62: "+",
    0x00B7: ".",  # middle dot, sometimes used as a group separator
    0x3002: ".",
}


def _fold(text: str) -> str:
    return text.translate(_FOLD_TABLE)


def _digits(text: str) -> str:
    # [0-9] on purpose: str.isdigit() and \d also accept superscripts and other scripts' digits.
    return "".join(ch for ch in _fold(text) if "0" <= ch <= "9")


# --------------------------------------------------------------------------------------------
# Anonymous / withheld callers.

_ANONYMOUS_WORDS: Final[frozenset[str]] = frozenset(
    {
        "匿名",
        "未知",
        "未知号码",
        "隐藏",
        "隐藏号码",
        "号码隐藏",
        "私人号码",
        "未显示",
        "无",
        "无号码",
        "不详",
        "保密",
        "unknown",
        "unknown number",
        "anonymous",
        "anon",
        "private",
        "private number",
        "withheld",
        "number withheld",
        "blank",
        "restricted",
        "unavailable",
        "blocked",
        "none",
        "null",
        "n/a",
    }
)

# Only separators and no digits: "-", "( )", "+" ... nothing was given.
_EMPTY_RE: Final = re.compile(r"^[\s\-.()+/_*]*$")
# CTI systems put "0", "00" or "0000000" in the caller-ID field when the number is withheld.
_ZEROS_RE: Final = re.compile(r"^[\s\-.()]*0[0\s\-.()]*$")


def _anonymous(raw: str, flag: str) -> PhoneNumber:
    return PhoneNumber(raw, None, PhoneKind.ANONYMOUS, None, None, ("anonymous", flag))


# --------------------------------------------------------------------------------------------
# Extensions and labels.

# 转 / 转分机 / 分机(号) / 内线 / ext / ext. / extension / x / # / ;ext= followed by the digits, at
# the end of the string. "转分机" before "转" so the longer marker wins.
_EXT_MARKER: Final = r"(?:转分机|分机号?|转|内线|ext(?:ension)?\.?|;\s*ext=|x|#)"
_EXT_RE: Final = re.compile(
    r"\s*[,;]?\s*" + _EXT_MARKER + r"\s*[:=]?\s*([0-9]{1,6})\s*#?\s*$", re.IGNORECASE
)
# Labels people type into a single phone field ("Tel: ...", "手机：..."); the tel: URI scheme.
_LABEL_RE: Final = re.compile(
    r"^\s*(?:telephone|tel|phone|mobile|mob|电话|手机|座机|固话|联系电话|来电号码|号码)\s*(?:号码)?\s*[:：]?\s*",
    re.IGNORECASE,
)
# What a bare phone number may consist of once labels and the extension are gone.
_PHONE_CHARS_RE: Final = re.compile(r"^\s*(?:\(\s*)?\+?[0-9\s().\-]*$")
# "010-12345678-808": a trailing dash group after a complete landline is an extension.
_DASH_EXT_RE: Final = re.compile(r"^(.*[0-9)])\s*-\s*([0-9]{1,5})$")


def _strip_extension(text: str) -> tuple[str, str | None]:
    match = _EXT_RE.search(text)
    if match is None or not _digits(text[: match.start()]):
        return text, None
    return text[: match.start()], match.group(1)


# --------------------------------------------------------------------------------------------
# China-specific shapes phonenumbers cannot decide for us.

# 110/119/120/122..., 100xx carriers, 12xxx government hotlines (12345, 12315, 12306),
# 95xxx(x) national service numbers (95598), 96xxx(x) local public-service numbers (96116).
# phonenumbers' short-number metadata is consulted first; this only covers what it lacks
# (11185 China Post, for example).
_CN_SERVICE_RE: Final = re.compile(r"^(?:1[0-2][0-9]|1[0-2][0-9]{3}|9[56][0-9]{3,4})$")
# Chinese mobiles: 11 digits starting 1[3-9]. No area code starts with 1 except Beijing's 10,
# so any national number starting 1[3-9] is a mobile and its only possible length is 11.
_CN_MOBILE_SHAPE_RE: Final = re.compile(r"^1[3-9][0-9]*$")
# A local landline number without its area code: 7 or 8 digits, never starting 0 or 1.
_CN_LOCAL_RE: Final = re.compile(r"^[2-9][0-9]{6,7}$")


def _is_short_service(national: str, region: str) -> bool:
    if not 3 <= len(national) <= 6:
        return False
    try:
        parsed = phonenumbers.parse(national, region)
    except NumberParseException:
        return False
    if phonenumbers.is_valid_short_number_for_region(parsed, region):
        return True
    return region == "CN" and _CN_SERVICE_RE.match(national) is not None


def _cn_national(digits: str, has_plus: bool, default_region: str) -> str | None:
    """The national digits when the number is Chinese and written without area-code ambiguity.

    ``None`` when the number carries another country code (or, without one, when the default
    region is not CN): the Chinese short-number and local-number rules must not apply then.
    """
    if has_plus:
        return digits[2:] if digits.startswith("86") else None
    if digits.startswith("0086"):
        return digits[4:]
    if digits.startswith("00"):
        return None
    return digits if default_region == "CN" else None


# --------------------------------------------------------------------------------------------
# Building results.

_TYPE_KIND: Final[dict[int, PhoneKind]] = {
    PhoneNumberType.MOBILE: PhoneKind.MOBILE,
    PhoneNumberType.FIXED_LINE: PhoneKind.LANDLINE,
    PhoneNumberType.TOLL_FREE: PhoneKind.TOLL_FREE,
    # 400 numbers are shared-cost (the caller pays a local rate), but to the intake desk they
    # are the same thing as 800: a company's published hotline. Flagged "shared_cost" below.
    PhoneNumberType.SHARED_COST: PhoneKind.TOLL_FREE,
}


def _dedupe(flags: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(flags))


def _from_parsed(
    raw: str,
    parsed: phonenumbers.PhoneNumber,
    default_region: str,
    extension: str | None,
    flags: list[str],
) -> PhoneNumber:
    """A PhoneNumber from a number phonenumbers has already declared valid."""
    number_type = phonenumbers.number_type(parsed)
    # FIXED_LINE_OR_MOBILE (+1, many others), VOIP, UAN, pager, premium rate: nothing the
    # desk treats differently, so OTHER; the phonenumbers type name goes into the flags.
    kind = _TYPE_KIND.get(number_type, PhoneKind.OTHER)
    region = phonenumbers.region_code_for_number(parsed)
    flags = list(flags)
    if number_type == PhoneNumberType.SHARED_COST:
        flags.append("shared_cost")
    if kind is PhoneKind.OTHER:
        flags.append(_type_name(number_type))
    if region != default_region:
        flags.append("foreign")
    if parsed.country_code_source == CountryCodeSource.FROM_DEFAULT_COUNTRY:
        flags.append("assumed_region")
    e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    return PhoneNumber(raw, e164, kind, extension or parsed.extension, region, _dedupe(flags))


def _type_name(number_type: int) -> str:
    for name, value in vars(PhoneNumberType).items():
        if value == number_type and name.isupper():
            return name.lower()
    return "unknown_type"


def _invalid(raw: str, region: str | None, extension: str | None, flags: list[str]) -> PhoneNumber:
    return PhoneNumber(
        raw, None, PhoneKind.INVALID, extension, region, _dedupe(["invalid", *flags])
    )


_PARSE_ERROR_FLAG: Final[dict[int, str]] = {
    NumberParseException.INVALID_COUNTRY_CODE: "invalid_country_code",
    NumberParseException.NOT_A_NUMBER: "not_a_number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too_short",
    NumberParseException.TOO_SHORT_NSN: "too_short",
    NumberParseException.TOO_LONG: "too_long",
}

_LENGTH_FLAG: Final[dict[int, str]] = {
    ValidationResult.TOO_SHORT: "too_short",
    ValidationResult.TOO_LONG: "too_long",
    ValidationResult.INVALID_LENGTH: "impossible_length",
    ValidationResult.INVALID_COUNTRY_CODE: "invalid_country_code",
}


def _dash_extension(
    raw: str, text: str, extension: str | None, default_region: str, flags: list[str]
) -> PhoneNumber | None:
    """Read "010-12345678-808" as landline plus extension 808, when that is the only reading.

    Only tried when the whole is not a valid number (or only valid by dropping the trunk 0),
    and only when what precedes the last dash is a landline on its own: mobiles have no
    extensions, and "0755-8888-1234" is valid as a whole so it never gets here.
    """
    dash = _DASH_EXT_RE.match(text) if extension is None else None
    if dash is None:
        return None
    head = _classify(raw, dash.group(1), dash.group(2), default_region, flags)
    if head.kind is not PhoneKind.LANDLINE:
        return None
    return replace(head, flags=_dedupe([*head.flags, "dash_extension"]))


def _classify(
    raw: str, text: str, extension: str | None, default_region: str, flags: list[str]
) -> PhoneNumber:
    """Classify ``text`` (folded, label and extension removed, only phone characters)."""
    digits = _digits(text)
    has_plus = "+" in text
    if _ZEROS_RE.match(text):
        return _anonymous(raw, "withheld")
    if _DATE_IN_TEXT_RE.fullmatch(text):
        # "2026-11-23" in a phone field is a date typed into the wrong box, not 2026-1123.
        return _invalid(raw, None, extension, [*flags, "date"])
    if has_plus and not text.lstrip(" (").startswith("+"):
        return _invalid(raw, None, extension, [*flags, "unexpected_characters"])

    national = _cn_national(digits, has_plus, default_region)
    explicit_country = has_plus or digits.startswith("00")
    if national is not None:
        if _is_short_service(national, "CN"):
            service_flags = [*flags, "service_number"]
            if phonenumbers.is_emergency_number(national, "CN"):
                service_flags.append("emergency")
            if default_region != "CN":
                service_flags.append("foreign")
            return PhoneNumber(
                raw, None, PhoneKind.SERVICE, extension, "CN", _dedupe(service_flags)
            )
        if _CN_LOCAL_RE.match(national):
            # 87654321: a complete local number, but in which of ~300 cities? Taking the
            # organisation's own area code would "fix" it into a stranger's number whenever
            # the caller is from elsewhere, so no E.164. It is still a landline (the shape
            # cannot be anything else) and the raw digits stay dialable by a local agent.
            local_flags = [*flags, "no_area_code"]
            if not explicit_country:
                local_flags.append("assumed_region")
            return PhoneNumber(raw, None, PhoneKind.LANDLINE, extension, "CN", _dedupe(local_flags))
    elif not explicit_country and _is_short_service(digits, default_region):
        return PhoneNumber(
            raw,
            None,
            PhoneKind.SERVICE,
            extension,
            default_region,
            _dedupe([*flags, "service_number", "assumed_region"]),
        )

    try:
        parsed = phonenumbers.parse(text, default_region, keep_raw_input=True)
    except NumberParseException as exc:
        return _invalid(
            raw, None, extension, [*flags, _PARSE_ERROR_FLAG.get(exc.error_type, "not_a_number")]
        )

    if phonenumbers.is_valid_number(parsed):
        result = _from_parsed(raw, parsed, default_region, extension, flags)
        if (
            result.kind is PhoneKind.LANDLINE
            and result.region == "CN"
            and parsed.country_code_source == CountryCodeSource.FROM_DEFAULT_COUNTRY
            and not digits.startswith("0")
        ):
            # Written in China without the trunk 0, "87654321-12" reads as the 10-digit
            # landline 876-54321 12 in Wenshan; what the caller meant is local number plus
            # extension. Prefer that reading; otherwise keep the number but say it was unusual.
            dashed = _dash_extension(raw, text, extension, default_region, flags)
            if dashed is not None:
                return dashed
            return replace(result, flags=_dedupe([*result.flags, "no_trunk_prefix"]))
        return result

    dashed = _dash_extension(raw, text, extension, default_region, flags)
    if dashed is not None:
        return dashed

    region = phonenumbers.region_code_for_country_code(parsed.country_code or 0)
    region_or_none = None if region == phonenumbers.UNKNOWN_REGION else region
    reasons: list[str] = []
    national_number = phonenumbers.national_significant_number(parsed)
    if region == "CN" and _CN_MOBILE_SHAPE_RE.match(national_number):
        # phonenumbers calls a 10-digit 138... "possible" (Chinese landlines can be 10 digits);
        # a national number starting 1[3-9] can only be an 11-digit mobile.
        if len(national_number) < 11:
            reasons += ["impossible_length", "too_short"]
        elif len(national_number) > 11:
            reasons += ["impossible_length", "too_long"]
        else:
            # Right shape, but a block that is not allocated to mobiles (140-144, 154, 16x...).
            # If a new block opens, update phonenumbers; do not guess here.
            reasons.append("unallocated_prefix")
    else:
        length = phonenumbers.is_possible_number_with_reason(parsed)
        if length in _LENGTH_FLAG:
            reasons += ["impossible_length", _LENGTH_FLAG[length]]
    return _invalid(raw, region_or_none, extension or parsed.extension, [*flags, *reasons])


# --------------------------------------------------------------------------------------------
# Public API.


def normalise_phone(raw: str | None, default_region: str = "CN") -> PhoneNumber:
    """Normalise one phone field (caller ID, a form field, a parsed "电话:" line)."""
    given = "" if raw is None else raw
    region = default_region.upper()
    text = _fold(given).strip()

    if _EMPTY_RE.match(text):
        return _anonymous(given, "blank")
    word = " ".join(text.strip(" <>()[]{}\"'").split()).casefold()
    if word in _ANONYMOUS_WORDS:
        return _anonymous(given, "withheld")

    text = _LABEL_RE.sub("", text, count=1)
    main, extension = _strip_extension(text)
    if _PHONE_CHARS_RE.match(main) and _digits(main):
        return _classify(given, main.strip(), extension, region, [])

    # Something else is in the field: "13812345678（微信同号）", two numbers, letters. Letters
    # are never converted (phonenumbers would read "138abc12345" as the keypad number
    # 138-222-12345, someone else's phone). A number standing clear of the other text is
    # taken, and says so; digits touching letters are not.
    found = _find_spans(text, region, strict=False)
    if found:
        _, _, first = found[0]
        extra = ["extracted_from_text"] + (["multiple_numbers"] if len(found) > 1 else [])
        return PhoneNumber(
            given,
            first.e164,
            first.kind,
            first.extension,
            first.region,
            _dedupe([*first.flags, *extra]),
        )
    reason = "letters" if re.search(r"[A-Za-z]", main) else "unexpected_characters"
    return _invalid(given, None, extension, [reason])


def find_phones(text: str, default_region: str = "CN") -> list[PhoneNumber]:
    """Phone numbers in free text (email bodies, letters), first occurrence of each, in order.

    Only numbers someone can call back are returned: complete numbers with an E.164 form, and
    local numbers without area code only where a label (电话, 座机, tel) says they are phones.
    Short service numbers are not returned: in a complaint "我打了95598" names the hotline the
    complainant already tried, not their own number. Dates, amounts and 18-digit ID numbers are
    not valid numbers and so never match; numbers labelled as accounts, orders or IDs (户号, 卡号,
    身份证, 订单号 ...) are ignored even when their digits would be a valid number.
    """
    seen: set[tuple[str | None, str | None]] = set()
    result: list[PhoneNumber] = []
    for _, _, phone in _find_spans(text, default_region.upper(), strict=True):
        key = (phone.e164 or _digits(phone.raw), phone.extension)
        if key not in seen:
            seen.add(key)
            result.append(phone)
    return result


def mask_phone(text_or_number: str, default_region: str = "CN") -> str:
    """Mask phone numbers for logs: a single number becomes its display form, free text keeps
    its wording with every number masked.

    As a safety net any other run of 7 or more digits (an invalid number the finder rejected,
    an ID number) is masked in place too: a log line must not leak a number because the
    finder was not sure it was one. Dates stay readable.
    """
    if not any("0" <= ch <= "9" for ch in _fold(text_or_number)):
        return text_or_number
    folded = _fold(text_or_number)
    main, _ = _strip_extension(folded.strip())
    if _PHONE_CHARS_RE.match(main):
        phone = normalise_phone(text_or_number, default_region)
        if phone.kind is PhoneKind.ANONYMOUS:
            return text_or_number
        if phone.kind is not PhoneKind.INVALID:
            return phone.display
        # Not one number ("13812345678 13912345678", "2026-11-23"): treat it as text below.

    pieces: list[str] = []
    position = 0
    for start, end, phone in _find_spans(folded, default_region.upper(), strict=False):
        pieces.append(_mask_residual_runs(text_or_number[position:start]))
        pieces.append(phone.display)
        position = end
    pieces.append(_mask_residual_runs(text_or_number[position:]))
    return "".join(pieces)


# --------------------------------------------------------------------------------------------
# Masking helpers.


def _mask_digit_run(digits: str) -> str:
    """Mask a digit string so at least four digits (or all of a short one) are hidden."""
    count = len(digits)
    if count >= 11:
        head, tail = 3, 4
    elif count >= 5:
        head, tail = 0, min(4, count - 4)
    else:
        head, tail = 0, 0
    return digits[:head] + "*" * (count - head - tail) + digits[count - tail :]


def _mask_e164(e164: str) -> str:
    parsed = phonenumbers.parse(e164, None)
    national = phonenumbers.national_significant_number(parsed)
    # Keep the area code / mobile prefix (it says where the caller is, not who), then mask so
    # that at least four subscriber digits are hidden and at most the last four are shown.
    ndc = phonenumbers.length_of_national_destination_code(parsed)
    head, rest = national[:ndc], national[ndc:]
    if len(rest) < 4:
        head, rest = "", national
    tail = min(4, max(0, len(rest) - 4))
    return f"+{parsed.country_code} {head}{'*' * (len(rest) - tail)}{rest[len(rest) - tail :]}"


_RESIDUAL_RUN_RE: Final = re.compile(r"[0-9](?:[0-9]|[ \-](?=[0-9]))*")
_DATE_IN_TEXT_RE: Final = re.compile(
    r"(?<![0-9])(?:19|20)[0-9]{2}([-./])[0-9]{1,2}\1[0-9]{1,2}(?![0-9])"
)


def _blank_dates(text: str) -> str:
    """Overwrite dates so that "2026-11-23 14:30" is never read as one long digit run."""
    return _DATE_IN_TEXT_RE.sub(lambda date: "/" * len(date.group()), text)


def _mask_residual_runs(segment: str) -> str:
    folded = _blank_dates(_fold(segment))
    out = list(segment)
    for match in _RESIDUAL_RUN_RE.finditer(folded):
        digit_positions = [
            i
            for i in range(match.start(), match.end())
            if folded[i].isascii() and folded[i].isdigit()
        ]
        if len(digit_positions) < 7:
            continue
        masked = _mask_digit_run("".join(folded[i] for i in digit_positions))
        for index, char in zip(digit_positions, masked, strict=True):
            out[index] = char
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Finding numbers in free text.

# A candidate: optional "+" or "(+86)", then digits with single separators or brackets between
# them, then an optional extension. Separators are single so that "13812345678  13912345678"
# stays two candidates; PhoneNumberMatcher covers the layouts this misses.
_CANDIDATE_RE: Final = re.compile(
    r"(?:\+\s?|\(\s?\+?)?[0-9](?:[0-9()]|[ .\-](?=[0-9(])|\s-\s(?=[0-9]))*"
    r"(?:\s*" + _EXT_MARKER + r"\s*[:=]?\s*[0-9]{1,6}(?![0-9]))?",
    re.IGNORECASE,
)
_EXT_SUFFIX_RE: Final = re.compile(
    r"\s*" + _EXT_MARKER + r"\s*[:=]?\s*([0-9]{1,6})(?![0-9])", re.IGNORECASE
)
# Labels that make a number something other than a phone: ID card, household/account/card
# numbers, orders, tickets, contracts, meters, invoices. Directly before the number. ASCII
# labels must start a word: "he said 13812345678" is not an "id".
_NOT_A_PHONE_LABEL_RE: Final = re.compile(
    r"(?:身份证|证件|户号|用户号|客户号|账号|帐号|账户|帐户|卡号|订单|单号|编号|流水|合同|表号|"
    r"发票|工单|编码|批次|车牌|(?<![a-z])id|(?<![a-z])no\.)[^0-9]{0,6}$",
    re.IGNORECASE,
)
_PHONE_LABEL_RE: Final = re.compile(
    r"(?:电话|座机|固话|手机|联系方式|联系|(?<![a-z])tel|(?<![a-z])phone)[^0-9]{0,6}$",
    re.IGNORECASE,
)


def _trim_brackets(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop unbalanced brackets and separators at the edges: "（13812345678）" → "13812345678"."""
    while start < end:
        span = text[start:end]
        opened, closed = span.count("("), span.count(")")
        if span[-1] == "(" or span[-1] in " .-" or (span[-1] == ")" and closed > opened):
            end -= 1
        elif span[0] == "(" and opened > closed:
            start += 1
        elif span[0] == "(" and span[-1] == ")" and "(" not in span[1:-1] and ")" not in span[1:-1]:
            start, end = start + 1, end - 1  # "(13812345678)": brackets around the whole number
        else:
            break
    return start, end


def _context_ok(text: str, start: int, end: int) -> bool:
    before, after = text[:start], text[end:]
    # Digits glued to letters are a code, not a phone: the "SF13812345678" waybill. (Digits
    # glued to digits never get here: candidates are maximal digit runs, and the matcher
    # checks its own edges; that is what keeps 18-digit ID numbers out.)
    if before[-1:].isascii() and before[-1:].isalnum():
        return False
    if after[:1].isascii() and after[:1].isalnum():
        return False
    return _NOT_A_PHONE_LABEL_RE.search(before[-16:]) is None


def _accept(text: str, start: int, end: int, phone: PhoneNumber, strict: bool) -> bool:
    if phone.e164 is not None:
        if strict and "assumed_region" in phone.flags and phone.kind is PhoneKind.LANDLINE:
            # In prose Chinese landlines are written with their trunk 0 ("0755-..."); a bare
            # 10-digit "3100123456" is far more often an account or order number.
            return _digits(text[start:end]).startswith("0")
        return True
    if phone.kind is PhoneKind.LANDLINE and "no_area_code" in phone.flags:
        return _PHONE_LABEL_RE.search(text[max(0, start - 16) : start]) is not None
    return False


def _find_spans(text: str, default_region: str, strict: bool) -> list[tuple[int, int, PhoneNumber]]:
    """(start, end, number) for every phone in ``text``, non-overlapping, in order.

    ``strict`` (find_phones) also drops bare landlines without their trunk 0; mask_phone and
    the single-field fallback keep them, since there masking too much is the safe side.
    """
    folded = _blank_dates(_fold(text))
    candidates: list[tuple[int, int, PhoneNumber]] = []

    for match in _CANDIDATE_RE.finditer(folded):
        start, end = _trim_brackets(folded, match.start(), match.end())
        candidate = folded[start:end]
        if len(_digits(candidate)) < 7 or not _context_ok(folded, start, end):
            continue
        main, extension = _strip_extension(candidate)
        if not _PHONE_CHARS_RE.match(main):
            continue
        phone = _classify(text[start:end], main.strip(), extension, default_region, [])
        if _accept(folded, start, end, phone, strict):
            candidates.append((start, end, phone))

    for found in PhoneNumberMatcher(folded, default_region, leniency=Leniency.VALID):
        start, end = _trim_brackets(folded, found.start, found.end)
        extension = found.number.extension
        suffix = _EXT_SUFFIX_RE.match(folded, end)
        if suffix is not None and extension is None:
            end, extension = suffix.end(), suffix.group(1)
        if not _context_ok(folded, start, end):
            continue
        # Classify the matched text the same way as the scanner's candidates, so flags such as
        # "assumed_region" do not depend on which finder saw the number first.
        # Text _classify would not accept (never letters: the matcher does not take vanity
        # numbers at this leniency) keeps the matcher's own parse.
        main, _ = _strip_extension(folded[start:end])
        if _PHONE_CHARS_RE.match(main):
            phone = _classify(text[start:end], main.strip(), extension, default_region, [])
        else:
            phone = _from_parsed(text[start:end], found.number, default_region, extension, [])
        if _accept(folded, start, end, phone, strict):
            candidates.append((start, end, phone))

    # Overlaps: the earliest start wins, the longer span on a tie (it carries the extension).
    candidates.sort(key=lambda item: (item[0], item[0] - item[1]))
    chosen: list[tuple[int, int, PhoneNumber]] = []
    for item in candidates:
        if not chosen or item[0] >= chosen[-1][1]:
            chosen.append(item)
    return chosen


def known_region(value: str) -> str:
    """A config's default region: an ISO code phonenumbers knows (the settings validator)."""
    value = value.upper()
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown region {value!r}; use an ISO code such as CN or HK")
    return value
