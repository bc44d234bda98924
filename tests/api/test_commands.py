"""``python -m service migrate`` and ``serve``: the commands that run the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from service.cli import build_parser, main
from service.cli.serving import cmd_serve


def test_migrate_creates_the_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'inspections.db'}"
    assert main(["migrate", "--database-url", url]) == 0
    assert main(["migrate", "--database-url", url]) == 0  # already at head: nothing to do
    engine = create_engine(url)
    assert {"inspections", "defects", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_serve_options(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["serve", "--host", "0.0.0.0", "--port", "9000", "--store", str(tmp_path)]
    )
    assert (args.handler, args.host, args.port, args.store) == (
        cmd_serve,
        "0.0.0.0",
        9000,
        tmp_path,
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--port", "eighty"])
