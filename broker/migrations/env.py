"""Alembic environment: the URL comes from the caller's config (``broker.migrate``), never from a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from broker.migrate import include_object_for
from broker.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "broker.migrate sets sqlalchemy.url"  # noqa: S101 - programming error, not input


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = create_engine(url, poolclass=pool.NullPool)  # type: ignore[arg-type]  # asserted above
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=True,
            include_object=include_object_for(connection.dialect.name),
            user_module_prefix="",  # render our types bare; script.py.mako imports them
        )
        with context.begin_transaction():
            context.run_migrations()
    connectable.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
