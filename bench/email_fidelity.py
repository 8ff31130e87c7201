"""Email fidelity: how often the parser agrees with other parsers' test expectations, next to
Python's own ``email`` package on the same mails (issue 14).

    .venv/bin/python -m bench.email_fidelity            # every mail of ../shared/corpus/email/
    .venv/bin/python -m bench.email_fidelity --misses   # and list each disagreement

Every mail of the four corpora is read three ways:

* ``stdlib``: ``email.message_from_bytes(raw, policy=policy.default)``; subject
  ``str(msg["subject"])``, sender ``msg["from"].addresses[0]``, body
  ``msg.get_body(("plain", "html")).get_content()``, attachments ``msg.iter_attachments()``;
* ``parser``: :func:`channels.email.parse_mail` (the pure core);
* ``smtp``: sent to the real SMTP listener (aiosmtpd, :class:`MailIntake`, the blob store)
  and read back from the ticket draft it hands to the queue: the ticket's subject, the
  complainant's name and address, the body, the stored attachments. Nothing is ticketed
  (the queue hand-off is captured), so no database or broker is needed.

Per source and field it prints the share of mails on which each agrees with the manifest
(subject; sender name + address; body text; attachment names, sizes, types, contents), and the
mails whose text came out garbled: a U+FFFD, an undecoded ``=?charset?...?=`` word or a lone
surrogate in the subject, sender name or body, or a Chinese expected value not reproduced.
``parser*`` and ``smtp*`` count as agreement the disagreements tests/test_email_corpus.py
accepts with a reason (types sniffed from the bytes, a forward's text kept in the body, the HTML
alternative not an attachment, generated names of unnamed parts), and for the ticket
SMTP_ACCEPTED below (no invented complainant name, no ticket files for an automatic reply).
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import json
import os
import re
import smtplib
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from bench.common import ROOT, argument_parser, free_port

# ../shared beside the checkout, or the folder SHOULI_SHARED names (as for the tests).
CORPUS = Path(os.environ.get("SHOULI_SHARED") or ROOT.parent / "shared") / "corpus" / "email"
SOURCES = ("cpython", "django-helpdesk", "mail-parser", "php-mime-mail-parser")
FIELDS = ("subject", "sender", "body", "attachments")
READERS = ("stdlib", "parser", "smtp")
MAILBOX = "complaints@water.example.cn"
ENVELOPE_SENDER = "envelope-sender@bench.example"


@dataclass
class Attached:
    filename: str | None
    size: int
    content_type: str
    inline: bool | None
    data: bytes


@dataclass
class View:
    """What one reader made of one mail."""

    subject: str = ""
    sender_name: str | None = None
    sender_address: str | None = None
    body: str = ""
    attachments: list[Attached] = field(default_factory=list)
    failed: str | None = None


@dataclass
class Check:
    group: str  # one of FIELDS
    name: str  # the field name tests/test_email_corpus.py uses (for its ACCEPTED list)
    ok: bool


# ---- the readers ---------------------------------------------------------------------------


def stdlib_view(raw: bytes) -> View:
    view = View()
    try:
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
    except Exception as error:  # the baseline's failures count against it
        return View(failed=type(error).__name__)
    try:
        view.subject = str(msg["subject"] or "")
    except Exception as error:
        view.failed = type(error).__name__
    try:
        sender = msg["from"]
        addresses = sender.addresses if sender is not None else ()
        if addresses:
            view.sender_name = addresses[0].display_name or None
            view.sender_address = addresses[0].addr_spec or None
    except Exception as error:
        view.failed = type(error).__name__
    try:
        body = msg.get_body(("plain", "html"))
        view.body = str(body.get_content()) if body is not None else ""
    except Exception as error:
        view.failed = type(error).__name__
    try:
        for part in msg.iter_attachments():
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            disposition = part.get_content_disposition()
            view.attachments.append(
                Attached(
                    part.get_filename(),
                    len(data),
                    part.get_content_type(),
                    None if disposition is None else disposition == "inline",
                    data,
                )
            )
    except Exception as error:
        view.failed = type(error).__name__
    return view


def parser_view(raw: bytes) -> View:
    from channels.email import parse_mail

    parsed = parse_mail(raw)
    return View(
        subject=parsed.subject,
        sender_name=parsed.from_name,
        sender_address=parsed.from_address,
        body=parsed.body_text,
        attachments=[
            Attached(a.filename, a.size, a.content_type, a.inline, a.data)
            for a in parsed.attachments
        ],
    )


class SmtpReader:
    """The real listener on this loop; drafts captured where the queue would take them."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self.drafts: list[Any] = []

    async def __aenter__(self) -> SmtpReader:
        from channels.email.intake import MailIntake
        from channels.email.smtp import start_smtp
        from ingest.app.settings import load_settings
        from ingest.draft import TicketDraft
        from ingest.handoff import Handoff
        from ingest.metrics import Metrics
        from store.blobs import BlobStore

        drafts = self.drafts

        class Captured(Handoff):
            def __init__(self) -> None:
                pass

            async def submit_many(self, batch: Any) -> None:
                drafts.extend(batch)

        settings = load_settings(ROOT / "config.yaml", environ={})
        self.blobs = BlobStore(self._workdir / "blobs")
        intake = MailIntake(settings.email, self.blobs, Captured(), Metrics())
        self.port = free_port()
        config = settings.email.smtp.model_copy(update={"port": self.port})
        self._server = await start_smtp(settings, intake, config)
        self._draft_type = TicketDraft
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    def _send(self, raw: bytes) -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as client:
            client.ehlo("bench.example")
            client.mail(ENVELOPE_SENDER)
            client.rcpt(MAILBOX)
            return client.data(raw)

    async def view(self, raw: bytes) -> View:
        before = len(self.drafts)
        code, reply = await asyncio.to_thread(self._send, raw)
        if code != 250 or len(self.drafts) != before + 1:
            return View(failed=f"SMTP {code} {reply.decode(errors='replace')}")
        draft = self.drafts[-1]
        attachments = [
            Attached(a.filename, a.size, a.content_type, None, await self.blobs.get(a.sha256))
            for a in draft.attachments
        ]
        return View(
            subject=draft.subject,
            sender_name=draft.complainant.name,
            sender_address=draft.complainant.email,
            body=draft.body,
            attachments=attachments,
        )


# ---- the manifests' expectations as checks over a View ----------------------------------------


def _same_address(ours: str | None, theirs: str | None) -> bool:
    return (ours or "").lower() == (theirs or "").lower()


def _attachment_checks(view: View, wants: list[dict[str, Any]], out: list[Check]) -> None:
    for index, want in enumerate(wants):
        got = view.attachments[index] if index < len(view.attachments) else None
        key = f"attachments[{index}]"
        found: dict[str, object] = {}
        if got is not None:
            found = {
                "filename": got.filename,
                "size": got.size,
                "content_type": got.content_type,
                "content": got.data.decode("utf-8", "replace"),
                "md5": hashlib.md5(got.data).hexdigest(),
            }
        for name in ("filename", "size", "content_type", "content", "md5"):
            if name in want:
                ok = got is not None and found[name] == want[name]
                out.append(Check("attachments", f"{key}.{name}", ok))
        if want.get("needle"):
            count = got.data.count(want["needle"].encode()) if got else None
            out.append(Check("attachments", f"{key}.needle", count == want["needle_count"]))


def checks(source: str, view: View, expected: dict[str, Any]) -> list[Check]:
    out: list[Check] = []
    names = [a.filename for a in view.attachments]
    body = view.body

    def add(group: str, name: str, ok: bool) -> None:
        out.append(Check(group, name, ok))

    for name, value in expected.items():
        if name == "subject":
            add("subject", name, view.subject == value)
        elif name == "title_truncated_200":
            add("subject", name, view.subject.startswith(value.removesuffix("...")))
        elif name == "from" and source == "mail-parser":
            (want_name, want_address), *_ = value
            ok = (view.sender_name or "") == want_name
            add("sender", name, ok and _same_address(view.sender_address, want_address))
        elif name == "from" and source == "php-mime-mail-parser":
            want = value[0]
            shown = view.sender_name or view.sender_address  # PHP falls back to the address
            ok = shown == want["display"] or (
                want["display"] == want["address"] and not view.sender_name
            )
            add("sender", name, ok and _same_address(view.sender_address, want["address"]))
        elif name == "from_address":
            add("sender", name, _same_address(view.sender_address, value))
        elif name in ("description", "description_stripped"):
            add("body", name, body.strip() == value.strip())
        elif name.startswith("description_contains") or name in (
            "text_body_contains",
            "inner_body",
        ):
            add("body", name, value.strip() in body)
        elif name.startswith("description_not_contains"):
            add("body", name, value not in body)
        elif name == "text_body":
            if isinstance(value, str):
                add("body", name, body.strip() == value.strip())
            elif value["mode"] == "MATCH":
                add("body", name, body.strip() == value["value"].strip())
            else:
                add("body", name, body.count(value["needle"]) == value["count"])
        elif name == "decoded_parts":
            for index, shown in enumerate(value):
                text = codecs.decode(shown, "unicode_escape")  # the manifest writes \xa1
                add("body", f"{name}[{index}]", text.strip() in body)
        elif name in ("attachment_count", "followup_attachment_count", "part_count"):
            add("attachments", name, len(view.attachments) == value)
        elif name in ("attachment_filenames", "attachment_filenames_saved", "part_filenames"):
            add("attachments", name, names == value)
        elif name in ("part1_filename", "part1_param_name"):
            add("attachments", name, value in names)
        elif name == "attachment_filenames_are_str":
            add("attachments", name, all(isinstance(n, str) and n for n in names) == value)
        elif name in ("attachment_contains", "first_attachment_contains"):
            first = view.attachments[0].data.decode("utf-8", "replace") if names else ""
            add("attachments", name, value in first)
        elif name == "attachments":
            _attachment_checks(view, value, out)
    return out


# ---- garbling ---------------------------------------------------------------------------------

_ENCODED_WORD_RE = re.compile(r"=\?[^?\s]+\?[bBqQ]\?")
_SURROGATE_RE = re.compile("[\udc80-\udcff]")
# GBK or UTF-8 read as Latin-1: runs of accented letters with symbols among them ("Ë®·Ñ",
# "æŠ•è¯‰"); a run of letters alone is a European word ("říčšá").
_LATIN_RUN_RE = re.compile(
    "[\u00a1-\u00ff\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u2020-\u203a]{3,}"
)
_SYMBOL_RE = re.compile("[\u00a1-\u00bf\u00d7\u00f7\u2020-\u203a]")


def _mojibake(text: str) -> bool:
    return any(_SYMBOL_RE.search(run.group()) for run in _LATIN_RUN_RE.finditer(text))


_HAN_RE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_CJK_LABEL_RE = re.compile(
    rb"charset\s*=\s*\"?(?:gb|big5|hz|cp936|cp950|euc-|iso-2022-|shift_jis|ks_c)", re.IGNORECASE
)


def garbled(view: View, raw: bytes, expected: dict[str, Any]) -> tuple[str | None, bool]:
    """(what is garbled, whether the mail is CJK) for one reader's view of one mail: judged
    on the reader's own output, so a lossy expected value ("グル?プ") counts for nobody."""
    texts = {"subject": view.subject, "sender": view.sender_name or "", "body": view.body}
    broken = next(
        (
            f"{name}: {why}"
            for name, text in texts.items()
            for why, found in (
                ("U+FFFD", "\ufffd" in text),
                ("encoded-word left", _ENCODED_WORD_RE.search(text)),
                ("lone surrogate", _SURROGATE_RE.search(text)),
                ("mojibake", _mojibake(text)),
            )
            if found
        ),
        None,
    )
    cjk = (
        _CJK_LABEL_RE.search(raw) is not None
        or _HAN_RE.search(json.dumps(expected, ensure_ascii=False)) is not None
        or any(_HAN_RE.search(text) for text in texts.values())
    )
    return broken, cjk


# ---- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    source: str
    file: str
    expected: dict[str, Any]

    @property
    def raw(self) -> bytes:
        return (CORPUS / self.source / self.file).read_bytes()


def entries() -> Iterator[Entry]:
    for source in SOURCES:
        manifest = json.loads((CORPUS / source / "MANIFEST.json").read_text(encoding="utf-8"))
        for item in manifest["entries"]:
            yield Entry(source, item["file"], item["expected"] or {})


# What the ticket shows differently from the parser, on purpose.
SMTP_ACCEPTED: dict[tuple[str, str, str], str] = {
    ("mail-parser", "mails/mail_test_19", "from"): (
        "the display name is an email address: the complainant gets no name rather than an "
        "invented one (issue 14)"
    ),
    ("mail-parser", "mails/mail_test_5", "attachment_count"): (
        "Precedence: bulk is an automatic reply: recorded, never a ticket, so no ticket files"
    ),
}


def _accepted() -> dict[tuple[str, str, str], str]:
    try:
        from tests.test_email_corpus import ACCEPTED
    except ImportError:  # running outside a checkout with its tests
        return {}
    return ACCEPTED


@dataclass
class Tally:
    mails: Counter[str] = field(default_factory=Counter)  # (source, group) -> mails checked
    agree: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    garbled: Counter[tuple[str, str]] = field(default_factory=Counter)
    garbled_chinese: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed: Counter[tuple[str, str]] = field(default_factory=Counter)
    misses: list[str] = field(default_factory=list)


def _score(
    tally: Tally,
    entry: Entry,
    raw: bytes,
    reader: str,
    view: View,
    accepted: dict[tuple[str, str, str], str],
    first_reader: bool,
) -> None:
    found = checks(entry.source, view, entry.expected)
    groups = {c.group for c in found}
    for group in groups:
        if first_reader:
            tally.mails[f"{entry.source}\0{group}"] += 1
        mine = [c for c in found if c.group == group]
        if all(c.ok for c in mine):
            tally.agree[(entry.source, group, reader)] += 1
        else:
            tally.misses.extend(
                f"{reader:6} {entry.source}/{entry.file} {c.name}" for c in mine if not c.ok
            )
        excused = accepted if reader == "parser" else {**accepted, **SMTP_ACCEPTED}
        if reader != "stdlib" and all(
            c.ok or (entry.source, entry.file, c.name) in excused for c in mine
        ):
            tally.agree[(entry.source, group, f"{reader}*")] += 1
    broken, cjk = garbled(view, raw, entry.expected)
    tally.garbled[(entry.source, reader)] += broken is not None
    tally.garbled_chinese[(entry.source, reader)] += broken is not None and cjk
    if broken is not None:
        tally.misses.append(f"{reader:6} {entry.source}/{entry.file} garbled {broken}")
    tally.failed[(entry.source, reader)] += view.failed is not None


async def run(show_misses: bool) -> Tally:
    tally = Tally()
    accepted = _accepted()
    readers: dict[str, Callable[[bytes], View]] = {"stdlib": stdlib_view, "parser": parser_view}
    with tempfile.TemporaryDirectory(prefix="shouli-fidelity-") as workdir:
        async with SmtpReader(Path(workdir)) as smtp:
            for entry in entries():
                raw = entry.raw
                for index, reader in enumerate(READERS):
                    if reader == "smtp":
                        view = await smtp.view(raw)
                    else:
                        view = readers[reader](raw)
                    _score(tally, entry, raw, reader, view, accepted, first_reader=index == 0)
    return tally


def _pct(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f} %)" if whole else "-"


def report(tally: Tally) -> None:
    columns = ("stdlib", "parser", "parser*", "smtp", "smtp*")
    print("| source | field | mails | " + " | ".join(columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    for source in SOURCES:
        for group in FIELDS:
            whole = tally.mails[f"{source}\0{group}"]
            if not whole:
                continue
            cells = [_pct(tally.agree[(source, group, c)], whole) for c in columns]
            print(f"| {source} | {group} | {whole} | " + " | ".join(cells) + " |")
    print()
    print("| source | mails | garbled: stdlib / parser / smtp | garbled Chinese | reader failed |")
    print("|---|---|---|---|---|")
    counts = Counter(e.source for e in entries())
    for source in SOURCES:
        g = " / ".join(str(tally.garbled[(source, r)]) for r in READERS)
        c = " / ".join(str(tally.garbled_chinese[(source, r)]) for r in READERS)
        f = " / ".join(str(tally.failed[(source, r)]) for r in READERS)
        print(f"| {source} | {counts[source]} | {g} | {c} | {f} |")


async def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--misses", action="store_true", help="list every disagreement")
    args = parser.parse_args()
    from ingest.logs import LoggingSettings, configure_logging

    configure_logging(LoggingSettings(level="warning"))
    tally = await run(args.misses)
    report(tally)
    if args.misses:
        print()
        print("\n".join(tally.misses))


if __name__ == "__main__":
    asyncio.run(main())
