"""The migrations create exactly the tables the models describe, on both databases."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import store.clock_models
import store.imap_models
import store.models
import store.notification_models
import store.referral_models
import store.web_models  # noqa: F401
from store.db import Database
from store.migrate import alembic_config, current_revision, migrate
from store.settings import DatabaseSettings
from tests.stack import fresh_postgres_database


def _differences(sync_conn: object) -> list[object]:
    context = MigrationContext.configure(sync_conn)  # type: ignore[arg-type]
    return list(compare_metadata(context, SQLModel.metadata))


async def _check(url: str) -> None:
    database = Database(DatabaseSettings(url=url))
    try:
        await migrate(database)
        await migrate(database)  # a second start finds nothing to do
        head = ScriptDirectory.from_config(alembic_config()).get_heads()
        assert head == [await current_revision(database)]
        async with database.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await database.close()


def test_the_migrations_have_one_head() -> None:
    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1


async def test_migrations_match_the_models_on_sqlite(tmp_path: Path) -> None:
    await _check(f"sqlite+aiosqlite:///{tmp_path}/m.db")


async def test_migrations_match_the_models_on_postgresql() -> None:
    async with fresh_postgres_database() as url:
        await _check(url)
