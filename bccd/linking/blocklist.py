"""Blocked addresses and domains per user (SPEC §5.2).

A pattern is ``x@y.com`` (that address exactly, compared normalized) or ``@y.com`` (the
domain and every subdomain of it). ``screen(...)`` decides what a copy's blocked
counterparts mean:

* incoming, sender blocked → ``drop`` (the copy is accepted, counted, not stored);
* outgoing, every counterpart blocked → ``drop`` likewise;
* otherwise the blocked counterparts are simply left out of linking (no person match,
  no person creation).

Blocking is not retroactive: threads already stored keep their links. The CLI
(``bccd block add|list|remove``) manages the list through ``add``/``remove``/``listing``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from bccd.addresses import Addr, AddressError, blocked_matches, normalize_block_pattern
from bccd.errors import Invalid, NotFound
from bccd.store import direct
from bccd.store.models import Blocked, User
from bccd.store.queries import insert_ignore

DROP_COUNTER = "dropped_blocked"


@dataclass(frozen=True, slots=True)
class Screened:
    """The blocklist's verdict on one copy."""

    drop_reason: str | None      # set → accept, count, do not store
    linkable: list[Addr]         # counterparts that may be matched, created and linked


_PATTERNS = select(Blocked.__table__.c.pattern).where(Blocked.__table__.c.user_id == bindparam("u"))


def patterns(session: Session, user_id: int) -> list[str]:
    return direct.execute(session.connection(), _PATTERNS, {"u": user_id}).scalars()


def is_blocked(pats: Sequence[str], address: str) -> bool:
    return any(blocked_matches(p, address) for p in pats)


def screen(
    pats: Sequence[str], *, direction: str, sender: Addr, counterparts: Sequence[Addr]
) -> Screened:
    if not pats:
        return Screened(None, list(counterparts))
    if direction == "incoming" and is_blocked(pats, sender.email):
        return Screened("sender is blocked", [])
    linkable = [a for a in counterparts if not is_blocked(pats, a.email)]
    if direction == "outgoing" and counterparts and not linkable:
        return Screened("every counterpart is blocked", [])
    return Screened(None, linkable)


def normalize(pattern: str) -> str:
    try:
        return normalize_block_pattern(pattern)
    except AddressError as exc:
        raise Invalid(f"pattern must be an address (x@y.com) or a domain (@y.com): {exc}") from None


def add(session: Session, user: User, pattern: str) -> str:
    """Idempotent: adding a pattern twice keeps one."""
    norm = normalize(pattern)
    insert_ignore(session, Blocked, [{"user_id": user.id, "pattern": norm}])
    return norm


def remove(session: Session, user: User, pattern: str) -> str:
    norm = normalize(pattern)
    res = session.execute(delete(Blocked).where(Blocked.user_id == user.id, Blocked.pattern == norm))
    if not getattr(res, "rowcount", 0):
        raise NotFound(f"{norm} is not blocked for {user.email}")
    return norm


def listing(session: Session, user: User) -> list[dict[str, Any]]:
    rows = session.scalars(select(Blocked).where(Blocked.user_id == user.id).order_by(Blocked.id))
    return [{"pattern": b.pattern, "kind": "domain" if b.pattern.startswith("@") else "address",
             "created_at": b.created_at.isoformat()} for b in rows]
