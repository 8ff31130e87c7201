"""Opening the store: one async engine per process, SQLite (WAL) or PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ingest.errors import Unavailable
from store.settings import DatabaseSettings

T = TypeVar("T")


class StoreUnavailable(Unavailable):
    """The database did not answer or refused the work; the caller should retry later."""


# Every error the store can raise. An edge answers "try again later" to any of them (it has
# nowhere to keep the item); a worker asks :func:`is_outage` whether to retry or dead-letter.
STORE_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    DBAPIError,
    OSError,
    ConnectionError,
    TimeoutError,
)

# SQLSTATE classes that mean the server, not the statement, failed: connection exceptions,
# transaction rollbacks (serialization failure, deadlock), insufficient resources (disk full),
# operator intervention (shutdown, restart), system errors (I/O). Data (22) and integrity (23)
# errors, and everything else, would fail again the same way.
_OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_OUTAGE_SQLSTATES = frozenset({"55P03"})  # lock_not_available
_OUTAGE_WORDS = ("connect", "closed", "timeout", "terminat", "shutdown", "refused", "locked")


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` means the store is not there right now (retry later); False when
    the work itself is refused (integrity, data, a statement that will fail again)."""
    if isinstance(exc, IntegrityError):
        return False
    if isinstance(exc, OSError | ConnectionError | TimeoutError | StoreUnavailable):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return True
    state = _sqlstate(exc)
    if state is not None:
        return state[:2] in _OUTAGE_SQLSTATE_CLASSES or state in _OUTAGE_SQLSTATES
    if isinstance(exc.orig, OSError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OperationalError):
        # SQLite says "database is locked", "disk I/O error", "database or disk is full".
        return True
    orig = exc.orig
    cause = getattr(orig, "__cause__", None)
    text = f"{type(orig).__name__} {type(cause).__name__} {orig}".lower()
    return any(word in text for word in _OUTAGE_WORDS)


def _sqlstate(exc: DBAPIError) -> str | None:
    """The PostgreSQL error code, wherever the driver adapter keeps it."""
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def upsert_insert(conn: Connection) -> Any:
    """The dialect's own ``insert`` (PostgreSQL or SQLite), the one with
    ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


class Database:
    """The engines and session factories, passed by constructor to whoever needs the store.

    ``transaction()`` and ``engine`` are for work that writes. ``sessions()`` and
    ``read_engine`` are for reads only: on SQLite they use deferred transactions, which in
    WAL mode neither wait for the writer nor hold it up; on PostgreSQL they are the same.
    """

    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        self.is_sqlite = settings.is_sqlite
        self.engine = _create_engine(settings)
        self.read_engine = _create_engine(settings, writer=False) if self.is_sqlite else self.engine
        self.sessions = async_sessionmaker(
            self.read_engine, class_=AsyncSession, expire_on_commit=False
        )
        self._write_sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )
        self._sync_writer: Engine | None = (
            _create_sync_sqlite_engine(settings) if self.is_sqlite else None
        )

    async def write(self, body: Callable[[Connection], T]) -> T:
        """Run ``body`` (synchronous Core statements) in one write transaction.

        The hot paths (router batches, the embedded queue) use this. On SQLite the whole
        transaction runs in one worker thread: going through aiosqlite would cost a thread
        round trip per statement, which dominated the router's time per batch. On PostgreSQL
        asyncpg is natively async and ``run_sync`` drives the same body on the event loop.
        """
        if self._sync_writer is not None:
            writer = self._sync_writer

            def run() -> T:
                with writer.begin() as conn:
                    return body(conn)

            return await asyncio.to_thread(run)
        async with self.engine.begin() as conn:
            return await conn.run_sync(body)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction, committed on success, rolled back on error."""
        async with self._write_sessions() as session, session.begin():
            yield session

    async def ping(self) -> bool:
        try:
            async with self.read_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def close(self) -> None:
        await self.engine.dispose()
        if self._sync_writer is not None:
            self._sync_writer.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


def _create_engine(settings: DatabaseSettings, *, writer: bool = True) -> AsyncEngine:
    url = make_url(settings.url)
    if settings.is_sqlite:
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            pool_size=settings.pool_size,
            max_overflow=0,
            connect_args={"timeout": 30},
        )
        _configure_sqlite(engine, writer=writer)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_pre_ping=True,
    )


def _create_sync_sqlite_engine(settings: DatabaseSettings) -> Engine:
    url = make_url(settings.url).set(drivername="sqlite")
    engine = create_engine(
        url,
        pool_size=settings.pool_size,
        max_overflow=0,
        connect_args={"timeout": 30, "check_same_thread": False},
    )
    _configure_sqlite(engine, writer=True)
    return engine


def _configure_sqlite(engine: AsyncEngine | Engine, *, writer: bool) -> None:
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed queue message or ticket survives power loss, not only a crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that read first
        # and then writes fails with SQLITE_BUSY at once instead of waiting busy_timeout.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")
