"""The tree the channels are built from: the router's sections, the HTTP and staff-token
sections every route shares, and each channel's own section (owned by its package)."""

from __future__ import annotations

from channels.email.settings import EmailSettings
from channels.hotline.settings import HotlineSettings
from channels.referral.settings import ReferralSettings
from channels.sms.settings import SmsSettings
from channels.web.settings import WebSettings
from ingest.api import AuthSettings, HttpSettings, listening_url
from ingest.draft import Channel
from router.rule_language import rule_problems
from router.settings import RouterSettings


class ChannelSettings(RouterSettings):
    http: HttpSettings = HttpSettings()
    auth: AuthSettings = AuthSettings()
    hotline: HotlineSettings = HotlineSettings()
    referrals: ReferralSettings = ReferralSettings()
    web: WebSettings = WebSettings()
    email: EmailSettings = EmailSettings()
    sms: SmsSettings = SmsSettings()

    @property
    def public_base_url(self) -> str:
        """The base of links sent to complainants (progress pages), without a trailing slash:
        ``organisation.public_url``, else this instance's own HTTP listener, so a second
        instance on another port never links to the first one."""
        return self.organisation.public_url.rstrip("/") or listening_url(self.http)

    def problems(self) -> list[tuple[str, str]]:
        problems = super().problems()
        known = self.known_keys()
        # The rules may name referral sources, which are this tree's (the referral channel's).
        problems.extend(
            rule_problems(
                self.rules,
                departments=list(known.departments),
                categories=list(known.categories),
                channels=[c.value for c in Channel],
                referral_sources=[s.key for s in self.referrals.sources],
            )
        )
        for index, staff in enumerate(self.auth.staff):
            if not staff.token and not staff.token_env:
                problems.append((f"auth.staff.{index}", "give token_env (preferred) or token"))
        problems.extend(self.hotline.cross_reference_problems(known))
        problems.extend(self.referrals.cross_reference_problems(known))
        problems.extend(self.email.imap_problems())
        problems.extend(
            self.referrals.mail_problems(
                referral_mailboxes=[
                    f"email.mailboxes.{index}"
                    for index, mailbox in enumerate(self.email.mailboxes)
                    if mailbox.referral
                ],
                outbound_configured=self.email.outbound is not None,
            )
        )
        problems.extend(known.department("web.complaint_department", self.web.complaint_department))
        problems.extend(known.department("web.feedback_department", self.web.feedback_department))
        addresses = [m.address for m in self.email.mailboxes]
        for index, mailbox in enumerate(self.email.mailboxes):
            where = f"email.mailboxes.{index}"
            problems.extend(known.department(f"{where}.department", mailbox.department))
            problems.extend(known.category(f"{where}.category", mailbox.category))
            if addresses.index(mailbox.address) != index:
                problems.append((f"{where}.address", f"duplicate mailbox {mailbox.address!r}"))
        return problems
