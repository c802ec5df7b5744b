"""The migrations build exactly the schema `app/effects/tables.py` declares, on SQLite and
on PostgreSQL: a column added to one and not the other is caught here, not in production."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from app.effects.store import Store
from app.effects.tables import metadata


def test_migrations_match_the_declared_tables(store: Store) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": False, "compare_server_default": False}
        )
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_migrating_twice_changes_nothing(store: Store) -> None:
    store.migrate()
    assert store.schema_is_current()
