"""The ``shouli`` command (CONTRACT.md "Command line")."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from ingest.app.console import EXIT_TEMPFAIL, config_option, settings_or_exit
from ingest.app.import_calls import import_calls
from ingest.app.settings import Settings

T = TypeVar("T")


def log_config_warnings(settings: Settings) -> None:
    """At the start of a process that serves HTTP: what check-config warns of, in the log,
    so that a refused agent or referral can be traced to its cause (names, never secrets)."""
    import structlog

    from ingest.app.config_warnings import config_warnings

    log = structlog.get_logger("ingest.app.cli")
    for path, message in config_warnings(settings):
        log.warning("config_warning", path=path, warning=message)


def _run(coro_factory: Callable[[], Awaitable[T]]) -> T:
    try:
        import uvloop

        return uvloop.run(coro_factory())  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro_factory())  # type: ignore[arg-type]


@click.group()
def main() -> None:
    """Shouli (受理): multi-channel complaint intake."""


@main.command()
@config_option
def serve(config_path: Path | None) -> None:
    """Everything in one process: HTTP, listeners and all workers."""
    from ingest.app.serve import run_roles
    from workers.registry import WORKERS

    settings = settings_or_exit(config_path)
    log_config_warnings(settings)
    sys.exit(_run(lambda: run_roles(settings, http=True, workers=sorted(WORKERS))))


@main.command()
@config_option
def edge(config_path: Path | None) -> None:
    """The distributed edge: HTTP (and SMTP) listeners, no workers."""
    from ingest.app.serve import run_roles

    settings = settings_or_exit(config_path)
    log_config_warnings(settings)
    sys.exit(_run(lambda: run_roles(settings, http=True, workers=[])))


@main.command()
@click.argument("name")
@config_option
def worker(name: str, config_path: Path | None) -> None:
    """One worker of the distributed deployment (router, sla, ...)."""
    from ingest.app.serve import run_roles
    from workers.registry import WORKERS

    if name not in WORKERS:
        click.echo(
            f"unknown worker {name!r}; known workers: {', '.join(sorted(WORKERS))}", err=True
        )
        sys.exit(2)
    settings = settings_or_exit(config_path)
    sys.exit(_run(lambda: run_roles(settings, http=False, workers=[name])))


@main.command()
@config_option
def migrate(config_path: Path | None) -> None:
    """Bring the database schema to the newest revision."""
    from store.db import Database
    from store.migrate import current_revision
    from store.migrate import migrate as apply

    settings = settings_or_exit(config_path)

    async def go() -> str | None:
        database = Database(settings.database)
        try:
            await apply(database)
            return await current_revision(database)
        finally:
            await database.close()

    click.echo(f"schema at revision {_run(go)}")


@main.command("check-config")
@config_option
def check_config(config_path: Path | None) -> None:
    """Validate a config; exit 1 with each error as path.to.field: message. Warnings (unset
    secrets, the development staff token) are printed as warning: path: message, exit 0."""
    from ingest.app.config_warnings import config_warnings

    settings = settings_or_exit(config_path)
    mode = "RabbitMQ" if settings.broker.url else "embedded queue"
    store = "SQLite" if settings.database.is_sqlite else "PostgreSQL"
    click.echo(
        f"config OK: {len(settings.departments)} departments,"
        f" {len(settings.categories)} categories,"
        f" {len(settings.rules)} routing rules; {store} + {mode}"
    )
    for path, message in config_warnings(settings):
        click.echo(f"warning: {path}: {message}", err=True)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option
def submit(file: Path, config_path: Path | None) -> None:
    """Publish one normalised ticket draft (JSON) to the queue."""
    from ingest.app.runtime import open_runtime
    from ingest.draft import TicketDraft
    from ingest.queue import QueueUnavailable

    settings = settings_or_exit(config_path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        click.echo(f"{file}: not valid JSON: {exc}", err=True)
        sys.exit(1)
    if not isinstance(data, dict):
        click.echo(f"{file}: the draft must be a JSON object", err=True)
        sys.exit(1)
    data.setdefault("channel", "api")
    data.setdefault("received_at", datetime.now(UTC).isoformat())
    data.setdefault("first_contact", {"kind": "desk", "id": "api"})
    try:
        draft = TicketDraft.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            click.echo(
                f"{'.'.join(str(p) for p in error['loc']) or '(draft)'}: {error['msg']}", err=True
            )
        sys.exit(1)

    async def go() -> None:
        runtime = await open_runtime(settings)
        try:
            await runtime.handoff.submit(draft)
        finally:
            await runtime.close()

    try:
        _run(go)
    except QueueUnavailable as exc:
        click.echo(f"not queued, try again later: {exc}", err=True)
        sys.exit(EXIT_TEMPFAIL)
    click.echo(
        json.dumps({"queued": f"{draft.channel.value}:{draft.source_key}"}, ensure_ascii=False)
    )


@main.group()
def tickets() -> None:
    """Read tickets."""


@tickets.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("--channel", default=None)
@click.option("--since", default=None, help="ISO 8601 time; tickets received at or after it")
@click.option("--status", default=None)
@config_option
def tickets_list(
    as_json: bool,
    channel: str | None,
    since: str | None,
    status: str | None,
    config_path: Path | None,
) -> None:
    from store.db import Database
    from store.tickets import list_tickets

    settings = settings_or_exit(config_path)
    since_at = None
    if since:
        try:
            since_at = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            click.echo(f"--since: {since!r} is not an ISO 8601 time", err=True)
            sys.exit(1)
        if since_at.tzinfo is None:
            since_at = since_at.replace(tzinfo=UTC)

    async def go() -> None:
        database = Database(settings.database)
        try:
            after = 0
            while True:
                async with database.sessions() as session:
                    rows = await list_tickets(
                        session,
                        channel=channel,
                        since=since_at,
                        status=status,
                        after_id=after,
                        limit=500,
                    )
                for _, row in rows:
                    click.echo(
                        json.dumps(row, ensure_ascii=False) if as_json else _ticket_line(row)
                    )
                if len(rows) < 500:
                    return
                after = rows[-1][0]
        finally:
            await database.close()

    _run(go)


def _ticket_line(row: dict[str, Any]) -> str:
    return "\t".join(
        str(row[k] or "-")
        for k in (
            "number",
            "received_at",
            "channel",
            "status",
            "severity",
            "category",
            "department",
        )
    )


@tickets.command("show")
@click.argument("number")
@click.option("--json", "as_json", is_flag=True, help="the ticket JSON with its events")
@config_option
def tickets_show(number: str, as_json: bool, config_path: Path | None) -> None:
    from store.db import Database
    from store.tickets import find_ticket, ticket_json

    settings = settings_or_exit(config_path)

    async def go() -> dict[str, Any] | None:
        database = Database(settings.database)
        try:
            async with database.sessions() as session:
                ticket = await find_ticket(session, number)
                return await ticket_json(session, ticket) if ticket else None
        finally:
            await database.close()

    body = _run(go)
    if body is None:
        click.echo(f"no ticket {number}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(body, ensure_ascii=False))
        return
    click.echo(_ticket_line(body))
    for event in body["events"]:
        detail = json.dumps(event["detail"], ensure_ascii=False)
        click.echo(f"  {event['at']}  {event['kind']:<18} {event['actor']:<24} {detail}")


@main.group("dead-letters")
def dead_letters() -> None:
    """What could not be processed, and why."""


@dead_letters.command("list")
@click.option("--json", "as_json", is_flag=True)
@config_option
def dead_letters_list(as_json: bool, config_path: Path | None) -> None:
    from ingest.app.runtime import open_runtime
    from store.dead_letters import open_dead_letters
    from workers.settle import Settler

    settings = settings_or_exit(config_path)

    async def go() -> list[dict[str, Any]]:
        runtime = await open_runtime(settings)
        try:
            # Messages the queue itself gave up on become dead letters here too.
            settler = Settler(runtime.queue, runtime.database, settings.worker)
            for name in runtime.names.all():
                await settler.collect_expired(name)
            async with runtime.database.sessions() as session:
                return [
                    {
                        "id": d.id,
                        "queue": d.queue,
                        "message_id": d.message_id,
                        "attempts": d.attempts,
                        "failed_at": d.failed_at.isoformat(),
                        "reason": d.reason,
                    }
                    for d in await open_dead_letters(session)
                ]
        finally:
            await runtime.close()

    rows = _run(go)
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            click.echo(
                f"{row['id']}\t{row['failed_at']}\t{row['queue']}\tattempts={row['attempts']}\t{row['reason']}"
            )
    if not rows and not as_json:
        click.echo("no dead letters")


@dead_letters.command("replay")
@click.argument("dead_letter_id", type=int)
@config_option
def dead_letters_replay(dead_letter_id: int, config_path: Path | None) -> None:
    """Publish a dead letter again (attempt 1) after its cause was fixed."""
    from ingest.app.runtime import open_runtime
    from ingest.queue import Outgoing, QueueUnavailable
    from store.dead_letters import get_dead_letter, mark_replayed

    settings = settings_or_exit(config_path)

    async def go() -> str:
        runtime = await open_runtime(settings)
        try:
            async with runtime.database.sessions() as session:
                letter = await get_dead_letter(session, dead_letter_id)
            if letter is None:
                return f"no dead letter {dead_letter_id}"
            if letter.replayed_at is not None:
                replayed = letter.replayed_at.isoformat()
                return f"dead letter {dead_letter_id} was already replayed at {replayed}"
            await runtime.queue.declare(letter.queue)
            await runtime.queue.publish(
                letter.queue, [Outgoing(letter.body, letter.message_id, attempt=1)]
            )
            async with runtime.database.transaction() as session:
                await mark_replayed(session, dead_letter_id, datetime.now(UTC))
            return ""
        finally:
            await runtime.close()

    try:
        problem = _run(go)
    except QueueUnavailable as exc:
        click.echo(f"not replayed, try again later: {exc}", err=True)
        sys.exit(EXIT_TEMPFAIL)
    if problem:
        click.echo(problem, err=True)
        sys.exit(1)
    click.echo(f"replayed dead letter {dead_letter_id}")


main.add_command(import_calls)

if __name__ == "__main__":
    main()
