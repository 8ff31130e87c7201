"""The work order(s) in a mail: an attached JSON, XML or CSV file, or ``key：value`` lines
in the body, each turned into the bytes and format :meth:`ReferralIntake.receive` takes.

Body orders: a line that starts with one of the source mapping's payload paths and a colon
(full-width ``：`` or ASCII ``:``) starts that field, e.g. ``工单编号：SZ12345-20261124-000871``;
the lines after it that do not start another known path continue it (a 诉求内容 that spans
lines). Text before the first known path and after a ``-- `` signature line is ignored. Only
the mapping's own paths count as keys because complaint text is full of colons
("物业说：..."): a guess would cut the complaint. A dotted path (``complainant.name``) is
nested as the mapping reads it. The result is sent as JSON, so any mapping reads body
orders whatever its own ``format``.

CSV: a header row of payload paths, then one order per row (an empty cell is an absent
field); UTF-8 (with or without BOM) or GB18030, as Chinese spreadsheets export it.

Origins ("attachment 2 (.csv) row 3") name no file: a file name can carry a person's name.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from typing import Any

from channels.email.attachments import ParsedAttachment
from channels.email.parse import ParsedMail
from channels.referral.payload import Format
from channels.referral.settings import MailFormat, ReferralMapping
from ingest.errors import Refused

_EXTENSIONS = {".json": MailFormat.JSON, ".xml": MailFormat.XML, ".csv": MailFormat.CSV}
_TYPES = {
    "application/json": MailFormat.JSON,
    "text/json": MailFormat.JSON,
    "application/xml": MailFormat.XML,
    "text/xml": MailFormat.XML,
    "text/csv": MailFormat.CSV,
    "application/csv": MailFormat.CSV,
}
_PAYLOAD_FORMATS: dict[MailFormat, Format] = {MailFormat.JSON: "json", MailFormat.XML: "xml"}
_LINE = re.compile(r"^\s*(?P<key>[^:：\n]{1,100}?)\s*[:：]\s?(?P<value>.*)$")
_MAX_CSV_ROWS = 1000


class MailOrderError(Refused):
    """The mail holds no order in the form the source sends (no PII in the message)."""


@dataclass(frozen=True)
class OrderDocument:
    raw: bytes
    fmt: Format
    origin: str  # where in the mail it was: "body", "attachment 1 (.json)", "... row 2"


def orders_in_mail(
    parsed: ParsedMail, fmt: MailFormat, mapping: ReferralMapping
) -> list[OrderDocument]:
    """Every order in the mail, in mail order; raises :class:`MailOrderError` when there is
    none of the expected kind."""
    files = [
        (index, attachment, kind)
        for index, attachment in enumerate(parsed.attachments, start=1)
        if (kind := _kind_of(attachment)) is not None and (fmt is MailFormat.AUTO or fmt is kind)
    ]
    if fmt is MailFormat.BODY or (fmt is MailFormat.AUTO and not files):
        return [OrderDocument(_json(read_body(parsed.body_text, mapping)), "json", "body")]
    if not files:
        raise MailOrderError(f"no attached .{fmt.value} order file")
    documents: list[OrderDocument] = []
    for index, attachment, kind in files:
        origin = f"attachment {index} (.{kind.value})"
        if kind is MailFormat.CSV:
            documents.extend(
                OrderDocument(_json(row), "json", f"{origin} row {number}")
                for number, row in read_csv(attachment.data)
            )
        else:
            documents.append(OrderDocument(attachment.data, _PAYLOAD_FORMATS[kind], origin))
    return documents


def _kind_of(attachment: ParsedAttachment) -> MailFormat | None:
    name = attachment.filename.lower()
    for extension, kind in _EXTENSIONS.items():
        if name.endswith(extension):
            return kind
    return _TYPES.get(attachment.declared_type.lower()) or _TYPES.get(
        attachment.content_type.lower()
    )


def read_body(text: str, mapping: ReferralMapping) -> dict[str, Any]:
    """The ``key：value`` lines of a body, keyed by the mapping's paths (see the module)."""
    known = set(mapping.fields.values())
    values: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.rstrip() == "--":
            break  # the signature: "-- " (RFC 3676), often stripped to "--"
        match = _LINE.match(line)
        if match and match.group("key") in known:
            current = match.group("key")
            values[current] = [match.group("value").strip()]
        elif current is not None:
            values[current].append(line.strip())
    if not values:
        example = mapping.fields["reference"]
        raise MailOrderError(f"no line of the source's fields (e.g. '{example}：...') in the body")
    return _nested({key: "\n".join(lines).strip() for key, lines in values.items()})


def read_csv(data: bytes) -> list[tuple[int, dict[str, Any]]]:
    """(row number counted as a spreadsheet does, the header being row 1; the order)."""
    text = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise MailOrderError("the CSV file is empty") from None
    except csv.Error as exc:
        raise MailOrderError(f"unreadable CSV: {exc}") from exc
    if not any(header):
        raise MailOrderError("the CSV file has no header row")
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            if len(rows) >= _MAX_CSV_ROWS:
                raise MailOrderError(f"more than {_MAX_CSV_ROWS} orders in one CSV file")
            flat = {
                name: cell.strip()
                for name, cell in zip(header, cells, strict=False)
                if name and cell.strip()
            }
            rows.append((number, _nested(flat)))
    except csv.Error as exc:
        raise MailOrderError(f"unreadable CSV: {exc}") from exc
    if not rows:
        raise MailOrderError("the CSV file has a header but no order rows")
    return rows


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise MailOrderError("the CSV file is not UTF-8 or GB18030 text")


def _nested(flat: dict[str, str]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``, as ``payload.get_path`` reads dotted paths."""
    data: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        target = data
        for part in parts[:-1]:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                break  # "a" and "a.b" both given: the first one wins
            target = child
        else:
            target.setdefault(parts[-1], value)
    return data


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()
