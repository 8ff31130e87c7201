"""The fault suite: a bounded mixed load through all four channels while processes are
killed, servers restarted and the blob store's disk runs out; then every success answer
must have exactly one ticket, and nothing may be doubled.

The load is what real senders do: each item has its own identity (Message-ID, call id,
form idempotency key, work-order number); a temporary refusal (SMTP 4xx, HTTP 503, a broken
connection) is retried later with the same identity, as mail servers and the 12345 platform
do. At the end every item has been answered "accepted" once or more, so the store must hold
exactly one ticket per item. The counts are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from store.models import Ticket
from tests.stack import Stack
from tests.test_referral_support import GOV, SECRETS, order, signed
from tests.test_web_support import complaint_fields, fixture, free_port

pytestmark = pytest.mark.slow

AGENT_TOKEN = "agent-1001-token-fault-suite"
MAILBOX = "complaints@water.example.cn"
CHANNELS = ("email", "phone", "web", "referral")
TEMPORARY = "temporary"


# --- the processes of one deployment ------------------------------------------------------


@dataclass
class Fleet:
    """``serve`` (embedded) or ``edge`` + ``router`` + ``notify`` workers (distributed)."""

    stack: Stack
    env: dict[str, str]
    http_url: str
    smtp_port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    starts: Counter[str] = field(default_factory=Counter)

    @property
    def roles(self) -> tuple[str, ...]:
        return ("serve",) if self.stack.mode == "embedded" else ("edge", "router", "notify")

    @property
    def edge(self) -> str:
        return self.roles[0]

    def command(self, role: str) -> list[str]:
        if role in ("serve", "edge"):
            return self.stack.shouli_command(role)
        return self.stack.shouli_command("worker", role)

    async def start(self, role: str) -> None:
        self.starts[role] += 1
        log = self.stack.tmp_path / f"{role}-{self.starts[role]}.log"
        with log.open("wb") as out:
            self.processes[role] = subprocess.Popen(
                self.command(role),
                env=self.env,
                cwd=self.stack.tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if role == self.edge:
            await self.wait_ready()

    async def start_all(self) -> None:
        for role in self.roles:
            await self.start(role)

    def kill9(self, role: str) -> None:
        process = self.processes[role]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    async def restart_after_kill9(self, role: str) -> None:
        self.kill9(role)
        await self.start(role)

    async def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5) as client:
            while time.monotonic() < deadline:
                edge = self.processes.get(self.edge)
                assert edge is not None and edge.poll() is None, self._tail(self.edge)
                try:
                    if (await client.get(f"{self.http_url}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"the edge never became ready: {self._tail(self.edge)}")

    def assert_alive(self) -> None:
        for role, process in self.processes.items():
            assert process.poll() is None, f"{role} exited: {self._tail(role)}"

    async def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 10)

    def _tail(self, role: str) -> str:
        log = self.stack.tmp_path / f"{role}-{self.starts[role]}.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


# --- the load -------------------------------------------------------------------------------


@dataclass
class Item:
    channel: str
    identity: str
    phone: str
    answers: list[str] = field(default_factory=list)  # "accepted" / "temporary"
    number: str | None = None

    @property
    def accepted(self) -> bool:
        return "accepted" in self.answers


@dataclass
class Load:
    fleet: Fleet
    items: list[Item] = field(default_factory=list)
    sent: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    during_outage: list[str] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    _sequence: int = 0

    def new_item(self, channel: str) -> Item:
        self._sequence += 1
        phone = f"137{os.getpid() % 1000:03d}{self._sequence:05d}"
        identity = {
            "email": f"<fault-{uuid.uuid4().hex}@sender.example.cn>",
            "phone": f"CALL-FAULT-{uuid.uuid4().hex[:16]}",
            "web": uuid.uuid4().hex,
            "referral": f"SZ12345-FAULT-{uuid.uuid4().hex[:12]}",
        }[channel]
        item = Item(channel, identity, phone)
        self.items.append(item)
        return item

    async def send(self, item: Item) -> str:
        """One attempt; the answer is recorded on the item and returned."""
        self.sent += 1
        try:
            if item.channel == "email":
                answer = await asyncio.to_thread(self._mail, item)
            else:
                answer = await self._http(item)
        except (OSError, httpx.TransportError, smtplib.SMTPException) as exc:
            answer = TEMPORARY
            self.refusals[f"{item.channel}: {type(exc).__name__}"] += 1
        item.answers.append(answer)
        return answer

    def _mail(self, item: Item) -> str:
        with smtplib.SMTP("127.0.0.1", self.fleet.smtp_port, timeout=30) as smtp:
            refused = smtp.sendmail(f"s{item.phone}@sender.example.cn", [MAILBOX], mail(item))
        assert not refused, refused
        return "accepted"

    async def _http(self, item: Item) -> str:
        url, content, headers = http_request(item)
        async with httpx.AsyncClient(base_url=self.fleet.http_url, timeout=30) as client:
            response = await client.post(url, content=content, headers=headers)
        if response.status_code in (200, 201):
            number = response.json()["number"]
            assert item.number in (None, number), "a retry got another number"
            item.number = number
            return "accepted"
        # Anything but "try again later" would be a defect in the item or the server.
        assert response.status_code in (503, 429), (item.channel, response.text[:500])
        self.reasons[f"{item.channel}: {response.text[:200]}"] += 1
        self.refusals[f"{item.channel}: {response.status_code}"] += 1
        return TEMPORARY

    async def run(self, stopping: asyncio.Event, pause: float = 0.15) -> None:
        """One sender per channel until ``stopping``; failures are left for retry_all."""

        async def sender(channel: str) -> None:
            while not stopping.is_set():
                await self.send(self.new_item(channel))
                await asyncio.sleep(pause)

        await asyncio.gather(*(sender(channel) for channel in CHANNELS))

    async def retry_all(self, rounds: int = 20) -> None:
        """As real senders do: whatever was refused is sent again, same identity."""
        for _ in range(rounds):
            waiting = [item for item in self.items if not item.accepted]
            if not waiting:
                return
            for item in waiting:
                await self.send(item)
            await asyncio.sleep(1.0)
        raise AssertionError(f"{len(waiting)} items never accepted: {self.refusals}")


def mail(item: Item) -> bytes:
    message = EmailMessage()
    message["From"] = f"Fault Tester <s{item.phone}@sender.example.cn>"
    message["To"] = MAILBOX
    message["Subject"] = "水费异常+测试"
    message["Message-ID"] = item.identity
    message.set_content("本月水费比上月高出三倍，水表读数有误，请核查。")
    message.add_attachment(
        os.urandom(2048), maintype="application", subtype="octet-stream", filename="data.bin"
    )
    return message.as_bytes()


def http_request(item: Item) -> tuple[str, bytes, dict[str, str]]:
    # Each item from its own address: the web form rate-limits per address, and uvicorn
    # takes X-Forwarded-For from the loopback proxy.
    forwarded = {
        "X-Forwarded-For": f"10.{item.phone[-6:-4]}.{item.phone[-4:-2]}.1{item.phone[-2:]}"
    }
    if item.channel == "phone":
        started = time.time() - 300
        record = {
            "call_id": item.identity,
            "caller_number": item.phone,
            "agent_id": "1001",
            "started_at": _iso(started),
            "ended_at": _iso(started + 200),
            "summary": "光明小区5栋从昨天起停水，没有收到停水通知",
            "outcome": "dispatch",
        }
        return (
            "/api/calls",
            json.dumps(record, ensure_ascii=False).encode(),
            {"Authorization": f"Bearer {AGENT_TOKEN}", "Content-Type": "application/json"},
        )
    if item.channel == "web":
        fields = complaint_fields(idempotency_key=item.identity, contact=item.phone)
        request = httpx.Request(
            "POST",
            "http://x/api/complaints",
            data=fields,
            # A real PNG, made unique: a blob already stored is not written again.
            files=[("evidence", ("leak.png", fixture("leak.png") + os.urandom(64), "image/png"))],
        )
        return "/api/complaints", request.read(), {**dict(request.headers), **forwarded}
    payload = order(
        **{"工单编号": item.identity, "业务流水号": item.identity, "来电号码": item.phone}
    )
    body, headers = signed(payload, GOV)
    return "/api/referrals/gov12345", body, headers


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


# --- faults ---------------------------------------------------------------------------------


async def kill_edge_mid_smtp_data(fleet: Fleet, load: Load) -> None:
    """A mail half-sent when the edge dies: never a 250, and accepted once resent."""
    item = load.new_item("email")
    raw = mail(item)
    sock = socket.create_connection(("127.0.0.1", fleet.smtp_port), timeout=30)
    try:
        reader = sock.makefile("rb")

        def command(line: bytes) -> bytes:
            sock.sendall(line + b"\r\n")
            reply = reader.readline()
            while reply[3:4] == b"-":
                reply = reader.readline()
            return reply

        assert reader.readline().startswith(b"220")
        assert command(b"EHLO fault.example.cn").startswith(b"250")
        assert command(f"MAIL FROM:<s{item.phone}@sender.example.cn>".encode()).startswith(b"250")
        assert command(f"RCPT TO:<{MAILBOX}>".encode()).startswith(b"250")
        assert command(b"DATA").startswith(b"354")
        sock.sendall(raw[: len(raw) // 2])
        await asyncio.sleep(0.2)
        fleet.kill9(fleet.edge)
        with contextlib.suppress(OSError):
            sock.sendall(raw[len(raw) // 2 :] + b"\r\n.\r\n")
            reply = reader.readline()
            assert not reply.startswith(b"250"), reply
    finally:
        sock.close()
    item.answers.append(TEMPORARY)
    load.refusals["email: killed mid-DATA"] += 1
    await fleet.start(fleet.edge)


async def kill_edge_mid_http_upload(fleet: Fleet, load: Load) -> None:
    """A form upload half-sent when the edge dies: never a 201, and accepted once resent."""
    item = load.new_item("web")
    url, body, headers = http_request(item)
    half = asyncio.Event()
    killed = asyncio.Event()

    async def stream() -> AsyncIterator[bytes]:
        yield body[: len(body) // 2]
        half.set()
        await killed.wait()
        yield body[len(body) // 2 :]

    async def upload() -> httpx.Response | Exception:
        try:
            async with httpx.AsyncClient(base_url=fleet.http_url, timeout=30) as client:
                return await client.post(url, content=stream(), headers=headers)
        except Exception as exc:
            return exc

    sending = asyncio.create_task(upload())
    await asyncio.wait_for(half.wait(), 30)
    await asyncio.sleep(0.2)
    fleet.kill9(fleet.edge)
    killed.set()
    outcome = await sending
    assert not isinstance(outcome, httpx.Response) or outcome.status_code >= 500, outcome
    item.answers.append(TEMPORARY)
    load.refusals["web: killed mid-upload"] += 1
    await fleet.start(fleet.edge)


async def restart_postgresql(_fleet: Fleet, _load: Load) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    await _run(
        "pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", timeout=120
    )


async def restart_rabbitmq(_fleet: Fleet, _load: Load) -> None:
    from tests.support_rabbit import rabbitmqctl, start_app

    await rabbitmqctl("stop_app")
    await asyncio.sleep(2)
    await start_app()


async def _run(*command: str, timeout: float) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode == 0, output.decode(errors="replace")


@dataclass
class SmallDisk:
    """A tmpfs of a few megabytes under the blob store, filled up and freed on demand."""

    path: Path
    filler: Path

    async def fill(self) -> None:
        await asyncio.to_thread(self._fill)

    def _fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            # Big writes first, then ever smaller ones, down to the last free byte.
            for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
                chunk = b"\0" * size
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, chunk)
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


async def run_out_of_disk(fleet: Fleet, load: Load, disk: SmallDisk) -> None:
    """While the blob store's disk is full, nothing is answered "accepted"."""
    await disk.fill()
    answers: Counter[str] = Counter()
    for _ in range(3):
        for channel in CHANNELS:
            item = load.new_item(channel)
            answer = await load.send(item)
            answers[answer] += 1
            assert answer == TEMPORARY, f"{channel} accepted with the disk full"
    load.during_outage.append(f"disk full: {dict(answers)}")
    fleet.assert_alive()
    disk.free()
    # Service comes back without a restart.
    item = load.new_item("phone")
    deadline = time.monotonic() + 30
    while await load.send(item) != "accepted":
        assert time.monotonic() < deadline, "no recovery after the disk was freed"
        await asyncio.sleep(0.5)


# --- the run --------------------------------------------------------------------------------


class Sink:
    """The outbound mail server the notify worker sends acknowledgements to."""

    def __init__(self) -> None:
        self.message_ids: Counter[str] = Counter()

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        for line in envelope.content.split(b"\r\n"):
            if line.lower().startswith(b"in-reply-to:"):
                self.message_ids[line.split(b":", 1)[1].strip().decode()] += 1
        return "250 OK"


@contextlib.asynccontextmanager
async def small_disk(tmp_path: Path) -> AsyncIterator[SmallDisk]:
    mount = tmp_path / "blobs"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if os.environ.get("SHOULI_REQUIRE_SERVICES") == "1":
            raise AssertionError("the disk-full fault needs root to mount a tmpfs")
        pytest.skip("the disk-full fault needs root to mount a tmpfs")
    await _run("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount), timeout=30)
    try:
        yield SmallDisk(mount, mount / ".filler")
    finally:
        await _run("umount", "-l", str(mount), timeout=30)


async def _load_while(load: Load, fault: Callable[[], Awaitable[None]], settle: float) -> None:
    stopping = asyncio.Event()
    running = asyncio.create_task(load.run(stopping))
    try:
        await asyncio.sleep(settle)
        await fault()
        await asyncio.sleep(settle)
    finally:
        stopping.set()
        await running


async def test_nothing_answered_accepted_is_lost_or_doubled_under_faults(stack: Stack) -> None:
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    async with small_disk(stack.tmp_path) as disk:
        http_port, smtp_port = free_port(), free_port()
        env = (
            stack.process_env()
            | SECRETS
            | {
                "SHOULI_AGENT_1001_TOKEN": AGENT_TOKEN,
                "SHOULI_HTTP__PORT": str(http_port),
                "SHOULI_ORGANISATION__PUBLIC_URL": f"http://127.0.0.1:{http_port}",
                "SHOULI_EMAIL__SMTP__PORT": str(smtp_port),
                "SHOULI_BLOBS__PATH": str(disk.path),
                "SHOULI_EMAIL__OUTBOUND__HOST": "127.0.0.1",
                "SHOULI_EMAIL__OUTBOUND__PORT": str(controller.port),
                "SHOULI_EMAIL__OUTBOUND__TLS": "none",
                "SHOULI_EMAIL__OUTBOUND__FROM_ADDRESS": "noreply@water.example.cn",
                "SHOULI_EMAIL__OUTBOX__POLL_INTERVAL_SECONDS": "0.5",
                "SHOULI_EMAIL__OUTBOX__LEASE_SECONDS": "5",
            }
        )
        fleet = Fleet(stack, env, f"http://127.0.0.1:{http_port}", smtp_port)
        load = Load(fleet)
        await fleet.start_all()
        try:
            faults: list[tuple[str, Callable[[], Awaitable[None]]]] = [
                ("kill -9 edge mid SMTP DATA", lambda: kill_edge_mid_smtp_data(fleet, load)),
                ("kill -9 edge mid HTTP upload", lambda: kill_edge_mid_http_upload(fleet, load)),
            ]
            if stack.mode == "distributed":
                faults += [
                    ("kill -9 router", lambda: fleet.restart_after_kill9("router")),
                    ("kill -9 notify", lambda: fleet.restart_after_kill9("notify")),
                    ("restart PostgreSQL", lambda: restart_postgresql(fleet, load)),
                    ("restart RabbitMQ", lambda: restart_rabbitmq(fleet, load)),
                ]
            else:
                # One process holds the router and the notify worker: kill it while busy.
                faults.append(
                    ("kill -9 serve under load", lambda: fleet.restart_after_kill9("serve"))
                )
            for _name, fault in faults:
                await _load_while(load, fault, settle=3.0)
                fleet.assert_alive()
            await run_out_of_disk(fleet, load, disk)
            await fleet.wait_ready()
            await load.retry_all()
            counts = await _verify(stack, load, sink)
        finally:
            await fleet.stop()
            controller.stop()
    print(f"\nfault suite ({stack.mode}): {counts}; refusals: {dict(load.refusals)}")
    print("\n".join(load.during_outage))
    assert counts["lost"] == 0 and counts["duplicates"] == 0, counts
    assert counts["tickets"] == counts["items"] == counts["accepted"], counts
    assert counts["acknowledged"] == counts["mails"], "an acknowledgement was never sent"


async def _verify(stack: Stack, load: Load, sink: Sink) -> dict[str, int]:
    """Wait until every item has its ticket, then count."""

    async def tickets() -> list[tuple[str, str, str]]:
        async with stack.rt.database.sessions() as session:
            rows = await session.execute(
                select(Ticket.number, Ticket.channel, Ticket.source_key)  # type: ignore[call-overload]
            )
            return [tuple(row) for row in rows]

    def missing(rows: list[tuple[str, str, str]]) -> list[Item]:
        numbers = {number for number, _, _ in rows}
        mail_keys = {key for _, channel, key in rows if channel == "email"}
        return [
            item
            for item in load.items
            if (item.channel == "email" and item.identity not in mail_keys)
            or (item.channel != "email" and item.number not in numbers)
        ]

    deadline = time.monotonic() + 180
    rows = await tickets()
    while missing(rows) and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        rows = await tickets()
    per_channel = Counter(channel for _, channel, _ in rows)
    expected = Counter(item.channel for item in load.items)
    duplicates = sum(max(per_channel[c] - expected[c], 0) for c in expected)
    lost = len(missing(rows))
    # Acknowledgements: every email ticket's once the notify worker caught up (at least once;
    # more than once only when it was killed between the server's 250 and recording it).
    acknowledged_by = time.monotonic() + 60
    email_keys = [item.identity for item in load.items if item.channel == "email"]
    while time.monotonic() < acknowledged_by and not all(sink.message_ids[k] for k in email_keys):
        await asyncio.sleep(0.5)
    return {
        "sent": load.sent,
        "items": len(load.items),
        "accepted": sum(item.accepted for item in load.items),
        "refused_temporarily": sum(a == TEMPORARY for i in load.items for a in i.answers),
        "tickets": len(rows),
        "duplicates": duplicates,
        "lost": lost,
        "mails": len(email_keys),
        "acknowledged": sum(1 for k in email_keys if sink.message_ids[k]),
        "acknowledged_twice": sum(1 for k in email_keys if sink.message_ids[k] > 1),
    }
