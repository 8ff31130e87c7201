"""A real IMAP server for tests: Debian's dovecot on a free loopback port, temp maildirs.

``dovecot -F -c <tmp>/dovecot.conf`` runs in the foreground as its own instance (own base
dir, state dir and log), with passwd-file users and plain passwords, ``ssl = no``. When run
as root, mail belongs to ``nobody`` (dovecot refuses uid 0 for mail) and the login process
runs as ``dovenull``; the config directory is world-readable for that reason, so it lives
in a fresh ``mkdtemp`` and not under pytest's private ``tmp_path``.

Missing binary: the test is skipped, or fails when SHOULI_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import REQUIRE_SERVICES

DOVECOT = shutil.which("dovecot") or (
    "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
)
INSTALL_HINT = "apt-get install -y dovecot-imapd"


def need_dovecot() -> str:
    if DOVECOT is not None:
        return DOVECOT
    message = f"dovecot is not installed ({INSTALL_HINT})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and SHOULI_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mail_owner() -> tuple[int, int, str, str]:
    """(uid, gid) owning the mail, and the login / internal user names."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return me.pw_uid, me.pw_gid, me.pw_name, me.pw_name
    nobody = pwd.getpwnam("nobody")
    try:
        login = pwd.getpwnam("dovenull").pw_name
    except KeyError:
        login = "nobody"
    return nobody.pw_uid, nobody.pw_gid, login, "root"


_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = shouli-test-{port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 0
first_valid_gid = 0
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
protocol imap {{
  mail_max_userip_connections = 1000
}}
"""


class Dovecot:
    """A running dovecot; ``append``/``flags``/``folder`` act on it as a mail client would."""

    def __init__(self, root: Path, port: int, users: Mapping[str, str]) -> None:
        self.root = root
        self.port = port
        self.host = "127.0.0.1"
        self.users = dict(users)
        self.process: subprocess.Popen[bytes] | None = None

    def write_passwords(self) -> None:
        # dovecot re-reads a passwd-file when it changes: tests can fix a password live.
        lines = "".join(f"{user}:{{PLAIN}}{password}\n" for user, password in self.users.items())
        (self.root / "passwd").write_text(lines, encoding="utf-8")

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @contextmanager
    def client(self, user: str) -> Iterator[imaplib.IMAP4]:
        client = imaplib.IMAP4(self.host, self.port, timeout=10)
        try:
            client.login(user, self.users[user])
            yield client
        finally:
            try:
                client.logout()
            except Exception:
                pass

    def append(
        self, user: str, raw: bytes, *, folder: str = "INBOX", flags: Sequence[str] = ()
    ) -> int:
        """APPEND one message; returns its UID (from APPENDUID, RFC 4315)."""
        with self.client(user) as client:
            status, data = client.append(
                folder, f"({' '.join(flags)})" if flags else None, None, raw
            )
            assert status == "OK", data
            text = data[0].decode() if isinstance(data[0], bytes) else str(data[0])
            return int(text.split("APPENDUID ", 1)[1].split("]")[0].split()[1])

    def flags(self, user: str, folder: str = "INBOX") -> dict[int, set[str]]:
        """UID -> flags of every message in ``folder`` (read-only select: changes nothing)."""
        with self.client(user) as client:
            status, _ = client.select(folder, readonly=True)
            assert status == "OK", folder
            status, data = client.uid("FETCH", "1:*", "(UID FLAGS)")
            found: dict[int, set[str]] = {}
            for item in data:
                if not isinstance(item, bytes):
                    continue
                parsed = imaplib.ParseFlags(item)
                uid = int(item.split(b"UID ", 1)[1].split()[0].rstrip(b")"))
                found[uid] = {flag.decode() for flag in parsed}
            return found

    def command(self, user: str, name: str, *args: str) -> None:
        with self.client(user) as client:
            status, data = getattr(client, name)(*args)
            assert status == "OK", data

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        with self.client(user) as client:
            status, data = client.status(folder, "(UIDVALIDITY)")
            assert status == "OK", data
            return int(data[0].split(b"UIDVALIDITY ", 1)[1].split(b")")[0])


def _wait_for_greeting(server: Dovecot, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process is not None
        if server.process.poll() is not None:
            break
        try:
            with socket.create_connection((server.host, server.port), 1) as sock:
                if sock.recv(100).startswith(b"* OK"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"dovecot did not start on port {server.port}:\n{server.log()[-3000:]}")


@contextmanager
def running_dovecot(users: Mapping[str, str]) -> Iterator[Dovecot]:
    """Start a private dovecot with ``users`` (name -> plain password); stop and remove it."""
    binary = need_dovecot()
    root = Path(tempfile.mkdtemp(prefix="shouli-dovecot-"))
    root.chmod(0o755)
    uid, gid, login, internal = _mail_owner()
    (root / "mail").mkdir()
    os.chown(root / "mail", uid, gid)
    port = free_port()
    server = Dovecot(root, port, users)
    server.write_passwords()
    internal_group = "root" if internal == "root" else grp.getgrgid(os.getegid()).gr_name
    (root / "dovecot.conf").write_text(
        _CONFIG.format(
            root=root,
            port=port,
            uid=uid,
            gid=gid,
            login=login,
            internal=internal,
            internal_group=internal_group,
        ),
        encoding="utf-8",
    )
    server.process = subprocess.Popen(
        [binary, "-F", "-c", str(root / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_greeting(server)
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)
        shutil.rmtree(root, ignore_errors=True)
