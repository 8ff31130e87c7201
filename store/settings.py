"""The store's own settings sections: where the database is, and where raw bytes are kept."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ingest.sections import Section


class DatabaseSettings(Section):
    url: str = "sqlite+aiosqlite:///./var/shouli.db"
    pool_size: int = Field(default=10, ge=1, le=200)
    migrate_on_start: bool = True

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host/db"
            )
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class BlobSettings(Section):
    path: Path = Path("var/blobs")
