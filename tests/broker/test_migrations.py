"""The migrations build exactly the models (on PostgreSQL and SQLite), and go down and up again."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine

from broker.config import Settings
from broker.migrate import alembic_config, include_object_for, upgrade
from broker.models import Base


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_object": include_object_for(conn.dialect.name)}
        )
        return list(compare_metadata(context, Base.metadata))


def test_one_linear_history() -> None:
    """While nothing is released the history is one line: one head, and no revision with two parents (no
    merge revisions), so that `downgrade -1` always means one step back."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1
    merges = [rev.revision for rev in script.walk_revisions() if rev.is_merge_point]
    assert merges == []


def test_postgres_schema_matches_the_models(engine: Engine) -> None:
    assert _diff(engine) == []


def test_sqlite_schema_matches_the_models_and_downgrades(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings)
    engine = create_engine(settings.database_url)
    try:
        assert _diff(engine) == []
        cfg = alembic_config(settings.database_url)
        command.downgrade(cfg, "base")
        command.upgrade(cfg, "heads")
        assert _diff(engine) == []
    finally:
        engine.dispose()
