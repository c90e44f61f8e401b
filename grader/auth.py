"""API tokens: random bearer strings, stored only as their SHA-256; each expires, and can be revoked."""

import hashlib
import math
import secrets
import time
from collections.abc import Collection
from datetime import timedelta

from sqlalchemy import Connection, Engine, bindparam, inspect, select, update
from sqlalchemy.orm import Session, make_transient_to_detached

from grader import accounts
from grader.config import Settings, get_settings
from grader.db import utcnow
from grader.models import ApiToken, User
from grader.remembered import Entry, Memory

TOKEN_PREFIX = "grd_"
# last_used_at is a hint for people, not an audit log: write it at most this often per token.
LAST_USED_RESOLUTION = timedelta(minutes=1)

# The tokens this process checked lately (grader.remembered): the user of each, by the token's digest.
tokens: Memory[User] = Memory()


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
    commit too: a token checked in between is remembered for at most remembered.RECHECK_S.)"""
    tokens.forget()


def checked_user(*, session: Session, token: str) -> User | None:
    """The user of a token checked lately, put in `session` without a statement; None when the token
    must be looked up (user_for_token)."""
    return tokens.take(session, token_digest(token))


def recheck_remembered(settings: Settings) -> None:
    """Check the tokens this process remembers for the settings' database again, in one statement (see
    grader.remembered); run by the API every half RECHECK_S (grader.main). Those used since their
    last_used_at was written get it written again, every LAST_USED_RESOLUTION at most."""
    tokens.recheck(settings, _still_valid_tokens)


def _still_valid_tokens(session: Session, mine: dict[str, Entry[User]]) -> set[str]:
    now = time.monotonic()
    used = [d for d, known in mine.items() if known.used - known.noted > LAST_USED_RESOLUTION.total_seconds()]
    valid = set(
        session.scalars(
            select(ApiToken.token_sha256).where(
                ApiToken.token_sha256.in_(list(mine)),
                ApiToken.revoked.is_(False),
                ApiToken.expires_at > utcnow(),
            )
        )
    )
    if used:
        session.execute(update(ApiToken).where(ApiToken.token_sha256.in_(used)).values(last_used_at=utcnow()))
        session.commit()
        for digest in used:
            mine[digest].noted = now
    return valid


# Built once, as the upload path's statements are (grader.submissions).
_VALID_TOKENS = (
    select(User, ApiToken.token_sha256, ApiToken.expires_at, ApiToken.last_used_at)
    .join(ApiToken, User.id == ApiToken.user_id)
    .where(
        ApiToken.token_sha256.in_(bindparam("digests", expanding=True)),
        ApiToken.revoked.is_(False),
        ApiToken.expires_at > bindparam("now"),
    )
)


def user_for_token(*, session: Session, token: str) -> User | None:
    """The user an unrevoked, unexpired token belongs to, else None (read_tokens when not remembered)."""
    digest = token_digest(token)
    user = tokens.take(session, digest)
    if user is None:
        copy = read_tokens(session.get_bind(), [digest]).get(digest)
        user = None if copy is None else session.merge(copy, load=False)
    return user


def read_tokens(bind: Engine | Connection, digests: Collection[str]) -> dict[str, User]:
    """The users of those tokens (by digest) that are unrevoked and unexpired, in one statement of a
    session of its own: detached copies, remembered (each request merges its own). A burst's first
    uses of 50 tokens are read together (grader.routes.forms.in_turn_together). Their last use is
    written by the next recheck_remembered, within half a second, not here: in a deadline burst each
    token's first upload would otherwise wait for that write and its commit."""
    now, found = utcnow(), {}
    with Session(bind) as session:
        for user, digest, expires_at, last_used_at in session.execute(
            _VALID_TOKENS, {"digests": list(digests), "now": now}
        ):
            written = last_used_at is not None and now - last_used_at <= LAST_USED_RESOLUTION
            found[digest] = copy = detached_copy(user)
            tokens.keep(
                session,
                digest,
                copy,
                expires_in=(expires_at - now).total_seconds(),
                noted=None if written else -math.inf,
            )
    return found


def detached_copy(user: User) -> User:
    """A copy of the user's columns, detached and clean, for grader.remembered."""
    copy = User(**{column.key: getattr(user, column.key) for column in inspect(User).column_attrs})
    make_transient_to_detached(copy)
    return copy
