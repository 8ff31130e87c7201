"""The email parser against other parsers' corpora and against generated Chinese complaint mail.

The four corpora under ``../shared/corpus/email/`` carry the expectations their own projects'
tests assert. Those are opinions: where they follow the RFCs we must agree, and every place we
do not is listed in ACCEPTED with the reason. An accepted disagreement that no longer occurs
fails too, so the list cannot go stale.

Expectation fields about things ParsedMail does not expose (compat32 round-trips, received-hop
parsing, the stdlib's own charset lists and tree shapes, raw HTML bodies) are listed in
NOT_OUR_API and skipped.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from channels.email import MailKind, ParsedMail, complainant_from, idempotency_key, parse_mail
from tests.support import SHARED, need_shared

CORPUS = SHARED / "corpus" / "email"
GENERATOR = SHARED / "bench" / "gen_emails.py"
SOURCES = ("cpython", "django-helpdesk", "mail-parser", "php-mime-mail-parser")

# Expectation fields that describe something other than what parse_mail returns.
NOT_OUR_API: dict[str, str] = {
    "compat32_roundtrip_identical": "stdlib generator round-trip, not parsing",
    "content_type": "the top-level MIME type is not part of ParsedMail",
    "part0_content_type": "MIME tree shape",
    "structure": "MIME tree shape (the stdlib's own test)",
    "boundary": "MIME boundary parameter",
    "get_charsets": "the stdlib's list of part labels; our decoding is tested on the text",
    'get_charsets(failobj="dingbat")': "the stdlib's list of part labels",
    "content_charset": "the stdlib's charset accessor",
    "note": "commentary",
    "followup_count": "django-helpdesk ticket follow-ups",
    "reply_to": "Reply-To is not used for the complainant (the sender's From is)",
    "X-MSMail-Priority": "arbitrary header access",
    "received_count": "Received-hop parsing",
    "received_all_have_date_utc": "Received-hop parsing",
    "received_all_have_hop": "Received-hop parsing",
    "server_ip_trust_localhost": "Received-hop parsing",
    "server_ip_trust_smtp.customers.net": "Received-hop parsing",
    "Received-SPF_contains": "arbitrary header access",
    "header_present": "arbitrary header access",
    "header_in_subpart_only": "arbitrary header access",
    "headers_exact": "arbitrary header access",
    "body_utf8_md5": "hash of mail-parser's own join of text parts",
    "body_utf8_sha256": "hash of mail-parser's own join of text parts",
    "text_not_managed": "mail-parser's list of parts it could not classify",
    "attachments_fingerprint_no_error": "mail-parser's fingerprint helper",
    "date_raw": "the raw Date text; ParsedMail.date is the parsed value",
    "from_raw": "the raw header text",
    "to_raw": "the raw header text",
    "html_body": "raw HTML is never returned: HTML becomes text in body_text (issue 3 §3)",
    "html_body_contains": "raw HTML is never returned",
    "embedded_data_uri_count": "PHP's HTML rewriting of cid: images to data: URIs",
    "first_attachment_content_disposition": "mail-parser's disposition string of a body part",
    "text_html_count": "mail-parser's count of HTML parts",
}

# (source, file, field) -> why our answer differs and why it is the right one.
ACCEPTED: dict[tuple[str, str, str], str] = {
    # -- file names of unnamed parts: each parser invents its own (RFC 2183 leaves it open).
    ("mail-parser", "mails/mail_test_10", "attachment_filenames"): (
        "unnamed inline images: mail-parser names them after their Content-ID, we name them "
        "part-<section>.<ext> and keep the Content-ID in its own field"
    ),
    ("php-mime-mail-parser", "mails/m0010", "attachments[0].filename"): (
        "unnamed part: PHP invents noname1, we part-2.txt"
    ),
    ("php-mime-mail-parser", "mails/m0020", "attachments[0].filename"): (
        "unnamed text/calendar part: PHP invents noname1, we part-3.ics"
    ),
    ("django-helpdesk", "eml/pgp.eml", "attachments[0].filename"): (
        "the part is named signature.asc in its Content-Disposition; part-1_signature.asc is "
        "django-helpdesk's renaming when it saves it"
    ),
    ("php-mime-mail-parser", "mails/issue115", "attachment_filenames_saved"): (
        "PHP's suffixes for files saved twice (logo_1.jpg ...); the mail names logo.jpg once"
    ),
    ("php-mime-mail-parser", "mails/issue115", "attachment_count"): (
        "the mail has three attachment parts (logo.jpg, background.jpg, attachment.txt); the "
        "PHP test saves logo.jpg repeatedly to exercise its suffixing"
    ),
    # -- types sniffed from the bytes, not taken from the label (issue 3 §3).
    ("php-mime-mail-parser", "mails/m0001", "attachments[0].content_type"): (
        "labelled application/octet-stream, the bytes are text: text/plain (WHATWG MIME "
        "Sniffing §7.1)"
    ),
    ("php-mime-mail-parser", "mails/m0002", "attachments[0].content_type"): "bytes are text",
    ("php-mime-mail-parser", "mails/m0003", "attachments[0].content_type"): "bytes are text",
    ("php-mime-mail-parser", "mails/m0004", "attachments[0].content_type"): "bytes are text",
    ("php-mime-mail-parser", "mails/m0005", "attachments[0].content_type"): "bytes are text",
    ("php-mime-mail-parser", "mails/m0007", "attachments[0].content_type"): "bytes are text",
    ("php-mime-mail-parser", "mails/m0010", "attachments[0].content_type"): "bytes are text",
    ("php-mime-mail-parser", "mails/issue149", "attachments[0].content_type"): "bytes are text",
    ("php-mime-mail-parser", "mails/m0008", "attachments[0].content_type"): (
        "labelled image/gif, the bytes start FF D8 FF: a JPEG (as its name says)"
    ),
    ("php-mime-mail-parser", "mails/m0008", "attachments[1].content_type"): "bytes are a JPEG",
    ("php-mime-mail-parser", "mails/m0025", "attachments[0].content_type"): "bytes are a JPEG",
    ("php-mime-mail-parser", "mails/m0025", "attachments[1].content_type"): "bytes are a JPEG",
    ("php-mime-mail-parser", "mails/m0013", "attachments[0].content_type"): (
        "labelled application/pdf, the 10 bytes are the ASCII word 'underscore'"
    ),
    ("php-mime-mail-parser", "mails/m0018", "attachments[0].content_type"): (
        "labelled image/jpeg, but the test file's base64 is mangled (upper-cased) and the bytes "
        "are not a JPEG"
    ),
    # -- forwarded messages: kept as .eml AND their text and files extracted (issue 3 §3).
    ("php-mime-mail-parser", "mails/issue158a", "text_body"): (
        "the forward's text is included under a forwarded-message marker, and the HTML-only "
        "outer body is rendered to text instead of being empty"
    ),
    ("php-mime-mail-parser", "mails/issue158b", "text_body"): "forward's text included",
    ("php-mime-mail-parser", "mails/issue158c", "text_body"): "forward's text included",
    ("php-mime-mail-parser", "mails/issue158d", "text_body"): "forward's text included",
    ("php-mime-mail-parser", "mails/issue274.eml", "attachment_count"): (
        "the files inside the forwarded test-localhost.eml are extracted too"
    ),
    ("php-mime-mail-parser", "mails/issue274.eml", "attachment_filenames"): (
        "the files inside the forwarded test-localhost.eml are extracted too"
    ),
    # -- alternatives are one content, not an attachment (RFC 2046 §5.1.4).
    ("django-helpdesk", "eml/quoted_printable.eml", "followup_attachment_count"): (
        "django-helpdesk stores the HTML alternative as an attachment; it is the same content "
        "as the text/plain part (RFC 2046 §5.1.4), so it is not a file the complainant sent"
    ),
    ("django-helpdesk", "eml/quoted_printable.eml", "attachment_contains"): (
        "no HTML-alternative attachment (see followup_attachment_count)"
    ),
    ("django-helpdesk", "eml/utf-nondecodable.eml", "first_attachment_contains"): (
        "no HTML-alternative attachment (see quoted_printable.eml)"
    ),
    (
        "django-helpdesk",
        "eml/forwarded-message.eml",
        "description_not_contains_if_FULL_FIRST_MESSAGE_False",
    ): ("a quoted original is kept in the body (django-helpdesk's FULL_FIRST_MESSAGE=True)"),
    # -- lossy conversions in the other parser.
    ("php-mime-mail-parser", "mails/failure.eml", "text_body_contains"): (
        "PHP converts to a charset without ー/敗 and writes '?'; we decode the GB 2312 label "
        "as GB 18030 and keep every character"
    ),
    # -- text/plain is preferred over the HTML alternative (issue 3 §3).
    ("django-helpdesk", "eml/utf-nondecodable.eml", "description_contains"): (
        "the phrase is only in the HTML alternative; the text/plain alternative is the body "
        "(RFC 2046 §5.1.4 and issue 3: text/plain preferred)"
    ),
}


@dataclass(frozen=True)
class Entry:
    source: str
    file: str
    expected: dict[str, Any] | None

    @property
    def path(self) -> Path:
        return CORPUS / self.source / self.file


def _entries() -> Iterator[Entry]:
    if not CORPUS.is_dir():
        return
    for source in SOURCES:
        manifest = json.loads((CORPUS / source / "MANIFEST.json").read_text(encoding="utf-8"))
        for item in manifest["entries"]:
            yield Entry(source, item["file"], item["expected"])


ENTRIES = list(_entries())

# What the noise classifier must make of each corpus message that is not a plain one (all the
# others are MailKind.NORMAL): reports and bounces by their MIME report or their sender, list
# and bulk mail by Precedence, an auto-reply by its subject.
KINDS: dict[tuple[str, str], MailKind] = {
    ("cpython", "data/msg_05.txt"): MailKind.DELIVERY_REPORT,  # report, no Action: failed
    ("cpython", "data/msg_16.txt"): MailKind.BOUNCE,  # postmaster, "Delivery has failed"
    ("cpython", "data/msg_25.txt"): MailKind.BOUNCE,  # MAILER-DAEMON
    ("cpython", "data/msg_32.txt"): MailKind.AUTO_REPLY,  # Precedence: bulk
    ("cpython", "data/msg_33.txt"): MailKind.AUTO_REPLY,  # Precedence: bulk
    ("cpython", "data/msg_43.txt"): MailKind.BOUNCE,  # delivery-status, Action: failed
    ("mail-parser", "mails/mail_malformed_2"): MailKind.BOUNCE,  # delivery-status, failed
    ("mail-parser", "mails/mail_test_16"): MailKind.AUTO_REPLY,  # Precedence: junk
    ("mail-parser", "mails/mail_test_5"): MailKind.AUTO_REPLY,  # Precedence: bulk
    ("php-mime-mail-parser", "mails/failure.eml"): MailKind.DELIVERY_REPORT,  # no Action
    ("php-mime-mail-parser", "mails/issue212"): MailKind.AUTO_REPLY,  # "Automatyczna odpowiedź:"
}

Mismatches = list[tuple[str, Any, Any]]


def _defect_names(parsed: ParsedMail) -> list[str]:
    return [defect.rsplit(": ", 1)[-1] for defect in parsed.defects]


def _compare(out: Mismatches, field: str, ours: Any, theirs: Any) -> None:
    if ours != theirs:
        out.append((field, ours, theirs))


# ---- per-source checkers: each turns a manifest's expectations into (field, ours, theirs) ----


def _check_cpython(parsed: ParsedMail, expected: dict[str, Any], out: Mismatches) -> None:
    names = [a.filename for a in parsed.attachments]
    for field, value in expected.items():
        if field == "subject":
            _compare(out, field, parsed.subject, value)
        elif field == "part_filenames":
            _compare(out, field, names, value)
        elif field in ("part1_filename", "part1_param_name"):
            _compare(out, field, value in names, True)
        elif field == "decoded_parts":
            for index, shown in enumerate(value):
                text = codecs.decode(shown, "unicode_escape")  # the manifest writes \xa1
                _compare(out, f"{field}[{index}]", text.strip() in parsed.body_text, True)
        elif field == "inner_subject":
            _compare(out, field, f"主题 Subject: {value}" in parsed.body_text, True)
            _compare(out, f"{field}.eml", f"{value}.eml" in names, True)
        elif field == "inner_body":
            _compare(out, field, value.strip() in parsed.body_text, True)
        elif field == "cc_all":
            _compare(out, field, list(parsed.cc), value)
        elif field == "part_count":
            _compare(out, field, len(parsed.attachments), value)
        elif field.startswith(("defects", "inner_defects")):
            _compare(out, field, set(value) <= set(_defect_names(parsed)), True)
        elif field not in NOT_OUR_API:
            raise AssertionError(f"unhandled expectation field {field!r}")


def _check_django(parsed: ParsedMail, expected: dict[str, Any], out: Mismatches) -> None:
    body = parsed.body_text
    for field, value in expected.items():
        if field == "subject":
            _compare(out, field, parsed.subject, value)
        elif field == "title_truncated_200":
            _compare(out, field, parsed.subject.startswith(value.removesuffix("...")), True)
        elif field in ("description", "description_stripped"):
            _compare(out, field, body.strip(), value.strip())
        elif field.startswith("description_contains"):
            _compare(out, field, value in body, True)
        elif field.startswith("description_not_contains"):
            _compare(out, field, value not in body, True)
        elif field == "followup_attachment_count":
            _compare(out, field, len(parsed.attachments), value)
        elif field in ("attachment_contains", "first_attachment_contains"):
            first = (
                parsed.attachments[0].data.decode("utf-8", "replace") if parsed.attachments else ""
            )
            _compare(out, field, value in first, True)
        elif field == "attachments":
            for index, want in enumerate(value):
                got = parsed.attachments[index] if index < len(parsed.attachments) else None
                _compare(
                    out, f"attachments[{index}].filename", got and got.filename, want["filename"]
                )
                _compare(
                    out, f"attachments[{index}].content", got and got.data.decode(), want["content"]
                )
                _compare(out, f"attachments[{index}].size", got and got.size, want["size"])
        elif field not in NOT_OUR_API:
            raise AssertionError(f"unhandled expectation field {field!r}")


def _pair(parsed_name: str | None, address: str | None) -> list[str]:
    return [parsed_name or "", address or ""]


def _check_mail_parser(parsed: ParsedMail, expected: dict[str, Any], out: Mismatches) -> None:
    names = [a.filename for a in parsed.attachments]
    defects = _defect_names(parsed)
    for field, value in expected.items():
        if field in ("subject", "message_id"):
            _compare(out, field, getattr(parsed, field), value)
        elif field == "from":
            _compare(out, field, [_pair(parsed.from_name, parsed.from_address)], value)
        elif field == "from_address":
            _compare(out, field, parsed.from_address, value)
        elif field in ("to", "cc"):
            _compare(out, field, list(getattr(parsed, field)), [address for _, address in value])
        elif field == "to_count":
            _compare(out, field, len(parsed.to), value)
        elif field == "to_first_address":
            _compare(out, field, parsed.to[0] if parsed.to else None, value)
        elif field == "to_domains_contains":
            _compare(out, field, any(a.endswith("@" + value) for a in parsed.to), True)
        elif field == "date_utc":
            _compare(out, field, parsed.date and parsed.date.astimezone(UTC).isoformat(), value)
        elif field == "attachment_count":
            _compare(out, field, len(parsed.attachments), value)
        elif field == "attachment_filenames":
            _compare(out, field, names, value)
        elif field == "attachment_filenames_are_str":
            _compare(out, field, all(isinstance(n, str) and n for n in names), value)
        elif field == "attachments":
            for index, want in enumerate(value):
                got = parsed.attachments[index] if index < len(parsed.attachments) else None
                if "filename" in want:
                    _compare(
                        out,
                        f"attachments[{index}].filename",
                        got and got.filename,
                        want["filename"],
                    )
                if "md5" in want:
                    digest = got and hashlib.md5(got.data).hexdigest()
                    _compare(out, f"attachments[{index}].md5", digest, want["md5"])
                if "content-disposition" in want:
                    inline = want["content-disposition"] == "inline"
                    _compare(out, f"attachments[{index}].inline", got and got.inline, inline)
        elif field == "defects_count":
            _compare(out, field, len(defects), value)
        elif field == "defects_categories":
            _compare(out, field, sorted(set(defects)), sorted(set(value)))
        elif field == "defects_categories_include":
            _compare(out, field, set(value) <= set(defects), True)
        elif field == "has_defects":
            _compare(out, field, bool(defects), value)
        elif field not in NOT_OUR_API:
            raise AssertionError(f"unhandled expectation field {field!r}")


def _display(parsed_name: str | None, address: str | None) -> dict[str, Any]:
    # PHP's display name falls back to the address.
    return {"display": parsed_name or address, "address": address, "is_group": False}


def _check_php(parsed: ParsedMail, expected: dict[str, Any], out: Mismatches) -> None:
    body = parsed.body_text
    for field, value in expected.items():
        if field == "subject":
            _compare(out, field, parsed.subject, value)
        elif field == "from":
            _compare(out, field, [_display(parsed.from_name, parsed.from_address)], value)
        elif field == "to":
            _compare(out, field, list(parsed.to), [item["address"] for item in value])
        elif field == "text_body":
            if isinstance(value, str):
                _compare(out, field, body.strip(), value.strip())
            elif value["mode"] == "MATCH":
                _compare(out, field, body.strip(), value["value"].strip())
            else:
                _compare(out, field, body.count(value["needle"]), value["count"])
        elif field == "text_body_contains":
            _compare(out, field, value in body, True)
        elif field == "attachment_count":
            _compare(out, field, len(parsed.attachments), value)
        elif field == "attachment_filenames":
            _compare(out, field, [a.filename for a in parsed.attachments], value)
        elif field == "attachment_filenames_saved":
            _compare(out, field, [a.filename for a in parsed.attachments], value)
        elif field == "attachments":
            for index, want in enumerate(value):
                got = parsed.attachments[index] if index < len(parsed.attachments) else None
                key = f"attachments[{index}]"
                _compare(out, f"{key}.filename", got and got.filename, want["filename"])
                _compare(out, f"{key}.size", got and got.size, want["size"])
                _compare(out, f"{key}.content_type", got and got.content_type, want["content_type"])
                inline = want["content_disposition"] == "inline"
                _compare(out, f"{key}.inline", got and got.inline, inline)
                if want["needle"]:
                    count = got.data.count(want["needle"].encode()) if got else None
                    _compare(out, f"{key}.needle", count, want["needle_count"])
        elif field not in NOT_OUR_API:
            raise AssertionError(f"unhandled expectation field {field!r}")


CHECKERS: dict[str, Callable[[ParsedMail, dict[str, Any], Mismatches], None]] = {
    "cpython": _check_cpython,
    "django-helpdesk": _check_django,
    "mail-parser": _check_mail_parser,
    "php-mime-mail-parser": _check_php,
}


def _assert_well_formed(parsed: ParsedMail) -> None:
    """What must hold for any input: text is encodable, digests match, dates are aware."""
    for text in (
        parsed.subject,
        parsed.body_text,
        parsed.from_name or "",
        *parsed.charset_decisions,
    ):
        text.encode("utf-8")  # no lone surrogates leaking from undecoded bytes
    for attachment in parsed.attachments:
        assert attachment.sha256 == hashlib.sha256(attachment.data).hexdigest()
        assert attachment.size == len(attachment.data)
        assert attachment.filename and "/" not in attachment.filename
    assert parsed.date is None or parsed.date.tzinfo is not None


@pytest.mark.parametrize(
    "entry", ENTRIES or [None], ids=lambda e: f"{e.source}/{e.file}" if e else "corpus-missing"
)
def test_every_corpus_message_parses_and_agrees_with_its_manifest_where_the_rfcs_do(
    entry: Entry | None,
) -> None:
    need_shared(CORPUS)
    assert entry is not None
    raw = entry.path.read_bytes()
    parsed = parse_mail(raw)
    _assert_well_formed(parsed)
    assert parsed.kind is KINDS.get((entry.source, entry.file), MailKind.NORMAL), parsed.kind_reason
    assert idempotency_key(raw, parsed)

    found: Mismatches = []
    if entry.expected:
        CHECKERS[entry.source](parsed, entry.expected, found)
    fields = {field for field, _, _ in found}
    unexpected = [m for m in found if (entry.source, entry.file, m[0]) not in ACCEPTED]
    assert not unexpected, f"disagreements not in ACCEPTED: {unexpected}"
    stale = [
        field
        for (source, file, field) in ACCEPTED
        if source == entry.source and file == entry.file and field not in fields
    ]
    assert not stale, f"ACCEPTED lists disagreements that no longer occur: {stale}"


def test_every_accepted_disagreement_and_expected_kind_names_a_corpus_file() -> None:
    need_shared(CORPUS)
    known = {(e.source, e.file) for e in ENTRIES}
    assert {(source, file) for source, file, _ in ACCEPTED} <= known
    assert set(KINDS) <= known


# ---- generated Chinese complaint mail -------------------------------------------------------


def test_generated_chinese_complaint_mails_come_out_with_no_garbled_subject_name_or_body(
    tmp_path: Path,
) -> None:
    need_shared(GENERATOR)
    out = tmp_path / "mails"
    subprocess.run(
        [sys.executable, str(GENERATOR), "--n", "500", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    rows = [
        json.loads(line)
        for line in out.with_name("mails.manifest.jsonl").read_text("utf-8").splitlines()
    ]
    assert len(rows) == 500

    categories: Counter[str] = Counter()
    garbled: Counter[str] = Counter()
    attachments = forwards = cc = non_bmp = 0
    for row in rows:
        raw = (out / row["file"]).read_bytes()
        parsed = parse_mail(raw)
        categories[row["category"]] += 1
        everything = parsed.subject + (parsed.from_name or "") + parsed.body_text
        garbled["replacement character"] += "\ufffd" in everything
        garbled["subject"] += parsed.subject != row["subject"]
        garbled["sender name"] += parsed.from_name != row["name"]
        garbled["sender address"] += parsed.from_address != row["sender"]
        garbled["body marker"] += row["marker"] not in parsed.body_text
        garbled["name in body"] += row["name"] not in parsed.body_text
        garbled["complainant"] += complainant_from(parsed)[0] != row["name"]
        garbled["key"] += idempotency_key(raw, parsed) != row["message_id"]
        garbled["kind"] += parsed.kind is not MailKind.NORMAL
        garbled["defects"] += bool(parsed.defects)
        if row["has_attachment"]:
            attachments += 1
            names = [(a.filename, a.content_type) for a in parsed.attachments]
            garbled["attachment"] += names != [(row["attachment_name"], "image/jpeg")]
        else:
            garbled["attachment"] += bool(parsed.attachments)
        if row["cc"]:
            cc += 1
            garbled["cc"] += parsed.cc != (row["cc"],)
        forwards += row["subject"].startswith("转发")
        non_bmp += "\U00020bb7" in row["name"]
        if row["category"] == "gb2312_mislabel":
            garbled["mislabel decision"] += (
                "part 1: label gb2312 decoded as gb18030" not in parsed.charset_decisions
            )

    assert +garbled == Counter(), f"garbled or wrong: {dict(+garbled)}"
    # The sample covers every category the generator makes, including the traps.
    assert set(categories) == {"utf8", "utf8_html", "gb2312", "gbk", "gb2312_mislabel"}
    assert min(categories.values()) >= 20
    assert attachments >= 50 and cc >= 10 and forwards >= 5 and non_bmp >= 1
