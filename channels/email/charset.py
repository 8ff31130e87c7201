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
* a single-byte label whose decode reads as plausible text (letters of one alphabet, no C1
  controls) wins over detection (issue 14 §1): "äöüß" labelled iso-8859-1 is German, not Big5.
  Only when the label is Western, the bytes read as Chinese too and no accented letter touches
  an ASCII letter (a Chinese name in a Latin-1 label: "ÕÅÈý" for 张三) does Chinese win;
* short unlabelled GBK that is valid UTF-8 by chance (模 = C4 A3 = "ģ") is read as GBK when
  the UTF-8 reading is no word;
* 8-bit bytes without a label (or with one that carries no information) are tried in the
  organisation's expected charsets first (``email.expected_charsets``: gb18030, then utf-8),
  each accepted only when its reading is plausible: for GB 18030, Chinese characters mostly
  of the common GB 2312 rows and no private-use code points, so Latin-1 "Müller" and
  Shift_JIS kana are not taken for rare Chinese characters (issue 14 §2);
* what is left (a label that does not decode the bytes strictly, an unknown label, unlabelled
  bytes in no expected charset) goes to detection (charset-normalizer) restricted to the
  charsets mail is really written in (no hp_roman8, no cp1006), with Chinese codecs preferred
  among its candidates because this is a Chinese service;
* ISO-2022-JP with the Microsoft/NEC extensions (circled digits ①, Roman numerals, the
  NEC-selected IBM rows: what Outlook sends as "iso-2022-jp", CP50220) is decoded through
  CP932 rather than with U+FFFD (issue 14 §4);
* nothing detected: the label's codec (or UTF-8) with U+FFFD replacement, and it says so.

Detection costs milliseconds, decoding microseconds: it runs only when the label failed, never
for a part whose label decodes cleanly.

Every non-trivial choice comes back as a ``note`` ("label gb2312 decoded as gb18030"), which the
parser turns into an intake note. Notes never contain the text itself, only codec names.
"""

from __future__ import annotations

import codecs
import itertools
import re
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Final

import charset_normalizer
from pydantic import AfterValidator, Field

__all__ = [
    "DEFAULT_EXPECTED",
    "Decoded",
    "ExpectedCharsets",
    "codec_for_label",
    "decode_bytes",
    "decode_expected",
    "detect_codec",
    "expected_charsets",
    "gbk_posing_as_utf8",
    "safe_label",
]

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

# What unlabelled 8-bit text is tried in first, in order (config ``email.expected_charsets``).
DEFAULT_EXPECTED: Final = ("gb18030", "utf-8")
_EXPECTED: ContextVar[tuple[str, ...]] = ContextVar("expected_charsets", default=DEFAULT_EXPECTED)

# The only candidates detection may return: the charsets mail is actually written in. Left
# free, charset-normalizer reads short Latin-1 as hp_roman8 and GBK as cp1250 or cp1006.
_DETECT_CANDIDATES: Final = (
    "utf_8",
    "gb18030",
    "big5",
    "cp932",
    "euc_jp",
    "euc_kr",
    "cp1252",
    "cp1250",
    "cp1251",
    "koi8_r",
    "iso8859_2",
    "iso8859_7",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
    "tis_620",
)
_WESTERN: Final = "cp1252"
_LATIN_2: Final = frozenset({"cp1250", "iso8859_2"})

# Detection reads at most this much; the chosen codec then decodes everything.
_DETECT_WINDOW: Final = 64 * 1024
# Whether a reading is plausible text is judged on this much of it: a few hundred characters
# tell as well as a megabyte, in microseconds.
_SAMPLE: Final = 4096


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


def _known_labels(labels: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [label for label in labels if codec_for_label(label) is None]
    if unknown:
        raise ValueError(f"not a text charset: {', '.join(unknown)}")
    return labels


ExpectedCharsets = Annotated[
    tuple[str, ...],
    AfterValidator(_known_labels),
    Field(
        min_length=1,
        description="unlabelled 8-bit mail text is tried in these first, in order, then detected",
    ),
]


@contextmanager
def expected_charsets(labels: Sequence[str]) -> Iterator[None]:
    """Within the block, unlabelled 8-bit text is tried in ``labels`` first, in order.

    A context variable rather than a parameter of every decode: the organisation's setting
    applies to each header, parameter and part of one mail, several calls down.
    """
    codecs_ = tuple(c for c in (codec_for_label(label) for label in labels) if c is not None)
    token = _EXPECTED.set(codecs_)
    try:
        yield
    finally:
        _EXPECTED.reset(token)


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
    if _isolated_high_bytes(data) and _plausible_alphabet(_strict(data[:_SAMPLE], _WESTERN)):
        # "Köln", "Ångström": single accented letters among ASCII ones. A CJK text has its
        # 8-bit bytes in runs (a character is two of them, and characters come together).
        return _WESTERN
    try:
        matches = charset_normalizer.from_bytes(
            _window(data), cp_isolation=list(_DETECT_CANDIDATES)
        )
    except Exception:  # detection is best effort; a crash in it must not lose the mail
        return None
    candidates = [match.encoding for match in matches]
    if not candidates:
        return None
    chosen = candidates[0]
    if chosen in _LATIN_2 and _plausible_alphabet(_strict(data[:_SAMPLE], _WESTERN)):
        # Central and Western European read "Müller" alike; Western is by far the likelier.
        chosen = _WESTERN
    if chosen in _CJK_CODECS and not _kana(_strict(data, _LABEL_CODECS.get(chosen, chosen))):
        # Short Big5 is often scored as Shift_JIS; real Japanese has kana, and a GB 18030
        # reading must be plausible Chinese (Shift_JIS kana read as GB are rare characters).
        chinese = next((c for c in candidates if c in _CHINESE_CODECS), None)
        codec = _LABEL_CODECS.get(chinese or "", chinese)
        text = _strict(data, codec) if codec else None
        if codec and text is not None and (codec != _GB or _plausible_gb(data, text)):
            chosen = codec
    elif _single_byte(chosen):
        # A short GBK subject scores as well as Cyrillic in cp1251 (every byte pair is some
        # letter there); when a Chinese candidate reads it as Chinese text, that is the one.
        chinese = next((c for c in candidates if c in _CHINESE_CODECS), None)
        if chinese is not None and _reads_as_han(
            _strict(data, _LABEL_CODECS.get(chinese, chinese))
        ):
            chosen = chinese
    return _LABEL_CODECS.get(chosen, chosen)


_HIGH_PAIR_RE: Final = re.compile(rb"[\x80-\xff]{2}")


def _isolated_high_bytes(data: bytes) -> bool:
    """No two 8-bit bytes of ``data`` stand together (read within the detection window)."""
    return _HIGH_PAIR_RE.search(_window(data)) is None


def _kana(text: str | None) -> bool:
    """At least a tenth of the non-ASCII characters are hiragana or katakana: Japanese."""
    if not text:
        return False
    wide = [ch for ch in text if ord(ch) >= 0x80]
    kana = sum(1 for ch in wide if "\u3040" <= ch <= "\u30ff")
    return bool(wide) and kana * 10 >= len(wide)


def _reads_as_han(text: str | None) -> bool:
    """Most of the non-ASCII characters of ``text`` are Chinese characters or punctuation."""
    if not text:
        return False
    wide = [ch for ch in text if ord(ch) >= 0x80]
    han = sum(1 for ch in wide if "\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef")
    return bool(wide) and han * 10 >= len(wide) * 9


_GB_COMMON_LEADS: Final = frozenset((0xA1, 0xA2, 0xA3, *range(0xB0, 0xD8)))


def _plausible_gb(data: bytes, text: str) -> bool:
    """Whether GB 18030 ``text`` (decoded from ``data``) reads as Chinese someone wrote
    (judged on a sample: a large body costs no more than a small one).

    GB 18030 decodes almost any pair of 8-bit bytes, so "it decoded" proves little. Chinese
    text is overwhelmingly made of the punctuation rows and the 3,755 common characters of
    GB 2312 level 1; Latin-1 letters next to ASCII, Shift_JIS kana and Big5 land in rare
    characters, the kana and symbol rows, or the private-use area.
    """
    data = data[:_SAMPLE]
    text = text[: len(data) // 2 + 1]
    if not _reads_as_han(text) or any("\ue000" <= ch <= "\uf8ff" for ch in text):
        return False
    common = pairs = 0
    index = 0
    while index < len(data) - 1:
        lead = data[index]
        if lead < 0x81:
            index += 1
            continue
        trail = data[index + 1]
        if 0x30 <= trail <= 0x39:  # a four-byte sequence: never a common character
            pairs += 1
            index += 4
            continue
        pairs += 1
        common += lead in _GB_COMMON_LEADS and trail >= 0xA1
        index += 2
    return pairs > 0 and common * 2 >= pairs


# Quotes, dashes, ellipsis, euro, guillemets, degree, section, no-break space.
_TYPOGRAPHY: Final = frozenset(
    "\u201c\u201d\u2018\u2019\u201e\u2013\u2014\u2026\u20ac\xab\xbb\xb0\xa7\xa0"
)


def _plausible_alphabet(text: str | None) -> bool:
    """Whether single-byte ``text`` reads as a European language: its non-ASCII characters
    are letters (or the usual typographic marks), never C1 controls."""
    if text is None:
        return False
    wide = [ch for ch in text[:_SAMPLE] if ord(ch) >= 0x80]
    if not wide or any("\x80" <= ch <= "\x9f" for ch in wide):
        return False
    letters = sum(1 for ch in wide if unicodedata.category(ch).startswith("L"))
    marks = sum(1 for ch in wide if ch in _TYPOGRAPHY)
    return letters * 10 >= len(wide) * 9 and letters + marks == len(wide)


def _touches_ascii_letter(text: str) -> bool:
    """Some non-ASCII letter of ``text`` stands next to an ASCII letter ("Müller")."""

    def latin(ch: str) -> bool:
        return ch.isascii() and ch.isalpha()

    return any(
        (ord(a) >= 0x80 and latin(b)) or (ord(b) >= 0x80 and latin(a))
        for a, b in itertools.pairwise(text[:_SAMPLE])
    )


_CHANCE_UTF8_BYTES: Final = 64
_THREE_BYTE_LEAD_RE: Final = re.compile(rb"[\xe0-\xf4]")


def gbk_posing_as_utf8(data: bytes) -> bool:
    """Valid UTF-8 that is really GBK: short GBK text is valid UTF-8 by chance (模 is C4 A3,
    which UTF-8 reads as ģ). Chinese in UTF-8 is three bytes a character, so only a UTF-8
    reading made of two-byte characters is in doubt; it is GBK when the bytes are plausible
    GB 18030 and the UTF-8 reading is no word: letters of several scripts or symbols at
    random, Latin letters that touch no ASCII letter ("Café" does), one or two letters of
    another alphabet. A word in one other alphabet ("Привет", "Ελλάδα") is UTF-8."""
    if len(data) > _CHANCE_UTF8_BYTES or _THREE_BYTE_LEAD_RE.search(data) is not None:
        return False  # longer GBK is never valid UTF-8 by chance
    text = _utf8(data)
    if text is None:
        return False
    wide = [ch for ch in text if ord(ch) >= 0x80]
    scripts = {_script(ch) for ch in wide}
    if scripts == {"LATIN"}:
        if _touches_ascii_letter(text):
            return False
    elif len(scripts) == 1 and "" not in scripts and len(wide) >= 3:
        return False  # one or two letters are no word to tell by: 一 in GBK reads as һ
    gb = _strict(data, _GB)
    return gb is not None and _plausible_gb(data, gb)


def _script(ch: str) -> str:
    """The script a letter is of ("LATIN", "CYRILLIC"); "" for anything that is no letter."""
    if not unicodedata.category(ch).startswith("L"):
        return ""
    return unicodedata.name(ch, "").split(" ", 1)[0]


def decode_expected(data: bytes) -> Decoded | None:
    """Unlabelled ``data`` in the first expected charset whose reading is plausible."""
    for codec in _EXPECTED.get():
        if codec == "utf-8":
            text = None if gbk_posing_as_utf8(data) else _utf8(data)
        else:
            text = _strict(data, codec)
            utf8 = _utf8(data) is not None and not gbk_posing_as_utf8(data)
            if text is not None and codec == _GB and (utf8 or not _plausible_gb(data, text)):
                text = None  # valid UTF-8 is UTF-8; implausible Chinese is not Chinese
        if text is not None:
            return Decoded(text, codec, f"expected charset {codec}", False)
    return None


def _decode_detected(data: bytes, label: str | None, why: str) -> Decoded:
    shown = safe_label(label)
    if why in ("missing", "unknown"):
        expected = decode_expected(data)
        if expected is not None:
            note = f"label {shown} {why}, decoded as expected charset {expected.codec}"
            return Decoded(expected.text, expected.codec, note, False)
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
        labelled = _strict(data, codec)
        if labelled is None and codec == "cp1252":
            labelled = _strict(data, "latin-1")
        if _plausible_alphabet(labelled) and not _chinese_in_latin_label(data, codec, labelled):
            # The label decodes and reads as text: it wins (detection is for failed labels).
            assert labelled is not None
            return Decoded(labelled, codec if labelled == _strict(data, codec) else "latin-1")
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
    if codec.startswith("iso2022_jp"):
        text = _iso2022jp_via_cp932(data)
        if text is not None:
            note = f"label {shown} decoded with the Microsoft/NEC extensions (CP50220)"
            return Decoded(text, "cp50220", note)
    if codec.startswith(_SEVEN_BIT):
        # Escape-sequence encodings are pure ASCII: detection would call them UTF-8 and keep
        # the escapes. What even the vendor extensions do not cover: replace just those.
        note = f"label {shown} has characters outside {codec}, replaced"
        return Decoded(data.decode(codec, errors="replace"), codec, note, True, True)
    if codec == _BIG5:
        text = _strict(data, "cp950")
        if text is not None:
            return Decoded(text, "cp950", f"label {shown} decoded as cp950")
    return _decode_detected(data, label, "wrong")


def _chinese_in_latin_label(data: bytes, codec: str, latin: str | None) -> bool:
    """A Chinese name or phrase in a Western label (what Chinese clients mislabel): every
    accented letter stands apart from ASCII letters ("ÕÅÈý" alone, not "Müller"), and the
    bytes read as plausible GB 18030. Other alphabets (koi8-r "привет") are taken as labelled."""
    if codec not in (_WESTERN, "latin-1") or latin is None or _touches_ascii_letter(latin):
        return False
    text = _strict(data, _GB)
    return text is not None and _plausible_gb(data, text)


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


_ESCAPES: Final[dict[bytes, str]] = {
    b"\x1b(B": "ascii",
    b"\x1b(J": "ascii",  # JIS X 0201 Roman: ASCII but for ¥ and ‾, which mail means as \\ ~
    b"\x1b(I": "kana",  # JIS X 0201 katakana (CP50221)
    b"\x1b$@": "jis",
    b"\x1b$B": "jis",
    b"\x1b$(B": "jis",
    b"\x1b$(Q": "jis",  # JIS X 0213 plane 1 (ISO-2022-JP-2004): its JIS X 0208 part alike
}


def _iso2022jp_via_cp932(data: bytes) -> str | None:
    """ISO-2022-JP read as CP50220 does: each JIS X 0208 pair mapped to Shift_JIS and decoded
    with CP932, which has the NEC row 13 (①, Ⅰ, ㈱) and the IBM extensions. ``None`` when the
    bytes use a set CP932 does not have (JIS X 0212) or are not ISO-2022-JP at all."""
    out = bytearray()
    mode = "ascii"
    index = 0
    while index < len(data):
        if data[index] == 0x1B:
            for escape, switched in _ESCAPES.items():
                if data.startswith(escape, index):
                    mode, index = switched, index + len(escape)
                    break
            else:
                return None
            continue
        byte = data[index]
        if byte in (0x0E, 0x0F):  # SO / SI: katakana shift (CP50222)
            mode = "kana" if byte == 0x0E else "ascii"
            index += 1
        elif byte >= 0x80:
            return None
        elif mode == "jis" and byte not in (0x0A, 0x0D):
            if index + 1 >= len(data):
                return None
            first, second = byte, data[index + 1]
            lead = ((first + 1) >> 1) + (0x70 if first <= 0x5E else 0xB0)
            trail = second + (0x7E if first % 2 == 0 else (0x1F if second <= 0x5F else 0x20))
            out += bytes((lead, trail))
            index += 2
        elif mode == "kana" and 0x21 <= byte <= 0x5F:
            out.append(byte + 0x80)
            index += 1
        else:
            out.append(byte)
            index += 1
    return _strict(bytes(out), "cp932")
