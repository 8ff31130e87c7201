"""The email parser on Chinese mail as real clients send it (fixtures in tests/fixtures/email/).

Fixtures are written by tests/fixtures/email/build_fixtures.py; smaller variations are built
inline with :func:`mail`. Every test is about what reaches the ticket: subject, complainant,
body text, files, and whether the mail is a complaint at all.
"""

from __future__ import annotations

import base64
import hashlib
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

import pytest

from channels.email import (
    MailKind,
    ParsedMail,
    body_phones,
    complainant,
    complainant_from,
    idempotency_key,
    parse_mail,
    split_subject,
)
from channels.email import parse as parse_module
from channels.email.attachments import safe_filename, sniff_type
from channels.email.charset import codec_for_label, decode_bytes
from channels.email.headers import decode_header, parse_params
from ingest.phone import PhoneKind

FIXTURES = Path(__file__).parent / "fixtures" / "email"


def fixture(name: str) -> ParsedMail:
    return parse_mail((FIXTURES / name).read_bytes())


def utf8_word(text: str) -> str:
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


def mail(
    subject: str = "test",
    body: str = "hello",
    *,
    sender: str = "someone@example.cn",
    headers: str = "",
    message_id: str | None = "<inline@example.cn>",
    content_type: str = "text/plain; charset=utf-8",
) -> bytes:
    """A small UTF-8 mail; ``headers`` are extra header lines."""
    lines = [f"From: {sender}", "To: complaints@example.gov.cn", f"Subject: {utf8_word(subject)}"]
    lines.append("Date: Wed, 01 May 2024 09:00:00 +0800")
    if message_id:
        lines.append(f"Message-ID: {message_id}")
    lines += [line for line in headers.splitlines() if line]
    lines += [
        "MIME-Version: 1.0",
        f"Content-Type: {content_type}",
        "Content-Transfer-Encoding: base64",
    ]
    return (
        "\r\n".join(lines) + "\r\n\r\n" + base64.b64encode(body.encode()).decode() + "\r\n"
    ).encode()


# ---- charsets -------------------------------------------------------------------------------


class Chinese(NamedTuple):
    subject: str
    name: str | None
    body_contains: str


CHINESE: dict[str, Chinese] = {
    "gb2312_subject.eml": Chinese("投诉事项+王小明（噪音扰民）", "王小明", "姓名：王小明"),
    "gbk_subject.eml": Chinese("投诉事项+李喆", "李喆", "投诉人：李喆"),
    "gb18030_subject.eml": Chinese("投诉事项+𠮷田", "𠮷田", "投诉人：𠮷田"),
    "big5_subject.eml": Chinese("投訴：陳大文", "陳大文", "屋苑𨋢經常故障"),
    "mislabelled_gbk_as_gb2312.eml": Chinese("投诉事项+赵堃", "赵堃", "投诉人：赵堃"),
    "mislabelled_gbk_as_utf8.eml": Chinese("投诉事项+孙丽", None, "投诉人：孙丽"),
    "mislabelled_gbk_as_latin1.eml": Chinese("投诉事项+吴敏", None, "油烟和噪音"),
    "unknown_charset_label.eml": Chinese("投诉事项+周杰", None, "油烟和噪音"),
    "raw_8bit_gbk_headers.eml": Chinese("投诉事项+张三（物业服务）", "张三", "油烟和噪音"),
    "raw_8bit_utf8_headers.eml": Chinese("投诉事项＋刘洋", "刘洋", "油烟和噪音"),
    "split_multibyte_encoded_word.eml": Chinese("投诉事项+黄磊", None, "测试"),
}


@pytest.mark.parametrize("name", CHINESE)
def test_chinese_subject_sender_and_body_come_out_ungarbled_whatever_the_charset(name: str) -> None:
    parsed = fixture(name)
    want = CHINESE[name]
    assert parsed.subject == want.subject
    assert parsed.from_name == want.name
    assert want.body_contains in parsed.body_text
    assert "\ufffd" not in parsed.subject + parsed.body_text + (parsed.from_name or "")


class Decision(NamedTuple):
    fixture: str
    decision: str


DECISIONS = [
    Decision("gb2312_subject.eml", "part 1: label gb2312 decoded as gb18030"),
    Decision("mislabelled_gbk_as_gb2312.eml", "part 1: label gb2312 decoded as gb18030"),
    Decision("big5_subject.eml", "part 1: label big5 decoded as big5hkscs"),
    Decision("mislabelled_gbk_as_utf8.eml", "part 1: label utf-8 wrong, detected gb18030"),
    Decision("mislabelled_gbk_as_latin1.eml", "part 1: label iso-8859-1 wrong, detected gb18030"),
    Decision(
        "unknown_charset_label.eml",
        "part 1: label x-unknown unknown, decoded as expected charset gb18030",
    ),
    Decision(
        "raw_8bit_gbk_headers.eml",
        "subject: raw 8-bit header decoded as gb18030 (the body's charset)",
    ),
]


@pytest.mark.parametrize("case", DECISIONS, ids=[d.fixture for d in DECISIONS])
def test_each_charset_decision_is_recorded_for_the_intake_notes(case: Decision) -> None:
    assert case.decision in fixture(case.fixture).charset_decisions


def test_charset_decisions_never_contain_the_text_they_decoded() -> None:
    for path in sorted(FIXTURES.glob("*.eml")):
        for decision in parse_mail(path.read_bytes()).charset_decisions:
            assert decision.isascii(), (path.name, decision)
            assert "@" not in decision


class Bytes(NamedTuple):
    data: bytes
    label: str | None
    text: str
    codec: str


DECODING = {
    "gb2312 label, GBK-only character": Bytes("李喆".encode("gbk"), "gb2312", "李喆", "gb18030"),
    "gbk label, four-byte GB 18030 character": Bytes(
        "𠮷".encode("gb18030"), "GBK", "𠮷", "gb18030"
    ),
    "cp936 label": Bytes("堃".encode("gbk"), "cp936", "堃", "gb18030"),
    "big5 label, HKSCS character": Bytes("𨋢".encode("big5hkscs"), "big5", "𨋢", "big5hkscs"),
    "quoted label": Bytes("投诉".encode("gbk"), '"GB2312"', "投诉", "gb18030"),
    "latin-1 label on UTF-8 bytes": Bytes("Český".encode(), "iso-8859-1", "Český", "utf-8"),
    "us-ascii label on UTF-8 bytes": Bytes("投诉".encode(), "us-ascii", "投诉", "utf-8"),
    "latin-1 label on latin-1 bytes": Bytes(
        "Müller".encode("latin-1"), "iso-8859-1", "Müller", "cp1252"
    ),
    "windows-1252 smart quotes": Bytes(
        b"\x93quoted\x94", "iso-8859-1", "\u201cquoted\u201d", "cp1252"
    ),
    "no label, UTF-8 bytes": Bytes("投诉".encode(), None, "投诉", "utf-8"),
    "gb2312 label on UTF-8 bytes": Bytes(
        "你好，我要投诉".encode(), "gb2312", "你好，我要投诉", "utf-8"
    ),
    "gb2312 label, damaged GB text": Bytes(
        "投诉内容".encode("gbk") + b"\xff", "gb2312", "投诉内容\ufffd", "gb18030"
    ),
    "no label, GBK text": Bytes(
        ("投诉内容：" * 8).encode("gbk"), None, "投诉内容：" * 8, "gb18030"
    ),
    "utf-8 label with a BOM": Bytes("\ufeff投诉".encode(), "utf-8", "投诉", "utf-8"),
    "utf-7": Bytes("投诉".encode("utf-7"), "utf-7", "投诉", "utf-7"),
    "iso-2022-jp": Bytes("日本語".encode("iso2022_jp"), "iso-2022-jp", "日本語", "iso2022_jp"),
    "a bytes-to-bytes codec name is not a charset": Bytes(
        ("投诉内容：" * 8).encode("gbk"), "base64", "投诉内容：" * 8, "gb18030"
    ),
    "unicode-escape is not a charset": Bytes(
        b"\\u6295\\u8bc9", "unicode-escape", "\\u6295\\u8bc9", "ascii"
    ),
}


@pytest.mark.parametrize("case", DECODING.values(), ids=list(DECODING))
def test_bytes_decode_by_the_superset_or_detected_charset(case: Bytes) -> None:
    decoded = decode_bytes(case.data, case.label)
    assert decoded.text == case.text
    assert decoded.codec == case.codec


def test_labels_map_to_supersets_and_non_text_codecs_are_refused() -> None:
    assert [codec_for_label(x) for x in ("gb2312", "GBK", "x-gbk", "euc-cn", "csGB2312")] == [
        "gb18030"
    ] * 5
    assert [codec_for_label(x) for x in ("big5", "Big5-HKSCS", "cp950", "x-x-big5")] == [
        "big5hkscs"
    ] * 4
    assert [codec_for_label(x) for x in ("base64", "rot13", "zlib", "unknown-8bit", "", None)] == [
        None
    ] * 6


def test_utf8_with_one_broken_sequence_stays_utf8_instead_of_being_redetected() -> None:
    text = "Профиль пользователя " * 20
    data = text.encode()[:100] + b"\xd1" + text.encode()[100:]
    decoded = decode_bytes(data, "utf-8")
    assert decoded.codec == "utf-8" and decoded.lossy
    assert decoded.text.count("\ufffd") == 1


# ---- headers --------------------------------------------------------------------------------


def test_encoded_words_rfc2231_and_quoted_encoded_words_decode_with_the_same_charset_rules() -> (
    None
):
    assert (
        decode_header("=?gb2312?B?" + base64.b64encode("赵堃".encode("gbk")).decode() + "?=")
        == "赵堃"
    )
    assert decode_header("=?utf-8?Q?=E6=8A=95=E8=AF=89?= =?utf-8?Q?_+_A?=") == "投诉 + A"
    assert decode_header("Re: =?utf-8?B?5oqV?= text") == "Re: 投 text"
    _, params = parse_params("attachment; filename*=GBK''%D5%D5%C6%AC.jpg")
    assert params["filename"] == "照片.jpg"
    _, params = parse_params('image/jpeg; name="=?GBK?B?1dXGrC5qcGc=?="')
    assert params["name"] == "照片.jpg"


def test_rfc2231_continuations_and_foxmail_style_names_give_chinese_file_names() -> None:
    names = [a.filename for a in fixture("rfc2231_gbk_filename.eml").attachments]
    assert names == ["现场照片-楼道堆放杂物.jpg", "照片2.jpg"]


def test_a_display_name_equal_to_the_address_is_no_name() -> None:
    parsed = parse_mail(mail(sender='"zhang@example.cn" <zhang@example.cn>'))
    assert parsed.from_name is None and parsed.from_address == "zhang@example.cn"


def test_recipients_references_and_date_are_read() -> None:
    raw = mail(
        headers="Cc: a@example.cn, =?UTF-8?B?5byg5LiJ?= <b@example.cn>\n"
        "In-Reply-To: <ack.1@shouli>\nReferences: <x@a>\n <ack.1@shouli>",
    )
    parsed = parse_mail(raw)
    assert parsed.to == ("complaints@example.gov.cn",)
    assert parsed.cc == ("a@example.cn", "b@example.cn")
    assert parsed.in_reply_to == "<ack.1@shouli>"
    assert parsed.references == ("<x@a>", "<ack.1@shouli>")
    assert parsed.date == datetime(2024, 5, 1, 9, 0, tzinfo=timezone(timedelta(hours=8)))


def test_an_unparseable_date_is_a_defect_not_a_failure() -> None:
    parsed = parse_mail(mail().replace(b"Wed, 01 May 2024 09:00:00 +0800", b"yesterday"))
    assert parsed.date is None
    assert "message: unparseable Date" in parsed.defects


# ---- bodies ---------------------------------------------------------------------------------


def test_html_only_mail_becomes_readable_text_without_markup_scripts_or_styles() -> None:
    body = fixture("html_only.eml").body_text
    assert "我家楼上 每天深夜装修，噪音很大。" in body
    assert "139 1234 5678" in body and "2024-04-30 23:00" in body
    for markup in ("<", "&nbsp;", "alert", "color: red"):
        assert markup not in body


def test_html_without_a_mime_charset_is_decoded_by_its_meta_charset() -> None:
    parsed = fixture("html_only_meta_charset.eml")
    assert "噪音很大" in parsed.body_text
    assert "part 1: label gbk decoded as gb18030" in parsed.charset_decisions


def alternative(plain: str, html: str) -> bytes:
    boundary = "alt"
    parts = [
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{plain}\r\n",
        f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n",
        f"--{boundary}--\r\n",
    ]
    head = (
        "From: a@example.cn\r\nSubject: x\r\nMessage-ID: <alt@x>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
    )
    return (head + "".join(parts)).encode()


def test_text_plain_is_preferred_over_the_html_alternative() -> None:
    assert parse_mail(alternative("PLAIN TEXT", "<p>HTML TEXT</p>")).body_text == "PLAIN TEXT"


def test_a_blank_plain_alternative_gives_way_to_the_html_one() -> None:
    assert parse_mail(alternative(" ", "<p>HTML TEXT</p>")).body_text == "HTML TEXT"


def test_nested_forwards_are_kept_as_files_and_their_text_is_marked_in_the_body() -> None:
    parsed = fixture("nested_forward.eml")
    body = parsed.body_text
    assert body.startswith("请受理。")
    assert body.count("转发的邮件 / Forwarded message") == 2
    assert "发件人 From: 马超 <machao@qq.com>" in body
    assert "路口的水果摊占用人行道" in body
    files = [(a.filename, a.content_type, a.section) for a in parsed.attachments]
    assert files == [
        ("转发：投诉事项+马超.eml", "message/rfc822", "2"),
        ("投诉事项+马超（占道经营）.eml", "message/rfc822", "2.2"),
        ("占道照片.jpg", "image/jpeg", "2.2.2"),
    ]
    # The kept .eml is the forwarded mail itself: it parses back to the same complaint.
    inner = parse_mail(parsed.attachments[1].data)
    assert inner.subject == "投诉事项+马超（占道经营）"
    assert inner.attachments[0].sha256 == parsed.attachments[2].sha256


def test_winmail_dat_is_unpacked_and_its_gbk_file_name_decoded() -> None:
    parsed = fixture("tnef_winmail.eml")
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [
        ("电梯故障.jpg", "image/jpeg")
    ]
    assert "part 2: winmail.dat unpacked, 1 file(s)" in parsed.notes
    assert parsed.body_text == "小区电梯停运一周，无人维修。"


def test_a_winmail_dat_that_is_not_tnef_is_kept_as_it_is() -> None:
    raw = (FIXTURES / "tnef_winmail.eml").read_bytes()
    start = raw.index(b"base64\r\n\r\n", raw.index(b"winmail.dat")) + 10
    broken = raw[:start] + base64.b64encode(b"not tnef at all") + raw[raw.index(b"\r\n--tnef--") :]
    parsed = parse_mail(broken)
    assert [a.filename for a in parsed.attachments] == ["winmail.dat"]
    assert any("could not be unpacked" in note for note in parsed.notes)


def test_a_uuencoded_block_in_a_text_body_becomes_a_file() -> None:
    parsed = fixture("uuencode_inline.eml")
    assert [(a.filename, a.data) for a in parsed.attachments] == [
        ("receipt.txt", "收据金额200元".encode())
    ]
    assert "begin 644" not in parsed.body_text and "Thanks." in parsed.body_text


def test_binary_bytes_labelled_text_become_a_file_not_body_text() -> None:
    parsed = parse_mail(mail(body="\x00\x01\x02binary\x00" * 10))
    assert parsed.body_text == ""
    assert parsed.attachments[0].content_type == "application/octet-stream"


# ---- attachments ----------------------------------------------------------------------------


def test_attachments_carry_sniffed_type_size_and_sha256_and_reference_the_blob_store() -> None:
    attachment = fixture("raw_8bit_gbk_headers.eml").attachments[0]
    assert attachment.filename == "现场照片.jpg"
    assert attachment.content_type == "image/jpeg"
    assert attachment.size == len(attachment.data) == 690
    assert attachment.sha256 == hashlib.sha256(attachment.data).hexdigest()
    ref = attachment.to_ref()
    assert (ref.filename, ref.sha256, ref.size) == ("现场照片.jpg", attachment.sha256, 690)


def test_an_executable_labelled_jpeg_is_typed_by_its_bytes_and_names_cannot_hide_or_escape() -> (
    None
):
    exe, photo = fixture("disguised_executable.eml").attachments
    assert (exe.content_type, exe.declared_type) == ("application/x-msdownload", "image/jpeg")
    assert (
        exe.filename == "photogpj.exe"
    )  # the right-to-left override that showed "exe.jpg" is gone
    assert photo.filename == "photo.jpg"  # "..\\..\\photo.jpg" lost its path


def test_sniffing_keeps_a_declared_type_only_where_bytes_cannot_tell() -> None:
    assert sniff_type(b"BEGIN:VCALENDAR\r\n", "text/calendar") == "text/calendar"
    assert sniff_type(b"plain words", "application/octet-stream") == "text/plain"
    assert sniff_type(b"\x00\x01\x02\x03", "text/plain") == "application/octet-stream"
    assert sniff_type(b"%PDF-1.7\n", "image/png") == "application/pdf"
    assert safe_filename("C:\\Users\\x\\..\\报告.docx") == "报告.docx"
    assert safe_filename("..") == ""


# ---- noise: auto-replies, bounces, delivery reports -----------------------------------------


class Noise(NamedTuple):
    kind: MailKind
    reason: str | None


NOISE_FIXTURES = {
    "auto_submitted.eml": Noise(MailKind.AUTO_REPLY, "header Auto-Submitted: auto-replied"),
    "x_autoreply.eml": Noise(MailKind.AUTO_REPLY, "header X-Autoreply"),
    "vacation_subject_cn.eml": Noise(MailKind.AUTO_REPLY, "subject of a vacation notice"),
    "outlook_automatic_reply.eml": Noise(
        MailKind.AUTO_REPLY, "subject prefix of an automatic reply"
    ),
    "precedence_bulk.eml": Noise(MailKind.AUTO_REPLY, "header Precedence: bulk"),
    "leave_complaint.eml": Noise(MailKind.NORMAL, None),
    "bounce_dsn.eml": Noise(MailKind.BOUNCE, "multipart/report delivery-status failed"),
    "bounce_dsn_headers_only.eml": Noise(
        MailKind.BOUNCE, "multipart/report delivery-status failed"
    ),
    "delay_dsn.eml": Noise(
        MailKind.DELIVERY_REPORT, "multipart/report delivery-status actions=delayed"
    ),
    "qq_bounce.eml": Noise(MailKind.BOUNCE, "sender postmaster"),
    "read_receipt_mdn.eml": Noise(
        MailKind.DELIVERY_REPORT, "multipart/report disposition-notification"
    ),
    "gbk_subject.eml": Noise(MailKind.NORMAL, None),
}


@pytest.mark.parametrize("name", NOISE_FIXTURES)
def test_auto_replies_bounces_and_reports_are_classified_with_the_reason(name: str) -> None:
    parsed = fixture(name)
    assert (parsed.kind, parsed.kind_reason) == NOISE_FIXTURES[name]


NOISE_VARIANTS: dict[str, tuple[str, str, MailKind]] = {
    # name: (subject, extra headers, expected kind)
    "Auto-Submitted auto-generated": (
        "投诉事项+张三",
        "Auto-Submitted: auto-generated",
        MailKind.AUTO_REPLY,
    ),
    "Auto-Submitted with a comment": (
        "x",
        "Auto-Submitted: auto-replied (vacation)",
        MailKind.AUTO_REPLY,
    ),
    "Auto-Submitted: no is a person": ("投诉事项+张三", "Auto-Submitted: no", MailKind.NORMAL),
    "X-Autorespond": ("x", "X-Autorespond: yes", MailKind.AUTO_REPLY),
    "X-Autogenerated: Reply": ("x", "X-Autogenerated: Reply", MailKind.AUTO_REPLY),
    "Precedence junk": ("x", "Precedence: junk", MailKind.AUTO_REPLY),
    "Precedence list": ("x", "Precedence: list", MailKind.AUTO_REPLY),
    "Precedence first-class is a person": ("x", "Precedence: first-class", MailKind.NORMAL),
    "X-Failed-Recipients": ("x", "X-Failed-Recipients: a@b.c", MailKind.BOUNCE),
    "自动回复 prefix on a complaint subject": ("自动回复：投诉事项+张三", "", MailKind.AUTO_REPLY),
    "自動回覆 (traditional)": ("自動回覆: 您的來信", "", MailKind.AUTO_REPLY),
    "【自动回复】 in brackets": ("【自动回复】您好", "", MailKind.AUTO_REPLY),
    "Out of Office prefix": ("Out of Office: complaint", "", MailKind.AUTO_REPLY),
    "Automatic reply prefix": ("Automatic reply: 投诉事项+张三", "", MailKind.AUTO_REPLY),
    "[Auto-Reply] prefix": ("[Auto-Reply] Re: help", "", MailKind.AUTO_REPLY),
    "休假中 alone": ("休假中，5月6日返回", "", MailKind.AUTO_REPLY),
    "外出 notice": ("外出通知", "", MailKind.AUTO_REPLY),
    "Out of office alone": ("Out of office until Monday", "", MailKind.AUTO_REPLY),
    "vacation word in a complaint": ("休假被拒+李四", "", MailKind.NORMAL),
    "vacation word inside a subject": ("投诉单位不批准休假", "", MailKind.NORMAL),
    "an ordinary complaint": ("投诉事项+张三", "", MailKind.NORMAL),
}


@pytest.mark.parametrize("variant", NOISE_VARIANTS, ids=list(NOISE_VARIANTS))
def test_auto_reply_headers_and_subjects_in_chinese_and_english(variant: str) -> None:
    subject, headers, kind = NOISE_VARIANTS[variant]
    assert parse_mail(mail(subject, headers=headers)).kind is kind


def test_a_bounce_names_the_message_id_of_our_mail_that_bounced() -> None:
    for name in ("bounce_dsn.eml", "bounce_dsn_headers_only.eml"):
        assert fixture(name).bounce_of == "<ack.TS202405-000123@shouli.example.gov.cn>"
    assert fixture("qq_bounce.eml").bounce_of == "<ack.TS202405-000124@shouli.example.gov.cn>"
    assert fixture("gbk_subject.eml").bounce_of is None


def test_mail_from_mailer_daemon_is_a_bounce_whatever_its_subject() -> None:
    parsed = parse_mail(mail("Returned mail", sender="MAILER-DAEMON@mx.example.cn"))
    assert parsed.kind is MailKind.BOUNCE


# ---- complainant ----------------------------------------------------------------------------


class Convention(NamedTuple):
    subject: str
    matter: str | None
    name: str | None
    anonymous: bool = False


CONVENTIONS = [
    Convention("投诉事项+张三", "投诉事项", "张三"),
    Convention("投诉事项＋张三", "投诉事项", "张三"),
    Convention("投诉事项 + 张三 ", "投诉事项", "张三"),
    Convention("投诉事项　＋　张　三", "投诉事项", "张三"),
    Convention("投诉：张三", "投诉", "张三"),
    Convention("投诉: 张三", "投诉", "张三"),
    Convention("投诉人：李四", None, "李四"),
    Convention("投诉事项+张三（噪音扰民）", "投诉事项（噪音扰民）", "张三"),
    Convention("【紧急】投诉事项+余琍-路灯损坏", "【紧急】投诉事项-路灯损坏", "余琍"),
    Convention("转发：投诉事项+张三", "投诉事项", "张三"),
    Convention("Re: 转发: 投诉事项+张三", "投诉事项", "张三"),
    Convention("噪音+张三+13812345678", "噪音", "张三"),
    Convention("投诉事项+阿卜杜拉·买买提", "投诉事项", "阿卜杜拉·买买提"),
    Convention("投诉事项+𠮷田", "投诉事项", "𠮷田"),
    Convention("Noise complaint + John Smith", "Noise complaint", "John Smith"),
    Convention("Complaint: Mary-Jane O'Brien", "Complaint", "Mary-Jane O'Brien"),
    Convention("投诉事项+匿名", "投诉事项", None, anonymous=True),
    Convention("小区噪音问题", None, None),
    Convention("关于：小区噪音", None, None),
    Convention("投诉事项+", None, None),
    Convention("投诉事项+我家楼上每天晚上都很吵", None, None),
    Convention("Noise + alice@example.com", None, None),
]


@pytest.mark.parametrize("case", CONVENTIONS, ids=[c.subject for c in CONVENTIONS])
def test_subject_convention_matter_plus_name_in_its_chinese_and_english_forms(
    case: Convention,
) -> None:
    found = split_subject(case.subject)
    assert (found.matter, found.name, found.anonymous) == (case.matter, case.name, case.anonymous)


def test_complainant_name_falls_back_to_the_display_name_and_respects_anonymity() -> None:
    assert complainant_from(
        parse_mail(mail("小区噪音", sender=f"{utf8_word('王五')} <w@x.cn>"))
    ) == ("王五", None)
    assert complainant_from(
        parse_mail(mail("投诉事项+张三", sender=f"{utf8_word('王五')} <w@x.cn>"))
    ) == ("张三", "投诉事项")
    anonymous = parse_mail(mail("投诉事项+匿名", sender=f"{utf8_word('王五')} <w@x.cn>"))
    assert complainant_from(anonymous) == (None, "投诉事项")
    assert complainant(anonymous).anonymous
    assert complainant_from(parse_mail(mail("小区噪音", sender="w@x.cn"))) == (None, None)


def test_phones_in_the_body_are_normalised_and_ids_accounts_and_hotlines_are_not_phones() -> None:
    parsed = fixture("phones_in_body.eml")
    person = complainant(parsed)
    assert (person.name, person.email) == ("林芳", "linfang@example.cn")
    assert (person.phone, person.phone_raw) == ("+8613812345678", "138 1234 5678")
    phones = [(p.e164, p.kind, p.extension) for p in body_phones(parsed)]
    assert phones == [
        ("+8613812345678", PhoneKind.MOBILE, None),
        ("+8675588881234", PhoneKind.LANDLINE, "808"),
    ]


# ---- identity and robustness ----------------------------------------------------------------


def test_idempotency_key_is_the_message_id_or_a_hash_that_ignores_transit_headers() -> None:
    raw = (FIXTURES / "gbk_subject.eml").read_bytes()
    assert idempotency_key(raw, parse_mail(raw)) == "<gbk.1@qq.com>"

    raw = (FIXTURES / "no_message_id.eml").read_bytes()
    key = idempotency_key(raw, parse_mail(raw))
    assert key.startswith("sha256:") and len(key) == 7 + 64
    # The same mail fetched over IMAP: another Received, a Delivered-To, LF line ends.
    via_imap = (
        b"Return-Path: <gaoyang@example.cn>\nDelivered-To: complaints@example.gov.cn\n"
        b"Received: from mx (localhost)\n\tby imap; Wed, 1 May 2024 09:13:00 +0800\n"
        + raw.replace(b"\r\n", b"\n")
    )
    assert idempotency_key(via_imap, parse_mail(via_imap)) == key
    edited = raw.replace(b"Subject:", b"Subject: Re:")
    assert idempotency_key(edited, parse_mail(edited)) != key

    long_id = "<" + "a" * 600 + "@example.cn>"
    raw = mail(message_id=long_id)
    assert (
        idempotency_key(raw, parse_mail(raw))
        == "message-id-sha256:" + hashlib.sha256(long_id.encode()).hexdigest()
    )


def _nested(depth: int) -> bytes:
    head = b"From: a@b.c\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    return head + opening + b"Content-Type: text/plain\r\n\r\nbottom\r\n"


HOSTILE = {
    "empty": b"",
    "only a newline": b"\r\n",
    "headers only": b"Subject: x\r\nFrom: a@b.c",
    "not a mail at all": bytes(range(256)) * 8,
    "NUL bytes in headers": b"Subj\x00ect: a\x00b\r\nFrom: \x00\r\n\r\nbody",
    "nesting 200 deep": _nested(200),
    "nesting 3000 deep": _nested(3000),
    "one 1 MB header line": b"Subject: " + b"A" * 1_000_000 + b"\r\n\r\nbody",
    "base64 cut mid-group": mail()[:-5],
    "charset that is a codec of bytes": mail(content_type="text/plain; charset=base64"),
    "charset that is unicode-escape": mail(content_type="text/plain; charset=unicode-escape"),
    "multipart without a boundary": mail(content_type="multipart/mixed"),
    "message/rfc822 that is empty": b"Content-Type: message/rfc822\r\n\r\n",
    "delivery-status that is garbage": (
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
        b"--x\r\nContent-Type: message/delivery-status\r\n\r\n\x00\xff\r\n--x--"
    ),
    "bad RFC 2231 sections": b"Content-Type: image/png; name*0*=zz''%ZZ; name*9=x; name*=\r\n\r\nx",
    "invalid encoded-words": b"Subject: =?gb2312?B?!!!?= =?x?Q?=ZZ?= =?utf-8?B??=\r\n\r\n",
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_input_never_raises_and_still_gives_a_mail(raw: bytes) -> None:
    parsed = parse_mail(raw)
    assert isinstance(parsed, ParsedMail)
    (parsed.subject + parsed.body_text).encode("utf-8")
    assert idempotency_key(raw, parsed)


def test_randomly_damaged_fixtures_never_raise() -> None:
    rng = random.Random(20240501)
    sources = [path.read_bytes() for path in sorted(FIXTURES.glob("*.eml"))]
    for _ in range(400):
        raw = bytearray(rng.choice(sources))
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(raw))
            action = rng.random()
            if action < 0.4:
                raw[position] = rng.randrange(256)
            elif action < 0.7:
                del raw[position : position + rng.randint(1, 200)]
            else:
                raw[position:position] = rng.choice(
                    [b"\r\n", b"--", b"=?", b"\r\n\r\n", b";", b'"']
                )
        parsed = parse_mail(bytes(raw))
        (parsed.subject + parsed.body_text + "".join(parsed.charset_decisions)).encode("utf-8")


def test_a_mail_the_parser_cannot_handle_still_gives_its_text_and_an_unparseable_defect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(raw: bytes) -> ParsedMail:
        raise RecursionError("simulated parser failure")

    monkeypatch.setattr(parse_module, "_parse", explode)
    raw = (FIXTURES / "raw_8bit_utf8_headers.eml").read_bytes()
    parsed = parse_mail(raw)
    assert parsed.defects == ("unparseable: RecursionError",)
    assert parsed.subject == "投诉事项＋刘洋"
    assert "油烟和噪音" in parsed.body_text
    assert parsed.kind is MailKind.NORMAL


def test_deep_nesting_is_cut_off_with_a_defect_instead_of_exhausting_the_stack() -> None:
    parsed = parse_mail(_nested(200))
    assert any("over limit" in defect for defect in parsed.defects)


def test_dates_are_always_timezone_aware() -> None:
    raw = mail().replace(b"+0800", b"-0000")
    assert parse_mail(raw).date == datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
