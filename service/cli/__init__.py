"""``python -m service <command>``: typed options with help, each forwarded to one function.

Each command group (a module here) adds its commands with ``register``, every command's options
next to its handler. torch is imported only by the commands that train, export or prune, so the
serving process stays torch-free.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from service.cli import jobs, models, serving, training
from service.config import get_settings
from service.store import StoreError

GROUPS = (training, models, jobs, serving)


def build_parser() -> argparse.ArgumentParser:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Steel strip inspection: data, training, model store and serving.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(commands, settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, StoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
