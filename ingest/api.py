"""What every HTTP route shares, below the app that mounts them: the HTTP and staff-token
sections, the error answer ``{"error": {"code", "message", "fields"}}`` (CONTRACT.md), and the
staff-token check. The app factory (``ingest.app.http``) puts the auth section on
``app.state.auth``; routes take :data:`Staff` to name their caller."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from ingest.errors import ShouliError
from ingest.sections import Section, env_secret


class HttpSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Every JSON body (hotline calls, ticket events; referral sources set their own
    # max_body_bytes) is cut off here while it streams, so a huge body cannot fill memory.
    max_json_body_bytes: int = Field(default=1_048_576, ge=1024, le=50 * 1_048_576)
    # Nesting refused before json.loads, which recurses per level: 100,000 levels of [[[...
    # would raise RecursionError inside the server. Real documents nest a handful of levels.
    max_json_depth: int = Field(default=64, ge=1, le=200)


# Where to listen is not where to connect: a link to "every address" names the loopback.
_WILDCARD_HOSTS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def listening_url(http: HttpSettings) -> str:
    """Where this instance is reached: the listening address, a wildcard named as loopback."""
    host = _WILDCARD_HOSTS.get(http.host.strip(), http.host.strip())
    if ":" in host:  # an IPv6 address goes in brackets in a URL (RFC 3986 §3.2.2)
        host = f"[{host}]"
    return f"http://{host}:{http.port}"


class StaffToken(Section):
    """A bearer token for staff APIs. Prefer ``token_env`` so secrets stay out of the file."""

    id: str = Field(min_length=1)
    token: str | None = Field(default=None, min_length=16)
    token_env: str | None = None
    department: str | None = None

    def secret(self) -> str | None:
        return env_secret(self.token_env, self.token)


class AuthSettings(Section):
    staff: tuple[StaffToken, ...] = ()


class ApiError(ShouliError):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.headers = headers


def error_doc(code: str, description: str) -> dict[str, Any]:
    """An error answer as the API description documents it (``responses=`` of a route)."""
    return {
        "description": description,
        "content": {
            "application/json": {
                "example": {"error": {"code": code, "message": description, "fields": {}}}
            }
        },
    }


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": error.code, "message": error.message, "fields": error.fields}},
        status_code=error.status,
        headers=error.headers,
    )


def staff_member(request: Request) -> StaffToken:
    """The staff token behind ``Authorization: Bearer``, compared in constant time."""
    auth: AuthSettings = request.app.state.auth
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "unauthenticated",
            "send a staff token as 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    for candidate in auth.staff:
        secret = candidate.secret()
        if secret and hmac.compare_digest(secret.encode(), token.encode()):
            return candidate
    raise ApiError(
        401,
        "invalid_token",
        "this token is not a staff token",
        headers={"WWW-Authenticate": "Bearer"},
    )


Staff = Annotated[StaffToken, Depends(staff_member)]
