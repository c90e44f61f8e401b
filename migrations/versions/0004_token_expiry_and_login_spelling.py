"""token expiry, and one spelling of logins: api_tokens.expires_at; logins lower-cased and stripped

Tokens made before this revision expire 180 days (the default token_lifetime_days) after they were
created. A login spelled otherwise than grader.accounts.normalize_login spells it (`grader token
create --student S123` kept capitals) is respelled, unless that spelling is taken by another
account: those two accounts must be merged by hand, and the migration says which.

Revision ID: 0004
Revises: 0003
"""

import logging
from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

import grader.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TOKEN_LIFETIME = timedelta(days=180)
log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", grader.db.UTCDateTime(timezone=True), nullable=True))
    connection = op.get_bind()
    tokens = sa.table(
        "api_tokens",
        sa.column("id", sa.Integer()),
        sa.column("created_at", grader.db.UTCDateTime()),
        sa.column("expires_at", grader.db.UTCDateTime()),
    )
    for token_id, created_at in connection.execute(sa.select(tokens.c.id, tokens.c.created_at)).all():
        connection.execute(
            tokens.update()
            .where(tokens.c.id == token_id)
            .values(expires_at=(created_at or grader.db.utcnow()) + OLD_TOKEN_LIFETIME)
        )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.alter_column(
            "expires_at", existing_type=grader.db.UTCDateTime(timezone=True), nullable=False
        )

    users = sa.table("users", sa.column("id", sa.Integer()), sa.column("login", sa.String()))
    rows = connection.execute(sa.select(users.c.id, users.c.login)).all()
    taken = {login for _, login in rows}
    for user_id, login in rows:
        spelled = login.strip().lower()  # grader.accounts.normalize_login, as of this revision
        if spelled == login:
            continue
        if spelled in taken:
            log.warning("users %r and %r are one person: merge them by hand", login, spelled)
            continue
        connection.execute(users.update().where(users.c.id == user_id).values(login=spelled))
        taken.discard(login)
        taken.add(spelled)


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
