"""Reading a work order payload (JSON or XML) into nested dicts, and dotted paths into it.

XML is parsed with defusedxml: an order file comes from outside, and entity expansion
("billion laughs") or external entities must not reach the parser. Chinese systems often
write GBK or GB18030 and declare it; expat cannot decode multi-byte encodings itself, so
such a document is decoded by Python first and parsed as text.

Nesting is limited (``http.max_json_depth``) before anything recurses into it: JSON through
``ingest.bodies.loads``, XML as it is walked. A document of 100,000 levels is refused, not a
RecursionError in the server or a worker.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, Literal
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException

from ingest.bodies import JsonTooDeep, loads
from ingest.errors import Refused

Format = Literal["json", "xml"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*encoding=[\"']([A-Za-z0-9_.:-]+)[\"'][^>]*\?>")
_EXPAT_ENCODINGS = frozenset({"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1"})
DEFAULT_MAX_DEPTH: Final = 64  # http.max_json_depth's default; the intake passes the setting


class PayloadError(Refused):
    """The payload is not a readable document of the expected format; ``code`` is the API's
    error code for it."""

    def __init__(self, message: str, code: str = "invalid_payload") -> None:
        super().__init__(message)
        self.code = code


def parse_payload(raw: bytes, fmt: Format, *, max_depth: int = DEFAULT_MAX_DEPTH) -> dict[str, Any]:
    if not raw.strip():
        raise PayloadError("the body is empty")
    return _parse_json(raw, max_depth) if fmt == "json" else _parse_xml(raw, max_depth)


def _decode(raw: bytes) -> str:
    # JSON is UTF-8 (RFC 8259); files from older systems are GB18030 (a superset of GBK).
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise PayloadError("not UTF-8 or GB18030 text")


def _parse_json(raw: bytes, max_depth: int) -> dict[str, Any]:
    try:
        data = loads(_decode(raw), max_depth=max_depth)
    except JsonTooDeep as exc:
        raise PayloadError(exc.message, code=exc.code) from exc
    except json.JSONDecodeError as exc:
        raise PayloadError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    if not isinstance(data, dict):
        raise PayloadError("the work order must be a JSON object")
    return data


def _parse_xml(raw: bytes, max_depth: int) -> dict[str, Any]:
    document: bytes | str = raw
    declared = _DECLARATION.match(raw)
    if declared is not None and declared.group(1).decode().lower() not in _EXPAT_ENCODINGS:
        try:
            text = raw.decode(declared.group(1).decode())
        except (LookupError, UnicodeDecodeError) as exc:
            raise PayloadError(f"cannot decode the declared encoding: {exc}") from exc
        document = re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1)
    try:
        root = SafeElementTree.fromstring(document, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise PayloadError(f"refused XML: {type(exc).__name__}") from exc
    except SafeElementTree.ParseError as exc:
        raise PayloadError(f"not valid XML: {exc}") from exc
    try:
        value = _element(root, max_depth)
    except _TooDeep:
        raise PayloadError(
            f"the XML is nested deeper than {max_depth} levels", code="xml_too_deep"
        ) from None
    if not isinstance(value, dict):
        return {"": value}
    return value


class _TooDeep(Exception):
    pass


def _element(element: Element, depth_left: int) -> Any:
    # Counted down as it recurses: 100,000 nested elements must not reach RecursionError.
    if depth_left < 1:
        raise _TooDeep
    children = list(element)
    if not children and not element.attrib:
        return (element.text or "").strip()
    data: dict[str, Any] = {f"@{name}": value for name, value in element.attrib.items()}
    for child in children:
        tag = _local_name(child.tag)
        value = _element(child, depth_left - 1)
        if tag in data:
            existing = data[tag]
            data[tag] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            data[tag] = value
    if not children and element.text and element.text.strip():
        data["#text"] = element.text.strip()
    return data


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]  # drop an XML namespace: {urn:x}工单编号 -> 工单编号


def get_path(data: Any, path: str) -> Any:
    """The value at a dotted path, or :data:`MISSING`. A number indexes a list; a list met
    where a key is expected is read at its first item (XML repeats an element as a list)."""
    current = data
    for part in path.split("."):
        if isinstance(current, list):
            if part.isdigit():
                index = int(part)
                if index >= len(current):
                    return MISSING
                current = current[index]
                continue
            if not current:
                return MISSING
            current = current[0]
        if not isinstance(current, dict) or part not in current:
            return MISSING
        current = current[part]
    return current
