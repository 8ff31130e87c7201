"""Email channel settings: the complaint mailboxes and the SMTP listener."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from pydantic import Field, field_validator

from channels.email.charset import DEFAULT_EXPECTED, ExpectedCharsets
from ingest.sections import Section


class Mailbox(Section):
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


class SmtpSettings(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=1, le=65535)
    hostname: str = Field(default="shouli.local", description="announced in the greeting")
    max_message_bytes: int = Field(default=40 * 1024 * 1024, ge=1024)
    max_recipients: int = Field(default=20, ge=1, le=1000)
    max_connections: int = Field(default=100, ge=1, le=10_000)


class OutboundTls(StrEnum):
    SSL = "ssl"  # implicit TLS, port 465
    STARTTLS = "starttls"  # upgrade on the submission port 587
    NONE = "none"  # a relay on loopback or a trusted network only


class OutboundSmtp(Section):
    """The server our own mail leaves through: acknowledgements, notices, referral replies."""

    host: str = Field(min_length=1)
    port: int | None = Field(
        default=None, ge=1, le=65535, description="465 ssl, 587 starttls, else 25"
    )
    tls: OutboundTls = OutboundTls.STARTTLS
    user: str | None = None
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    from_address: str = Field(min_length=3, max_length=320)
    from_name: str | None = Field(default=None, max_length=200)
    message_id_domain: str | None = Field(
        default=None, description="right side of our Message-IDs; default: from_address's domain"
    )
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)

    @field_validator("from_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("must be an email address like noreply@example.cn")
        return value.strip().lower()

    @property
    def effective_port(self) -> int:
        return self.port or {OutboundTls.SSL: 465, OutboundTls.STARTTLS: 587}.get(self.tls, 25)

    @property
    def domain(self) -> str:
        return self.message_id_domain or self.from_address.rpartition("@")[2]

    def password(self, environ: Mapping[str, str]) -> str | None:
        return environ.get(self.password_env) if self.password_env else None


class AcknowledgementSettings(Section):
    """The acknowledgement mail (受理回执) to a complainant who gave an address."""

    enabled: bool = True
    channels: tuple[str, ...] = Field(
        default=("email", "web", "feedback"),
        description="tickets of these channels are acknowledged",
    )


class OutboxSettings(Section):
    """The notification outbox the ``notify`` worker drains (acknowledgements, notices)."""

    poll_interval_seconds: float = Field(default=2.0, gt=0, le=3600)
    batch_size: int = Field(default=50, ge=1, le=1000)
    max_attempts: int = Field(default=8, ge=1, le=100)
    retry_base_seconds: float = Field(default=30.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    lease_seconds: float = Field(default=120.0, gt=0, description="a claimed row's hold")


class StormSettings(Section):
    """A sender's mail storm becomes at most ``max_tickets`` tickets per ``window_minutes``;
    further mail in the window is a counted follow-up on the newest of them."""

    enabled: bool = True
    window_minutes: float = Field(default=30.0, gt=0, le=7 * 24 * 60)
    max_tickets: int = Field(default=3, ge=1, le=1000)


class EmailSettings(Section):
    smtp: SmtpSettings = SmtpSettings()
    mailboxes: tuple[Mailbox, ...] = ()
    imap: tuple[ImapMailbox, ...] = ()
    outbound: OutboundSmtp | None = Field(
        default=None, description="unset: no mail is sent (acknowledgements stay queued)"
    )
    acknowledgement: AcknowledgementSettings = AcknowledgementSettings()
    outbox: OutboxSettings = OutboxSettings()
    storm: StormSettings = StormSettings()
    expected_charsets: ExpectedCharsets = DEFAULT_EXPECTED
    dispatch_notices: bool = Field(
        default=False, description="mail a department's email when a ticket is dispatched to it"
    )
    staff_addresses: tuple[str, ...] = Field(
        default=(),
        description="addresses (or @domain) whose replies to a ticket thread onto it as staff",
    )

    @field_validator("staff_addresses")
    @classmethod
    def _lower_all(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if "@" not in item:
                raise ValueError(f"{item!r} is neither an address nor an @domain")
        return tuple(v.strip().lower() for v in value)

    def mailbox(self, address: str) -> Mailbox | None:
        address = address.strip().lower()
        return next((m for m in self.mailboxes if m.address == address), None)

    def is_staff(self, address: str | None) -> bool:
        if not address:
            return False
        address = address.strip().lower()
        domain = "@" + address.rpartition("@")[2]
        return address in self.staff_addresses or domain in self.staff_addresses

    def is_ours(self, address: str | None) -> bool:
        """One of our own mailboxes or our sender: never acknowledged (a mail loop)."""
        if not address:
            return False
        address = address.strip().lower()
        own = {m.address for m in self.mailboxes}
        if self.outbound is not None:
            own.add(self.outbound.from_address)
        return address in own

    def imap_problems(self) -> list[tuple[str, str]]:
        """Cross-references of ``email.imap``, as (path, message) for ``ConfigError``."""
        problems: list[tuple[str, str]] = []
        known = [m.address for m in self.mailboxes]
        names = [m.name for m in self.imap]
        for index, box in enumerate(self.imap):
            where = f"email.imap.{index}"
            if box.address not in known:
                problems.append(
                    (
                        f"{where}.address",
                        f"{box.address!r} is not one of email.mailboxes "
                        f"(known: {', '.join(known) or 'none'}); it names the first-contact desk",
                    )
                )
            if names.index(box.name) != index:
                problems.append((f"{where}.name", f"duplicate IMAP mailbox name {box.name!r}"))
            if box.processed_folder is not None and box.processed_folder in (
                box.folder,
                box.failed_folder,
            ):
                problems.append(
                    (f"{where}.processed_folder", "must differ from folder and failed_folder")
                )
            if box.failed_folder == box.folder:
                problems.append((f"{where}.failed_folder", "must differ from folder"))
            if box.processed_keyword == box.failed_keyword:
                problems.append((f"{where}.failed_keyword", "must differ from processed_keyword"))
        return problems


class ImapTls(StrEnum):
    SSL = "ssl"  # implicit TLS, port 993
    STARTTLS = "starttls"  # RFC 2595 upgrade on port 143
    NONE = "none"  # loopback or a trusted network only: the password crosses in clear


class ImapMailbox(Section):
    """A mailbox read by IMAP polling; its mail is handled as if sent to ``address``."""

    name: str = Field(
        min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="metric label"
    )
    address: str = Field(description="one of email.mailboxes: gives the first-contact desk")
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535, description="993 for ssl, else 143")
    tls: ImapTls = ImapTls.SSL
    user: str = Field(min_length=1)
    password_env: str = Field(
        min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="env var with the password"
    )
    folder: str = "INBOX"
    processed_folder: str | None = Field(
        default=None, description="move processed mail here; unset: flag it processed_keyword"
    )
    processed_keyword: str = Field(default="$ShouliProcessed", pattern=r"^\$?[A-Za-z0-9_]+$")
    failed_folder: str | None = Field(
        default=None, description="move mail that cannot be taken here; unset: flag only"
    )
    failed_keyword: str = Field(default="$ShouliFailed", pattern=r"^\$?[A-Za-z0-9_]+$")
    poll_interval: float = Field(default=60.0, gt=0, le=86_400, description="seconds")
    batch_size: int = Field(default=50, ge=1, le=5000, description="messages per fetch")
    concurrency: int = Field(default=8, ge=1, le=64, description="hand-offs at once")
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    backoff_max_seconds: float = Field(default=300.0, gt=0, le=86_400)

    @field_validator("address")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.tls is ImapTls.SSL else 143)

    def password(self, environ: Mapping[str, str]) -> str | None:
        """From the environment only: a password never sits in config.yaml or in logs."""
        return environ.get(self.password_env)
