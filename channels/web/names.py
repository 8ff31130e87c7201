"""File names that are safe to store and show (evidence uploads)."""

from __future__ import annotations

import re
import unicodedata

# Control characters, path and shell-significant characters, and the bidirectional
# overrides that make "photo\u202egpj.exe" display as "photoexe.jpg".
_UNSAFE = re.compile(r"[\x00-\x1f\x7f<>:\"/\\|?*%\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)$", re.IGNORECASE)
_EXTENSIONS = {"jpg": ("jpg", "jpeg"), "png": ("png",), "mp4": ("mp4",), "pdf": ("pdf",)}


def safe_filename(raw: str, kind: str | None, index: int) -> str:
    """A name safe to store and show: no path, no control or bidi characters, at most ~100
    characters, and an extension that matches the bytes (``scan.pdf`` holding a PNG becomes
    ``scan.png``)."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    stem = stem.strip(" .")[:80] or f"evidence-{index}"
    if _WINDOWS_RESERVED.match(stem):
        stem += "_"
    if kind is not None:
        allowed = _EXTENSIONS.get(kind, (kind,))
        if extension.lower() not in allowed:
            extension = allowed[0]
        extension = extension.lower()
    else:
        extension = _UNSAFE.sub("_", extension)[:10]
    return f"{stem}.{extension}" if extension else stem
