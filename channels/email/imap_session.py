"""One blocking IMAP connection (imap-tools over imaplib), the only place that speaks IMAP.

Every method blocks; :class:`channels.email.imap.ImapPoller` calls them through
``asyncio.to_thread`` one at a time (STYLE practice 9), never two at once on one session.

Errors: anything the server or the network does wrong (refused connection, timeout, login
rejected, a NO/BAD answer) becomes :class:`ImapUnavailable`, with the password scrubbed from
its text; the connection is dropped and the poller reconnects after a backoff.

What "processed" means on the server is a keyword we set ourselves (RFC 3501 section 2.3.2
keywords, ``$ShouliProcessed``/``$ShouliFailed``), or a move to a folder. ``\\Seen`` is never
read or set: a person reading the mailbox marks mail seen, and helpdesks that poll ``UNSEEN``
silently skip that mail. Fetches use ``BODY.PEEK[]`` so ours do not set ``\\Seen`` either.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import ImapToolsError, MailboxLoginError
from imap_tools.mailbox import BaseMailBox

from channels.email.settings import ImapMailbox, ImapTls
from ingest.errors import Unavailable

T = TypeVar("T")
_UID = re.compile(rb"\bUID (\d+)")
_IMAP_ERRORS: tuple[type[BaseException], ...] = (
    imaplib.IMAP4.error,
    ImapToolsError,
    OSError,
    EOFError,
    ValueError,  # imaplib raises it on malformed server lines
)


class ImapUnavailable(Unavailable):
    """The mailbox could not be read now (down, login refused, protocol error): retry later."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class FetchedMail:
    uid: int
    raw: bytes


def uid_set(uids: Sequence[int]) -> str:
    """``1:3,7`` for [1, 2, 3, 7]: short commands for long runs of UIDs (RFC 3501 sequence-set)."""
    parts: list[str] = []
    ordered = sorted(set(uids))
    start = previous = ordered[0]
    for uid in ordered[1:]:
        if uid != previous + 1:
            parts.append(f"{start}:{previous}" if previous != start else str(start))
            start = uid
        previous = uid
    parts.append(f"{start}:{previous}" if previous != start else str(start))
    return ",".join(parts)


class ImapSession:
    def __init__(self, box: ImapMailbox, password: str) -> None:
        self._box = box
        self._password = password
        self._mailbox: BaseMailBox | None = None

    # -- connection ----------------------------------------------------------------------

    def select(self) -> int:
        """Connect and log in if needed, (re)select the folder; returns its UIDVALIDITY."""
        try:
            if self._mailbox is None:
                self._mailbox = self._login()
            client = self._mailbox.client
            self._mailbox.folder.set(self._box.folder)
            _, data = client.response("UIDVALIDITY")
            if not data or data[0] is None:
                raise ImapUnavailable("protocol", "the server sent no UIDVALIDITY on SELECT")
            return int(data[0])
        except ImapUnavailable:
            self.close()
            raise
        except _IMAP_ERRORS as exc:
            raise self._unavailable(exc) from None

    def _login(self) -> BaseMailBox:
        box = self._box
        mailbox: BaseMailBox
        if box.tls is ImapTls.SSL:
            mailbox = MailBox(box.host, box.effective_port, timeout=box.timeout_seconds)
        elif box.tls is ImapTls.STARTTLS:
            mailbox = MailBoxStartTls(box.host, box.effective_port, timeout=box.timeout_seconds)
        else:
            mailbox = MailBoxUnencrypted(box.host, box.effective_port, timeout=box.timeout_seconds)
        try:
            mailbox.login(box.user, self._password, initial_folder=None)
            for folder in (box.processed_folder, box.failed_folder):
                if folder is not None and not mailbox.folder.exists(folder):
                    mailbox.folder.create(folder)
        except BaseException:
            _quietly_logout(mailbox)
            raise
        return mailbox

    def close(self) -> None:
        mailbox, self._mailbox = self._mailbox, None
        if mailbox is not None:
            _quietly_logout(mailbox)

    # -- messages ------------------------------------------------------------------------

    def pending(self, after_uid: int) -> list[int]:
        """UIDs above the high-water mark that carry neither of our keywords, ascending."""
        box = self._box
        criteria = f"UID {after_uid + 1}:* " + " ".join(
            f"UNKEYWORD {keyword}" for keyword in (box.processed_keyword, box.failed_keyword)
        )
        found = self._call(lambda m: m.uids(criteria, charset=None))
        # "n:*" always includes the highest UID, even one below n (RFC 3501 section 6.4.8).
        return sorted(uid for uid in map(int, found) if uid > after_uid)

    def fetch(self, uids: Sequence[int]) -> list[FetchedMail]:
        """The raw bytes of each message, without setting ``\\Seen`` (BODY.PEEK)."""
        if not uids:
            return []

        def run(mailbox: BaseMailBox) -> list[FetchedMail]:
            status, data = mailbox.client.uid("FETCH", uid_set(uids), "(UID BODY.PEEK[])")
            if status != "OK":
                raise ImapUnavailable("protocol", f"FETCH answered {status}")
            mails: list[FetchedMail] = []
            for item in data:
                if isinstance(item, tuple) and len(item) == 2:
                    match = _UID.search(item[0])
                    if match is not None:
                        mails.append(FetchedMail(int(match.group(1)), bytes(item[1])))
            return sorted(mails, key=lambda mail: mail.uid)

        return self._call(run)

    def mark_processed(self, uids: Sequence[int]) -> None:
        box = self._box
        self._store_keyword(uids, box.processed_keyword)
        if box.processed_folder is not None:
            self._move(uids, box.processed_folder)

    def mark_failed(self, uids: Sequence[int]) -> None:
        box = self._box
        self._store_keyword(uids, box.failed_keyword)
        if box.failed_folder is not None:
            self._move(uids, box.failed_folder)

    def _store_keyword(self, uids: Sequence[int], keyword: str) -> None:
        if not uids:
            return

        # A plain UID STORE: imap-tools' flag() also EXPUNGEs, which would delete mail that a
        # person marked \Deleted without meaning to purge it yet.
        def run(mailbox: BaseMailBox) -> None:
            status, _ = mailbox.client.uid("STORE", uid_set(uids), "+FLAGS.SILENT", f"({keyword})")
            if status != "OK":
                raise ImapUnavailable("protocol", f"STORE {keyword} answered {status}")

        self._call(run)

    def _move(self, uids: Sequence[int], folder: str) -> None:
        if uids:
            self._call(lambda m: m.move([str(u) for u in uids], folder))

    # -- errors --------------------------------------------------------------------------

    def _call(self, body: Callable[[BaseMailBox], T]) -> T:
        if self._mailbox is None:
            raise ImapUnavailable("protocol", "not connected")
        try:
            return body(self._mailbox)
        except ImapUnavailable:
            self.close()
            raise
        except _IMAP_ERRORS as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: BaseException) -> ImapUnavailable:
        self.close()
        detail = (str(exc) or type(exc).__name__)[:300]
        if self._password:
            detail = detail.replace(self._password, "***")
        if isinstance(exc, MailboxLoginError):
            return ImapUnavailable("login_rejected", detail)
        if isinstance(exc, OSError):
            return ImapUnavailable("unreachable", f"{type(exc).__name__}: {detail}")
        return ImapUnavailable("protocol", detail)


def _quietly_logout(mailbox: BaseMailBox) -> None:
    try:
        mailbox.logout()
    except Exception:  # closing a broken connection: nothing to tell anyone
        try:
            mailbox.client.shutdown()
        except Exception:
            pass
