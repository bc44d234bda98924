"""What every command group shares: adding a command, the options many commands take, printing.

A command is a subparser whose defaults name its handler: ``handler(args)`` returns the exit
status. Heavy imports (torch, uvicorn) wait inside the handlers, so building the parser stays
cheap and torch-free.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from service.config import Settings

Handler = Callable[[argparse.Namespace], int]
Commands = argparse._SubParsersAction
"""The ``add_subparsers`` action each group adds its commands to."""


def add_command(
    commands: Commands, name: str, handler: Handler, help_text: str
) -> argparse.ArgumentParser:
    """A subcommand that runs ``handler``, with the ``--quiet`` every command takes."""
    sub = commands.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(handler=handler)
    sub.add_argument("--quiet", action="store_true", help="no progress bars")
    return sub


def add_store_option(sub: argparse.ArgumentParser, settings: Settings) -> None:
    sub.add_argument(
        "--store",
        type=Path,
        default=settings.model_store,
        help="model store folder (env MODEL_STORE)",
    )


def add_database_option(sub: argparse.ArgumentParser, settings: Settings) -> None:
    sub.add_argument(
        "--database-url", default=settings.database_url, help="SQLAlchemy URL (env DATABASE_URL)"
    )


def add_migrate_option(sub: argparse.ArgumentParser, settings: Settings) -> None:
    sub.add_argument(
        "--migrate",
        action=argparse.BooleanOptionalAction,
        default=settings.migrate_on_start,
        help="bring a Postgres schema to head first; SQLite always is (env MIGRATE_ON_START)",
    )


def size(text: str) -> tuple[int, int]:
    """``256x512`` -> (256, 512)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, got {text!r}") from error
    return height, width


def print_json(payload: object) -> None:
    print(json.dumps(payload, indent=2, default=str))
