"""Header values as text: RFC 2047 encoded-words, RFC 2231 parameters, raw 8-bit headers.

The stdlib's header objects decode encoded-words with the label's own codec, so a GBK name
labelled ``gb2312`` comes out garbled; and they cost ~100 µs each. Here every header is read
from its raw source value (``Message.raw_items()``) and decoded with :mod:`.charset`'s rules.

Non-standard forms accepted because real Chinese clients send them:

* raw 8-bit bytes in a header (RFC 6532 allows UTF-8; Foxmail and some webmail send GBK):
  UTF-8 if valid, else the charset of the message's first text part, else detection;
* encoded-words inside quoted parameter values (``filename="=?GBK?B?...?="``, forbidden by
  RFC 2047 §5 but what Foxmail and Outlook do for attachment names);
* a multi-byte character split across two adjacent encoded-words (RFC 2047 §5 forbids it;
  adjacent words in the same charset are joined as bytes before decoding);
* raw 8-bit bytes inside an encoded-word (``=?iso-8859-1?Q?Grüße?=`` with the ü as a byte)
  and encoded-words with spaces inside (RFC 2047 §5 forbids both): decoded as the word's
  charset, as Python's own parser and other helpdesks do (issue 14 §3). The words are found
  in the raw value first, so the bytes inside them are decoded by their own label and only
  the text between them is raw 8-bit.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from email.utils import getaddresses
from typing import Final
from urllib.parse import unquote_to_bytes

from channels.email.charset import (
    Decoded,
    decode_bytes,
    decode_expected,
    detect_codec,
    gbk_posing_as_utf8,
)

__all__ = [
    "HeaderText",
    "decode_header",
    "decode_raw_8bit",
    "describe",
    "message_id",
    "message_ids",
    "parse_addresses",
    "parse_params",
    "unfold",
    "valid_address",
]

_FOLD_RE: Final = re.compile(r"\r?\n(?=[ \t])")
_LINE_END_RE: Final = re.compile(r"[\r\n]")
# RFC 2047 §2 encoded-word; the charset may carry an RFC 2231 "*language" suffix.
# Lenient: the encoded text may hold spaces and raw 8-bit bytes (kept as surrogates), never "?".
_ENCODED_WORD_RE: Final = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_WHITESPACE_RE: Final = re.compile(r"\s+")
_MSG_ID_RE: Final = re.compile(r"<[^<>\s]+>")


class HeaderText(str):
    """A decoded header value that remembers the notes its decoding produced."""

    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, text: str, notes: Iterable[str] = ()) -> HeaderText:
        value = cls(text)
        value.notes = tuple(notes)
        return value


def unfold(raw: str) -> str:
    """RFC 5322 §2.2.3: remove the CRLF of folded lines (the whitespace after it stays)."""
    return _LINE_END_RE.sub("", _FOLD_RE.sub("", raw))


_SURROGATE_RE: Final = re.compile("[\udc80-\udcff]")


def _has_surrogates(text: str) -> bool:
    # BytesParser keeps 8-bit header bytes as lone surrogates (surrogateescape).
    return not text.isascii() and _SURROGATE_RE.search(text) is not None


def decode_raw_8bit(raw: str, hint: str | None) -> Decoded:
    """Decode a header value that arrived with 8-bit bytes (kept as surrogates by the parser)."""
    data = raw.encode("ascii", "surrogateescape")
    if not gbk_posing_as_utf8(data):
        try:
            return Decoded(data.decode("utf-8"), "utf-8")
        except UnicodeDecodeError:
            pass
    if hint is not None:
        decoded = decode_bytes(data, hint)
        if decoded.trusted_label and not decoded.lossy and decoded.codec != "ascii":
            note = f"raw 8-bit header decoded as {decoded.codec} (the body's charset)"
            return Decoded(decoded.text, decoded.codec, note, False)
    expected = decode_expected(data)
    if expected is not None:
        note = f"raw 8-bit header decoded as expected charset {expected.codec}"
        return Decoded(expected.text, expected.codec, note, False)
    detected = detect_codec(data)
    if detected is not None:
        try:
            text = data.decode(detected)
            return Decoded(text, detected, f"raw 8-bit header, detected {detected}", False)
        except (UnicodeDecodeError, LookupError):
            pass
    text = data.decode("gb18030", errors="replace")
    return Decoded(text, "gb18030", "raw 8-bit header undetectable, decoded lossily", False, True)


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    try:
        data = payload.encode("ascii", "surrogateescape")  # raw 8-bit bytes back as bytes
        if encoding in "bB":
            # Lenient about missing padding, which some clients drop, and about spaces.
            data = _WHITESPACE_RE.sub("", payload).encode("ascii")
            return base64.b64decode(data + b"=" * (-len(data) % 4))
        return binascii.a2b_qp(data, header=True)
    except (binascii.Error, ValueError):
        return None


def _text_between(segments: list[str], hint: str | None, notes: list[str]) -> list[str]:
    """The text around encoded-words: raw 8-bit bytes there are decoded together (one
    charset for the header), each segment then on its own."""
    if not any(_has_surrogates(segment) for segment in segments):
        return segments
    joined = "".join(segments)
    decoded = decode_raw_8bit(joined, hint)
    if decoded.note:
        notes.append(decoded.note)
    return [
        segment.encode("ascii", "surrogateescape").decode(decoded.codec, errors="replace")
        if _has_surrogates(segment)
        else segment
        for segment in segments
    ]


def decode_header(raw: str | None, hint: str | None = None) -> HeaderText:
    """Decode one raw header value to text: unfolded, encoded-words decoded, 8-bit handled."""
    if not raw:
        return HeaderText.of("")
    if "=?" not in raw and "\n" not in raw and raw.isascii():
        return HeaderText.of(raw.strip())  # the common case: nothing to decode
    value = unfold(raw)
    notes: list[str] = []
    if "=?" not in value:
        if _has_surrogates(value):
            decoded = decode_raw_8bit(value, hint)
            value = decoded.text
            if decoded.note:
                notes.append(decoded.note)
        return HeaderText.of(value.strip(), notes)

    # (charset label or None for plain text, bytes or text)
    pieces: list[tuple[str | None, bytes | str]] = []
    position = 0
    previous_was_word = False
    for match in _ENCODED_WORD_RE.finditer(value):
        between = value[position : match.start()]
        charset, encoding, payload = match.groups()
        data = _word_bytes(encoding, payload)
        if data is None:
            pieces.append((None, between + match.group()))
            previous_was_word = False
            position = match.end()
            continue
        # RFC 2047 §6.2: whitespace between two adjacent encoded-words is not displayed.
        if between and not (previous_was_word and between.isspace()):
            pieces.append((None, between))
        label = charset.split("*", 1)[0].lower()
        if pieces and pieces[-1][0] == label and isinstance(pieces[-1][1], bytes):
            pieces[-1] = (label, pieces[-1][1] + data)
        else:
            pieces.append((label, data))
        previous_was_word = True
        position = match.end()
    pieces.append((None, value[position:]))

    plain = _text_between([c for _, c in pieces if isinstance(c, str)], hint, notes)
    parts: list[str] = []
    for label, content in pieces:
        if isinstance(content, str):
            parts.append(plain.pop(0))
            continue
        decoded = decode_bytes(content, label)
        parts.append(decoded.text)
        if decoded.note and not decoded.trusted_label:
            notes.append(f"encoded-word {decoded.note}")
    return HeaderText.of("".join(parts).strip(), notes)


# --------------------------------------------------------------------------------------------
# Parameters (Content-Type, Content-Disposition).

_PARAM_NAME_RE: Final = re.compile(r"^([^*]+)(?:\*(\d+))?(\*)?$")


# "; name = value" or "; name = "quoted; value"", a quote possibly unterminated.
_PARAM_RE: Final = re.compile(r';\s*([^\s=;"]+)\s*=\s*("(?:[^"\\]|\\.)*(?:"|$)|[^;]*)')


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    if value.startswith('"'):  # unterminated quote: take what is there
        return value[1:]
    return value


def parse_params(raw: str | None, hint: str | None = None) -> tuple[str, dict[str, HeaderText]]:
    """``(value, params)`` of a MIME header such as Content-Type or Content-Disposition.

    The value is lower-cased; parameter names are lower-cased; parameter values are decoded:
    RFC 2231 continuations and charsets (``filename*0*=gbk''%D5%D5...``), RFC 2047 words inside
    quotes, raw 8-bit bytes. When both ``name`` and ``name*`` are present, RFC 2231 wins.
    """
    if not raw:
        return "", {}
    text = unfold(raw)
    main, _, rest = text.partition(";")
    main = main.strip().lower()
    plain: dict[str, str] = {}
    # name -> {section: (value, is_extended)}
    extended: dict[str, dict[int, tuple[str, bool]]] = {}
    for param in _PARAM_RE.finditer(";" + rest) if rest else ():
        match = _PARAM_NAME_RE.match(param.group(1).lower())
        if match is None:
            continue
        base, section, star = match.groups()
        value = param.group(2)
        if section is None and star is None:
            plain.setdefault(base, _unquote(value))
        else:
            extended.setdefault(base, {})[int(section or 0)] = (_unquote(value), bool(star))

    params: dict[str, HeaderText] = {}
    for name, value in plain.items():
        params[name] = decode_header(value, hint)
    for name, sections in extended.items():
        decoded = _decode_rfc2231(sections, hint)
        if decoded is not None:
            params[name] = decoded
    return main, params


def _decode_rfc2231(sections: dict[int, tuple[str, bool]], hint: str | None) -> HeaderText | None:
    """RFC 2231 §3-4: join continuations, then percent-decode and charset-decode."""
    charset: str | None = None
    data = bytearray()
    order = sorted(sections)
    for index in order:
        value, is_extended = sections[index]
        if index == order[0] and is_extended:
            # charset'language'value (only in the first section)
            if value.count("'") >= 2:
                charset, _, rest = value.partition("'")
                _, _, value = rest.partition("'")
        if is_extended:
            data += unquote_to_bytes(value.encode("ascii", "surrogateescape"))
        else:
            data += value.encode("ascii", "surrogateescape")
    if not data:
        return HeaderText.of("")
    decoded = decode_bytes(bytes(data), charset or hint)
    notes = [f"rfc2231 {decoded.note}"] if decoded.note and not decoded.trusted_label else []
    text = decoded.text
    if "=?" in text:  # some clients put an encoded-word inside filename*=
        inner = decode_header(text, hint)
        text, notes = str(inner), notes + list(inner.notes)
    return HeaderText.of(text, notes)


# --------------------------------------------------------------------------------------------
# Addresses and message ids.


# One mailbox in its two everyday shapes, "Name <a@b>" and "a@b", with nothing that needs the
# full RFC 5322 grammar (no comma, quote escapes, comments, groups): the stdlib's address
# parser walks character by character and costs more than the rest of a small mail's headers.
_SIMPLE_MAILBOX_RE: Final = re.compile(
    r'^\s*(?:"?([^"<>,;:()\\]*?)"?\s*<([^<>\s,;:()"\\]+@[^<>\s,;:()"\\]+)>|([^<>\s,;:()"\\]+@[^<>\s,;:()"\\]+))\s*$'
)


def parse_addresses(raw_values: Iterable[str], hint: str | None = None) -> list[tuple[str, str]]:
    """``[(display name, address)]`` from raw address headers, names decoded."""
    unfolded: list[str] = []
    for raw in raw_values:
        value = unfold(raw)
        if _has_surrogates(value):
            value = decode_raw_8bit(value, hint).text
        unfolded.append(value)
    if len(unfolded) == 1:
        simple = _SIMPLE_MAILBOX_RE.match(unfolded[0])
        if simple is not None:
            name, address, bare = simple.groups()
            if bare is not None:
                return [("", bare)]
            return [(str(decode_header(name.strip(), hint)) if name else "", address)]
    result: list[tuple[str, str]] = []
    for name, address in getaddresses(unfolded):
        if not name and not address:
            continue
        result.append((str(decode_header(name, hint)), address.strip()))
    return result


# An addr-spec a reply can be sent to (RFC 5321 §4.1.2, RFC 6531 for UTF-8): a dot-atom local
# part with a letter or digit in it, and a host name. Stricter than RFC 5322's atext on purpose:
# "?" and brackets are what a lossy charset conversion leaves of a name, never an address.
_LOCAL_RE: Final = re.compile(r"^[\w!#$%&'*+/=^`{|}~-]+(?:\.[\w!#$%&'*+/=^`{|}~-]+)*$")
_HOST_RE: Final = re.compile(r"^(?:[^\W_](?:[\w-]*[^\W_])?\.)*[^\W_](?:[\w-]*[^\W_])?$")


def valid_address(address: str | None) -> bool:
    """Whether ``address`` is a mailbox someone can be answered at."""
    if not address or len(address) > 320 or address.count("@") != 1:
        return False
    local, _, host = address.partition("@")
    return (
        len(local) <= 64
        and _LOCAL_RE.match(local) is not None
        and any(ch.isalnum() for ch in local)
        and _HOST_RE.match(host.rstrip(".")) is not None
        and not host.replace(".", "").isdigit()
    )


def message_ids(raw: str | None) -> tuple[str, ...]:
    """The ``<id>`` tokens of Message-ID, In-Reply-To or References, in order, without dups."""
    if not raw:
        return ()
    found = _MSG_ID_RE.findall(unfold(raw))
    return tuple(dict.fromkeys(found))


def message_id(raw: str | None) -> str | None:
    """One Message-ID: the first ``<id>``, else the bare token some mailers send."""
    ids = message_ids(raw)
    if ids:
        return ids[0]
    if raw is None:
        return None
    bare = unfold(raw).strip()
    if bare and " " not in bare and len(bare) <= 500 and not _has_surrogates(bare):
        return bare
    return None


def describe(note: str, where: str) -> str:
    """Prefix a decoding note with where it happened (``subject``, ``part 2``)."""
    return f"{where}: {note}"
