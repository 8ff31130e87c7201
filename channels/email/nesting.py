"""Mail nested deeper than anyone reads: parsed without deep recursion, skipped parts counted.

The stdlib feed parser descends one generator per nesting level: a mail nested a thousand
deep (a mail loop, a broken mailer, an attack) ends in RecursionError, and the whole mail was
lost with it, its top-level From and Message-ID included. :func:`parse_bounded` lets the stdlib
build the tree only down to the depth the walker reads: a multipart or message/* part below
it becomes one opaque part whose payload is its raw content, so the parser's recursion stays
bounded and its time linear, and everything above is parsed exactly as before.

:func:`parts_in` counts the parts of a subtree, the parts inside opaque parts included, with an
iterative port of the feed parser's structure rules (``FeedParser._parsegen``): the count
of skipped parts is the number the stdlib's own tree would have had, not an estimate.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import Policy
from functools import partial
from typing import Any, Final, cast

__all__ = ["BoundedMessage", "parse_bounded", "parts_in"]

_OPAQUE_TYPE: Final = "application/octet-stream"
_CONTAINERS: Final = ("multipart", "message")

# email.feedparser's own patterns: what starts a header line, what ends the header block.
_HEADER_RE: Final = re.compile(r"^(From |[\041-\071\073-\176]*:|[\t ])")
_NEWLINE_RE: Final = re.compile(r"\r\n|\r|\n")
# Lines as the feed parser splits them (StringIO with newline=""), without copying the text.
_LINE_RE: Final = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")

# The Content-Type forms deep nesting is made of, read directly: the stdlib's header registry
# takes ~300 us a field, minutes for a bomb of 10^5 levels. On these forms (one line, one
# type/subtype, at most a plain boundary) it gives the same type and boundary; anything else
# goes through it.
_SIMPLE_TYPE_RE: Final = re.compile(
    r"[ \t]*(?P<type>[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*)[ \t]*"
    r"(?:;[ \t]*boundary=(?:\"(?P<quoted>[a-z0-9()+_,./:=?-]+)\"|(?P<token>[a-z0-9+_.-]+))"
    r"[ \t]*)?",
    re.IGNORECASE | re.ASCII,
)


class BoundedMessage(EmailMessage):
    """An EmailMessage that knows its depth and, below ``limit``, hides that it is a container.

    The feed parser attaches each new part to its parent before reading the part's headers,
    then asks the part's content type to decide whether to descend: answering "not a
    container" below the limit makes the part a leaf holding its raw content.
    """

    # Parts the stdlib makes itself (``make_mixed`` and friends) come without a limit.
    def __init__(self, policy: Policy | None = None, *, limit: int = sys.maxsize) -> None:
        super().__init__(policy)
        self.depth = 0
        self.limit = limit
        self.opaque = False

    def attach(self, payload: Any) -> None:
        if isinstance(payload, BoundedMessage):
            payload.depth = self.depth + 1
            payload.limit = self.limit
            payload.opaque = payload.depth > self.limit
        super().attach(payload)

    def get_content_type(self) -> str:
        real = self.real_content_type()
        if self.opaque and real.partition("/")[0] in _CONTAINERS:
            return _OPAQUE_TYPE
        return real

    def real_content_type(self) -> str:
        return super().get_content_type()

    def holds_raw_parts(self) -> bool:
        """True for a container below the limit: its parts are still raw text in its payload."""
        return self.opaque and self.real_content_type().partition("/")[0] in _CONTAINERS


def parse_bounded(raw: bytes, limit: int, policy: Policy) -> BoundedMessage:
    """The stdlib parse of ``raw``, with parts deeper than ``limit`` kept opaque."""
    factory = partial(BoundedMessage, limit=limit)
    # Every part comes from the factory; the stubs cannot say so for a policy of another type.
    return cast(BoundedMessage, BytesParser(factory, policy=policy).parsebytes(raw))


def parts_in(part: Message) -> int:
    """How many parts ``part``'s subtree has, itself included, as ``Message.walk()`` counts."""
    count = 0
    pending = [part]
    while pending:
        node = pending.pop()
        count += 1
        if isinstance(node, BoundedMessage) and node.holds_raw_parts():
            count += _raw_parts(node)
            continue
        payload = node.get_payload()
        if isinstance(payload, list):
            pending.extend(child for child in payload if isinstance(child, Message))
    return count


# --------------------------------------------------------------------------------------------
# Counting the parts in an opaque part's raw content, the way the feed parser would parse it.


class _Lines:
    """email.feedparser.BufferedSubFile over finished text: lines, push-back, and false EOFs.

    A line matching any enclosing boundary (or, inside delivery-status, a blank line) reads as
    the end of input to everything nested inside. The feed parser tries every enclosing
    boundary's regex on every line, quadratic in the depth; here they are one dict lookup.
    """

    def __init__(self, text: str) -> None:
        self._source = (match[0] for match in _LINE_RE.finditer(text))
        self._pushed: list[str] = []
        self._ends: list[str | None] = []  # None: a blank line ends the input
        self._boundaries: Counter[str] = Counter()
        self._blank_ends = 0

    def readline(self) -> str:
        line = self._pushed.pop() if self._pushed else next(self._source, "")
        if line and self._is_false_eof(line):
            self._pushed.append(line)
            return ""
        return line

    def unreadline(self, line: str) -> None:
        self._pushed.append(line)

    def drain(self) -> None:
        while self.readline():
            pass

    def push_end(self, boundary: str | None) -> None:
        self._ends.append(boundary)
        if boundary is None:
            self._blank_ends += 1
        else:
            self._boundaries[boundary] += 1

    def pop_end(self) -> None:
        boundary = self._ends.pop()
        if boundary is None:
            self._blank_ends -= 1
        else:
            self._boundaries[boundary] -= 1

    def _is_false_eof(self, line: str) -> bool:
        if self._blank_ends and line[0] in "\r\n":
            return True
        if not line.startswith("--"):
            return False
        core = _boundary_core(line)
        return self._boundaries[core] > 0 or (
            core.endswith("--") and self._boundaries[core[:-2]] > 0
        )


def _boundary_core(line: str) -> str:
    """What follows ``--`` on a possible boundary line, without line end or trailing blanks.

    The feed parser's boundary pattern is ``--BOUNDARY(--)?[ \\t]*(line end)?$``; a boundary
    never ends in white space (``Message.get_boundary`` strips it), so this is unambiguous.
    """
    if line.endswith("\r\n"):
        line = line[:-2]
    elif line.endswith(("\r", "\n")):
        line = line[:-1]
    return line.rstrip(" \t")[2:]


def _boundary_kind(line: str, boundary: str) -> str | None:
    """``"part"``, ``"close"`` or ``None``: what ``line`` is to a multipart with ``boundary``."""
    if not line.startswith("--"):
        return None
    core = _boundary_core(line)
    if core == boundary:
        return "part"
    if core == boundary + "--":
        return "close"
    return None


@dataclass(frozen=True, slots=True)
class _Child:
    """A request from a body to parse one nested part next."""

    default_type: str | None
    last: bool = False
    """Nothing of the parent's body follows: the parent can be dropped (no stack growth)."""


_Body = Iterator[_Child]


def _raw_parts(part: BoundedMessage) -> int:
    """The number of parts nested in an opaque part's payload.

    The feed parser's recursion, turned into a stack of body generators: each yields when it
    needs a nested part parsed, and is resumed when that part has been read.
    """
    payload = part.get_payload()
    if not isinstance(payload, str):
        return 0
    lines = _Lines(payload)
    content_type = part.real_content_type()
    boundary = part.get_boundary() if content_type.startswith("multipart/") else None
    stack: list[_Body] = [_body(lines, content_type, boundary)]
    count = 0
    while stack:
        request = next(stack[-1], None)
        if request is None:
            stack.pop()
            continue
        count += 1
        if request.last:
            stack.pop()
        content_type, boundary = _headers(lines, request.default_type, part.policy)
        stack.append(_body(lines, content_type, boundary))
    return count


def _headers(lines: _Lines, default_type: str | None, policy: Policy) -> tuple[str, str | None]:
    """Read one part's header block; its content type and boundary as the stdlib sees them."""
    block: list[str] = []
    while line := lines.readline():
        if not _HEADER_RE.match(line):
            if not _NEWLINE_RE.match(line):
                lines.unreadline(line)  # no blank line: this line already belongs to the body
            break
        block.append(line)
    sources = _content_type_sources(block, lines)
    if not sources:
        return default_type or "text/plain", None
    # Message.get_content_type reads the first Content-Type field only.
    name, value = policy.header_source_parse(sources[0])
    simple = _SIMPLE_TYPE_RE.fullmatch(value)
    if simple is not None:
        content_type = simple["type"].lower()
        multipart = content_type.startswith("multipart/")
        return content_type, (simple["quoted"] or simple["token"]) if multipart else None
    headers = Message(policy=policy)
    headers.set_raw(name, value)
    content_type = headers.get_content_type()
    boundary = headers.get_boundary() if content_type.startswith("multipart/") else None
    return content_type, boundary


def _content_type_sources(block: list[str], lines: _Lines) -> list[list[str]]:
    """The source lines of each Content-Type field, split as FeedParser._parse_headers does
    (continuations, a leading ``From `` line, a trailing one pushed back to the body)."""
    fields: list[list[str]] = []
    current: list[str] = []
    for number, line in enumerate(block):
        if line[0] in " \t":
            if current:
                current.append(line)
            continue
        if current:
            fields.append(current)
            current = []
        if line.startswith("From "):
            if number == len(block) - 1 and number:
                lines.unreadline(line)
                break
            continue
        if line.find(":") > 0:
            current = [line]
    else:
        if current:
            fields.append(current)
    return [f for f in fields if f[0].split(":", 1)[0].lower() == "content-type"]


def _body(lines: _Lines, content_type: str, boundary: str | None) -> _Body:
    """One part's body as ``FeedParser._parsegen`` reads it: the nested parts it asks for."""
    if content_type == "message/delivery-status":
        return _status_blocks(lines)
    if content_type.startswith("message/"):
        return iter((_Child(None, last=True),))
    if content_type.startswith("multipart/") and boundary is not None:
        default = "message/rfc822" if content_type == "multipart/digest" else None
        return _multipart(lines, boundary, default)
    lines.drain()  # a leaf, or a multipart without a boundary: all of it is content
    return iter(())


def _status_blocks(lines: _Lines) -> _Body:
    # Blocks of fields separated by blank lines, each parsed as a part of its own.
    while True:
        lines.push_end(None)
        yield _Child(None)
        lines.pop_end()
        lines.readline()
        line = lines.readline()
        if not line:
            return
        lines.unreadline(line)


def _multipart(lines: _Lines, boundary: str, default: str | None) -> _Body:
    in_preamble = True
    closed = False
    while line := lines.readline():
        kind = _boundary_kind(line, boundary)
        if kind == "close":
            closed = True
            break
        if kind is None:
            continue  # preamble
        if in_preamble:
            in_preamble = False
            lines.unreadline(line)
            continue
        # Runs of boundary lines make no empty parts (the feed parser reads RFC 2046 so).
        while True:
            line = lines.readline()
            if _boundary_kind(line, boundary) is None:
                lines.unreadline(line)
                break
        lines.push_end(boundary)
        yield _Child(default)
        lines.pop_end()
    if in_preamble or closed:
        lines.drain()  # the text without a first boundary, or the epilogue
