"""Run the Alembic migrations in ``migrations/`` programmatically (``python -m service migrate``),
and check a database's schema against them.

No alembic.ini is needed here: the configuration is built in code, so an installed package
(the Docker image copies ``migrations/`` beside it) migrates as well as a checkout does.

Code is written for the head revision: a process that serves or takes jobs from a schema behind
it (never migrated, or not since an upgrade), or ahead of it (migrated by a newer version), would
fail on every write or write what the schema does not expect. ``serve`` and the worker therefore
migrate SQLite, the embedded default, as they start, and on Postgres check the schema and wait,
not ready and claiming nothing, until it is at head (or migrate it themselves with --migrate).
"""

from __future__ import annotations

import fcntl
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from service.db.engine import database_url, make_engine
from service.threads import name_os_thread

logger = logging.getLogger(__name__)

MIGRATE_COMMAND = "python -m service migrate"
SCHEMA_RECHECK_S = 5.0
"""How often a process whose database is not at head looks again."""
_POSTGRES_MIGRATION_LOCK = 7_310_411_946_602_021
"""The advisory lock key that one migration at a time holds on a Postgres database."""

_CANDIDATES = (Path(__file__).resolve().parents[2] / "migrations", Path.cwd() / "migrations")


def migrations_dir() -> Path:
    """The repository's ``migrations/`` (beside the package, else in the working directory)."""
    for candidate in _CANDIDATES:
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(f"no Alembic migrations folder in {', '.join(map(str, _CANDIDATES))}")


def _scripts_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def alembic_config(url: str) -> Config:
    config = _scripts_config()
    # Passed as an attribute, not a main option: ConfigParser would interpolate '%' in passwords.
    config.attributes["database_url"] = database_url(url).render_as_string(hide_password=False)
    return config


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_scripts_config())


def head_revision() -> str:
    """The revision the migrations lead to: the schema this code is written for."""
    head = _scripts().get_current_head()
    if head is None:
        raise FileNotFoundError(f"no Alembic revision in {migrations_dir()}")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database was migrated to; None if it never was."""
    return MigrationContext.configure(connection).get_current_revision()


def schema_problem(revision: str | None) -> str | None:
    """Why this code cannot work on a database at ``revision``, with what to do; None at head."""
    head = head_revision()
    if revision == head:
        return None
    if revision is None:
        return (
            f"the database has no schema yet (this version needs revision {head}): run "
            f"`{MIGRATE_COMMAND}`, or start with --migrate"
        )
    if not _known(revision):
        return (
            f"the database schema is at revision {revision}, which these migrations do not know "
            f"(this version needs {head}; did a newer version migrate it?): run a version that "
            "knows it"
        )
    return (
        f"the database schema is at revision {revision}, this version needs {head}: run "
        f"`{MIGRATE_COMMAND}`, or start with --migrate"
    )


def _known(revision: str) -> bool:
    return any(script.revision == revision for script in _scripts().walk_revisions())


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (creating a SQLite file's folder), one
    migration at a time per database."""
    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    with _migration_lock(parsed):
        command.upgrade(alembic_config(url), revision)


def migrate_on_start(url: str, *, always: bool) -> None:
    """As ``serve`` or a worker starts: upgrade SQLite (the embedded default) to head, and
    Postgres too when ``always`` (``--migrate``). A failure is logged, not raised: the schema
    check that follows reports the state the database is in."""
    if not always and database_url(url).get_backend_name() != "sqlite":
        return
    try:
        upgrade(url)
    except Exception as error:  # unreachable, refused, a revision ahead of ours: all reported
        logger.error("cannot migrate the database to %s: %s", head_revision(), error)


@contextmanager
def _migration_lock(url: URL) -> Iterator[None]:
    """Hold the database's migration lock. Processes that start together (a worker beside
    ``serve`` on one SQLite file, replicas started with --migrate) would otherwise create the
    same tables at once, and all but one fail.

    Postgres: a session advisory lock on a connection of its own, released as it closes.
    SQLite: an exclusive flock on a file beside the database (never on the database file
    itself: closing any descriptor of it would drop SQLite's own POSIX locks).
    """
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            yield
            return
        path = Path(url.database)
        with path.with_name(f"{path.name}.migrate-lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        return
    engine = make_engine(url.render_as_string(hide_password=False), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(
                text("SELECT pg_advisory_lock(:key)"), {"key": _POSTGRES_MIGRATION_LOCK}
            )
            connection.commit()  # the lock outlives the transaction; nothing stays open
            yield
    finally:
        engine.dispose()


class SchemaGate:
    """Whether the database's schema is at the migrations' head, for the API process.

    Checked at ``start``, then, while it is not at head, every ``recheck_s`` in a background
    thread: a replica becomes ready once the migration has run, without a restart. Once at head
    it is not checked again, so a newer version migrating the database during a rolling upgrade
    does not take the running replicas out. A database that does not answer leaves the schema
    unknown, which keeps nobody out: results go to the spool meanwhile, and the database's own
    problem is reported.
    """

    def __init__(self, engine: Engine, recheck_s: float = SCHEMA_RECHECK_S) -> None:
        self._engine, self._recheck_s = engine, recheck_s
        self._head = head_revision()
        self._revision: str | None = None
        self.problem: str | None = None
        """Why the schema is not one to serve from, as last seen; None at head or unknown."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Check now and, unless the schema is at head, keep checking in the background."""
        if self.check():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._recheck, name="schema-check", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def check(self) -> bool:
        """Look at the database now; True when its schema is at head."""
        try:
            with self._engine.connect() as connection:
                revision = current_revision(connection)
        except SQLAlchemyError:
            return False
        problem = schema_problem(revision)
        if problem is not None and problem != self.problem:
            logger.error("not ready: %s", problem)
        elif problem is None and self.problem is not None:
            logger.info("the database schema is at %s now: ready", revision)
        self._revision, self.problem = revision, problem
        return problem is None

    def status(self) -> dict[str, str | None]:
        """The revision the database was last seen at (None: never migrated, or not seen yet)
        and the one this code needs."""
        return {"revision": self._revision, "head": self._head}

    def _recheck(self) -> None:
        name_os_thread()
        while not self._stop.wait(self._recheck_s):
            if self.check():
                return
