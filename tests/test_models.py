"""The schema: built only by the migrations, matching the models; times come back aware UTC. Pooled
connections: tested before use only when they sat idle."""

import time
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session

from grader import auth, db
from grader.db import Base
from grader.models import Submission, User


@pytest.mark.parametrize("which", ["pg_url", "sqlite_url"])
def test_the_migrations_build_exactly_the_models(request, which):
    url = request.getfixturevalue(which)
    with db.get_engine(url).connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


@pytest.mark.parametrize("which", ["pg_url", "sqlite_url"])
def test_times_are_stored_in_utc_and_read_back_aware(request, which):
    url = request.getfixturevalue(which)
    eastern = timezone(timedelta(hours=-5))
    with Session(db.get_engine(url)) as session:
        user = User(login=f"tz-{which}", role="student")
        session.add(user)
        session.flush()
        at = datetime(2026, 9, 15, 23, 59, tzinfo=eastern)
        session.add(
            Submission(
                id=f"tz-{which}",
                user_id=user.id,
                assignment="a",
                sha256="0" * 64,
                filename="x.zip",
                format="zip",
                submitted_at=at,
            )
        )
        session.commit()
        session.expire_all()
        stored = session.get(Submission, f"tz-{which}").submitted_at
        assert stored == at and stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
        with pytest.raises(Exception, match="naive"):
            session.add(User(login="naive", created_at=datetime(2026, 1, 1)))
            session.flush()
        session.rollback()
        session.delete(session.get(Submission, f"tz-{which}"))
        session.delete(session.get(User, user.id))
        session.commit()


def test_relationships_never_load_behind_your_back(db_session):
    user = User(login="lazy", role="student")
    db_session.add(user)
    db_session.flush()
    db_session.add(
        Submission(
            id="lazy-1",
            user_id=user.id,
            assignment="a",
            sha256="0" * 64,
            filename="x.zip",
            format="zip",
            submitted_at=datetime.now(UTC),
        )
    )
    db_session.commit()
    db_session.expire_all()
    with pytest.raises(InvalidRequestError, match="lazy='raise'"):
        _ = db_session.get(Submission, "lazy-1").user


# ---- pooled connections --------------------------------------------------------------------------------


def _counting_pings(engine, monkeypatch) -> list[int]:
    pings = []
    ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(1) or ping(conn))
    return pings


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_a_pooled_connection_is_pinged_only_after_sitting_idle(pg_url, monkeypatch):
    monkeypatch.setattr(db, "IDLE_BEFORE_PING_S", 0.2)
    engine = db._create_engine(pg_url)
    try:
        pings = _counting_pings(engine, monkeypatch)
        first = _backend_pid(engine)  # a new connection: not pinged
        assert (_backend_pid(engine), len(pings)) == (first, 0)  # taken back at once: not pinged
        time.sleep(0.3)
        assert (_backend_pid(engine), len(pings)) == (first, 1)
    finally:
        engine.dispose()


def test_a_pooled_connection_the_database_dropped_is_replaced_without_an_error(pg_url, monkeypatch):
    monkeypatch.setattr(db, "IDLE_BEFORE_PING_S", 0.2)
    engine = db._create_engine(pg_url)
    try:
        dropped = _backend_pid(engine)
        with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (dropped,))
        time.sleep(0.3)
        with engine.connect() as conn:  # the ping finds it gone; the pool connects again
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != dropped
    finally:
        engine.dispose()


def test_a_lock_for_write_without_for_update_is_refused(db_session):
    # It would lock nothing on PostgreSQL while looking like a lock.
    with pytest.raises(ValueError, match="FOR UPDATE"):
        db.lock_for_write(db_session, select(User).where(User.id == 1))


def test_a_session_holds_a_connection_only_once_it_has_talked_to_the_database(pg_url):
    # grader.remembered merges rows in without a statement: ending that transaction needs no thread.
    with Session(db.get_engine(pg_url)) as session:
        assert not db.holds_connection(session)
        session.merge(auth.detached_copy(User(id=1, login="s1", role="student")), load=False)
        assert session.in_transaction() and not db.holds_connection(session)
        session.scalar(select(User.login))
        assert db.holds_connection(session)
        session.commit()
        assert not db.holds_connection(session)
