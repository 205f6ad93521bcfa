"""Alembic environment: the engine comes from the config's ``connection`` attribute or the URL."""

from __future__ import annotations

from alembic import context

from omnijourney.models import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from omnijourney.db import make_engine

        engine = make_engine(config.get_main_option("sqlalchemy.url"))
        with engine.connect() as conn:
            _migrate(conn)
        engine.dispose()
    else:
        _migrate(connection)


def _migrate(connection: object) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run()
