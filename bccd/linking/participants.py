"""Who a message is *with* (SPEC §4.3, §5.5): the counterparts the linking rules look at.

``counterparts(direction, sender, to, cc, own, bcc_domain)`` → the distinct addresses,
in header order, that are neither the user's own (login, confirmed alternates) nor at
the Bcc domain or its subdomains. Outgoing: To and Cc. Incoming: the sender, then To
and Cc (fellow recipients of a group mail are counterparts too). Addresses are already
normalized by the parser, so comparison is plain string equality.

``own_addresses(session, user_id)`` → the user's login and confirmed alternates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import bindparam, select, union_all
from sqlalchemy.orm import Session

from bccd.addresses import Addr, domain_of
from bccd.store import direct
from bccd.store.models import Alternate, User

_A = Alternate.__table__
_U = User.__table__
_CONFIRMED = select(_A.c.email).where(_A.c.user_id == bindparam("u"),
                                      _A.c.status == "confirmed")
_OWN = union_all(select(_U.c.email).where(_U.c.id == bindparam("u")), _CONFIRMED)


def at_bcc_domain(address: str, bcc_domain: str) -> bool:
    dom = domain_of(address)
    return dom == bcc_domain or dom.endswith("." + bcc_domain)


def counterparts(
    direction: str,
    sender: Addr,
    to: Sequence[Addr],
    cc: Sequence[Addr],
    own: Iterable[str],
    bcc_domain: str,
) -> list[Addr]:
    mine = set(own)
    addrs = [*to, *cc] if direction == "outgoing" else [sender, *to, *cc]
    out: list[Addr] = []
    seen: set[str] = set()
    for a in addrs:
        if not a.email or a.email in mine or a.email in seen or at_bcc_domain(a.email, bcc_domain):
            continue
        seen.add(a.email)
        out.append(a)
    return out


def own_addresses(session: Session, user_id: int) -> set[str]:
    """The user's login address and confirmed alternates (pending ones are not theirs yet)."""
    return set(direct.execute(session.connection(), _OWN, {"u": user_id}).scalars())


def confirmed_alternates(session: Session, user_id: int) -> set[str]:
    return set(direct.execute(session.connection(), _CONFIRMED, {"u": user_id}).scalars())
