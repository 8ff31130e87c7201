"""Attachments as the parser returns them: decoded name, type sniffed from the bytes, digest.

The parser stays pure: it returns the bytes, and the caller writes them to the blob store
(:class:`store.blobs.BlobStore`) and keeps :meth:`ParsedAttachment.to_ref`. The type a sender
declares is kept too, but anything that decides how a file is shown or opened must use the
sniffed ``content_type``: a ``.exe`` labelled ``image/jpeg`` is still an executable.

Also here: the two containers mail clients hide files in besides MIME, uuencoded blocks in a
text body and Outlook's winmail.dat (TNEF).
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import Final

import filetype
from tnefparse import TNEF

from channels.email.charset import decode_bytes
from channels.email.html import html_to_text
from ingest.draft import AttachmentRef

__all__ = [
    "ParsedAttachment",
    "TnefContent",
    "default_filename",
    "extract_uuencoded",
    "looks_like_text",
    "make_attachment",
    "mostly_text",
    "safe_filename",
    "sniff_type",
    "stray_controls",
    "unpack_tnef",
]


@dataclass(frozen=True, slots=True)
class ParsedAttachment:
    filename: str
    """Decoded, with any path stripped; generated (``part-2.jpg``) when the mail gave none."""
    content_type: str
    """Sniffed from the bytes; the declared type only where bytes cannot tell (text)."""
    data: bytes = field(repr=False)
    inline: bool
    """Shown in the body by the sender's client (Content-Disposition inline, or a Content-ID)."""
    sha256: str
    size: int
    declared_type: str = "application/octet-stream"
    """What the sender's Content-Type said, for the record."""
    content_id: str | None = None
    """``<cid>`` that an HTML body refers to, without brackets."""
    section: str = ""
    """Where in the MIME tree it was (IMAP section numbering: "2", "1.3")."""

    def to_ref(self) -> AttachmentRef:
        """The draft's reference once the caller has stored ``data`` in the blob store."""
        return AttachmentRef(
            filename=self.filename or "attachment",
            content_type=self.content_type,
            size=self.size,
            sha256=self.sha256,
        )


# --------------------------------------------------------------------------------------------
# Content type.

# Containers whose sniffed type is generic, and the declared types that refine them.
_CONTAINER_REFINEMENTS: Final[dict[str, tuple[str, ...]]] = {
    "application/zip": (
        "application/vnd.openxmlformats-officedocument.",
        "application/vnd.oasis.opendocument.",
        "application/vnd.ms-",
        "application/epub+zip",
        "application/java-archive",
        "application/vnd.android.package-archive",
    ),
    "application/x-ole-storage": (
        "application/msword",
        "application/vnd.ms-",
        "application/vnd.visio",
    ),
}
_TEXTUAL_APPLICATION: Final = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/pgp-signature",
        "application/pgp-encrypted",
        "application/pgp-keys",
        "application/x-sh",
        "application/rtf",
        "application/x-patch",
        "application/mbox",
        "application/ics",
    }
)
# WHATWG MIME Sniffing §7.2: bytes that never occur in text.
_BINARY_BYTE_RE: Final = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")


def looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return True
    return _BINARY_BYTE_RE.search(head) is None


# A text part is judged by its first 4 KB: enough for the ratio below to be stable.
_TEXT_SAMPLE: Final = 4096
# Random or compressed bytes (PNG and JPEG data, zip, encrypted blobs) have 27 of the 256 byte
# values in the binary set, 10.5 %; uncompressed binaries (executables, BMP, UTF-16) far more.
# Text with stray controls (a NUL from a C client, a vertical tab pasted from a spreadsheet, a
# DOS end-of-file byte) has a handful per mail. One in 32 (3 %) is a third of the random rate:
# a 4 KB random sample (about 430 expected, sigma 20) is never under it, and 256 random bytes
# (27 expected, 8 allowed) practically never. The sample counts as at least 64 bytes, so that a
# one-line complaint with one or two stray bytes is still text.
_BYTES_PER_STRAY: Final = 32
_MIN_SAMPLE: Final = 64


def stray_controls(data: bytes) -> int:
    """How many bytes of ``data`` never occur in text (WHATWG MIME Sniffing's binary bytes)."""
    return len(_BINARY_BYTE_RE.findall(data))


def mostly_text(data: bytes) -> bool:
    """True for text, even with a few stray control bytes; false for a binary file.

    For a part that claims to be text: :func:`looks_like_text` alone would make one NUL turn
    the whole complaint into a file.
    """
    head = data[:_TEXT_SAMPLE]
    if looks_like_text(head[:1024]):
        return True
    # No magic-number check: filetype calls any text starting "BM" a bitmap, "MZ" a program.
    return stray_controls(head) * _BYTES_PER_STRAY <= max(len(head), _MIN_SAMPLE)


def sniff_type(data: bytes, declared: str) -> str:
    """The content type of ``data`` judged from its bytes; ``declared`` only refines."""
    declared = declared.lower()
    if not data:
        return "application/octet-stream"
    sniffed = filetype.guess_mime(data[:8192])
    if sniffed:
        refinements = _CONTAINER_REFINEMENTS.get(sniffed, ())
        if refinements and declared.startswith(refinements):
            return declared
        return str(sniffed)
    if looks_like_text(data[:1024]):
        if (
            declared.startswith(("text/", "message/"))
            or declared in _TEXTUAL_APPLICATION
            or declared.endswith(("+xml", "+json"))
        ):
            return declared
        return "text/plain"
    if declared in ("application/x-ole-storage", "application/msword", "application/vnd.ms-excel"):
        return declared
    return "application/octet-stream"


# --------------------------------------------------------------------------------------------
# File names.

_EXTENSIONS: Final[dict[str, str]] = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/webp": ".webp",
    "image/tiff": ".tif",
    "image/heic": ".heic",
    "application/pdf": ".pdf",
    "application/zip": ".zip",
    "application/x-rar-compressed": ".rar",
    "application/x-7z-compressed": ".7z",
    "application/gzip": ".gz",
    "application/msword": ".doc",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/pgp-signature": ".asc",
    "application/pkcs7-signature": ".p7s",
    "application/ms-tnef": ".dat",
    "audio/mpeg": ".mp3",
    "audio/amr": ".amr",
    "audio/x-wav": ".wav",
    "video/mp4": ".mp4",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "text/rfc822-headers": ".txt",
    "message/rfc822": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
}
# Characters that would let a name hide its real extension or escape a directory.
_UNSAFE_CHARS_RE: Final = re.compile(r"[\x00-\x1f\x7f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_MAX_NAME: Final = 255


def safe_filename(name: str) -> str:
    """The last path component, without control or bidi-override characters, <= 255 chars."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_CHARS_RE.sub("", name).strip()
    if name in ("", ".", ".."):
        return ""
    if len(name) > _MAX_NAME:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = stem[: _MAX_NAME - len(extension) - 1] + "." + extension
        else:
            name = name[:_MAX_NAME]
    return name


def default_filename(section: str, content_type: str) -> str:
    """``part-2.jpg``: a stable name for an unnamed part, from its MIME section and type."""
    return f"part-{section or '1'}{_EXTENSIONS.get(content_type, '.bin')}"


def make_attachment(
    data: bytes,
    filename: str | None,
    declared: str,
    *,
    inline: bool = False,
    content_id: str | None = None,
    section: str = "",
) -> ParsedAttachment:
    content_type = sniff_type(data, declared)
    name = safe_filename(filename or "") or default_filename(section, content_type)
    return ParsedAttachment(
        filename=name,
        content_type=content_type,
        data=data,
        inline=inline,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        declared_type=declared.lower(),
        content_id=content_id,
        section=section,
    )


# --------------------------------------------------------------------------------------------
# uuencode inside text bodies (old clients, some scanners and fax gateways).

_UU_BEGIN_RE: Final = re.compile(r"^begin [0-7]{3,4} (.+?)\s*$")


def _uu_line(line: str) -> bytes:
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:
        # Encoders that pad lines wrongly: decode only the bytes the length character promises
        # (the same workaround as the retired stdlib uu module).
        count = (((ord(line[0]) - 32) & 63) * 4 + 5) // 3
        return binascii.a2b_uu(line[:count])


def extract_uuencoded(text: str) -> tuple[str, list[tuple[str, bytes]]]:
    """``(text without the blocks, [(name, bytes)])`` for ``begin 644 name ... end`` blocks."""
    if "begin " not in text:
        return text, []
    lines = text.split("\n")
    kept: list[str] = []
    files: list[tuple[str, bytes]] = []
    index = 0
    while index < len(lines):
        match = _UU_BEGIN_RE.match(lines[index])
        if match is not None:
            data = bytearray()
            end = index + 1
            complete = False
            try:
                while end < len(lines):
                    line = lines[end].rstrip("\r")
                    if line == "end":
                        complete = True
                        break
                    if line:
                        data += _uu_line(line)
                    end += 1
            except (binascii.Error, IndexError):
                complete = False
            if complete:
                files.append((match.group(1), bytes(data)))
                index = end + 1
                continue
        kept.append(lines[index])
        index += 1
    return "\n".join(kept), files


# --------------------------------------------------------------------------------------------
# winmail.dat (TNEF): Outlook's wrapper around the body and attachments.

TNEF_TYPES: Final = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})


@dataclass(frozen=True, slots=True)
class TnefContent:
    body: str
    files: tuple[tuple[str, bytes], ...]


def _tnef_codec(codepage: str | None) -> str | None:
    if codepage in ("cp936", "cp20936", "cp54936"):
        return "gb18030"
    if codepage == "cp950":
        return "big5hkscs"
    return codepage


def _tnef_text(value: object, codec: str | None) -> str:
    if isinstance(value, str):
        return value.rstrip("\x00")
    if isinstance(value, bytes):
        return decode_bytes(value.rstrip(b"\x00"), codec).text
    return ""


def unpack_tnef(data: bytes) -> TnefContent | None:
    """Body and files of a winmail.dat, or ``None`` when it is not TNEF tnefparse can read.

    Names are decoded here rather than by tnefparse, which reads them as UTF-8: a Chinese
    Outlook writes them in its OEM code page (936, GBK).
    """
    try:
        tnef = TNEF(data, do_checksum=False)
        codec = _tnef_codec(tnef.codepage)
        body = _tnef_text(tnef.body, codec)
        if not body.strip() and tnef.htmlbody:
            body = html_to_text(_tnef_text(tnef.htmlbody, codec))
        files: list[tuple[str, bytes]] = []
        for attachment in tnef.attachments:
            long_name = None
            try:
                long_name = attachment.long_filename()
            except (UnicodeDecodeError, AttributeError):
                long_name = None
            if isinstance(long_name, bytes):
                long_name = _tnef_text(long_name, codec)
            name = long_name or _tnef_text(getattr(attachment, "_name", b""), codec)
            payload = attachment.data if isinstance(attachment.data, bytes) else b""
            files.append((name, payload))
        return TnefContent(body=body, files=tuple(files))
    except Exception:  # tnefparse raises ValueError, IndexError, struct.error ... on bad input
        return None
