"""Alembic environment: runs on the connection `hub.database.migrate` passes in (or on `sqlalchemy.url`)."""

from __future__ import annotations

from alembic import context

from hub.database import Base, make_engine

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        url = config.get_main_option("sqlalchemy.url")
        if url is None:
            raise RuntimeError("migrations need a connection or sqlalchemy.url (hub/database.py migrate passes one)")
        engine = make_engine(url)
        with engine.begin() as connection:
            context.configure(connection=connection, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


run()
