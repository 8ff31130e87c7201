"""What a file is, from its bytes: the evidence kinds the web form accepts.

Names and declared types are the sender's claim and prove nothing, so the kind is decided
from magic numbers (the first bytes), and for the two container formats confirmed from the
whole file: a ZIP is only a .docx when it holds ``word/document.xml``; an OLE2 compound file
is only a .doc when its directory names the ``WordDocument`` stream (an .xls or .msi is OLE2
too). Pure functions; the streaming reader calls :func:`sniff_head` on the first bytes and
:func:`confirm` once the file is complete.
"""

from __future__ import annotations

import io
import zipfile
from typing import BinaryIO, Final

HEAD_BYTES: Final = 16

CONTENT_TYPES: Final[dict[str, str]] = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "mp4": "video/mp4",
    "pdf": "application/pdf",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}

# ISO base media brands of MP4 files from phones, cameras and encoders; QuickTime ("qt  ",
# an iPhone's .mov) is a different format and not accepted as mp4.
_MP4_BRANDS: Final = frozenset(
    {
        b"isom",
        b"iso2",
        b"iso3",
        b"iso4",
        b"iso5",
        b"iso6",
        b"mp41",
        b"mp42",
        b"avc1",
        b"M4V ",
        b"MSNV",
        b"dash",
        b"mmp4",
        b"XAVC",
        b"f4v ",
    }
)
_OLE2: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_WORD_STREAM: Final = "WordDocument".encode("utf-16-le")


def sniff_head(head: bytes) -> str | None:
    """The kind the first bytes claim (``docx``/``doc`` still need :func:`confirm`)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in _MP4_BRANDS:
        return "mp4"
    if head.startswith(_OLE2):
        return "doc"
    if head.startswith(b"PK\x03\x04"):
        return "docx"
    return None


def confirm(kind: str, file: BinaryIO) -> bool:
    """Whether the complete file really is ``kind``; blocking, run it in a thread."""
    if kind == "docx":
        try:
            with zipfile.ZipFile(file) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return False
        return "word/document.xml" in names and "[Content_Types].xml" in names
    if kind == "doc":
        file.seek(0)
        tail = b""
        while chunk := file.read(1 << 20):
            if _WORD_STREAM in tail + chunk:
                return True
            tail = chunk[-len(_WORD_STREAM) :]
        return False
    return True


def describe(head: bytes) -> str:
    """A short word for a rejected file's real content, for the message beside the field."""
    probe = head.lstrip()[:HEAD_BYTES].lower()
    if probe.startswith((b"<!doctype html", b"<html", b"<script", b"<svg", b"<?xml")):
        return "html"
    if head.startswith(b"MZ") or head.startswith(b"\x7fELF"):
        return "program"
    if head.startswith(b"GIF8"):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1"):
        return "heic"
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] == b"qt  ":
        return "mov"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    return "unknown"


def confirm_bytes(kind: str, data: bytes) -> bool:
    return confirm(kind, io.BytesIO(data))
