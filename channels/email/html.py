"""HTML-only mail as readable text, never raw markup (issue 3 §3).

inscriptis (Apache-2.0, on lxml) renders the layout a reader sees: paragraphs, line breaks,
table cells side by side, list bullets. html2text was the other candidate; it writes Markdown
(``**bold**``, escaped ``\\-``), which an agent reads as noise, and it is GPL-3.0.
"""

from __future__ import annotations

import html as html_lib
import re
from typing import Final

from inscriptis import get_text

__all__ = ["html_to_text", "meta_charset"]

_META_CHARSET_RE: Final = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I
)
_XML_DECL_RE: Final = re.compile(r"^\s*<\?xml[^>]*\?>", re.I)
_TAG_RE: Final = re.compile(r"<[^>]*>")
_BLOCK_RE: Final = re.compile(r"<\s*(?:br|/p|/div|/tr|/li|/h[1-6])\b[^>]*>", re.I)
_SCRIPT_RE: Final = re.compile(r"<(script|style)\b.*?</\1\s*>", re.I | re.S)
_BLANK_RUN_RE: Final = re.compile(r"\n{3,}")


def meta_charset(data: bytes) -> str | None:
    """The charset an HTML document declares in a ``<meta>`` (read when MIME gave none)."""
    match = _META_CHARSET_RE.search(data[:4096])
    return match.group(1).decode("ascii") if match else None


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANK_RUN_RE.sub("\n\n", "\n".join(lines)).strip("\n")


def _fallback(markup: str) -> str:
    """Tags stripped by regex: only for markup lxml refuses, so the text is never lost."""
    markup = _SCRIPT_RE.sub("", markup)
    markup = _BLOCK_RE.sub("\n", markup)
    return html_lib.unescape(_TAG_RE.sub("", markup))


def html_to_text(markup: str) -> str:
    # lxml refuses str input that declares its own encoding; the text is already decoded.
    markup = _XML_DECL_RE.sub("", markup)
    if not markup.strip():
        return ""
    try:
        text = get_text(markup)
    except Exception:  # lxml raises several types on broken markup; keep the text regardless
        text = _fallback(markup)
    return _tidy(text.replace("\xa0", " "))
