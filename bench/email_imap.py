"""IMAP benchmark: time to drain a backlog of N mails from a real dovecot to committed tickets.

    .venv/bin/python -m bench.email_imap                  # 10,000 mails, batch 200
    .venv/bin/python -m bench.email_imap --n 2000 --batch 50

Mails come from ../shared/bench/gen_emails.py (~3 KB realistic Chinese complaints). A private
dovecot (tests/imap_server.py; needs `apt-get install -y dovecot-imapd`) gets them APPENDed to
INBOX first (not timed); then one ImapPoller drains the folder (fetch, store raw + attachments,
hand off, flag $ShouliProcessed, advance the high-water mark) while a `shouli worker router`
process turns the drafts into tickets. Reports the time to hand off everything and the time to
the last committed ticket. Embedded mode by default; --distributed for RabbitMQ + PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from bench.common import argument_parser
from bench.email_smtp import _email_tickets, generate
from bench.spine import Deployment

USERS = {"bench": "bench-password-1"}


async def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--n", type=int, default=10_000, help="mails in the backlog")
    parser.add_argument("--batch", type=int, default=200, help="ImapMailbox.batch_size")
    parser.add_argument("--distributed", action="store_true")
    args = parser.parse_args()
    from channels.email.imap import ImapPoller
    from channels.email.intake import MailIntake
    from channels.email.settings import ImapMailbox, ImapTls
    from ingest.logs import LoggingSettings, configure_logging
    from store.imap_models import ImapStateRepository
    from tests.imap_server import running_dovecot

    configure_logging(LoggingSettings(level="warning"))
    workdir = Path(tempfile.mkdtemp(prefix="shouli-imap-bench-"))
    mails = generate(args.n, workdir)
    mode = "distributed" if args.distributed else "embedded"
    with running_dovecot(USERS) as server:
        started = time.monotonic()
        with server.client("bench") as client:
            for mail in mails:
                status, data = client.append("INBOX", None, None, mail)
                assert status == "OK", data
        filled = time.monotonic() - started
        print(f"{os.cpu_count()} cores; {mode}; {len(mails)} mails APPENDed in {filled:.1f} s")
        async with Deployment(mode, 1, workdir) as dep:
            rt = dep.runtime
            box = ImapMailbox(
                name="bench",
                address="complaints@water.example.cn",
                host=server.host,
                port=server.port,
                tls=ImapTls.NONE,
                user="bench",
                password_env="BENCH_IMAP_PASSWORD",
                poll_interval=0.2,
                batch_size=args.batch,
            )
            intake = MailIntake(rt.settings.email, rt.blobs, rt.handoff, rt.metrics)
            poller = ImapPoller(
                box,
                intake,
                ImapStateRepository(rt.database),
                rt.metrics,
                environ={"BENCH_IMAP_PASSWORD": USERS["bench"]},
            )
            before = await _email_tickets(dep)
            started = time.monotonic()
            handed_off = 0
            while True:
                result = await poller.poll_once()
                handed_off += result.processed
                if not result.more and result.processed == 0:
                    break
            drained = time.monotonic() - started
            await poller.close()
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                if await _email_tickets(dep) >= before + handed_off:
                    break
                await asyncio.sleep(0.1)
            committed = time.monotonic() - started
            tickets = await _email_tickets(dep) - before
    print(
        "| mails | batch | handed off | drained (flagged) s | mails/s | last ticket s | tickets/s |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {len(mails)} | {args.batch} | {handed_off} | {drained:.1f} | "
        f"{handed_off / drained:.0f} | {committed:.1f} | {tickets / committed:.0f} |"
    )
    if tickets != len(mails):
        print(f"note: {tickets} tickets for {len(mails)} mails (auto-replies/noise make none)")


if __name__ == "__main__":
    asyncio.run(main())
