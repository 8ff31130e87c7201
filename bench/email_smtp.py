"""SMTP benchmark: mails/s accepted by the listener and end to end to committed tickets.

    .venv/bin/python -m bench.email_smtp                       # 2,000 mails, 1/8/32 clients
    .venv/bin/python -m bench.email_smtp --n 5000 --big 50

Mails come from ../shared/bench/gen_emails.py (realistic Chinese complaints, ~3 KB); the
1 MB case pads each with a 1 MB attachment. For each client count it reports: the rate at
which the listener answered 250 (storing raw + attachments and confirming the queue
hand-off), the rate to committed tickets (a `shouli worker router` process running
alongside), and in the same run an aiosmtpd handler that does nothing, as the ceiling.
Embedded mode (SQLite + embedded queue) by default; --distributed for RabbitMQ + PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import os
import smtplib
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiosmtpd.smtp import SMTP

from bench.common import ROOT, argument_parser
from bench.spine import Deployment

GENERATOR = ROOT.parent / "shared" / "bench" / "gen_emails.py"
RECIPIENT = "complaints@water.example.cn"


def generate(n: int, workdir: Path) -> list[bytes]:
    out = workdir / f"mails{n}"
    subprocess.run(
        [sys.executable, str(GENERATOR), "--n", str(n), "--out", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return [p.read_bytes() for p in sorted(out.glob("*.eml"))]


def with_megabyte(mail: bytes, index: int) -> bytes:
    blob = base64.encodebytes(os.urandom(750_000))  # ~1 MB once base64-encoded
    boundary = f"bench-{index}".encode()
    head, _, _body = mail.partition(b"\r\n\r\n")
    head = b"\r\n".join(
        line
        for line in head.split(b"\r\n")
        if not line.lower().startswith((b"content-type", b"mime-version", b"content-transfer"))
    )
    return (
        head
        + b"\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="
        + boundary
        + b"\r\n\r\n--"
        + boundary
        + b"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + "投诉正文见附件。".encode()
        + b"\r\n--"
        + boundary
        + b"\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        + b"Content-Disposition: attachment; filename=evidence.bin\r\n\r\n"
        + blob.replace(b"\n", b"\r\n")
        + b"\r\n--"
        + boundary
        + b"--\r\n"
    )


def send_all(port: int, mails: list[bytes], clients: int) -> float:
    """Blocking SMTP clients, one connection each, mails shared out; returns seconds."""
    chunks = [mails[i::clients] for i in range(clients)]

    def client(chunk: list[bytes]) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
            for raw in chunk:
                smtp.sendmail("sender@example.cn", [RECIPIENT], raw)

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, chunks))
    return time.monotonic() - started


class _NothingHandler:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


async def ceiling(mails: list[bytes], clients: int) -> float:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(_NothingHandler(), data_size_limit=50 * 1024 * 1024, decode_data=False),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    try:
        seconds = await asyncio.to_thread(send_all, port, mails, clients)
    finally:
        server.close()
    return len(mails) / seconds


async def ours(dep: Deployment, mails: list[bytes], clients: int, run: int) -> tuple[float, float]:
    from channels.email.intake import MailIntake
    from channels.email.smtp import start_smtp

    rt = dep.runtime
    intake = MailIntake(rt.settings.email, rt.blobs, rt.handoff, rt.metrics)
    server = await start_smtp(
        rt.settings, intake, rt.settings.email.smtp.model_copy(update={"port": 0})
    )
    port = server.sockets[0].getsockname()[1]
    before = await _email_tickets(dep)
    started = time.monotonic()
    try:
        seconds = await asyncio.to_thread(send_all, port, mails, clients)
    finally:
        server.close()
    deadline = time.monotonic() + 600
    while await _email_tickets(dep) < before + len(mails) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    end_to_end = time.monotonic() - started
    return len(mails) / seconds, len(mails) / end_to_end


async def _email_tickets(dep: Deployment) -> int:
    """Mails the router has committed: as tickets, or (a sender's storm, a repeat) recorded on
    one; every committed mail has its inbound item."""
    from sqlalchemy import func, select

    from store.models import InboundItem

    async with dep.runtime.database.sessions() as session:
        result = await session.execute(
            select(func.count()).select_from(InboundItem).where(InboundItem.channel == "email")
        )
        return int(result.scalar_one())


def unique(mails: list[bytes], run: str) -> list[bytes]:
    # Each round needs fresh Message-IDs, or idempotency would (rightly) make no new tickets.
    return [m.replace(b"Message-ID: <", f"Message-ID: <{run}.".encode(), 1) for m in mails]


async def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--n", type=int, default=2000, help="3 KB mails per client count")
    parser.add_argument("--big", type=int, default=40, help="1 MB mails per client count")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--distributed", action="store_true")
    args = parser.parse_args()
    from ingest.logs import LoggingSettings, configure_logging

    configure_logging(LoggingSettings(level="warning"))
    workdir = Path(tempfile.mkdtemp(prefix="shouli-smtp-bench-"))
    small = generate(args.n, workdir)
    big = [with_megabyte(m, i) for i, m in enumerate(small[: args.big])]
    mode = "distributed" if args.distributed else "embedded"
    print(f"{os.cpu_count()} cores; {mode}; {len(small)} mails of ~3 KB, {len(big)} of ~1 MB")
    print(
        "| mails | clients | accepted (250) mails/s | end to end tickets/s"
        " | do-nothing aiosmtpd mails/s | ratio |"
    )
    print("|---|---|---|---|---|---|")
    async with Deployment(mode, 1, workdir) as dep:
        for label, mails in (("3 KB", small), ("1 MB", big)):
            for clients in (int(c) for c in args.clients.split(",")):
                run = f"r{label[0]}{clients}"
                accepted, end_to_end = await ours(dep, unique(mails, run), clients, 0)
                top = await ceiling(mails, clients)
                cells = [label, clients, f"{accepted:.0f}", f"{end_to_end:.0f}", f"{top:.0f}"]
                cells.append(f"{accepted / top:.2f}")
                print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
