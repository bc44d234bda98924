"""Engine and session factory from a database URL (SQLite embedded, or Postgres via psycopg 3)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

POSTGRES_CONNECT_TIMEOUT_S = 5
SQLITE_BUSY_TIMEOUT_MS = 5000


def database_url(url: str) -> URL:
    """Parse ``url``; bare ``postgres://`` / ``postgresql://`` get the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str, **options: Any) -> Engine:
    """An engine for ``url`` (cheap: no connection is opened until the first query).

    SQLite gets foreign keys, WAL and a busy timeout on every connection, and its folder is
    created; Postgres gets a connect timeout so that an unreachable server fails fast, and a
    ping of each pooled connection as it is checked out (a restarted server leaves stale
    ones). A SQLite file has no server to lose: no ping, which saves a statement per checkout.
    """
    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False}, **options)
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    connect_args = (
        {} if "connect_timeout" in parsed.query else {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
    )
    return create_engine(parsed, connect_args=connect_args, pool_pre_ping=True, **options)


def _configure_sqlite(connection: sqlite3.Connection, _record: object) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # Rows stay readable after commit: handlers build responses from what they just stored.
    return sessionmaker(engine, expire_on_commit=False)


def ping(engine: Engine) -> None:
    """Raise unless the database answers and has been migrated (the inspections table exists)."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1 FROM inspections WHERE 1 = 0"))
