"""Reading a submitted form as it streams in, with every limit enforced while it arrives.

Starlette's ``request.form()`` spools each file whole before anyone can look at it, so a
2 GB upload would fill the disk before a limit could say no. Here the body is fed chunk by
chunk to python-multipart's streaming parser:

* the whole body may not exceed :attr:`WebSettings.max_request_size`: a declared
  ``Content-Length`` over it is refused before one byte is read, and a chunked body is cut
  off the moment it passes it (413);
* a file's kind is decided from its first bytes (``channels.web.sniff``), and from then on
  its own limit applies; a file over its limit, of a kind not accepted, beyond
  ``max_files`` or beyond ``max_total_size`` stops being stored at once and the rest of it
  is discarded as it arrives, so the other fields are still read and the person sees every
  problem at once;
* files are kept in memory up to 1 MB, then in an anonymous temporary file (unlinked on
  creation, so nothing is left behind even after a crash); file writes run in a thread;
* text fields together may not exceed ``max_fields_size``; the number of parts is bounded;
* the whole read has a deadline (``upload_timeout_seconds``), against slow senders.

When the body is refused while a browser is still sending it, the browser often shows
"connection reset" instead of the answer; a body *declared* no more than ``drain_size``
over the limit is therefore read to the end (and thrown away) before answering.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import unquote_to_bytes

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from channels.web import sniff
from channels.web.charset import CHARSET_FIELD, TextKey, declared_charset, decode_form_texts
from channels.web.names import safe_filename
from channels.web.settings import WebSettings
from ingest.errors import Refused

EVIDENCE_FIELD = "evidence"
_MEMORY_LIMIT = 1024 * 1024
_EXTRA_PARTS = 64  # text fields a form may carry besides its files


class FormReadError(Refused):
    """The body cannot be read as a form at all (the answer names why); nothing was kept."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Upload:
    """One file of the form, being received or received."""

    form_field: str
    original_name: str
    declared_type: str
    index: int
    raw_name: bytes = b""  # decoded into original_name once the form's charset is known
    size: int = 0
    kind: str | None = None
    problem: str | None = None  # type, too_large, total, count, empty
    real: str | None = None  # what a file of the wrong type really is (html, program, ...)
    head: bytes = b""
    _digest: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)
    _buffer: bytearray = field(default_factory=bytearray, repr=False)
    _file: BinaryIO | None = field(default=None, repr=False)

    @property
    def kept(self) -> bool:
        return self.problem is None

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    @property
    def filename(self) -> str:
        return safe_filename(self.original_name, self.kind, self.index)

    @property
    def content_type(self) -> str:
        return sniff.CONTENT_TYPES[self.kind] if self.kind else "application/octet-stream"

    def reject(self, problem: str) -> None:
        self.problem = problem
        self._buffer = bytearray()
        if self._file is not None:
            self._file.close()
            self._file = None

    async def write(self, data: bytes) -> None:
        self._digest.update(data)
        self._buffer += data
        if len(self._buffer) >= _MEMORY_LIMIT:
            await self._flush()

    async def finish(self) -> None:
        if self._file is not None:
            await self._flush()

    async def read(self) -> bytes:
        """The whole file (at most its kind's limit); for the blob store."""
        if self._file is None:
            return bytes(self._buffer)
        handle = self._file
        return await asyncio.to_thread(_read_all, handle)

    async def confirm(self) -> bool:
        assert self.kind is not None
        kind = self.kind
        if self._file is None:
            return await asyncio.to_thread(sniff.confirm, kind, io.BytesIO(bytes(self._buffer)))
        handle = self._file

        def check() -> bool:
            handle.seek(0)
            return sniff.confirm(kind, handle)

        return await asyncio.to_thread(check)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    async def _flush(self) -> None:
        data = bytes(self._buffer)
        self._buffer = bytearray()
        if self._file is None:
            self._file = await asyncio.to_thread(tempfile.TemporaryFile)
        handle = self._file
        await asyncio.to_thread(handle.write, data)


def _read_all(handle: BinaryIO) -> bytes:
    handle.seek(0)
    return handle.read()


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # charset decisions, for the ticket

    def decode(self, raw_fields: dict[str, bytes], charset: bytes | None) -> None:
        """Fill ``fields`` (and the file names) from the received bytes.

        Only at the end: ``_charset_`` may come after the fields it speaks for.
        """
        label = declared_charset(raw_fields.get(CHARSET_FIELD), charset)
        raw: dict[TextKey, bytes] = {name: data for name, data in raw_fields.items()}
        raw.update((upload.index, upload.raw_name) for upload in self.uploads)
        texts, self.notes = decode_form_texts(raw, label)
        self.fields = {name: texts[name] for name in raw_fields}
        for upload in self.uploads:
            upload.original_name = texts[upload.index]

    def get(self, name: str) -> str:
        return self.fields.get(name, "")

    @property
    def kept(self) -> list[Upload]:
        return [u for u in self.uploads if u.kept]

    def close(self) -> None:
        for upload in self.uploads:
            upload.close()


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str = ""
    upload: Upload | None = None
    value: bytearray = field(default_factory=bytearray)
    skip: bool = False


class _FormReader:
    """Turns parser callbacks into parts; limits are checked as the data comes."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.form = ReceivedForm()
        self.raw_fields: dict[str, bytes] = {}
        self.events: list[tuple[str, bytes]] = []
        self.parts = 0
        self.field_bytes = 0
        self.ended = False
        self._part = _Part()
        self._header_field = bytearray()
        self._header_value = bytearray()

    def callbacks(self) -> dict[str, Callable[..., None]]:
        def on_data(name: str) -> Callable[[bytes, int, int], None]:
            return lambda data, start, end: self.events.append((name, data[start:end]))

        def on_event(name: str) -> Callable[[], None]:
            return lambda: self.events.append((name, b""))

        return {
            "on_part_begin": on_event("part_begin"),
            "on_part_data": on_data("part_data"),
            "on_part_end": on_event("part_end"),
            "on_header_field": on_data("header_field"),
            "on_header_value": on_data("header_value"),
            "on_header_end": on_event("header_end"),
            "on_headers_finished": on_event("headers_finished"),
            "on_end": on_event("end"),
        }

    async def drain_events(self) -> None:
        events, self.events = self.events, []
        for name, data in events:
            await self._event(name, data)

    async def _event(self, name: str, data: bytes) -> None:
        part = self._part
        if name == "part_begin":
            self.parts += 1
            if self.parts > self.settings.max_files + _EXTRA_PARTS:
                raise FormReadError(413, "too_many_parts", "the form has too many parts")
            self._part = _Part()
        elif name == "header_field":
            self._header_field += data
        elif name == "header_value":
            self._header_value += data
        elif name == "header_end":
            key = self._header_field.decode("latin-1").lower()
            # Raw bytes: browsers send UTF-8 file names unencoded (WHATWG HTML, "multipart/
            # form-data encoding algorithm"), which a str round trip through latin-1 breaks.
            part.headers[key] = bytes(self._header_value)
            self._header_field, self._header_value = bytearray(), bytearray()
        elif name == "headers_finished":
            self._start_part(part)
        elif name == "part_data":
            await self._part_data(part, data)
        elif name == "part_end":
            await self._end_part(part)
        elif name == "end":
            self.ended = True

    def _start_part(self, part: _Part) -> None:
        _, options = parse_options_header(part.headers.get("content-disposition", b""))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None:
            return
        # Decoded for now (the checks below); ReceivedForm.decode decides in the end.
        original = filename.decode("utf-8", "replace")
        if part.name != EVIDENCE_FIELD or not original:
            # A browser sends an empty file part when no file was chosen; files in other
            # fields are not ours to keep.
            part.skip = True
            return
        upload = Upload(
            form_field=part.name,
            original_name=original,
            raw_name=filename,
            declared_type=part.headers.get("content-type", b"").decode("latin-1")[:200],
            index=len(self.form.uploads) + 1,
        )
        if len(self.form.uploads) >= self.settings.max_files:
            upload.problem = "count"
        part.upload = upload
        self.form.uploads.append(upload)

    async def _part_data(self, part: _Part, data: bytes) -> None:
        upload = part.upload
        if part.skip:
            return
        if upload is None:
            self.field_bytes += len(data)
            if self.field_bytes > self.settings.max_fields_size:
                raise FormReadError(413, "fields_too_large", "the text fields are too long")
            part.value += data
            return
        upload.size += len(data)
        if not upload.kept:
            return
        if upload.kind is None and len(upload.head) < sniff.HEAD_BYTES:
            upload.head += data[: sniff.HEAD_BYTES - len(upload.head)]
            if len(upload.head) >= sniff.HEAD_BYTES:
                self._classify(upload)
                if not upload.kept:
                    return
        limit = self.settings.limit_for(upload.kind) if upload.kind else None
        if upload.size > (limit if limit is not None else self.settings.largest_file):
            upload.reject("too_large")
            return
        if self._kept_total() > self.settings.max_total_size:
            upload.reject("total")
            return
        await upload.write(data)

    def _classify(self, upload: Upload) -> None:
        kind = sniff.sniff_head(upload.head)
        if kind is None or self.settings.limit_for(kind) is None:
            upload.real = kind or sniff.describe(upload.head)
            upload.reject("type")
            return
        upload.kind = kind

    def _kept_total(self) -> int:
        return sum(u.size for u in self.form.uploads if u.kept)

    async def _end_part(self, part: _Part) -> None:
        upload = part.upload
        if upload is None:
            if part.name and not part.skip and part.name not in self.raw_fields:
                # The first value of a repeated name counts, as for a query string.
                self.raw_fields[part.name] = bytes(part.value)
            return
        if not upload.kept:
            return
        if upload.size == 0:
            upload.reject("empty")
            return
        if upload.kind is None:
            self._classify(upload)
            if not upload.kept:
                return
        await upload.finish()
        if not await upload.confirm():
            upload.real = sniff.describe(upload.head)
            upload.reject("type")


async def receive_form(request: Request, settings: WebSettings) -> ReceivedForm:
    """Read a multipart or urlencoded form from ``request`` under ``settings``' limits.

    Raises :class:`FormReadError` when the body as a whole is refused; problems of single
    files are left on the :class:`Upload` objects for the caller to report beside the field.
    """
    media, options = parse_options_header(request.headers.get("content-type", ""))
    charset = options.get(b"charset")
    declared = _declared_length(request)
    limit = settings.max_request_size
    stream = request.stream().__aiter__()
    if declared is not None and declared > limit:
        if declared <= limit + settings.drain_size:
            await _drain(stream, limit + settings.drain_size)
        raise FormReadError(413, "too_large", _too_large(settings))
    try:
        async with asyncio.timeout(settings.upload_timeout_seconds):
            if media == b"application/x-www-form-urlencoded":
                return await _read_urlencoded(stream, settings, charset)
            if media != b"multipart/form-data":
                raise FormReadError(
                    415,
                    "unsupported_media_type",
                    "send the form as multipart/form-data (files) or "
                    "application/x-www-form-urlencoded",
                )
            boundary = options.get(b"boundary")
            if not boundary:
                raise FormReadError(400, "bad_form", "multipart/form-data needs a boundary")
            return await _read_multipart(stream, boundary, settings, declared, charset)
    except TimeoutError as exc:
        raise FormReadError(408, "timeout", "the form took too long to arrive") from exc
    except ClientDisconnect as exc:
        raise FormReadError(400, "disconnected", "the client went away mid-form") from exc


async def _read_multipart(
    stream: AsyncIterator[bytes],
    boundary: bytes,
    settings: WebSettings,
    declared: int | None,
    charset: bytes | None,
) -> ReceivedForm:
    reader = _FormReader(settings)
    parser = MultipartParser(boundary, reader.callbacks())  # type: ignore[arg-type]
    limit = settings.max_request_size
    received = 0
    try:
        try:
            async for chunk in stream:
                received += len(chunk)
                if received > limit:
                    raise FormReadError(413, "too_large", _too_large(settings))
                parser.write(chunk)
                await reader.drain_events()
            parser.finalize()
            await reader.drain_events()
        except FormReadError:
            if declared is not None and declared <= limit + settings.drain_size:
                await _drain(stream, declared - received)
            raise
        except MultipartParseError as exc:
            raise FormReadError(400, "bad_form", "the multipart body is malformed") from exc
        if not reader.ended:
            raise FormReadError(400, "bad_form", "the multipart body ended too early")
        reader.form.decode(reader.raw_fields, charset)
    except BaseException:
        reader.form.close()
        raise
    return reader.form


async def _read_urlencoded(
    stream: AsyncIterator[bytes], settings: WebSettings, charset: bytes | None
) -> ReceivedForm:
    body = bytearray()
    async for chunk in stream:
        body += chunk
        if len(body) > settings.max_fields_size:
            raise FormReadError(413, "fields_too_large", "the text fields are too long")
    form = ReceivedForm()
    form.decode(_urlencoded_bytes(bytes(body)), charset)
    return form


def _urlencoded_bytes(body: bytes) -> dict[str, bytes]:
    """Name -> value bytes, percent-decoded but not yet decoded as text (the charset decides).

    Not ``parse_qsl``: it decodes the escapes as UTF-8 at once, turning GBK into U+FFFD.
    """
    fields: dict[str, bytes] = {}
    for pair in body.split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        key = unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8", "replace")
        # The first value of a repeated name counts, as for a query string.
        fields.setdefault(key, unquote_to_bytes(value.replace(b"+", b" ")))
    return fields


async def _drain(stream: AsyncIterator[bytes], budget: int) -> None:
    """Read and discard up to ``budget`` bytes (never kept), then stop."""
    read = 0
    try:
        async with asyncio.timeout(30):
            async for chunk in stream:
                read += len(chunk)
                if read >= budget:
                    return
    except (TimeoutError, ClientDisconnect):
        return


def _declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw)


def _too_large(settings: WebSettings) -> str:
    from channels.web.settings import format_size

    return f"the submission is larger than {format_size(settings.max_request_size)}"
