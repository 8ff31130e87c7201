"""Turning the bytes of a submitted form into text, whatever charset the form declares.

A form declares its charset (the ``_charset_`` field browsers fill in, or ``charset=`` on the
request's Content-Type; UTF-8 when neither, as our own page is UTF-8), and partner portals
still built on GBK pages get the declaration wrong the same ways mail clients do. So the
decisions are the email channel's (``channels.email.charset.decode_bytes``: one policy, one
detector), and each one that is more than "the declaration was right" becomes a note for the
ticket, naming the field and the codecs, never the text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# The decoding policy lives with the email channel, which met these clients first; the web
# channel reuses it rather than keeping a second detector that could disagree with it.
from channels.email.charset import Decoded, decode_bytes

__all__ = ["CHARSET_FIELD", "DEFAULT_CHARSET", "declared_charset", "decode_form_texts"]

CHARSET_FIELD = "_charset_"  # WHATWG HTML: a hidden field of this name carries the encoding
DEFAULT_CHARSET = "utf-8"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")

# A text of the form: a field by its name, or the file name of the evidence file numbered so.
TextKey = str | int


def declared_charset(charset_field: bytes | None, content_type_charset: bytes | None) -> str:
    """The charset the form claims: its ``_charset_`` field, else Content-Type's, else UTF-8."""
    for claimed in (charset_field, content_type_charset):
        label = (claimed or b"").decode("latin-1").strip()
        if label:
            return label
    return DEFAULT_CHARSET


def _where(key: TextKey) -> str:
    if isinstance(key, int):
        return f"file name of evidence {key}"
    # Field names come from the sender: only a plain one may appear in a note.
    return f"form field '{key}'" if _NAME.match(key) else "form field (unnamed)"


def decode_form_texts(
    raw: Mapping[TextKey, bytes], label: str | None
) -> tuple[dict[TextKey, str], list[str]]:
    """Every text of one form decoded, and the notes of the decisions (no text in them)."""
    decoded = {key: decode_bytes(data, label) for key, data in raw.items()}
    if all(d.trusted_label for d in decoded.values()):
        trusted = [_note(key, d) for key, d in decoded.items() if d.note is not None]
        return {key: d.text for key, d in decoded.items()}, trusted
    # A browser encodes every field of a form in the same charset: once one field shows the
    # declaration wrong, it is wrong for all of them, also for a short GBK name that happens to
    # be valid UTF-8 (漏水 is). ASCII reads the same in every charset and needs no decision.
    texts = {key: d.text for key, d in decoded.items() if d.codec == "ascii"}
    notes: list[str] = []
    texts.update(_decode_together({k: raw[k] for k in raw if k not in texts}, label, notes))
    return {key: texts[key] for key in raw}, notes


def _decode_together(
    doubtful: Mapping[TextKey, bytes], label: str | None, notes: list[str]
) -> dict[TextKey, str]:
    # A two-character name alone is too short to tell GBK from Big5: the texts are detected
    # as one. No GBK or Big5 character contains the byte 0x0A, so joining them cuts none.
    whole = decode_bytes(b"\n".join(doubtful.values()), label)
    texts: dict[TextKey, str] = {}
    for key, data in doubtful.items():
        text = None if whole.lossy else _strict(data, whole.codec)
        if text is None:
            # This field does not fit the form's codec: it is decided on its own.
            alone = decode_bytes(data, label)
            texts[key] = alone.text
            if alone.note is not None:
                notes.append(_note(key, alone))
        else:
            texts[key] = text
            notes.append(_note(key, whole))
    return texts


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _note(key: TextKey, decoded: Decoded) -> str:
    # The joint decoding of a form whose label is wrong always says why; "decoded as" is for
    # the unlikely case it does not.
    return f"{_where(key)}: {decoded.note or f'decoded as {decoded.codec}'}"
