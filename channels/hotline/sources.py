"""Reading a call-centre export row by row, whatever it was saved as.

CSV in UTF-8 (with or without the BOM Excel writes), GBK/GB18030 (Excel's "CSV" on a Chinese
Windows) or UTF-16 with a BOM (Excel's "Unicode text", tab-separated); or JSON lines. The
encoding is decided from the first 64 KiB: UTF-8 when that decodes as UTF-8, else GB18030
(a superset of GBK and GB2312). Bytes further on that do not decode spoil only their own row,
which is rejected; the rest of the file goes on. The delimiter is detected from the header.

The file is streamed: one row in memory at a time, whatever its size. Whole-file problems
(empty, binary, a spreadsheet instead of CSV, no header) raise :class:`FileProblem`.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from ingest.errors import Refused

SAMPLE_BYTES = 64 * 1024
MAX_FIELD_CHARS = 1_000_000
# Put in place of undecodable bytes: a plane-15 private-use character no export contains.
_BAD = "\U000ffffd"
_ERRORS = "shouli-import-mark"
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "an Excel workbook (.xlsx) or another ZIP archive"),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook (.xls)"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"SQLite format 3", "an SQLite database"),
)
_DELIMITERS = (",", "\t", ";", "|")


class FileProblem(Refused):
    """The whole file cannot be imported; the message says why and what to do."""


@dataclass(frozen=True)
class SourceRow:
    number: int  # as a spreadsheet shows it (the header is row 1), or the JSON line number
    values: dict[str, str | None]
    problem: tuple[str, str] | None = None  # (field, reason) when the row cannot be read


def _mark_undecodable(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    return _BAD, error.end


codecs.register_error(_ERRORS, _mark_undecodable)


class CallSource:
    """An open export: ``rows()`` streams it, ``position`` says how far (bytes) for progress."""

    def __init__(
        self,
        path: Path,
        *,
        encoding: str | None = None,
        delimiter: str | None = None,
        kind: Literal["csv", "jsonl"] | None = None,
    ) -> None:
        self.path = path
        try:
            self._binary: BinaryIO = path.open("rb")
            self.size = path.stat().st_size
        except OSError as exc:
            raise FileProblem(f"cannot be read: {exc.strerror or exc}") from exc
        try:
            head = self._binary.read(SAMPLE_BYTES)
            self.encoding = encoding or _detect_encoding(head)
            self.kind = kind or _detect_kind(path, head, self.encoding)
            self._binary.seek(0)
            self._text = io.TextIOWrapper(
                self._binary, encoding=self.encoding, errors=_ERRORS, newline=""
            )
            self.headers: tuple[str, ...] = ()
            self._delimiter = delimiter
            if self.kind == "csv":
                self._reader = self._csv_reader(delimiter)
        except BaseException:
            self._binary.close()
            raise

    @property
    def position(self) -> int:
        return self._binary.tell() if not self._binary.closed else self.size

    def close(self) -> None:
        self._binary.close()

    def __enter__(self) -> CallSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def rows(self) -> Iterator[SourceRow]:
        if self.kind == "jsonl":
            yield from self._json_rows()
        else:
            yield from self._csv_rows()

    # -- CSV ----------------------------------------------------------------------------------

    def _csv_reader(self, delimiter: str | None) -> Iterator[list[str]]:
        first = self._text.readline()
        if _BAD in first:
            raise FileProblem(f"the header is not valid {self.encoding} text")
        first = first.lstrip("\ufeff")
        if not first.strip():
            raise FileProblem("has no header row (the first line is empty)")
        self._delimiter = delimiter or max(_DELIMITERS, key=first.count)
        csv.field_size_limit(MAX_FIELD_CHARS)
        header = next(csv.reader([first], delimiter=self._delimiter))
        self.headers = tuple(h.strip() for h in header)
        duplicated = sorted({h for h in self.headers if h and self.headers.count(h) > 1})
        if duplicated:
            raise FileProblem(f"the header names these columns twice: {', '.join(duplicated)}")
        return csv.reader(self._text, delimiter=self._delimiter, strict=False)

    def _csv_rows(self) -> Iterator[SourceRow]:
        width = len(self.headers)
        number = 1
        while True:
            number += 1
            try:
                cells = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield SourceRow(number, {}, ("row", f"not readable as CSV: {exc}"))
                continue
            if not cells or all(not c.strip() for c in cells):
                continue  # a blank line: a spreadsheet shows an empty row, nothing to import
            if any(_BAD in cell for cell in cells):
                yield SourceRow(number, {}, ("row", f"not valid {self.encoding} text"))
                continue
            if len(cells) != width:
                reason = f"has {len(cells)} cells, the header has {width}"
                yield SourceRow(number, {}, ("row", reason))
                continue
            yield SourceRow(number, dict(zip(self.headers, cells, strict=True)))

    # -- JSON lines ---------------------------------------------------------------------------

    def _json_rows(self) -> Iterator[SourceRow]:
        for number, line in enumerate(self._text, start=1):
            text = line.lstrip("\ufeff").strip()
            if not text:
                continue
            if _BAD in text:
                yield SourceRow(number, {}, ("row", f"not valid {self.encoding} text"))
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                yield SourceRow(number, {}, ("row", f"not valid JSON ({exc.msg})"))
                continue
            if not isinstance(data, dict):
                yield SourceRow(number, {}, ("row", "not a JSON object"))
                continue
            values: dict[str, str | None] = {}
            problem = None
            for key, value in data.items():
                if value is None or isinstance(value, str):
                    values[str(key)] = value
                elif isinstance(value, bool):
                    values[str(key)] = "true" if value else "false"
                elif isinstance(value, int | float):
                    values[str(key)] = str(value)
                else:
                    problem = (str(key), "must be text, a number, true/false or null")
            yield SourceRow(number, values, problem)


def _detect_encoding(head: bytes) -> str:
    if not head.strip(b" \t\r\n\x00" + codecs.BOM_UTF8 + codecs.BOM_UTF16_LE + codecs.BOM_UTF16_BE):
        raise FileProblem("is empty")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            raise FileProblem(
                f"is {what}, not CSV or JSON lines; export or save it as CSV (UTF-8) first"
            )
    controls = sum(1 for b in head if b < 0x20 and b not in (0x09, 0x0A, 0x0D))
    if b"\x00" in head or controls > len(head) // 100:
        raise FileProblem("is a binary file, not CSV or JSON lines text")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            # final=False: the sample may end in the middle of a multi-byte character.
            codecs.getincrementaldecoder(encoding)().decode(head, final=False)
        except UnicodeDecodeError:
            continue
        return encoding
    raise FileProblem("is not text in UTF-8 or GBK/GB18030; save it as CSV (UTF-8)")


def _detect_kind(path: Path, head: bytes, encoding: str) -> Literal["csv", "jsonl"]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(head, final=False)
    return "jsonl" if text.lstrip("\ufeff \t\r\n").startswith("{") else "csv"
