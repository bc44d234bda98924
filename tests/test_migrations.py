"""Revisions are frozen: none imports the application, so a later change to the code cannot
change what an old upgrade does."""

import ast
from pathlib import Path

import pytest

VERSIONS = sorted((Path(__file__).resolve().parents[1] / "migrations" / "versions").glob("*.py"))


@pytest.mark.parametrize("revision", VERSIONS, ids=lambda path: path.name)
def test_a_revision_imports_nothing_of_the_application(revision: Path) -> None:
    tree = ast.parse(revision.read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] == "service"}
