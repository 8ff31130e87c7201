"""Email channel settings: the complaint mailboxes and the SMTP listener."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mailbox(_Section):
    """A complaint mailbox: mail to it is accepted; its desk is the first contact."""

    address: str = Field(min_length=3, max_length=320)
    desk: str = Field(min_length=1, description="first-contact desk id (首问责任人)")
    department: str | None = Field(default=None, description="the desk's department")
    category: str | None = Field(default=None, description="default category of this mailbox")
    referral: bool = Field(default=False, description="a mailbox for referred work orders")

    @field_validator("address")
    @classmethod
    def _lower(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("must be an email address like complaints@example.cn")
        return value.strip().lower()


class SmtpSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=1, le=65535)
    hostname: str = Field(default="shouli.local", description="announced in the greeting")
    max_message_bytes: int = Field(default=40 * 1024 * 1024, ge=1024)
    max_recipients: int = Field(default=20, ge=1, le=1000)
    max_connections: int = Field(default=100, ge=1, le=10_000)


class EmailSettings(_Section):
    smtp: SmtpSettings = SmtpSettings()
    mailboxes: tuple[Mailbox, ...] = ()

    def mailbox(self, address: str) -> Mailbox | None:
        address = address.strip().lower()
        return next((m for m in self.mailboxes if m.address == address), None)
