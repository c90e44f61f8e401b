"""API tokens: random bearer strings, stored only as their SHA-256; each expires, and can be revoked."""

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from grader.accounts import normalize_login
from grader.config import get_settings
from grader.db import utcnow
from grader.models import ApiToken, User

TOKEN_PREFIX = "grd_"
# last_used_at is a hint for people, not an audit log: write it at most this often per token.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def get_or_create_user(*, session: Session, login: str, role: str, name: str = "") -> User:
    """The user with this login, created when absent; an existing user's role is not changed."""
    login = normalize_login(login)
    if not login or any(ch.isspace() for ch in login):
        raise ValueError(f"{login!r} is not a usable login")
    user = session.scalar(select(User).where(User.login == login))
    if user is None:
        user = User(login=login, role=role, name=name or login)
        session.add(user)
        session.flush()
    return user


def create_token(*, session: Session, user: User, lifetime: timedelta | None = None) -> str:
    """A new bearer token for the user, valid for `lifetime` (default: the token_lifetime_days
    setting); only its digest is stored. The caller commits."""
    if lifetime is None:
        lifetime = timedelta(days=get_settings().token_lifetime_days)
    if lifetime <= timedelta(0):
        raise ValueError("a token's lifetime must be positive")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(token_sha256=token_digest(token), user_id=user.id, expires_at=utcnow() + lifetime))
    session.flush()
    return token


def revoke_token(*, session: Session, token: str) -> bool:
    """Revoke one token by its value, and commit; False if no such token."""
    revoked = session.execute(
        update(ApiToken).where(ApiToken.token_sha256 == token_digest(token)).values(revoked=True)
    ).rowcount
    session.commit()
    return bool(revoked)


def revoke_tokens(*, session: Session, user_id: int) -> int:
    """Revoke every live token of the user; how many. The caller commits."""
    return session.execute(
        update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked.is_(False)).values(revoked=True)
    ).rowcount


def user_for_token(*, session: Session, token: str) -> User | None:
    """The user an unrevoked, unexpired token belongs to, else None."""
    now = utcnow()
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(
            ApiToken.token_sha256 == token_digest(token),
            ApiToken.revoked.is_(False),
            ApiToken.expires_at > now,
        )
    ).first()
    if row is None:
        return None
    api_token, user = row
    if api_token.last_used_at is None or now - api_token.last_used_at > LAST_USED_RESOLUTION:
        api_token.last_used_at = now
        session.commit()
    return user
