"""Running the API: ``migrate`` its database, ``serve`` it, ``hash-key`` an API key for it."""

from __future__ import annotations

import argparse
import sys
from typing import get_args

from service.cli.options import (
    Commands,
    add_command,
    add_database_option,
    add_migrate_option,
    add_store_option,
)
from service.config import Role, Settings, get_settings

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
"""uvicorn's log levels (and the root logger's, upper-cased)."""


def register(commands: Commands, settings: Settings) -> None:
    for add in (add_migrate, add_serve, add_hash_key):
        add(commands, settings)


def add_migrate(commands: Commands, settings: Settings) -> None:
    sub = add_command(
        commands, "migrate", cmd_migrate, "create or upgrade the results database (Alembic)"
    )
    add_database_option(sub, settings)
    sub.add_argument("--revision", default="head", help="target revision")


def cmd_migrate(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from service.db.migrate import upgrade

    upgrade(args.database_url, args.revision)
    print(f"{make_url(args.database_url).render_as_string()}: migrated to {args.revision}")
    return 0


def add_serve(commands: Commands, settings: Settings) -> None:
    sub = add_command(
        commands, "serve", cmd_serve, "serve the inspection API (uvicorn, one process)"
    )
    sub.add_argument("--host", default="127.0.0.1", help="address to bind")
    sub.add_argument("--port", type=int, default=8000, help="port to bind")
    sub.add_argument("--model", default=settings.model_name, help="model name (env MODEL_NAME)")
    sub.add_argument("--alias", default=settings.model_alias, help="alias served (env MODEL_ALIAS)")
    sub.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="uvicorn log level")
    add_store_option(sub, settings)
    add_database_option(sub, settings)
    add_migrate_option(sub, settings)


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from service.api import create_app
    from service.api.auth import check_bind
    from service.api.request_log import log_requests_to

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log_requests_to(sys.stderr)  # one JSON line per request, instead of uvicorn's access log
    settings = get_settings().model_copy(
        update={
            "model_store": args.store,
            "model_name": args.model,
            "model_alias": args.alias,
            "database_url": args.database_url,
            "migrate_on_start": args.migrate,
        }
    )
    check_bind(args.host, settings.api_keys)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
    )
    return 0


def add_hash_key(commands: Commands, settings: Settings) -> None:
    sub = add_command(
        commands,
        "hash-key",
        cmd_hash_key,
        "read an API key on stdin, print its API_KEYS entry (SHA-256)",
    )
    sub.add_argument("--name", required=True, help="who holds the key (shown in logs)")
    sub.add_argument("--role", required=True, choices=get_args(Role), help="what it may do")


def cmd_hash_key(args: argparse.Namespace) -> int:
    import getpass

    from service.api.auth import key_entry

    key = getpass.getpass("API key: ") if sys.stdin.isatty() else sys.stdin.readline()
    print(key_entry(key.strip(), name=args.name, role=args.role).model_dump_json())
    return 0
