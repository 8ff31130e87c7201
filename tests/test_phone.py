"""The phone normaliser: real-world formats from the hotline, email bodies and the web form."""

from __future__ import annotations

import dataclasses
import re
from typing import NamedTuple

import phonenumbers
import pytest

from ingest.phone import PhoneKind, PhoneNumber, find_phones, mask_phone, normalise_phone

MOBILE = PhoneKind.MOBILE
LANDLINE = PhoneKind.LANDLINE
SERVICE = PhoneKind.SERVICE
TOLL_FREE = PhoneKind.TOLL_FREE
ANONYMOUS = PhoneKind.ANONYMOUS
INVALID = PhoneKind.INVALID
OTHER = PhoneKind.OTHER


class Row(NamedTuple):
    raw: str | None
    e164: str | None
    kind: PhoneKind
    extension: str | None = None
    flags: frozenset[str] = frozenset()
    absent: frozenset[str] = frozenset()
    region: str = "CN"


def f(*names: str) -> frozenset[str]:
    return frozenset(names)


_FULL_WIDTH_DIGITS = {0xFF10 + i: str(i) for i in range(10)}


def digits_and_stars(text: str) -> str:
    """The digits of ``text`` (full-width ones too) and its mask stars, separators dropped."""
    return "".join(ch for ch in text.translate(_FULL_WIDTH_DIGITS) if ch.isdigit() or ch == "*")


M = "+8613812345678"
BJ = "+861012345678"
SZ = "+8675588881234"
SH = "+862164561234"

ROWS: dict[str, Row] = {
    # --- mobiles -------------------------------------------------------------------------
    "bare mobile": Row("13812345678", M, MOBILE, flags=f("assumed_region")),
    "mobile with +86": Row("+8613812345678", M, MOBILE, absent=f("assumed_region")),
    "mobile with 0086": Row("008613812345678", M, MOBILE, absent=f("assumed_region")),
    "mobile with bare 86": Row("8613812345678", M, MOBILE, absent=f("assumed_region")),
    "mobile with spaced 86": Row("86 138 1234 5678", M, MOBILE),
    "mobile with +86 and spaces": Row("+86 138 1234 5678", M, MOBILE),
    "out-of-town caller ID with a leading 0": Row("013812345678", M, MOBILE),
    "mobile grouped 3-4-4": Row("138 1234 5678", M, MOBILE),
    "mobile with spaces in odd places": Row("1381 234 5678", M, MOBILE),
    "mobile with dashes": Row("138-1234-5678", M, MOBILE),
    "mobile with dots": Row("138.1234.5678", M, MOBILE),
    "mobile with its prefix in brackets": Row("(138)1234-5678", M, MOBILE),
    "mobile in full-width digits": Row("１３８１２３４５６７８", M, MOBILE),
    "full-width +86 and ideographic space": Row("＋８６　１３８１２３４５６７８", M, MOBILE),
    "full-width dashes": Row("１３８－１２３４－５６７８", M, MOBILE),
    "mobile with surrounding whitespace": Row("\t13812345678 \n", M, MOBILE),
    "mobile from a newer 199 block": Row("19912345678", "+8619912345678", MOBILE),
    "mobile after a form label": Row("手机：13812345678", M, MOBILE),
    # --- landlines -----------------------------------------------------------------------
    "Beijing landline 010-": Row("010-12345678", BJ, LANDLINE, flags=f("assumed_region")),
    "Beijing landline with area code in brackets": Row("(010)12345678", BJ, LANDLINE),
    "Beijing landline grouped with spaces": Row("010 1234 5678", BJ, LANDLINE),
    "Shenzhen landline 0755-": Row("0755-88881234", SZ, LANDLINE),
    "Shenzhen landline (0755) 8888-1234": Row("(0755) 8888-1234", SZ, LANDLINE),
    "landline in full-width brackets and digits": Row(
        "（０７５５）８８８８－１２３４", SZ, LANDLINE
    ),
    "+86-(0)10- with the trunk 0 in brackets": Row("+86-(0)10-12345678", BJ, LANDLINE),
    "+86 (0)755 with the trunk 0 in brackets": Row("+86 (0)755 8888 1234", SZ, LANDLINE),
    "+86 followed by the trunk 0": Row("+86 0755 88881234", SZ, LANDLINE),
    "landline with 0086 and spaces": Row("0086 755 88881234", SZ, LANDLINE),
    "landline with 0086 and dashes": Row("0086-10-12345678", BJ, LANDLINE),
    "landline with bare 86 and dashes": Row("86-755-88881234", SZ, LANDLINE),
    "tel: URI": Row("tel:+86-10-12345678", BJ, LANDLINE, absent=f("assumed_region")),
    # --- extensions ----------------------------------------------------------------------
    "extension after 转": Row("0755-88881234转808", SZ, LANDLINE, "808"),
    "extension after a spaced 转": Row("0755-88881234 转 808", SZ, LANDLINE, "808"),
    "extension after 分机": Row("010-12345678 分机 12", BJ, LANDLINE, "12"),
    "extension after 分机号": Row("010-12345678分机号12", BJ, LANDLINE, "12"),
    "extension after x": Row("021-64561234 x123", SH, LANDLINE, "123"),
    "extension after ext.": Row("021-64561234 ext. 45", SH, LANDLINE, "45"),
    "extension after upper-case EXT": Row("021 6456 1234 EXT45", SH, LANDLINE, "45"),
    "extension after #": Row("0755-88881234#6", SZ, LANDLINE, "6"),
    "extension after full-width ＃": Row("０７５５－８８８８１２３４＃６", SZ, LANDLINE, "6"),
    "extension as a trailing dash group": Row(
        "0755-88881234-808", SZ, LANDLINE, "808", flags=f("dash_extension")
    ),
    "extension in RFC 3966 form": Row("+86 10 1234 5678;ext=9", BJ, LANDLINE, "9"),
    # --- landlines without area code: no E.164, never the organisation's own city ----------
    "local number without area code": Row("87654321", None, LANDLINE, flags=f("no_area_code")),
    "local number grouped 4-4": Row("8765-4321", None, LANDLINE, flags=f("no_area_code")),
    "seven-digit local number": Row("8765432", None, LANDLINE, flags=f("no_area_code")),
    "local number with 转 extension": Row(
        "87654321转12", None, LANDLINE, "12", flags=f("no_area_code")
    ),
    "local number with a dash extension is not read as a Wenshan number": Row(
        "87654321-12", None, LANDLINE, "12", flags=f("no_area_code", "dash_extension")
    ),
    "local number after +86": Row("+86 87654321", None, LANDLINE, flags=f("no_area_code")),
    "10-digit landline without its trunk 0": Row(
        "3100123456", "+863100123456", LANDLINE, flags=f("no_trunk_prefix")
    ),
    # --- short service numbers -------------------------------------------------------------
    "State Grid 95598": Row("95598", None, SERVICE, flags=f("service_number")),
    "government hotline 12345": Row("12345", None, SERVICE, flags=f("service_number")),
    "China Mobile 10086": Row("10086", None, SERVICE, flags=f("service_number")),
    "local public-service 96116": Row("96116", None, SERVICE, flags=f("service_number")),
    "police 110": Row("110", None, SERVICE, flags=f("service_number", "emergency")),
    "ambulance 120": Row("120", None, SERVICE, flags=f("service_number", "emergency")),
    "China Post 11185 missing from phonenumbers": Row(
        "11185", None, SERVICE, flags=f("service_number")
    ),
    "service number written with +86": Row("+86 95598", None, SERVICE, flags=f("service_number")),
    "service number with a menu extension": Row("95598转3", None, SERVICE, "3"),
    # --- 400 / 800 -----------------------------------------------------------------------
    "400 number with dashes": Row(
        "400-810-8888", "+864008108888", TOLL_FREE, flags=f("shared_cost")
    ),
    "400 number undivided": Row("4008108888", "+864008108888", TOLL_FREE),
    "400 number with +86": Row("+86 400 810 8888", "+864008108888", TOLL_FREE),
    "800 number with dashes": Row(
        "800-820-8820", "+868008208820", TOLL_FREE, absent=f("shared_cost")
    ),
    "400 number one digit short": Row("400-810-888", None, INVALID, flags=f("invalid")),
    # --- Hong Kong, Macau, Taiwan, foreign ----------------------------------------------
    "Hong Kong landline": Row("+852 2123 4567", "+85221234567", LANDLINE, flags=f("foreign")),
    "Hong Kong mobile": Row("+852 9123 4567", "+85291234567", MOBILE, flags=f("foreign")),
    "Hong Kong mobile dialled with 00852": Row("00852 9123 4567", "+85291234567", MOBILE),
    "Macau mobile": Row("+853 6612 3456", "+85366123456", MOBILE, flags=f("foreign")),
    "Taiwan mobile": Row("+886 912 345 678", "+886912345678", MOBILE, flags=f("foreign")),
    "Taiwan landline": Row("+886 2 2345 6789", "+886223456789", LANDLINE, flags=f("foreign")),
    "US number whose type cannot be told": Row(
        "+1 650 253 0000", "+16502530000", OTHER, flags=f("foreign", "fixed_line_or_mobile")
    ),
    "US toll-free": Row("+1 (800) 555-0199", "+18005550199", TOLL_FREE, flags=f("foreign")),
    "London landline": Row("+44 20 7946 0958", "+442079460958", LANDLINE, flags=f("foreign")),
    "852 without + or 00 is not guessed to be Hong Kong": Row(
        "852 91234567", None, INVALID, flags=f("invalid")
    ),
    "Hong Kong local number with default region HK": Row(
        "9123 4567",
        "+85291234567",
        MOBILE,
        flags=f("assumed_region"),
        absent=f("foreign"),
        region="HK",
    ),
    "mainland mobile without +86 under default region HK": Row(
        "13812345678", None, INVALID, flags=f("invalid"), region="HK"
    ),
    # --- withheld and unknown callers ----------------------------------------------------
    "None": Row(None, None, ANONYMOUS, flags=f("anonymous", "blank")),
    "empty string": Row("", None, ANONYMOUS, flags=f("anonymous", "blank")),
    "only spaces": Row("   ", None, ANONYMOUS, flags=f("anonymous", "blank")),
    "a lone dash": Row("-", None, ANONYMOUS, flags=f("anonymous")),
    "a lone zero": Row("0", None, ANONYMOUS, flags=f("anonymous", "withheld")),
    "a row of zeros": Row("0000000", None, ANONYMOUS, flags=f("anonymous")),
    "匿名": Row("匿名", None, ANONYMOUS, flags=f("anonymous")),
    "未知": Row("未知", None, ANONYMOUS, flags=f("anonymous")),
    "Unknown": Row("Unknown", None, ANONYMOUS, flags=f("anonymous")),
    "ANONYMOUS": Row("ANONYMOUS", None, ANONYMOUS, flags=f("anonymous")),
    "private": Row("private", None, ANONYMOUS, flags=f("anonymous")),
    "Withheld": Row("Withheld", None, ANONYMOUS, flags=f("anonymous")),
    "blank": Row("blank", None, ANONYMOUS, flags=f("anonymous")),
    "<unknown> in angle brackets": Row("<unknown>", None, ANONYMOUS, flags=f("anonymous")),
    # --- impossible numbers: kept as given, flagged, never fixed -----------------------------
    "mobile one digit short": Row(
        "1381234567", None, INVALID, flags=f("invalid", "impossible_length", "too_short")
    ),
    "mobile one digit short with spaces": Row(
        "138 1234 567", None, INVALID, flags=f("invalid", "too_short")
    ),
    "mobile one digit too many": Row(
        "138123456789", None, INVALID, flags=f("invalid", "impossible_length", "too_long")
    ),
    "seven digits starting 1 is not a local number": Row(
        "1381234", None, INVALID, flags=f("invalid", "too_short")
    ),
    "mobile-shaped number in an unallocated block": Row(
        "14812345678", None, INVALID, flags=f("invalid", "unallocated_prefix")
    ),
    "four digits": Row("1234", None, INVALID, flags=f("invalid", "too_short")),
    "letters inside the digits are not keypad letters": Row(
        "138abc12345", None, INVALID, flags=f("invalid", "letters")
    ),
    "letter O typed for a zero": Row("1381234567O", None, INVALID, flags=f("invalid", "letters")),
    "letter touching the end of a mobile": Row(
        "13812345678a", None, INVALID, flags=f("invalid", "letters")
    ),
    "vanity number": Row("1-800-FLOWERS", None, INVALID, flags=f("invalid", "letters")),
    "plus sign in the middle": Row(
        "138+12345678", None, INVALID, flags=f("invalid", "unexpected_characters")
    ),
    "a date typed into the phone field": Row("2026-11-23", None, INVALID, flags=f("date")),
    # --- a number with words around it in a single field --------------------------------
    "mobile with a note in full-width brackets": Row(
        "13812345678（微信同号）", M, MOBILE, flags=f("extracted_from_text")
    ),
    "two mobiles in one field keeps the first and says so": Row(
        "13812345678/13912345678", M, MOBILE, flags=f("extracted_from_text", "multiple_numbers")
    ),
}


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_each_real_world_format_normalises_to_the_expected_number(row: Row) -> None:
    result = normalise_phone(row.raw, row.region)

    assert result.raw == ("" if row.raw is None else row.raw)
    assert (result.e164, result.kind, result.extension) == (row.e164, row.kind, row.extension)
    assert row.flags <= set(result.flags), result.flags
    assert not row.absent & set(result.flags), result.flags
    if row.kind is not INVALID:
        assert "invalid" not in result.flags
    if row.e164 is not None:
        assert phonenumbers.is_valid_number(phonenumbers.parse(row.e164))


def test_the_normalisation_table_covers_at_least_45_formats() -> None:
    assert len(ROWS) >= 45


def test_letters_are_never_read_as_keypad_digits_into_someone_elses_number() -> None:
    # phonenumbers on its own turns this into +8613822212345, a real, different subscriber.
    assert phonenumbers.is_valid_number(phonenumbers.parse("138abc12345", "CN"))

    assert normalise_phone("138abc12345").e164 is None


def test_a_local_number_is_never_given_the_organisations_own_area_code() -> None:
    result = normalise_phone("87654321")

    assert result.e164 is None
    assert result.region == "CN"
    assert "87654321" in result.raw


def test_invalid_and_anonymous_results_carry_no_region_guess_beyond_the_country_code() -> None:
    assert normalise_phone("138abc12345").region is None
    assert normalise_phone(None).region is None
    assert normalise_phone("1381234567").region == "CN"


def test_a_number_is_immutable_and_its_kind_is_a_plain_string() -> None:
    result = normalise_phone("13812345678")

    with pytest.raises(dataclasses.FrozenInstanceError):
        result.e164 = "+8613900000000"  # type: ignore[misc]
    assert result.kind == "mobile"
    assert PhoneKind("toll_free") is PhoneKind.TOLL_FREE


def test_the_default_region_is_case_insensitive() -> None:
    assert normalise_phone("010-12345678", "cn").e164 == BJ


# --- display ---------------------------------------------------------------------------------


def test_a_mobile_displays_its_prefix_and_last_four_digits_only() -> None:
    assert normalise_phone("13812345678").display == "+86 138****5678"


def test_a_landline_displays_its_area_code_and_extension() -> None:
    assert normalise_phone("0755-88881234转808").display == "+86 755****1234 ext. 808"


def test_an_anonymous_caller_displays_as_anonymous() -> None:
    assert normalise_phone("匿名").display == "(anonymous)"


def test_a_short_service_number_is_public_and_displayed_in_full() -> None:
    assert normalise_phone("+86 95598").display == "95598"


def _national_digits(row: Row) -> str:
    if row.e164 is not None:
        return str(phonenumbers.parse(row.e164).national_number)
    # Without E.164: the digits as written, up to any extension marker.
    raw = re.sub(r"[转分机号xX#＃].*$", "", (row.raw or "").replace("+86", ""))
    return digits_and_stars(raw).removesuffix(row.extension or "")


PERSONAL_ROWS = {
    name: row
    for name, row in ROWS.items()
    if row.kind not in (ANONYMOUS, SERVICE) and len(_national_digits(row)) >= 5
}


@pytest.mark.parametrize("row", list(PERSONAL_ROWS.values()), ids=list(PERSONAL_ROWS))
def test_display_never_shows_the_full_number(row: Row) -> None:
    display = normalise_phone(row.raw, row.region).display
    shown = digits_and_stars(display.split(" ext. ")[0]).replace("*", "")

    assert _national_digits(row) not in shown
    assert display.count("*") >= 4


# --- find_phones -----------------------------------------------------------------------------

OUTAGE_EMAIL = """您好：
我是朝阳区某小区的住户，2026-11-23 晚上8点起停电，至今没有恢复。
我的身份证号110101199003071234，户号3100123456。
联系电话：138 1234 5678，或者座机010-87654321转203。
我已经打过95598三次了，上月电费128.50元。
"""

FULL_WIDTH_EMAIL = """投诉人：陈女士
手机：＋８６　１３９－８７６５－４３２１
香港办公室 +852 2123 4567
订单号 202611231234567，银行卡 6222 0212 3456 7890 123
"""

REPEATED_EMAIL = """请回电13812345678（白天），晚上打13812345678也行。单位电话0755-88881234-808。
贵公司客服400-810-8888一直占线。"""

NO_PHONE_EMAIL = """2026年11月23日下午3点停水，工单编号20261123。
押金13812.50元至今未退，身份证51010113812345678X，卡号6222021234567890123。
"""


def _found(text: str) -> list[tuple[str | None, str | None]]:
    return [(phone.e164, phone.extension) for phone in find_phones(text)]


def test_an_outage_email_yields_the_mobile_and_the_landline_with_extension_only() -> None:
    assert _found(OUTAGE_EMAIL) == [(M, None), ("+861087654321", "203")]


def test_the_household_number_is_not_found_although_its_digits_are_a_valid_landline() -> None:
    assert normalise_phone("3100123456").e164 is not None
    assert "+863100123456" not in {e164 for e164, _ in _found(OUTAGE_EMAIL)}


def test_found_numbers_keep_the_text_exactly_as_written() -> None:
    raws = [phone.raw for phone in find_phones(OUTAGE_EMAIL)]

    assert raws == ["138 1234 5678", "010-87654321转203"]


def test_full_width_and_hong_kong_numbers_are_found_but_order_and_card_numbers_are_not() -> None:
    found = find_phones(FULL_WIDTH_EMAIL)

    assert [phone.e164 for phone in found] == ["+8613987654321", "+85221234567"]
    assert found[0].raw == "＋８６　１３９－８７６５－４３２１"
    assert found[1].region == "HK"


def test_a_number_written_twice_is_returned_once_and_in_order_of_appearance() -> None:
    assert _found(REPEATED_EMAIL) == [
        (M, None),
        (SZ, "808"),
        ("+864008108888", None),
    ]


def test_dates_amounts_ids_and_account_numbers_are_not_phone_numbers() -> None:
    assert find_phones(NO_PHONE_EMAIL) == []


def test_a_mobile_embedded_in_an_id_number_is_not_found() -> None:
    assert find_phones("身份证51010113812345678X") == []
    assert find_phones("身份证号110101199003071234") == []


def test_short_service_numbers_in_prose_are_the_hotline_not_the_complainant() -> None:
    assert find_phones("我打了95598和12345都没用") == []


def test_a_local_number_is_found_only_when_labelled_as_a_phone() -> None:
    labelled = find_phones("座机87654321，白天有人")

    assert [(p.kind, p.e164, p.flags) for p in labelled] == [
        (LANDLINE, None, ("no_area_code", "assumed_region"))
    ]
    assert find_phones("工单编号87654321") == []


def test_a_valid_landline_labelled_as_a_household_number_is_not_a_phone() -> None:
    assert _found("户号 0755 8888 1234") == []
    assert _found("电话 0755 8888 1234") == [(SZ, None)]
    assert _found("ID: 13812345678") == []
    assert _found("He said 13812345678 is his mobile") == [(M, None)]


def test_digits_glued_to_letters_are_a_code_not_a_phone() -> None:
    assert find_phones("运单 SF13812345678 已签收") == []


def test_a_bare_ten_digit_landline_without_its_trunk_0_is_not_found_in_prose() -> None:
    assert find_phones("请核对 3103123456 这个数") == []
    assert _found("请回电 0310-3123456") == [("+863103123456", None)]


def test_an_unlabelled_eight_digit_number_is_not_taken_for_a_local_phone() -> None:
    assert find_phones("第87654321号文件") == []


def test_two_mobiles_separated_by_a_space_are_two_numbers() -> None:
    assert _found("13812345678 13912345678") == [(M, None), ("+8613912345678", None)]


def test_a_mobile_and_a_landline_run_together_keep_the_landlines_extension() -> None:
    assert _found("13812345678 0755-88881234转6") == [(M, None), (SZ, "6")]


def test_brackets_around_a_number_in_prose_are_not_part_of_it() -> None:
    (phone,) = find_phones("请回电（13812345678）谢谢")

    assert phone.raw == "13812345678"
    assert mask_phone("请回电（13812345678）谢谢") == "请回电（+86 138****5678）谢谢"


def test_a_mobile_right_after_a_date_is_still_found() -> None:
    assert _found("2026-11-23 13812345678 停电") == [(M, None)]


def test_an_empty_body_has_no_numbers() -> None:
    assert find_phones("") == []


# --- mask_phone ------------------------------------------------------------------------------


def test_mask_phone_masks_a_single_number_to_its_display_form() -> None:
    assert mask_phone("138-1234-5678") == "+86 138****5678"


def test_mask_phone_keeps_the_wording_of_free_text() -> None:
    assert mask_phone("手机:13812345678。") == "手机:+86 138****5678。"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (OUTAGE_EMAIL, "13812345678"),
        (OUTAGE_EMAIL, "87654321"),
        (OUTAGE_EMAIL, "110101199003071234"),
        (FULL_WIDTH_EMAIL, "13987654321"),
        (FULL_WIDTH_EMAIL, "21234567"),
        (REPEATED_EMAIL, "88881234"),
        ("13812345678 13912345678", "13912345678"),
        ("请打1381234567", "1381234567"),
        ("138 1234 567 是我的号码", "1381234567"),
    ],
    ids=[
        "mobile in an email",
        "landline with extension in an email",
        "ID number in an email",
        "full-width +86 mobile",
        "Hong Kong landline",
        "landline written twice with a dash extension",
        "second of two mobiles",
        "invalid mobile the finder rejects",
        "invalid mobile with spaces",
    ],
)
def test_masked_text_never_contains_the_full_digits(text: str, secret: str) -> None:
    masked = mask_phone(text)

    assert secret in digits_and_stars(text)  # the row really contains the number
    assert secret not in digits_and_stars(masked)


def test_mask_phone_leaves_dates_service_numbers_and_anonymous_markers_readable() -> None:
    assert mask_phone("2026-11-23 14:30 来电") == "2026-11-23 14:30 来电"
    assert mask_phone("95598") == "95598"
    assert mask_phone("unknown") == "unknown"
    assert mask_phone("0") == "0"


def test_mask_phone_returns_text_without_digits_unchanged() -> None:
    assert mask_phone("没有号码") == "没有号码"


def test_a_found_number_is_a_phone_number_instance() -> None:
    (phone,) = find_phones("电话13812345678")

    assert isinstance(phone, PhoneNumber)
    assert phone.kind is MOBILE
