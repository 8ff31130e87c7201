"""What the benchmark harnesses share: where the local services are, the environment of a bench
run, a fresh store for a mode (removed afterwards), and starting, waiting for and stopping real
``shouli`` processes.

* embedded: a SQLite file in the run's work directory and the embedded queue;
* distributed: a new PostgreSQL database on ``SHOULI_TEST_DATABASE_URL`` and RabbitMQ at
  ``SHOULI_TEST_AMQP_URL``; the database and the run's queues are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine.url import make_url

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config.yaml"
AMQP_URL = os.environ.get("SHOULI_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_URL = os.environ.get(
    "SHOULI_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
MODES = ("embedded", "distributed")


def argument_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose ``--help`` shows the bench's docstring as it is laid out."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank ``pct`` percentile of ``values`` (NaN for none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def commit_seconds(rows: Iterable[tuple[datetime, datetime]]) -> list[float]:
    """Seconds from ``received_at`` to ``created_at`` for each (received_at, created_at) row;
    naive times (SQLite gives them back so) are UTC."""
    out = []
    for received, created in rows:
        received = received if received.tzinfo else received.replace(tzinfo=UTC)
        created = created if created.tzinfo else created.replace(tzinfo=UTC)
        out.append((created - received).total_seconds())
    return out


def bench_environment(workdir: Path, **extra: str) -> dict[str, str]:
    """The SHOULI_* variables of a bench run, but for its store (:func:`bench_store` adds it):
    the shipped config, a broker prefix of its own, blobs in ``workdir``, warnings only, as
    JSON; then ``extra`` (``SHOULI_HTTP__PORT="8123"``, ...)."""
    return {
        "SHOULI_CONFIG": str(CONFIG),
        "SHOULI_BROKER__PREFIX": f"bench{uuid.uuid4().hex[:8]}",
        "SHOULI_BLOBS__PATH": str(workdir / "blobs"),
        "SHOULI_LOGGING__LEVEL": "warning",
        "SHOULI_LOGGING__FORMAT": "json",
        **extra,
    }


async def _postgres_admin(sql: str) -> None:
    base = make_url(PG_URL)
    admin = await asyncpg.connect(
        host=base.host, port=base.port or 5432, user=base.username, database=base.database
    )
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


async def delete_run_queues(prefix: str) -> None:
    """Delete the RabbitMQ queues a run under ``prefix`` made (``QueueNames.all()``, each with
    its dead-letter and delay queues)."""
    from tests.stack import delete_rabbit_queues

    await delete_rabbit_queues(prefix)


@asynccontextmanager
async def bench_store(mode: str, workdir: Path, **extra: str) -> AsyncIterator[dict[str, str]]:
    """The SHOULI_* environment of a bench run (:func:`bench_environment`) on a fresh store
    for ``mode``.

    embedded: a SQLite file in ``workdir`` (removed with it) and the embedded queue.
    distributed: a new PostgreSQL database and the RabbitMQ broker; on exit the database is
    dropped and the queues under the run's broker prefix are deleted.
    """
    env = bench_environment(workdir, **extra)
    if mode == "embedded":
        yield env | {"SHOULI_DATABASE__URL": f"sqlite+aiosqlite:///{workdir}/bench.db"}
        return
    if mode != "distributed":
        raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    name = f"shouli_bench_{uuid.uuid4().hex[:8]}"
    await _postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        database_url = make_url(PG_URL).set(database=name)
        yield env | {
            "SHOULI_DATABASE__URL": database_url.render_as_string(hide_password=False),
            "SHOULI_BROKER__URL": AMQP_URL,
        }
    finally:
        try:
            await delete_run_queues(env["SHOULI_BROKER__PREFIX"])
        finally:
            await _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def shouli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ingest.app.cli", *args]


def process_environment(env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its own SHOULI_* variables, then ``env``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SHOULI_")}, **env}


def start_shouli(
    *args: str, env: Mapping[str, str], workdir: Path, log: str
) -> subprocess.Popen[bytes]:
    """Start ``shouli *args`` in ``workdir`` with ``env``; its output goes to ``workdir/log``
    (appended, so processes may share a log)."""
    with (workdir / log).open("ab") as handle:
        return subprocess.Popen(
            shouli_command(*args),
            env=process_environment(env),
            cwd=workdir,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


async def wait_ready(
    url: str,
    *,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    timeout: float = 60.0,
) -> None:
    """Wait until ``url/readyz`` answers 200; fail if ``process`` exits or ``timeout`` passes."""
    see = f"; see {log}" if log else ""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the server exited ({process.returncode}){see}")
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready in {timeout:.0f} s{see}")


def stop(*processes: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGTERM to every process, then wait for each; kill one that is still running after
    ``timeout`` seconds."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
