"""People on the web: roster import, login secrets, password hashing, browser sessions and CSRF.

Secrets are hashed with scrypt from the standard library (per-user salt) and compared in constant time.
A browser session is a random token in an HttpOnly cookie; the database keeps only its SHA-256, so a
copy of the database cannot be replayed as a cookie, and signing out deletes the row.
"""

import csv
import hashlib
import hmac
import io
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, bindparam, delete, inspect, or_, select, update
from sqlalchemy.orm import Session, make_transient_to_detached

from grader import auth, csv_export
from grader.config import Settings
from grader.models import User, WebSession
from grader.remembered import Entry, Memory

# scrypt cost: 2**14 * 8 * 128 = 16 MiB and ~50 ms a check; enough for random secrets of 80 bits.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
# No 0/o, 1/l/i: secrets are read off a mail merge and typed by hand.
SECRET_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
SESSION_LIFETIME = timedelta(days=14)

# The sign-in sessions this process checked lately (grader.remembered), by the cookie's digest. Every
# page and every upload through the form checks one.
signed_in: Memory[WebSession] = Memory()


# ---- secrets ---------------------------------------------------------------------------------------


def new_secret() -> str:
    """A random login secret like `k7fq-9xm2-tp4d-b3wn` (about 79 bits)."""
    chars = "".join(secrets.choice(SECRET_ALPHABET) for _ in range(16))
    return "-".join(chars[i : i + 4] for i in range(0, 16, 4))


def hash_secret(secret: str) -> str:
    """A self-describing scrypt hash: `scrypt$n$r$p$salt$hash` (hex)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str | None) -> bool:
    """True if `secret` matches the stored hash; constant-time, and False for any malformed hash."""
    try:
        scheme, n, r, p, salt, expected = (stored or "").split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            secret.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected) // 2
        )
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), expected)


# A fixed hash to check against when the login does not exist, so that the response time does not
# tell an attacker which student ids are on the roster.
_DUMMY_HASH = hash_secret(new_secret())


def normalize_login(login: str) -> str:
    """The one spelling of a student id or login: stored so, and applied to every id given to us."""
    return login.strip().lower()


def find(session: Session, *, login: str, role: str | None = None) -> User | None:
    """The account with this login (in any spelling), of this role if one is given; None if none."""
    query = select(User).where(User.login == normalize_login(login))
    return session.scalar(query if role is None else query.where(User.role == role))


def authenticate(session: Session, *, login: str, secret: str) -> User | None:
    """The user with this login and secret, or None (unknown login, no secret yet, wrong secret)."""
    user = find(session, login=login)
    if user is None or user.secret_hash is None:
        verify_secret(secret, _DUMMY_HASH)
        return None
    return user if verify_secret(secret.strip(), user.secret_hash) else None


MAX_FAILED_SIGNINS = 10
SIGNIN_LOCKOUT = timedelta(minutes=15)


class LockedOut(Exception):
    """Too many wrong secrets in a row for this login; `until` is when sign-in opens again."""

    def __init__(self, until: datetime):
        self.until = until
        super().__init__(f"sign-in locked until {until.isoformat()}")


def sign_in(session: Session, *, login: str, secret: str, now: datetime | None = None) -> User | None:
    """authenticate(), but MAX_FAILED_SIGNINS wrong secrets in a row lock the login for SIGNIN_LOCKOUT.

    The count lives in the users row, so it holds across API processes. Each attempt takes its
    place in the count (one UPDATE ... RETURNING, committed at once) before its secret is checked:
    parallel guesses cannot all read a count under the limit, so at most MAX_FAILED_SIGNINS secrets
    are checked before the lock. Even the right secret waits out a lock: otherwise the lock would
    only tell a guesser when they are right.
    """
    now = now or datetime.now(UTC)
    login = normalize_login(login)
    unlocked = or_(User.signin_locked_until.is_(None), User.signin_locked_until <= now)
    attempt = session.execute(
        update(User)
        .where(User.login == login, unlocked)
        .values(failed_signins=User.failed_signins + 1)
        .returning(User.id, User.failed_signins, User.secret_hash)
        .execution_options(synchronize_session=False)
    ).first()
    session.commit()
    if attempt is None:  # locked, or no such login
        locked = session.scalar(select(User.signin_locked_until).where(User.login == login))
        if locked is not None:
            raise LockedOut(locked)
        verify_secret(secret, _DUMMY_HASH)  # as slow as a known login: ids cannot be probed by timing
        return None
    if attempt.failed_signins > MAX_FAILED_SIGNINS:
        # Attempts still being checked have used up the count: lock now, unless one of them did.
        raise LockedOut(_lock(session, user_id=attempt.id, now=now))
    if attempt.secret_hash is not None and verify_secret(secret.strip(), attempt.secret_hash):
        session.execute(
            update(User)
            .where(User.id == attempt.id)
            .values(failed_signins=0, signin_locked_until=None)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        return session.get(User, attempt.id, populate_existing=True)
    if attempt.secret_hash is None:
        verify_secret(secret, _DUMMY_HASH)
    if attempt.failed_signins >= MAX_FAILED_SIGNINS:
        _lock(session, user_id=attempt.id, now=now)
    return None


def _lock(session: Session, *, user_id: int, now: datetime) -> datetime:
    """Lock the login for SIGNIN_LOCKOUT unless it is locked already; when the lock ends. Commits."""
    session.execute(
        update(User)
        .where(User.id == user_id, or_(User.signin_locked_until.is_(None), User.signin_locked_until <= now))
        .values(failed_signins=0, signin_locked_until=now + SIGNIN_LOCKOUT)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return session.scalar(select(User.signin_locked_until).where(User.id == user_id))


# ---- roster ----------------------------------------------------------------------------------------


class RosterError(Exception):
    """The roster file cannot be imported; the message says which column or line is wrong."""


@dataclass(frozen=True)
class RosterRow:
    line: int
    login: str
    name: str
    email: str


# Header names as LMS exports spell them (lower-cased, spaces collapsed), best first. Canvas's plain
# "ID" is its internal number, so it counts only when nothing better is there.
LOGIN_HEADERS = (
    "student id",
    "student_id",
    "studentid",
    "sis user id",
    "id number",
    "idnumber",
    "student number",
    "login",
    "username",
    "sis login id",
    "id",
)
NAME_HEADERS = ("name", "full name", "student name", "student")
FIRST_HEADERS = ("first name", "firstname", "given name")
LAST_HEADERS = ("surname", "last name", "lastname", "family name")
EMAIL_HEADERS = ("email", "email address", "e-mail", "e-mail address", "mail")


def _key(header: str) -> str:
    return " ".join(header.replace("\ufeff", "").strip().lower().split())


def _find(columns: dict[str, int], names: tuple[str, ...]) -> int | None:
    return next((columns[name] for name in names if name in columns), None)


def parse_roster(text: str) -> list[RosterRow]:
    """Rows of a Moodle- or Canvas-style CSV (or semicolon/tab separated); RosterError if unusable."""
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    header = next(reader, None)
    if not header:
        raise RosterError("the roster is empty")
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        columns.setdefault(_key(name), index)
    login_col = _find(columns, LOGIN_HEADERS)
    name_col = _find(columns, NAME_HEADERS)
    first_col, last_col = _find(columns, FIRST_HEADERS), _find(columns, LAST_HEADERS)
    email_col = _find(columns, EMAIL_HEADERS)
    if login_col is None:
        raise RosterError(
            "no student id column; expected one of: Student ID, SIS User ID, ID number, Login (found: "
            + ", ".join(header)
            + ")"
        )
    if name_col is None and first_col is None and last_col is None:
        raise RosterError("no name column; expected Name, or First name and Surname/Last name")

    def cell(row: list[str], col: int | None) -> str:
        return row[col].strip() if col is not None and col < len(row) else ""

    rows, seen, problems = [], {}, []
    for line, row in enumerate(reader, start=2):
        login = normalize_login(cell(row, login_col))
        # Canvas puts a "Points Possible" row (no student id) under the header; blank lines are noise too.
        if not login or "points possible" in " ".join(row).lower():
            continue
        if name_col is not None:
            name = cell(row, name_col)
            # Canvas writes "Surname, First"; show people the way they write their own name.
            if name_col == columns.get("student") and name.count(",") == 1:
                last, first = (part.strip() for part in name.split(","))
                name = f"{first} {last}"
        else:
            name = " ".join(part for part in (cell(row, first_col), cell(row, last_col)) if part)
        if any(ch.isspace() for ch in login) or len(login) > 64:
            problems.append(f"line {line}: {login!r} is not a usable student id")
            continue
        if login in seen:
            problems.append(f"line {line}: student id {login} is also on line {seen[login]}")
            continue
        seen[login] = line
        rows.append(RosterRow(line=line, login=login, name=name or login, email=cell(row, email_col)))
    if problems:
        raise RosterError("; ".join(problems))
    if not rows:
        raise RosterError("the roster has a header but no students")
    return rows


@dataclass
class ImportReport:
    created: list[tuple[RosterRow, str]] = field(default_factory=list)  # (row, the new plain secret)
    updated: list[RosterRow] = field(default_factory=list)
    unchanged: list[RosterRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # why a row was not imported


def import_roster(session: Session, rows: list[RosterRow]) -> ImportReport:
    """Create new students with a fresh secret, update names/emails of known ones; the caller commits.

    Existing secrets, roles and submissions are never touched, so importing the same roster twice
    (or an updated one mid-term) is safe.
    """
    report = ImportReport()
    existing = {
        user.login: user
        for user in session.scalars(select(User).where(User.login.in_([row.login for row in rows])))
    }
    for row in rows:
        user = existing.get(row.login)
        if user is None:
            secret = new_secret()
            session.add(
                User(
                    login=row.login,
                    name=row.name,
                    email=row.email,
                    role="student",
                    secret_hash=hash_secret(secret),
                )
            )
            report.created.append((row, secret))
        elif user.role != "student":
            report.skipped.append(f"line {row.line}: {row.login} is an instructor, not changed")
        elif (user.name, user.email) != (row.name, row.email or user.email):
            # A roster without emails must not erase the ones we have.
            user.name, user.email = row.name, row.email or user.email
            report.updated.append(row)
        else:
            report.unchanged.append(row)
    session.flush()
    if report.updated:  # the remembered copies of these users are read afresh (grader.remembered)
        signed_in.forget()
        auth.forget_checked()
    return report


def secrets_csv(created: list[tuple[RosterRow, str]]) -> str:
    """The mail-merge file for new accounts: login, name, email, secret."""
    rows = [["login", "name", "email", "secret"], *([r.login, r.name, r.email, s] for r, s in created)]
    return "".join(csv_export.lines(rows, lineterminator="\n"))


class AccountExists(Exception):
    pass


def create_instructor(
    session: Session, *, login: str, name: str, email: str = "", role: str = "instructor"
) -> str:
    """Add an instructor (or, with role="ta", a TA) and return their new plain secret; AccountExists if
    the login is taken."""
    if role not in ("instructor", "ta"):
        raise ValueError(f"{role!r} is not a staff role")
    login = normalize_login(login)
    if not login or any(ch.isspace() for ch in login):
        raise ValueError(f"{login!r} is not a usable login")
    if find(session, login=login) is not None:
        raise AccountExists(f"{login} already exists")
    secret = new_secret()
    session.add(User(login=login, name=name, email=email, role=role, secret_hash=hash_secret(secret)))
    session.flush()
    return secret


class NoSuchAccount(Exception):
    pass


def reset_secret(session: Session, *, login: str) -> str:
    """Give an account a new secret, sign out its browsers and revoke its API tokens; returns the new
    secret. The caller commits."""
    user = find(session, login=login)
    if user is None:
        raise NoSuchAccount(f"no account with the login {login!r}")
    secret = new_secret()
    user.secret_hash = hash_secret(secret)
    user.failed_signins, user.signin_locked_until = 0, None
    # Whoever holds the old secret may be signed in with it, or have made a token: the reset ends both.
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    signed_in.forget()
    auth.revoke_tokens(session=session, user_id=user.id)
    session.flush()
    return secret


# ---- browser sessions and CSRF ------------------------------------------------------------------------


def open_session(session: Session, user: User, *, now: datetime | None = None) -> str:
    """Start a browser session for the user and commit; returns the cookie value."""
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            token_hash=auth.token_digest(token),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    session.commit()
    return token


def load_session(session: Session, token: str | None) -> WebSession | None:
    """The live session for a cookie value, with its user; None if unknown or expired. From this
    process's memory when it checked the cookie lately (grader.remembered), else read (read_sign_ins)."""
    if not token:
        return None
    web = remembered_session(session, token)
    if web is None:
        digest = auth.token_digest(token)
        copy = read_sign_ins(session.get_bind(), [digest]).get(digest)
        web = None if copy is None else session.merge(copy, load=False)
    return web


# Built once, as the upload path's statements are (grader.submissions); the user comes joined.
_LIVE_SIGN_INS = select(WebSession).where(
    WebSession.token_hash.in_(bindparam("digests", expanding=True)), WebSession.expires_at > bindparam("now")
)


def read_sign_ins(bind: Engine | Connection, digests: Collection[str]) -> dict[str, WebSession]:
    """The live sign-in sessions among those cookies (by digest), with their users, in one statement of
    a session of its own: detached copies, remembered (each request merges its own). A burst's first
    page loads are read together (grader.routes.forms.in_turn_together)."""
    now, found = datetime.now(UTC), {}
    with Session(bind) as session:
        for web in session.scalars(_LIVE_SIGN_INS, {"digests": list(digests), "now": now}):
            expires = web.expires_at if web.expires_at.tzinfo else web.expires_at.replace(tzinfo=UTC)
            found[web.token_hash] = copy = _detached_copy(web)
            signed_in.keep(session, web.token_hash, copy, expires_in=(expires - now).total_seconds())
    return found


def remembered_session(session: Session, token: str | None) -> WebSession | None:
    """The session for a cookie this process checked lately, put in `session` with its user without a
    statement; None when it must be read (load_session)."""
    return signed_in.take(session, auth.token_digest(token)) if token else None


def recheck_sessions(settings: Settings) -> None:
    """Check the sign-in sessions this process remembers for the settings' database again, in one
    statement: those signed out, ended by a reset secret or expired are forgotten (grader.remembered).
    Run by the API every half RECHECK_S (grader.main)."""
    signed_in.recheck(settings, _live_sessions)


def _live_sessions(session: Session, mine: dict[str, Entry[WebSession]]) -> set[str]:
    live = select(WebSession.token_hash).where(
        WebSession.token_hash.in_(list(mine)), WebSession.expires_at > datetime.now(UTC)
    )
    return set(session.scalars(live))


def _detached_copy(web: WebSession) -> WebSession:
    copy = WebSession(**{column.key: getattr(web, column.key) for column in inspect(WebSession).column_attrs})
    copy.user = auth.detached_copy(web.user)
    make_transient_to_detached(copy)
    return copy


def close_session(session: Session, token: str | None) -> None:
    """Forget a browser session (sign-out), and any expired ones while we are here; commits."""
    if token:
        session.execute(delete(WebSession).where(WebSession.token_hash == auth.token_digest(token)))
    session.execute(delete(WebSession).where(WebSession.expires_at < datetime.now(UTC)))
    session.commit()
    signed_in.forget()  # here at once; other processes within remembered.RECHECK_S


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected.encode(), given.encode())
