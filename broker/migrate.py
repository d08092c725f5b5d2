"""Run the Alembic migrations programmatically (no alembic.ini to keep in step with settings)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config

from broker.config import Settings
from broker.files import private_sqlite


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(settings: Settings, revision: str = "heads") -> None:
    if settings.is_sqlite:
        private_sqlite(settings.data_dir, settings.database_url)
    command.upgrade(alembic_config(settings.database_url), revision)


def include_object_for(dialect: str) -> Callable[[object, str | None, str, bool, object | None], bool]:
    """Autogenerate's filter: a model object declared ``.ddl_if(dialect=...)`` exists on that dialect only.

    Alembic does not read ``ddl_if`` itself, so without this a PostgreSQL-only index (the auditors' GIN
    index) would show as missing on SQLite. The migration that creates the object checks the dialect the
    same way.
    """

    def include_object(
        obj: object, name: str | None, type_: str, reflected: bool, compare_to: object | None
    ) -> bool:
        wanted = getattr(getattr(obj, "_ddl_if", None), "dialect", None)
        return reflected or wanted is None or wanted == dialect

    return include_object
