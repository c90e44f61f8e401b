"""API tokens: random bearer strings, stored only as their SHA-256; each expires, and can be revoked."""

import hashlib
import random
import secrets
import time
from datetime import timedelta

from sqlalchemy import inspect, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, make_transient_to_detached

from grader import accounts
from grader.config import get_settings
from grader.db import utcnow
from grader.models import ApiToken, User

TOKEN_PREFIX = "grd_"
# last_used_at is a hint for people, not an audit log: write it at most this often per token.
LAST_USED_RESOLUTION = timedelta(minutes=1)

# (database engine, token digest) -> the token's user, as a detached copy, and until when (monotonic) the
# token counts as checked. Every API request checks its token: in a deadline burst that was a thread
# hop, a transaction and a statement per upload (bench/README.md section 15). A token revoked in this
# process stops working at once; one revoked by another process (the CLI, another API process) within
# TOKEN_RECHECK_S. Nothing else of a user that a request reads changes while its tokens live.
_checked: dict[tuple[Engine, str], tuple[User, float]] = {}
TOKEN_RECHECK_S = 1.0


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def get_or_create_user(*, session: Session, login: str, role: str, name: str = "") -> User:
    """The user with this login, created when absent; an existing user's role is not changed."""
    login = accounts.normalize_login(login)
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
    forget_checked()
    return bool(revoked)


def revoke_tokens(*, session: Session, user_id: int) -> int:
    """Revoke every live token of the user; how many. The caller commits."""
    revoked = session.execute(
        update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked.is_(False)).values(revoked=True)
    ).rowcount
    forget_checked()
    return revoked


def forget_checked() -> None:
    """Check every token against the database again: after a revocation in this process. (Before its
    commit too: a token checked in between is remembered for at most TOKEN_RECHECK_S.)"""
    _checked.clear()


def checked_user(*, session: Session, token: str) -> User | None:
    """The user of a token checked within TOKEN_RECHECK_S, put in `session` without a statement; None
    when the token must be looked up (user_for_token)."""
    known = _checked.get((session.get_bind(), token_digest(token)))
    if known is None or known[1] <= time.monotonic():
        return None
    return session.merge(known[0], load=False)


def user_for_token(*, session: Session, token: str) -> User | None:
    """The user an unrevoked, unexpired token belongs to, else None."""
    user = checked_user(session=session, token=token)
    if user is not None:
        return user
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
    # Each for its own share of the second: tokens first used together (a burst's opening) are not all
    # checked again together, each such check waiting its turn before its upload's (bench/README.md 15).
    for_s = random.uniform(TOKEN_RECHECK_S / 2, TOKEN_RECHECK_S)
    _remember(session, token, user, for_s=min(for_s, (api_token.expires_at - now).total_seconds()))
    return user


def _remember(session: Session, token: str, user: User, *, for_s: float) -> None:
    # A copy of its columns: the request may change its own user, and many requests share the entry.
    copy = User(**{column.key: getattr(user, column.key) for column in inspect(User).column_attrs})
    make_transient_to_detached(copy)
    _checked[(session.get_bind(), token_digest(token))] = (copy, time.monotonic() + for_s)
