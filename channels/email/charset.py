"""Turning the bytes of one MIME part (or one encoded-word) into text, whatever its label says.

A charset label is a claim by the sending client, and Chinese clients get it wrong in a few
well-known ways. The decisions, in order:

* ``gb2312``, ``gbk``, ``cp936``, ``euc-cn`` and friends are decoded as **gb18030**, always.
  GB 18030 is a strict superset of all of them (GB 18030-2005 §4), and older Foxmail, Outlook
  and webmail clients label GBK text (with characters such as 喆, 堃, 琍 that GB 2312 lacks)
  ``gb2312``: decoding with the label's own table would garble exactly the complainant's name.
* ``big5`` and its aliases are decoded as **big5hkscs** (Hong Kong characters), then cp950
  (Microsoft's extensions), whichever decodes strictly.
* single-byte labels (iso-8859-*, windows-125x, koi8, ascii) always "decode", so a label that
  is wrong would never be noticed: bytes that are valid UTF-8 with multi-byte sequences are
  taken as UTF-8, and bytes that are mostly 8-bit (CJK text, not a European language) are sent
  to detection.
* a label that does not decode the bytes strictly, an unknown label, and 8-bit bytes without a
  label go to detection (charset-normalizer), with Chinese codecs preferred among its
  candidates because this is a Chinese service.
* nothing detected: the label's codec (or UTF-8) with U+FFFD replacement, and it says so.

Detection costs milliseconds, decoding microseconds: it runs only when the label failed, never
for a part whose label decodes cleanly.

Every non-trivial choice comes back as a ``note`` ("label gb2312 decoded as gb18030"), which the
parser turns into an intake note. Notes never contain the text itself, only codec names.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import charset_normalizer

__all__ = ["Decoded", "codec_for_label", "decode_bytes", "detect_codec", "safe_label"]

_GB: Final = "gb18030"
_BIG5: Final = "big5hkscs"

# Labels (lower-cased, as written in mail) mapped to the codec we decode them with. Python's
# codec registry resolves everything else; these are the ones where its answer is wrong for mail.
_LABEL_CODECS: Final[dict[str, str]] = {
    **dict.fromkeys(
        (
            "gb2312",
            "gb_2312",
            "gb_2312-80",
            "gb2312-80",
            "csgb2312",
            "euc-cn",
            "euccn",
            "x-euc-cn",
            "iso-ir-58",
            "chinese",
            "gbk",
            "x-gbk",
            "cp936",
            "ms936",
            "windows-936",
            "gb18030",
            "gb-18030",
            "x-gb18030",
        ),
        _GB,
    ),
    **dict.fromkeys(
        (
            "big5",
            "big-5",
            "big-five",
            "bigfive",
            "cn-big5",
            "csbig5",
            "x-x-big5",
            "x-big5",
            "big5-hkscs",
            "big5hkscs",
            "cp950",
            "ms950",
            "windows-950",
        ),
        _BIG5,
    ),
    # WHATWG Encoding: browsers (and the mail clients built on them) treat latin-1 as cp1252.
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "iso-8859-8-i": "iso8859-8",
    "utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
}

# Labels that carry no information: decide from the bytes.
_NO_INFORMATION: Final = frozenset(
    {"unknown", "unknown-8bit", "x-unknown", "x-user-defined", "default", "charset", "8bit"}
)

# Codecs Python registers that are not text encodings a mail part could be in.
_NOT_TEXT_CODECS: Final = frozenset(
    {
        "unicode-escape",
        "raw-unicode-escape",
        "undefined",
        "idna",
        "punycode",
        "mbcs",
        "oem",
        "charmap",
    }
)

# Single-byte codecs decode every byte string, so "it decoded" proves nothing.
_SINGLE_BYTE_PREFIXES: Final = (
    "ascii",
    "latin-1",
    "iso8859",
    "cp125",
    "cp4",
    "cp8",
    "koi8",
    "mac-",
    "tis-",
)
# Stateful 7-bit encodings: their text is pure ASCII bytes that must still be decoded.
_SEVEN_BIT: Final = ("utf-7", "hz", "iso2022")

_CHINESE_CODECS: Final = frozenset(
    {"gb2312", "gbk", "gb18030", "big5", "big5hkscs", "cp950", "hz", "cp936"}
)
# Multi-byte East Asian codecs: on short text charset-normalizer confuses them with each other
# (Big5 scored as Shift_JIS), never with a European single-byte codec.
_CJK_CODECS: Final = _CHINESE_CODECS | frozenset(
    {
        "shift_jis",
        "shift_jis_2004",
        "shift_jisx0213",
        "cp932",
        "euc_jp",
        "euc_jis_2004",
        "euc_jisx0213",
        "cp949",
        "euc_kr",
        "johab",
        "iso2022_jp",
        "iso2022_kr",
    }
)

_SAFE_LABEL_RE: Final = re.compile(r"^[A-Za-z0-9._:+-]{1,40}$")

# Detection reads at most this much; the chosen codec then decodes everything.
_DETECT_WINDOW: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    codec: str
    """The codec that produced ``text`` (Python's name)."""
    note: str | None = None
    """What was decided and why, when it was more than "the label was right"."""
    trusted_label: bool = True
    """False when the label was missing, unknown or wrong and the bytes decided."""
    lossy: bool = False
    """True when some bytes could not be decoded and became U+FFFD."""


@lru_cache(maxsize=512)
def safe_label(label: str | None) -> str:
    """The label as it may appear in a note: sender-controlled text, so only a short token."""
    if label is None:
        return "(none)"
    label = label.strip().strip("\"'")
    return label.lower() if _SAFE_LABEL_RE.match(label) else "(invalid)"


@lru_cache(maxsize=512)
def codec_for_label(label: str | None) -> str | None:
    """The codec to decode text labelled ``label`` with; ``None`` when the label is no help."""
    if label is None:
        return None
    key = label.strip().strip("\"'").strip().lower()
    if not key or key in _NO_INFORMATION:
        return None
    key = key.split("*", 1)[0]  # RFC 2231 §5: charset*language in encoded-words
    mapped = _LABEL_CODECS.get(key)
    if mapped is not None:
        return mapped
    try:
        info = codecs.lookup(key)
    except (LookupError, ValueError):
        return None
    name = info.name
    if name in _NOT_TEXT_CODECS or not getattr(info, "_is_text_encoding", True):
        return None
    return _LABEL_CODECS.get(name, name)


def _single_byte(codec: str) -> bool:
    return codec.startswith(_SINGLE_BYTE_PREFIXES)


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _utf8(data: bytes) -> str | None:
    text = _strict(data, "utf-8")
    if text is not None and text.startswith("\ufeff"):
        text = text[1:]
    return text


def _window(data: bytes) -> bytes:
    """At most _DETECT_WINDOW bytes, cut at a line end so no multi-byte character is split."""
    if len(data) <= _DETECT_WINDOW:
        return data
    cut = data.rfind(b"\n", 0, _DETECT_WINDOW)
    return data[: cut + 1] if cut > 0 else data[:_DETECT_WINDOW]


def detect_codec(data: bytes) -> str | None:
    """The most likely codec of ``data``, or ``None``. UTF-8 first, then charset-normalizer.

    Among charset-normalizer's candidates a Chinese codec is preferred when there is one: short
    Big5 text is often scored as Shift_JIS, and this service's mail is overwhelmingly Chinese.
    """
    if _utf8(data) is not None:
        return "utf-8"
    try:
        matches = charset_normalizer.from_bytes(_window(data))
    except Exception:  # detection is best effort; a crash in it must not lose the mail
        return None
    candidates = [match.encoding for match in matches]
    if not candidates:
        return None
    chosen = candidates[0]
    if chosen in _CJK_CODECS:
        chosen = next((c for c in candidates if c in _CHINESE_CODECS), chosen)
    elif _single_byte(chosen):
        # A short GBK subject scores as well as Cyrillic in cp1251 (every byte pair is some
        # letter there); when a Chinese candidate reads it as Chinese text, that is the one.
        chinese = next((c for c in candidates if c in _CHINESE_CODECS), None)
        if chinese is not None and _reads_as_han(
            _strict(data, _LABEL_CODECS.get(chinese, chinese))
        ):
            chosen = chinese
    return _LABEL_CODECS.get(chosen, chosen)


def _reads_as_han(text: str | None) -> bool:
    """Most of the non-ASCII characters of ``text`` are Chinese characters or punctuation."""
    if not text:
        return False
    wide = [ch for ch in text if ord(ch) >= 0x80]
    han = sum(1 for ch in wide if "\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef")
    return bool(wide) and han * 10 >= len(wide) * 9


def _decode_detected(data: bytes, label: str | None, why: str) -> Decoded:
    shown = safe_label(label)
    detected = detect_codec(data)
    labelled = codec_for_label(label)
    if labelled is not None and labelled in _CJK_CODECS and detected not in (None, *_CJK_CODECS):
        # A Chinese label on bytes that are not quite Chinese is a damaged Chinese text far
        # more often than Thai or Cyrillic: keep the label, replace what does not decode.
        note = f"label {shown} has invalid sequences, decoded as {labelled} with replacement"
        return Decoded(data.decode(labelled, errors="replace"), labelled, note, True, True)
    if detected is not None:
        text = _strict(data, detected)
        if text is not None:
            if detected == "utf-8" and text.startswith("\ufeff"):
                text = text[1:]
            return Decoded(text, detected, f"label {shown} {why}, detected {detected}", False)
        if detected == _BIG5:
            text = _strict(data, "cp950")
            if text is not None:
                return Decoded(text, "cp950", f"label {shown} {why}, detected cp950", False)
    fallback = detected or codec_for_label(label) or "utf-8"
    text = data.decode(fallback, errors="replace")
    note = f"label {shown} {why}, undetectable, decoded as {fallback} with replacement characters"
    return Decoded(text, fallback, note, False, True)


def decode_bytes(data: bytes, label: str | None) -> Decoded:
    """Decode ``data`` that claims to be in charset ``label`` (``None``: no label given)."""
    codec = codec_for_label(label)
    if data.isascii() and b"\x00" not in data and not (codec or "").startswith(_SEVEN_BIT):
        # Pure ASCII reads the same in every ASCII-compatible charset: nothing to decide.
        return Decoded(data.decode("ascii"), "ascii")
    shown = safe_label(label)
    if codec is None:
        why = "missing" if label is None or not label.strip() else "unknown"
        return _decode_detected(data, label, why)
    if codec == "utf-8":
        text = _utf8(data)
        if text is not None:
            return Decoded(text, "utf-8")
        return _mostly_utf8(data) or _decode_detected(data, label, "wrong")
    if _single_byte(codec):
        text = _utf8(data)
        if text is not None:
            return Decoded(text, "utf-8", f"label {shown} wrong, bytes are utf-8", False)
        high = sum(1 for byte in data[:4096] if byte >= 0x80)
        if high * 10 > min(len(data), 4096) * 3:
            # More than 30 % 8-bit bytes is not a European language in a single-byte charset.
            detected = detect_codec(data)
            if detected in _CHINESE_CODECS or (detected and not _single_byte(detected)):
                text = _strict(data, detected)
                if text is not None:
                    note = f"label {shown} wrong, detected {detected}"
                    return Decoded(text, detected, note, False)
        text = _strict(data, codec)
        if text is None and codec == "cp1252":
            # cp1252 leaves five bytes undefined; real latin-1 decodes them as C1 controls.
            return Decoded(data.decode("latin-1"), "latin-1")
        if text is not None:
            return Decoded(text, codec, _mapped_note(label, codec))
        return _decode_detected(data, label, "wrong")
    if codec in (_GB, _BIG5):
        # UTF-8 Chinese read as GB 18030 is valid GB 18030 (every pair of high bytes is a
        # character): the classic 浣犲ソ mojibake. GBK text is almost never valid UTF-8, so
        # valid UTF-8 wins over the label once there is enough of it to be sure: short GBK
        # names are valid UTF-8 by chance about once in a thousand.
        text = _utf8(data)
        if text is not None and len(text.encode()) - len(text) >= 12:  # >= 6 CJK characters
            return Decoded(text, "utf-8", f"label {shown} wrong, bytes are utf-8", False)
    text = _strict(data, codec)
    if text is not None:
        return Decoded(text, codec, _mapped_note(label, codec))
    if codec.startswith(_SEVEN_BIT):
        # Escape-sequence encodings are pure ASCII: detection would call them UTF-8 and keep
        # the escapes. Vendor extensions (Microsoft's CP50220 symbols in ISO-2022-JP) are the
        # usual failure: replace just those characters.
        note = f"label {shown} has characters outside {codec}, replaced"
        return Decoded(data.decode(codec, errors="replace"), codec, note, True, True)
    if codec == _BIG5:
        text = _strict(data, "cp950")
        if text is not None:
            return Decoded(text, "cp950", f"label {shown} decoded as cp950")
    return _decode_detected(data, label, "wrong")


def _mostly_utf8(data: bytes) -> Decoded | None:
    """UTF-8 with a few broken sequences (a cut line, a bad relay) is still UTF-8.

    Accepted when at most 1 in 50 of the non-ASCII characters is broken: text in another
    charset read as UTF-8 breaks on nearly every non-ASCII byte.
    """
    text = data.decode("utf-8", errors="replace")
    broken = text.count("\ufffd")
    non_ascii = sum(1 for ch in text if ord(ch) > 0x7F)
    if non_ascii >= 20 and broken * 50 <= non_ascii:
        note = f"label utf-8 with {broken} invalid byte sequence(s), replaced"
        return Decoded(text.removeprefix("\ufeff"), "utf-8", note, True, True)
    return None


@lru_cache(maxsize=512)
def _mapped_note(label: str | None, codec: str) -> str | None:
    """A note when the label was read as a superset (gb2312 -> gb18030), else None."""
    if label is None:
        return None
    key = label.strip().strip("\"'").strip().lower()
    if key in _LABEL_CODECS and _LABEL_CODECS[key] != key and codec in (_GB, _BIG5):
        return f"label {safe_label(label)} decoded as {codec}"
    return None
