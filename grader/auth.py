"""API tokens: random bearer strings, stored only as their SHA-256."""

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from grader.db import utcnow
from grader.models import ApiToken, User

TOKEN_PREFIX = "grd_"
# last_used_at is a hint for people, not an audit log: write it at most this often per token.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def get_or_create_user(*, session: Session, login: str, role: str, name: str = "") -> User:
    """The user with this login, created when absent; an existing user's role is not changed."""
    user = session.scalar(select(User).where(User.login == login))
    if user is None:
        user = User(login=login, role=role, name=name or login)
        session.add(user)
        session.flush()
    return user


def create_token(*, session: Session, user: User) -> str:
    """A new bearer token for the user; only its digest is stored. The caller commits."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(token_sha256=token_digest(token), user_id=user.id))
    session.flush()
    return token


def user_for_token(*, session: Session, token: str) -> User | None:
    """The user a valid, unrevoked token belongs to, else None."""
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_sha256 == token_digest(token), ApiToken.revoked.is_(False))
    ).first()
    if row is None:
        return None
    api_token, user = row
    now = utcnow()
    if api_token.last_used_at is None or now - api_token.last_used_at > LAST_USED_RESOLUTION:
        api_token.last_used_at = now
        session.commit()
    return user
