"""The ``sms:`` section of ``config.yaml``. Without a ``provider`` no SMS is queued at all
(unlike mail, whose rows wait for ``email.outbound``): most offices never send SMS.

Pure pydantic on purpose: ``channels.settings`` imports this module.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from ingest.sections import Section, env_secret


class SmsProvider(StrEnum):
    GATEWAY = "gateway"  # an HTTP gateway of the organisation's own (or its operator's)
    ALIYUN = "aliyun"  # Alibaba Cloud SMS (Dysmsapi SendSms)


class GatewaySettings(Section):
    """``POST url`` with a JSON body, signed ``X-Shouli-Signature: sha256=<hex>`` over
    ``<timestamp>.<body>`` with the shared secret."""

    url: str = Field(pattern=r"^https?://")
    secret_env: str | None = None
    secret: str | None = Field(default=None, min_length=16)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    def key(self) -> str | None:
        return env_secret(self.secret_env, self.secret)


class AliyunSettings(Section):
    endpoint: str = Field(default="https://dysmsapi.aliyuncs.com/", pattern=r"^https?://")
    region_id: str = "cn-hangzhou"
    access_key_id: str = Field(min_length=1)
    access_key_secret_env: str | None = None
    access_key_secret: str | None = None
    sign_name: str = Field(min_length=1, description="the approved signature (签名), e.g. 示例水务")
    templates: dict[str, str] = Field(
        default_factory=dict, description="message kind (ack, result) -> approved TemplateCode"
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    def key(self) -> str | None:
        return env_secret(self.access_key_secret_env, self.access_key_secret)


class QuietHours(Section):
    """No SMS between ``start`` and ``end`` in the organisation's time zone (may span
    midnight); one queued then waits until ``end``."""

    start: time = time(21, 0)
    end: time = time(8, 0)

    def release(self, now: datetime, zone: ZoneInfo) -> datetime:
        """``now``, or the end of the quiet hours ``now`` falls in."""
        local = now.astimezone(zone)
        clock = local.time().replace(tzinfo=None)
        spans_midnight = self.start > self.end
        quiet = (
            (clock >= self.start or clock < self.end)
            if spans_midnight
            else self.start <= clock < self.end
        )
        if not quiet:
            return now
        end = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(now.tzinfo)


DEFAULT_TEMPLATES = {
    "ack": "【{organisation}】您的投诉已受理，编号{number}，承诺{due}前答复。{progress}",
    "result": "【{organisation}】您的投诉{number}处理结果：{result}。如有异议请致电{hotline}。",
}


class SmsSettings(Section):
    provider: SmsProvider | None = None
    gateway: GatewaySettings | None = None
    aliyun: AliyunSettings | None = None
    channels: tuple[str, ...] = Field(
        default=("phone", "web", "feedback", "referral", "letter", "email"),
        description="channels whose complainants get the SMS acknowledgement",
    )
    templates: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    quiet_hours: QuietHours | None = QuietHours()
    opt_out: tuple[str, ...] = Field(
        default=(), description="numbers (E.164, +8613...) that asked for no SMS"
    )

    @field_validator("templates")
    @classmethod
    def _both_kinds(cls, value: dict[str, str]) -> dict[str, str]:
        return {**DEFAULT_TEMPLATES, **value}

    @model_validator(mode="after")
    def _provider_configured(self) -> SmsSettings:
        if self.provider is SmsProvider.GATEWAY and self.gateway is None:
            raise ValueError("provider gateway needs sms.gateway (url, secret_env)")
        if self.provider is SmsProvider.ALIYUN and self.aliyun is None:
            raise ValueError("provider aliyun needs sms.aliyun (access_key_id, sign_name, ...)")
        return self

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def opted_out(self, phone: str) -> bool:
        return phone in {n.replace(" ", "").replace("-", "") for n in self.opt_out}
