"""Sending one SMS: a generic signed HTTP gateway, or Alibaba Cloud's SendSms API.

Each provider maps its answer to the outbox's :class:`AttemptOutcome`: sent; refused for good
(a bad number, a template the provider does not know: a dead letter with the answer); or not
sent for now (timeouts, 5xx, 429, the provider's own rate limits: retried with backoff).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote

import httpx

from channels.sms.settings import AliyunSettings, GatewaySettings, SmsProvider, SmsSettings
from ingest.signing import signed_headers
from store.outbox import AttemptOutcome

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class SmsMessage:
    phone: str  # E.164
    kind: str  # ack, result: picks the template (the provider's TemplateCode for Aliyun)
    text: str
    params: dict[str, str]
    message_id: str  # fixed when queued: a resend after a crash carries the same id


class SmsSender(Protocol):
    async def send(self, message: SmsMessage) -> AttemptOutcome: ...


def _http_outcome(response: httpx.Response) -> AttemptOutcome | None:
    """The outcome an HTTP status alone decides; None: read the body."""
    code = response.status_code
    if code == 429 or code >= 500:
        return AttemptOutcome(False, detail=f"HTTP {code}", code=code)
    if code >= 400:
        return AttemptOutcome(False, permanent=True, detail=f"HTTP {code}", code=code)
    return None


class GatewaySender:
    """``POST`` JSON ``{id, to, kind, text, params}`` with ``X-Shouli-Timestamp`` and
    ``X-Shouli-Signature: sha256=HMAC(secret, "<timestamp>.<body>")``; any 2xx is sent."""

    def __init__(self, settings: GatewaySettings, client: httpx.AsyncClient, clock: Clock) -> None:
        self._settings = settings
        self._client = client
        self._clock = clock

    async def send(self, message: SmsMessage) -> AttemptOutcome:
        secret = self._settings.key()
        if not secret:
            return AttemptOutcome(False, detail="sms.gateway secret not set")
        body = json.dumps(
            {
                "id": message.message_id,
                "to": message.phone,
                "kind": message.kind,
                "text": message.text,
                "params": message.params,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        headers = signed_headers(secret, body, self._clock())
        try:
            response = await self._client.post(
                self._settings.url,
                content=body,
                headers=headers,
                timeout=self._settings.timeout_seconds,
            )
        except httpx.HTTPError as exc:
            return AttemptOutcome(False, detail=f"gateway unreachable: {type(exc).__name__}")
        decided = _http_outcome(response)
        return decided or AttemptOutcome(True, detail=f"HTTP {response.status_code}")


# Alibaba Cloud answers throttling and its own hiccups with these; everything else but "OK"
# (an illegal number, a template or signature not approved) fails the same way again.
_ALIYUN_TRANSIENT = frozenset(
    {
        "isv.BUSINESS_LIMIT_CONTROL",
        "isv.DAY_LIMIT_CONTROL",
        "Throttling.User",
        "SignatureNonceUsed",
        "ServiceUnavailable",
        "InternalError",
        "isv.AMOUNT_NOT_ENOUGH",  # the account's balance: an operator tops it up
    }
)


def percent_encode(value: str) -> str:
    """RFC 3986 unreserved characters kept, everything else %XX (Alibaba Cloud RPC rules)."""
    return quote(value, safe="-_.~")


def aliyun_signature(params: dict[str, str], secret: str, method: str = "POST") -> str:
    """Alibaba Cloud RPC signature v1: HMAC-SHA1 over the sorted, percent-encoded query."""
    canonical = "&".join(
        f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items())
    )
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def aliyun_number(phone: str) -> str:
    """SendSms wants mainland numbers without +86 and others as country code + number."""
    return phone[3:] if phone.startswith("+86") else phone.lstrip("+")


class AliyunSender:
    """Dysmsapi ``SendSms`` (version 2017-05-25), the template's parameters as
    ``TemplateParam`` JSON; the text itself is the approved template's, on their side."""

    def __init__(self, settings: AliyunSettings, client: httpx.AsyncClient, clock: Clock) -> None:
        self._settings = settings
        self._client = client
        self._clock = clock

    async def send(self, message: SmsMessage) -> AttemptOutcome:
        secret = self._settings.key()
        template = self._settings.templates.get(message.kind)
        if not secret:
            return AttemptOutcome(False, detail="sms.aliyun access key secret not set")
        if not template:
            detail = f"no sms.aliyun.templates entry for {message.kind!r}"
            return AttemptOutcome(False, permanent=True, detail=detail)
        params = {
            "AccessKeyId": self._settings.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "OutId": message.message_id[:64],
            "PhoneNumbers": aliyun_number(message.phone),
            "RegionId": self._settings.region_id,
            "SignName": self._settings.sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "TemplateCode": template,
            "TemplateParam": json.dumps(message.params, ensure_ascii=False),
            "Timestamp": self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
        }
        params["Signature"] = aliyun_signature(params, secret)
        try:
            response = await self._client.post(
                self._settings.endpoint, data=params, timeout=self._settings.timeout_seconds
            )
        except httpx.HTTPError as exc:
            return AttemptOutcome(False, detail=f"aliyun unreachable: {type(exc).__name__}")
        try:
            answer = response.json()
            code = str(answer.get("Code", ""))
        except (ValueError, AttributeError):
            decided = _http_outcome(response)
            return decided or AttemptOutcome(False, detail="aliyun: an answer that is not JSON")
        if code == "OK":
            return AttemptOutcome(True, detail=f"BizId {answer.get('BizId', '')}")
        if code in _ALIYUN_TRANSIENT or response.status_code >= 500:
            return AttemptOutcome(False, detail=code, code=response.status_code)
        return AttemptOutcome(False, permanent=True, detail=code, code=response.status_code)


def sender_for(settings: SmsSettings, client: httpx.AsyncClient, clock: Clock) -> SmsSender | None:
    if settings.provider is SmsProvider.GATEWAY and settings.gateway is not None:
        return GatewaySender(settings.gateway, client, clock)
    if settings.provider is SmsProvider.ALIYUN and settings.aliyun is not None:
        return AliyunSender(settings.aliyun, client, clock)
    return None
