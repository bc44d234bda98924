"""``python -m service migrate``: the command that creates or upgrades the API's database.

``serve`` runs for real in test_auth.py, where it refuses a public address without keys.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect

from service.cli import main


def test_migrate_creates_the_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'inspections.db'}"
    assert main(["migrate", "--database-url", url]) == 0
    assert main(["migrate", "--database-url", url]) == 0  # already at head: nothing to do
    engine = create_engine(url)
    assert {"inspections", "defects", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()
