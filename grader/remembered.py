"""What an API process remembers of the credentials it checked lately: API tokens (grader.auth) and
sign-in cookies (grader.accounts).

Every request checks one. In a deadline burst that was a thread hop, a transaction and a statement per
upload (bench/README.md sections 15 and 16). A remembered credential is taken from memory for
RECHECK_S after it was last checked; the API checks all it remembers again, one statement per kind,
every half of that (grader.main), and forgets those unused for IDLE_S. So a credential revoked or
ended by another process (the CLI, another API process) stops working there within RECHECK_S; one
revoked or ended in this process, at once. None is remembered past its own expiry.

What is remembered is a detached copy of the rows a request reads (the user; the sign-in session with
its user), put into each request's session with merge(load=False): no statement. A user's name and
email changed by a roster import show at once in the process that imported (it forgets), and in the
others when the copy is next made, after the user was idle for IDLE_S; nothing else of a user changes.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from grader.config import Settings
from grader.db import get_engine, session_factory

RECHECK_S = 1.0
IDLE_S = 60.0

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    copy: T  # detached: requests share it, and each gets its own instance by merge
    until: float  # time.monotonic(): taken from memory until then
    expires: float  # time.monotonic() at the credential's own expiry
    used: float
    noted: float  # when the credential's use was last written (tokens' last_used_at)


class Memory(Generic[T]):
    """One kind of credential, keyed by the database's engine and the credential's digest."""

    def __init__(self) -> None:
        self._entries: dict[tuple[Engine, str], Entry[T]] = {}

    def take(self, session: Session, digest: str) -> T | None:
        """The remembered rows put in `session` without a statement; None when they must be read."""
        entry, now = self._entries.get((session.get_bind(), digest)), time.monotonic()
        if entry is None or entry.until <= now:
            return None
        entry.used = now
        return session.merge(entry.copy, load=False)

    def keep(
        self, session: Session, digest: str, copy: T, *, expires_in: float, noted: float | None = None
    ) -> None:
        """Remember a detached copy just checked in `session`, expiring in `expires_in` seconds (`noted`:
        when its use was last written, if not now)."""
        now = time.monotonic()
        expires = now + expires_in
        self._entries[(session.get_bind(), digest)] = Entry(
            copy,
            until=min(now + RECHECK_S, expires),
            expires=expires,
            used=now,
            noted=now if noted is None else noted,
        )

    def forget(self) -> None:
        """Check every credential against the database again: after a revocation in this process."""
        self._entries.clear()

    def recheck(
        self, settings: Settings, still_valid: Callable[[Session, dict[str, Entry[T]]], set[str]]
    ) -> None:
        """Check the entries for the settings' database again: `still_valid` reads, in one session,
        which of them (by digest) still are. Those are kept for another RECHECK_S when used within
        IDLE_S; the others are forgotten."""
        engine = get_engine(settings.effective_database_url)
        mine = {digest: entry for (bound, digest), entry in list(self._entries.items()) if bound is engine}
        if not mine:
            return
        with session_factory(settings)() as session:
            valid = still_valid(session, mine)
        now = time.monotonic()
        for digest, entry in mine.items():
            if digest in valid and now - entry.used < IDLE_S:
                entry.until = min(now + RECHECK_S, entry.expires)
            else:
                self._entries.pop((engine, digest), None)

    def __len__(self) -> int:
        return len(self._entries)
