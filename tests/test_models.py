"""The schema: built only by the migrations, matching the models; times come back aware UTC."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session

from grader import db
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
