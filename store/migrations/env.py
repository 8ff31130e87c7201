"""Alembic environment: runs on the connection handed in by ``store.migrate``."""

from alembic import context
from sqlmodel import SQLModel

import store.batch_models
import store.clock_models
import store.imap_models
import store.models
import store.notification_models
import store.referral_models
import store.web_models  # noqa: F401

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `shouli migrate`, which provides the connection")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
