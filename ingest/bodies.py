"""Reading request bodies: a size limit while they stream, a nesting limit before JSON parsing.

Every JSON endpoint (``POST /api/calls``, ``POST /api/tickets/{n}/events``, the referral
webhooks) reads its body through here, and only after it knows who is calling: FastAPI reads
and parses a declared pydantic body *before* it resolves any dependency, so an endpoint with
a token check reads its body itself with :func:`read_model` once the token has been checked.

* :func:`read_body` refuses a declared Content-Length over the limit before reading a byte,
  and stops reading as soon as a streamed body crosses it (413 ``body_too_large``).
* :func:`loads` refuses JSON nested deeper than the limit (422 ``json_too_deep``) with a
  pre-scan of the brackets: ``json.loads`` recurses once per level and a RecursionError
  raised inside a request takes the connection down with it.

The refusals are :class:`BodyRefused`; the HTTP layer (``ingest.app.http``) answers them in the
project's error shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, ClassVar, TypeVar

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive

from ingest.errors import Refused

M = TypeVar("M", bound=BaseModel)

# A string literal (skipped whole: brackets in text are not nesting), or a bracket. Possessive
# quantifiers: an unterminated string fails in one pass instead of backtracking.
_TOKENS_TEXT = re.compile(r'(?s)"(?:[^"\\]++|\\.)*+"|(?P<open>[\[{])|(?P<close>[\]}])')
_TOKENS_BYTES = re.compile(rb'(?s)"(?:[^"\\]++|\\.)*+"|(?P<open>[\[{])|(?P<close>[\]}])')
_SCHEMA_REF = "#/components/schemas/"
# Models of the bodies documented by openapi_body, by schema name (see add_body_schemas).
_DOCUMENTED: dict[str, type[BaseModel]] = {}


class BodyRefused(Refused):
    """A body refused before it was parsed; answered as ``status`` with ``code``."""

    status: ClassVar[int]
    code: ClassVar[str]

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class BodyTooLarge(BodyRefused):
    status = 413
    code = "body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is larger than {limit} bytes")


class JsonTooDeep(BodyRefused):
    status = 422
    code = "json_too_deep"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the JSON is nested deeper than {limit} levels",
            {"body": f"nested deeper than {limit} levels"},
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing with :class:`BodyTooLarge` as soon as it is longer than
    ``limit``: at once when Content-Length says so, else at the chunk that crosses it (the
    rest is never read, so memory holds at most ``limit`` plus one chunk)."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def check_json_depth(document: str | bytes, limit: int) -> None:
    """Raise :class:`JsonTooDeep` when arrays and objects nest deeper than ``limit``.

    Only brackets outside string literals count; the scan is linear and stops at the first
    level too deep. It does not validate: whatever it lets through, ``json.loads`` judges."""
    tokens: Iterator[re.Match[str]] | Iterator[re.Match[bytes]]
    if isinstance(document, str):
        openers = document.count("[") + document.count("{")
        tokens = _TOKENS_TEXT.finditer(document)
    else:
        openers = document.count(b"[") + document.count(b"{")
        tokens = _TOKENS_BYTES.finditer(document)
    if openers <= limit:
        return  # cannot nest deeper than it has brackets: most bodies end here
    depth = 0
    for token in tokens:
        if token.lastgroup == "open":
            depth += 1
            if depth > limit:
                raise JsonTooDeep(limit)
        elif token.lastgroup == "close":
            depth -= 1


def loads(document: str | bytes, *, max_depth: int) -> Any:
    """``json.loads`` after :func:`check_json_depth`. Bytes are decoded as ``json.loads``
    decodes them (UTF-8, -16 or -32 by the first bytes); ``UnicodeDecodeError`` and
    ``json.JSONDecodeError`` are the caller's to answer."""
    if isinstance(document, bytes):
        document = document.decode(json.detect_encoding(document), "surrogatepass")
    check_json_depth(document, max_depth)
    return json.loads(document)


async def read_model(
    request: Request, model: type[M], *, max_bytes: int, max_depth: int
) -> tuple[M, bytes]:
    """The body validated as ``model``, and its raw bytes. Call it after the caller is
    authenticated. Mistakes are a ``RequestValidationError`` located as FastAPI locates
    them for a declared body (``body``, ``body.<field>``), so the answers stay the same."""
    raw = await read_body(request, max_bytes)
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    # Only a body declared as JSON is parsed; any other is validated as bytes and so
    # refused, as FastAPI does for a declared body.
    value: Any = raw
    if _declares_json(request.headers.get("content-type", "")):
        value = _parse(raw, max_depth)
    try:
        return model.model_validate(value, from_attributes=True), raw
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors) from exc


def _parse(raw: bytes, max_depth: int) -> Any:
    try:
        return loads(raw, max_depth=max_depth)
    except json.JSONDecodeError as exc:
        error = {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
        raise RequestValidationError([error]) from exc
    except UnicodeDecodeError as exc:
        error = {
            "type": "json_invalid",
            "loc": ("body",),
            "msg": "not UTF-8, UTF-16 or UTF-32 text",
            "input": {},
        }
        raise RequestValidationError([error]) from exc


def _declares_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    maintype, _, subtype = media.partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` describing a JSON body the endpoint reads with :func:`read_model`
    (FastAPI documents only the bodies it reads itself); :func:`add_body_schemas` puts the
    model's schema into the document's components."""
    known = _DOCUMENTED.setdefault(model.__name__, model)
    assert known is model, f"two body models named {model.__name__}"
    schema = {"$ref": f"{_SCHEMA_REF}{model.__name__}"}
    return {"requestBody": {"content": {"application/json": {"schema": schema}}, "required": True}}


def add_body_schemas(spec: dict[str, Any]) -> None:
    """Add the component schemas of the bodies an OpenAPI document refers to via
    :func:`openapi_body`; schemas FastAPI generated already are kept as they are."""
    names = {
        content["schema"]["$ref"].removeprefix(_SCHEMA_REF)
        for path in spec.get("paths", {}).values()
        for operation in path.values()
        if isinstance(operation, dict)
        for content in operation.get("requestBody", {}).get("content", {}).values()
        if "$ref" in content.get("schema", {})
    }
    models = [_DOCUMENTED[name] for name in sorted(names) if name in _DOCUMENTED]
    if not models:
        return
    _, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template=_SCHEMA_REF + "{model}"
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in definitions.get("$defs", {}).items():
        schemas.setdefault(name, schema)


def checked_first(
    check: Callable[[Request], object], *, max_bytes: Callable[[Request], int]
) -> type[APIRoute]:
    """A route class whose endpoints run ``check`` (authentication) and enforce a body size
    limit *before* FastAPI reads the body.

    For endpoints that must declare their body as form fields and files (multipart), which
    FastAPI parses before any dependency runs: an unauthenticated caller would otherwise
    have its whole upload spooled to disk first. ``check`` raises to refuse; the limit is
    applied to the declared Content-Length at once and to the stream as it arrives.
    """

    class CheckedFirst(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def checked(request: Request) -> Response:
                check(request)
                limit = max_bytes(request)
                declared = request.headers.get("content-length", "").strip()
                if declared.isdigit() and int(declared) > limit:
                    raise BodyTooLarge(limit)
                bounded = _Bounded(request.receive, limit)
                try:
                    return await handler(Request(request.scope, bounded))
                except Exception as exc:
                    # FastAPI turns any failure while it reads a form into a 400; the cut
                    # is ours, and says why.
                    if bounded.exceeded:
                        raise BodyTooLarge(limit) from exc
                    raise

            return checked

    return CheckedFirst


class _Bounded:
    """An ASGI ``receive`` that stops the body at ``limit`` bytes."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._seen = 0
        self.exceeded = False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                self.exceeded = True
                raise BodyTooLarge(self._limit)
        return message
