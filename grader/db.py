"""The database: engine, sessions, the declarative Base, UTC timestamps, and migrations."""

import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, MetaData, Select, create_engine, event
from sqlalchemy.engine import Engine, Result
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from grader.config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# Stable constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend; SQLite stores it naive and returns it aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


_engines: dict[str, Engine] = {}


def get_engine(url: str) -> Engine:
    """One engine (and connection pool) per database URL and process."""
    if url not in _engines:
        _engines[url] = _create_engine(url)
    return _engines[url]


def after_fork() -> None:
    """In a forked child: drop the parent's pooled connections without closing them under the parent."""
    for engine in _engines.values():
        engine.dispose(close=False)


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            # WAL lets the API read while the grading thread writes; foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    _ping_when_idle(engine)
    return engine


# A pooled connection unused for this long is tested before it is handed out.
IDLE_BEFORE_PING_S = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """pool_pre_ping, but only for connections that have sat in the pool: the database may have
    restarted or dropped them meanwhile. One taken back within the second (a busy API checks its
    connections out hundreds of times a second) is not pinged: in a deadline burst the pings were a
    twentieth of the API's CPU (bench/README.md section 13). If the database goes in that second, the
    statement that finds out fails, and SQLAlchemy then replaces every pooled connection."""

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection, record) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection, record, _proxy) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is None or time.monotonic() - returned_at < IDLE_BEFORE_PING_S:
            return  # just connected, or just used
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool then discards this connection and tries another (or a new one).
            raise DisconnectionError(f"a pooled connection is gone: {exc}") from exc


_factories: dict[str, sessionmaker[Session]] = {}


def session_factory(settings: Settings) -> sessionmaker[Session]:
    """One per database URL and process, as the engine (building one per request cost more than opening
    the session)."""
    url = settings.effective_database_url
    if url not in _factories:
        _factories[url] = sessionmaker(get_engine(url), expire_on_commit=False)
    return _factories[url]


def holds_connection(session: Session) -> bool:
    """Whether ending the session's transaction talks to the database: it holds a connection. One begun
    only by merging remembered rows (grader.remembered) holds none."""
    transaction = session.get_transaction()
    # SQLAlchemy keeps a transaction's connections in `_connections`; it has no public reader.
    return transaction is not None and bool(getattr(transaction, "_connections", True))


def lock_for_write(session: Session, rows: Select, params: dict | None = None) -> Result:
    """Start a transaction that no other one calling this for the same rows overlaps, until it ends;
    returns what `rows` selects (read under the lock: one statement for the lock and a first read).

    For a check and the write that depends on it (submission limits). `rows` is a SELECT ... FOR UPDATE
    (`with_for_update`, OF the table to lock when it joins others), built once by the caller, which
    PostgreSQL locks. SQLite ignores FOR UPDATE, so there the transaction starts with BEGIN IMMEDIATE,
    which takes the database's single write lock at once, waiting up to the busy timeout; what the
    session did before is committed first (a transaction that has read cannot take the write lock later
    without risking a SQLITE_BUSY that no timeout waits out).
    """
    if rows._for_update_arg is None:
        raise ValueError("lock_for_write needs a SELECT ... FOR UPDATE (rows.with_for_update())")
    if session.get_bind().dialect.name == "sqlite":
        session.commit()
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    return session.execute(rows, params)


def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema to `revision` with Alembic: the only thing that creates tables."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    command.upgrade(config, revision)
