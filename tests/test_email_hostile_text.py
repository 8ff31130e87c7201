"""Mail that is hostile by accident or design: stray control bytes in text, absurd nesting.

Two regressions: a NUL in a text/plain part made the whole text a ``part-1.bin`` file with an
empty body; MIME nested a thousand deep lost the top-level From and Message-ID (no
acknowledgement possible, dedupe by hash) and put the raw MIME in the body. Deep fixtures are
built here, not committed: they are hundreds of kilobytes of repetition.
"""

from __future__ import annotations

import base64
import json
import random
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import Message
from email.parser import BytesParser

import pytest
from sqlalchemy import select

from channels.email import ParsedMail, idempotency_key, parse_mail
from channels.email import parse as parse_module
from channels.email.mime import MAX_DEPTH, MAX_PARTS
from store.models import Attachment, Ticket
from tests.stack import Stack
from tests.test_email_smtp import listener, send

COMPLAINT = "停水三天了，家里老人孩子没水用，请尽快处理。联系电话13812345678。"


def _word(text: str) -> str:
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


TOP_HEADERS = (
    f"From: {_word('张三')} <zhangsan@example.cn>\r\n"
    "To: complaints@water.example.cn\r\n"
    f"Subject: {_word('停水投诉')}\r\n"
    "Date: Wed, 01 May 2024 09:00:00 +0800\r\n"
    "Message-ID: <{mid}>\r\n"
    "In-Reply-To: <earlier@example.cn>\r\n"
    "References: <first@example.cn> <earlier@example.cn>\r\n"
    "MIME-Version: 1.0\r\n"
)


def _png() -> bytes:
    """A real (1x1) PNG: signature, IHDR, IDAT, IEND with valid CRCs."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    ihdr = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    idat = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _text_mail(
    body: bytes,
    *,
    charset: str | None = "utf-8",
    cte: str = "8bit",
    mid: str = "nul@example.cn",
) -> bytes:
    """A single-part text/plain mail carrying ``body`` (already in its charset) as given."""
    label = f"; charset={charset}" if charset else ""
    encoded = base64.encodebytes(body) if cte == "base64" else body
    return (
        TOP_HEADERS.format(mid=mid)
        + f"Content-Type: text/plain{label}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    ).encode() + encoded


# ---- 7. stray control bytes in text/plain ---------------------------------------------------


STRAY = {
    "a NUL": "停水三天了\x00，请尽快处理。",
    "a NUL at the very end (C string terminator)": COMPLAINT + "\x00",
    "a vertical tab pasted from a spreadsheet": "户号\x0b31000123\x0b停水三天了",
    "a DOS end-of-file byte": COMPLAINT + "\r\n\x1a",
    "a backspace and a bell": "停水\x08三天了\x07，请尽快处理。",
    "a few NULs in a long text": "\x00".join([COMPLAINT * 3] * 4),
    # Text that starts like a file format's magic number ("BM": bitmap) is still text.
    "a NUL in text starting with BM": "BMW车主投诉：4S店维修拖延\x00三个月",
}


@pytest.mark.parametrize("text", STRAY.values(), ids=list(STRAY))
@pytest.mark.parametrize(
    ("charset", "cte"), [("utf-8", "8bit"), ("utf-8", "base64"), (None, "8bit")]
)
def test_a_few_stray_control_bytes_in_text_plain_leave_it_body_text(
    text: str, charset: str | None, cte: str
) -> None:
    parsed = parse_mail(_text_mail(text.encode(), charset=charset, cte=cte))
    visible = re.sub(r"[\x00-\x08\x0b\x0e-\x1f]", "", text).strip()
    assert re.sub(r"[\x00-\x08\x0b\x0e-\x1f]", "", parsed.body_text).strip() == visible
    assert parsed.attachments == ()
    assert not any("binary data" in note for note in parsed.notes)


def test_a_nul_in_gb2312_text_is_still_decoded_as_chinese_body_text() -> None:
    parsed = parse_mail(
        _text_mail("停水三天了\x00，请尽快处理。".encode("gb18030"), charset="gb2312")
    )
    assert parsed.body_text.replace("\x00", "") == "停水三天了，请尽快处理。"
    assert parsed.attachments == ()


def test_the_stray_control_bytes_are_counted_in_a_note() -> None:
    parsed = parse_mail(_text_mail(("\x00".join([COMPLAINT] * 4)).encode()))
    assert "part 1: 3 stray control byte(s) in text/plain, kept as text" in parsed.notes


def test_text_with_a_stray_nul_next_to_a_real_attachment_keeps_both() -> None:
    png = _png()
    raw = (
        TOP_HEADERS.format(mid="mixed-nul@example.cn")
        + 'Content-Type: multipart/mixed; boundary="x"\r\n\r\n'
        + "--x\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64"
        + "\r\n\r\n"
        + base64.encodebytes((COMPLAINT + "\x00").encode()).decode()
        + '--x\r\nContent-Type: image/png; name="meter.png"\r\nContent-Transfer-Encoding: base64'
        + "\r\n\r\n"
        + base64.encodebytes(png).decode()
        + "--x--\r\n"
    ).encode()
    parsed = parse_mail(raw)
    assert parsed.body_text.rstrip("\x00") == COMPLAINT
    assert [(a.filename, a.content_type, a.data) for a in parsed.attachments] == [
        ("meter.png", "image/png", png)
    ]


def _random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


BINARY = {
    "a PNG": _png(),
    "a larger PNG-signed file": _png() + _random_bytes(4000, 1),
    "2 KB of random bytes": _random_bytes(2048, 2),
    "256 random bytes": _random_bytes(256, 3),
    "zlib-compressed data": zlib.compress(COMPLAINT.encode() * 50, 9),
}


@pytest.mark.parametrize("data", BINARY.values(), ids=list(BINARY))
def test_genuinely_binary_data_labelled_text_plain_still_becomes_a_file(data: bytes) -> None:
    parsed = parse_mail(_text_mail(data, cte="base64"))
    assert parsed.body_text == ""
    assert [a.data for a in parsed.attachments] == [data]
    assert "part 1: binary data labelled text/plain, kept as file" in parsed.notes


async def test_a_mail_with_a_stray_nul_becomes_a_ticket_with_its_text_through_the_listener(
    embedded_stack: Stack,
) -> None:
    raw = _text_mail(("停水三天了\x00，请尽快处理。" + COMPLAINT).encode(), cte="base64")
    embedded_stack.start_router()
    async with listener(embedded_stack) as port:
        replies = await send(port, raw)
    assert replies[-1][0] == 250
    assert await embedded_stack.wait_for_tickets(1) == 1
    async with embedded_stack.rt.database.sessions() as session:
        ticket = (await session.execute(select(Ticket))).scalar_one()
        attachments = (await session.execute(select(Attachment))).scalars().all()
    assert "停水三天了" in ticket.body and "请尽快处理" in ticket.body
    assert COMPLAINT in ticket.body
    assert attachments == [], "the text is the body, not a part-1.bin file"
    assert ticket.source_key == "<nul@example.cn>"


# ---- 8. deep nesting ------------------------------------------------------------------------


def _top_multipart(mid: str, middle: str) -> bytes:
    """Complaint text, then ``middle`` (one part, boundary lines included), then a photo."""
    return (
        TOP_HEADERS.format(mid=mid)
        + 'Content-Type: multipart/mixed; boundary="top"\r\n\r\n'
        + "--top\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64"
        + "\r\n\r\n"
        + base64.encodebytes(COMPLAINT.encode()).decode()
        + "--top\r\n"
        + middle
        + '--top\r\nContent-Type: image/png; name="meter.png"\r\nContent-Transfer-Encoding: base64'
        + "\r\n\r\n"
        + base64.encodebytes(_png()).decode()
        + "--top--\r\n"
    ).encode()


def nested_rfc822(depth: int, mid: str = "deep-rfc822@example.cn") -> bytes:
    """message/rfc822 inside message/rfc822 ...: the innermost text is at MIME depth ``depth``.

    Parts: the root, the complaint text, ``depth - 1`` messages, the innermost text, the photo.
    """
    levels = "".join(
        f"From: relay{level}@example.cn\r\nSubject: level {level}\r\n"
        "Content-Type: message/rfc822\r\n\r\n"
        for level in range(2, depth)
    )
    middle = (
        "Content-Type: message/rfc822\r\n\r\n"
        + levels
        + "From: bottom@example.cn\r\nContent-Type: text/plain\r\n\r\nthe bottom\r\n"
    )
    return _top_multipart(mid, middle)


def nested_multipart(depth: int, mid: str = "deep-multipart@example.cn") -> bytes:
    """multipart/mixed inside multipart/mixed ...: the innermost text is at depth ``depth``."""
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'
        for level in range(1, depth)
    )
    closing = "".join(f"--b{level}--\r\n" for level in reversed(range(1, depth)))
    middle = opening + "Content-Type: text/plain\r\n\r\nthe bottom\r\n" + closing
    return _top_multipart(mid, middle)


DEEP = {
    "message/rfc822 nested 1,000 deep": (nested_rfc822, 1000, "<deep-rfc822@example.cn>"),
    "multipart nested 2,000 deep": (nested_multipart, 2000, "<deep-multipart@example.cn>"),
}


def skipped_count(parsed: ParsedMail) -> int:
    counts = [
        int(match.group(1))
        for defect in parsed.defects
        if (match := re.match(r"(\d+) part\(s\) over limit", defect))
    ]
    assert len(counts) == 1, parsed.defects
    return counts[0]


@pytest.mark.parametrize(("build", "depth", "mid"), DEEP.values(), ids=list(DEEP))
def test_deep_nesting_keeps_every_top_level_header_and_the_readable_parts(
    build: Callable[[int], bytes], depth: int, mid: str
) -> None:
    raw = build(depth)
    parsed = parse_mail(raw)
    assert (parsed.from_name, parsed.from_address) == ("张三", "zhangsan@example.cn")
    assert parsed.subject == "停水投诉"
    assert parsed.message_id == mid and idempotency_key(raw, parsed) == mid
    assert parsed.date == datetime(2024, 5, 1, 9, 0, tzinfo=timezone(timedelta(hours=8)))
    assert parsed.in_reply_to == "<earlier@example.cn>"
    assert parsed.references == ("<first@example.cn>", "<earlier@example.cn>")
    assert parsed.to == ("complaints@water.example.cn",)
    # The text before the deep part and the photo after it are still read; the raw is not
    # the body.
    assert COMPLAINT in parsed.body_text
    assert "Content-Type" not in parsed.body_text and "--b" not in parsed.body_text
    assert "the bottom" not in parsed.body_text
    assert "meter.png" in [a.filename for a in parsed.attachments]
    assert not any(defect.startswith("unparseable") for defect in parsed.defects)


@pytest.mark.parametrize(("build", "depth", "mid"), DEEP.values(), ids=list(DEEP))
def test_deep_nesting_reports_the_true_number_of_parts_skipped(
    build: Callable[[int], bytes], depth: int, mid: str
) -> None:
    parsed = parse_mail(build(depth))
    # Parts at MIME depth 1 ..= depth along the chain; those deeper than MAX_DEPTH are skipped.
    assert skipped_count(parsed) == depth - MAX_DEPTH
    assert parsed.defects[0].startswith(f"{depth - MAX_DEPTH} part(s) over limit"), (
        "the intake note shows the first defect: it must be the one that says what was lost"
    )


def test_a_flat_mail_past_the_part_limit_reports_exactly_the_parts_not_read() -> None:
    parts = 1500
    raw = (
        TOP_HEADERS.format(mid="wide@example.cn")
        + 'Content-Type: multipart/mixed; boundary="w"\r\n\r\n'
        + "".join(f"--w\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(parts))
        + "--w--\r\n"
    ).encode()
    parsed = parse_mail(raw)
    assert skipped_count(parsed) == parts + 1 - MAX_PARTS  # the root counts as a part
    assert parsed.message_id == "<wide@example.cn>"


# The true count, checked against the stdlib's own tree: random structures shallow enough
# for the stdlib parser (and under MAX_PARTS), including the awkward cases: digests (whose
# children default to message/rfc822), missing close boundaries, an inner multipart that
# reuses an outer boundary, preambles and epilogues.


@dataclass
class _Tree:
    kind: str  # "leaf", "rfc822", or a multipart subtype
    children: list[_Tree] = field(default_factory=list)


def _random_tree(rng: random.Random, depth: int, budget: list[int]) -> _Tree:
    budget[0] -= 1
    if budget[0] <= 0 or rng.random() < 0.15:
        return _Tree("leaf")
    kind = rng.choice(["mixed", "alternative", "digest", "related", "rfc822", "rfc822"])
    if kind == "rfc822":
        return _Tree(kind, [_random_tree(rng, depth + 1, budget)])
    width = rng.choice([1, 1, 1, 2, 3])
    return _Tree(kind, [_random_tree(rng, depth + 1, budget) for _ in range(width)])


def _render(tree: _Tree, rng: random.Random, boundaries: list[str], in_digest: bool) -> str:
    if tree.kind == "leaf":
        return "Content-Type: text/plain\r\n\r\nleaf text\r\n"
    if tree.kind == "rfc822":
        headers = "" if in_digest and rng.random() < 0.5 else "Content-Type: message/rfc822\r\n"
        inner = _render(tree.children[0], rng, boundaries, False)
        return headers + "\r\n" + "From: inner@example.cn\r\n" + inner
    reuse = boundaries and rng.random() < 0.05
    boundary = rng.choice(boundaries) if reuse else f"{tree.kind}{len(boundaries)}"
    out = f'Content-Type: multipart/{tree.kind}; boundary="{boundary}"\r\n\r\n'
    if rng.random() < 0.3:
        out += "This is a preamble.\r\n"
    for child in tree.children:
        body = _render(child, rng, [*boundaries, boundary], tree.kind == "digest")
        out += f"--{boundary}\r\n{body}"
    if rng.random() < 0.8:
        out += f"--{boundary}--\r\n"
        if rng.random() < 0.3:
            out += "An epilogue.\r\n"
    return out


def _parts_deeper_than(root: Message, limit: int) -> int:
    count = 0
    stack: list[tuple[Message, int]] = [(root, 0)]
    while stack:
        part, depth = stack.pop()
        count += depth > limit
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend((child, depth + 1) for child in payload)
    return count


def _random_deep_mails() -> Iterator[tuple[int, bytes]]:
    rng = random.Random(20240501)
    produced = 0
    while produced < 60:
        # A spine deep enough to cross MAX_DEPTH, with random trees hanging off it.
        tree = _Tree("mixed")
        node = tree
        for _ in range(rng.randint(MAX_DEPTH - 2, MAX_DEPTH + 15)):
            kind = rng.choice(["mixed", "rfc822", "alternative", "digest"])
            child = _Tree(kind)
            # A forwarded message holds exactly one message; a multipart may have siblings.
            width = 0 if node.kind == "rfc822" else rng.randint(0, 2)
            siblings = [_random_tree(rng, 0, [rng.randint(1, 6)]) for _ in range(width)]
            node.children = [*siblings, child] if rng.random() < 0.5 else [child, *siblings]
            node = child
        node.children = [_random_tree(rng, 0, [40])]
        raw = TOP_HEADERS.format(mid=f"r{produced}@example.cn") + _render(tree, rng, [], False)
        yield produced, raw.encode()
        produced += 1


RANDOM_MAILS = dict(_random_deep_mails())


@pytest.mark.parametrize("index", RANDOM_MAILS)
def test_the_skipped_count_matches_the_stdlib_tree_for_random_structures(index: int) -> None:
    raw = RANDOM_MAILS[index]
    reference = BytesParser(policy=policy.default).parsebytes(raw)
    total = _parts_deeper_than(reference, -1)
    assert total < MAX_PARTS, "keep the random mails under the part limit"
    expected = _parts_deeper_than(reference, MAX_DEPTH)
    parsed = parse_mail(raw)
    if expected:
        assert skipped_count(parsed) == expected, index
    else:
        assert not any("over limit" in defect for defect in parsed.defects)
    assert parsed.message_id == f"<r{index}@example.cn>"


def test_the_top_level_headers_are_read_even_when_the_parser_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(raw: bytes) -> ParsedMail:
        raise RecursionError("simulated parser failure")

    monkeypatch.setattr(parse_module, "_parse", explode)
    raw = nested_multipart(50, mid="fallback@example.cn")
    parsed = parse_mail(raw)
    assert parsed.defects == ("unparseable: RecursionError",)
    assert (parsed.from_name, parsed.from_address) == ("张三", "zhangsan@example.cn")
    assert parsed.subject == "停水投诉"
    assert parsed.message_id == "<fallback@example.cn>"
    assert parsed.in_reply_to == "<earlier@example.cn>"
    assert parsed.references == ("<first@example.cn>", "<earlier@example.cn>")
    assert parsed.date == datetime(2024, 5, 1, 9, 0, tzinfo=timezone(timedelta(hours=8)))


@pytest.mark.parametrize(("build", "depth", "mid"), DEEP.values(), ids=list(DEEP))
async def test_a_deeply_nested_mail_becomes_a_ticket_with_its_sender_and_message_id(
    embedded_stack: Stack, build: Callable[[int], bytes], depth: int, mid: str
) -> None:
    raw = build(depth)
    embedded_stack.start_router()
    async with listener(embedded_stack, max_message_bytes=10 * 1024 * 1024) as port:
        replies = await send(port, raw)
    assert replies[-1][0] == 250
    assert await embedded_stack.wait_for_tickets(1) == 1
    async with embedded_stack.rt.database.sessions() as session:
        ticket = (await session.execute(select(Ticket))).scalar_one()
    assert ticket.source_key == mid, "deduplicated by its Message-ID, not a content hash"
    assert COMPLAINT in ticket.body
    code, out, _ = await embedded_stack.shouli("tickets", "show", ticket.number, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["complainant"]["email"] == "zhangsan@example.cn"
    notes = [
        json.dumps(e["detail"], ensure_ascii=False)
        for e in shown["events"]
        if e["kind"] == "intake_note"
    ]
    assert any(f"{depth - MAX_DEPTH} part(s) over limit" in note for note in notes), notes
