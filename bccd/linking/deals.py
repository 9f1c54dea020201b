"""Deals, leads and projects (SPEC §5.6) — one rule for all three kinds ("items").

``apply(session, thread, owner, pinned=None, pinned_since=None)`` brings one thread's
item link and suggestions up to date. In order:

1. **Pinned**: a copy sent to a per-entity address links that item (``how = address``),
   replacing whatever item link the thread had — it is the user's latest explicit
   choice. A *redelivered* pinned copy (``pinned_since`` = when the message was first
   stored) does not undo a manual choice made after it.
2. **Kept**: a thread that already has an item link keeps it (auto, address or manual);
   so does a thread on which the user linked or unlinked an item by hand
   (``Thread.manual_items``): automatic linking never overrides a manual decision.
3. **Rule**: the candidates are the open items of the thread's linked persons, deals,
   leads and projects counted together. Exactly one → linked (``how = auto``) in
   ``auto`` mode; otherwise nothing is linked and the candidates are the thread's
   suggestions (in ``manual`` mode a single candidate is a suggestion too: only persons
   are linked automatically there). Won/lost/archived/closed items are never candidates.

Decisions where the SPEC is silent:

* An item belongs to a person through its ``person_id`` only. An item that names just an
  organization (or a project that names just a deal) is not "the person's": counting the
  organization's items too would make every colleague's thread at a busy customer
  ambiguous and would change links when an organization is edited. Such items are
  linked by their address or by hand.
* Candidates are limited to items the thread's owner may see (SPEC §1): automatic
  linking never attaches someone's private deal to another user's mail.
* A pinned item is linked whatever its status: the address is an explicit choice.

The at-most-one rule is also a partial unique index on ``links`` (``thread_id`` where the
kind is an item kind), so concurrent writers cannot break it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import and_, bindparam, delete, literal_column, null, select, union_all, update
from sqlalchemy.orm import Session

from bccd.linking import visibility
from bccd.linking.records import OwnerLike, ThreadLike
from bccd.store import direct, events
from bccd.store.models import Item, Link, Suggestion
from bccd.store.queries import FixedIn, insert_ignore

ITEM_KINDS = ("deal", "lead", "project")
MAX_CANDIDATES = 50
_PRIORITY = {"manual": 0, "address": 1, "auto": 2, "thread": 3}


class ItemRef(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def kind(self) -> str: ...


_I = Item.__table__
_L = Link.__table__
# ``company_id + 0``: the persons' index (person_id, status) drives these lookups, never the
# company's (SQLite without statistics would otherwise read every item of the company)
_OPEN = select(_I.c.id, _I.c.kind).where((_I.c.company_id + 0) == bindparam("c"),
                                         _I.c.status == "open")
_VISIBLE = visibility.owner_or_company(_I.c, bindparam("o"))
# candidates(): all open items of the persons (admins), or those the owner may see
_CANDIDATES_ALL = FixedIn(_I.c.person_id, "p", lambda in_: _OPEN.where(in_)
                          .order_by(_I.c.id).limit(MAX_CANDIDATES))
_CANDIDATES_VISIBLE = FixedIn(_I.c.person_id, "p", lambda in_: _OPEN.where(in_, _VISIBLE)
                              .order_by(_I.c.id).limit(MAX_CANDIDATES))
# the same for the persons linked to thread :t, in one statement
_THREAD_OPEN = _OPEN.join_from(_I, _L, and_(_L.c.thread_id == bindparam("t"),
                                            _L.c.kind == "person",
                                            _L.c.entity_id == _I.c.person_id))
_THREAD_CANDIDATES_ALL = _THREAD_OPEN.order_by(_I.c.id).limit(MAX_CANDIDATES)
_THREAD_CANDIDATES_VISIBLE = _THREAD_OPEN.where(_VISIBLE).order_by(_I.c.id).limit(MAX_CANDIDATES)

_S = Suggestion.__table__
_SUGGESTIONS = select(_S.c.id, _S.c.kind, _S.c.entity_id).where(_S.c.thread_id == bindparam("t"))
_CLEAR_SUGGESTIONS = delete(Suggestion).where(Suggestion.thread_id == bindparam("t"))


def _state(candidates: Any) -> Any:
    """``apply``'s one read of a thread: its item links, its suggestions and the candidate
    items of its persons, rows tagged ``link`` / ``suggestion`` / ``candidate``."""
    cand = candidates.subquery()
    return union_all(
        select(literal_column("'link'").label("tag"), _L.c.id, _L.c.kind, _L.c.entity_id,
               _L.c.how, _L.c.created_at)
        .where(_L.c.thread_id == bindparam("t"), _L.c.kind.in_(direct.literals(ITEM_KINDS))),
        select(literal_column("'suggestion'"), _S.c.id, _S.c.kind, _S.c.entity_id, null(), null())
        .where(_S.c.thread_id == bindparam("t")),
        select(literal_column("'candidate'"), cand.c.id, cand.c.kind, null(), null(), null()),
    )


_STATE_ALL = _state(_THREAD_CANDIDATES_ALL)
_STATE_VISIBLE = _state(_THREAD_CANDIDATES_VISIBLE)


def item_links(session: Session, thread_id: int) -> list[Link]:
    return list(session.scalars(
        select(Link).where(Link.thread_id == thread_id, Link.kind.in_(ITEM_KINDS))
        .order_by(Link.id)
    ))


def candidates(session: Session, owner: OwnerLike, persons: Sequence[int]) -> list[Any]:
    """Open items of ``persons`` the owner may see, oldest first (at most 50): rows with
    ``id`` and ``kind``."""
    if not persons:
        return []
    stmt, params = (_CANDIDATES_ALL if owner.is_admin else _CANDIDATES_VISIBLE)(persons)
    params["c"] = owner.company_id
    if not owner.is_admin:
        params["o"] = owner.id
    return direct.execute(session.connection(), stmt, params)


def set_item_link(session: Session, thread_id: int, kind: str, item_id: int, how: str) -> None:
    """Make (kind, item_id) the thread's only item link, recorded as ``how``."""
    events.item_linking(session, thread_id, kind, item_id, how)  # thread.linked, if new
    session.execute(delete(Link).where(
        Link.thread_id == thread_id, Link.kind.in_(ITEM_KINDS),
        ~((Link.kind == kind) & (Link.entity_id == item_id))))
    insert_ignore(session, Link, [{"thread_id": thread_id, "kind": kind, "entity_id": item_id,
                                   "how": how}])
    session.execute(update(Link).where(
        Link.thread_id == thread_id, Link.kind == kind, Link.entity_id == item_id,
        Link.how != how).values(how=how, created_at=dt.datetime.now(dt.UTC)))
    clear_suggestions(session, thread_id)


def clear_suggestions(session: Session, thread_id: int) -> None:
    session.flush()
    direct.execute(session.connection(), _CLEAR_SUGGESTIONS, {"t": thread_id})


def set_suggestions(session: Session, thread_id: int, items: Sequence[ItemRef], *,
                    current: Sequence[Any] | None = None) -> None:
    """Make ``items`` the thread's suggestions; ``current``: its suggestion rows (``id``,
    ``kind``, ``entity_id``) when the caller has just read them."""
    if not items:
        if current is None or current:
            clear_suggestions(session, thread_id)
        return
    keep = {(i.kind, i.id) for i in items}
    if current is None:
        session.flush()
        current = direct.execute(session.connection(), _SUGGESTIONS, {"t": thread_id}).all()
    stale = [s.id for s in current if (s.kind, s.entity_id) not in keep]
    if stale:
        session.execute(delete(Suggestion).where(Suggestion.id.in_(stale)))
    have = {(s.kind, s.entity_id) for s in current}
    insert_ignore(session, Suggestion, [{"thread_id": thread_id, "kind": i.kind, "entity_id": i.id}
                                        for i in items if (i.kind, i.id) not in have])


def apply(
    session: Session,
    thread: ThreadLike,
    owner: OwnerLike,
    *,
    pinned: tuple[str, int] | None = None,
    pinned_since: dt.datetime | None = None,
    fresh_persons: Sequence[int] | None = None,
) -> None:
    """``fresh_persons``: the thread was created by this copy, which linked it to these
    persons — so it has no item link nor suggestion yet and nothing needs reading back."""
    if fresh_persons is not None:
        _apply_fresh(session, thread, owner, pinned, fresh_persons)
        return
    session.flush()
    params: dict[str, Any] = {"c": owner.company_id, "t": thread.id}
    if owner.is_admin:
        stmt = _STATE_ALL
    else:
        stmt, params["o"] = _STATE_VISIBLE, owner.id
    existing: list[Any] = []
    current: list[Any] = []
    found: list[Any] = []
    for row in direct.execute(session.connection(), stmt, params):
        (existing if row.tag == "link" else current if row.tag == "suggestion"
         else found).append(row)
    if pinned is not None:
        overruled = pinned_since is not None and any(
            link.how == "manual" and link.created_at > pinned_since for link in existing)
        if not overruled:
            set_item_link(session, thread.id, pinned[0], pinned[1], "address")
            return
    if existing:
        if current:
            clear_suggestions(session, thread.id)
        return
    if len(found) == 1 and owner.linking_mode == "auto" and not thread.manual_items:
        set_item_link(session, thread.id, found[0].kind, found[0].id, "auto")
    else:
        set_suggestions(session, thread.id, found, current=current)


def reconcile(session: Session, keep_id: int, other_id: int) -> None:
    """Before merging thread ``other_id`` into ``keep_id``: keep one item link of the
    two threads — manual over address over automatic; between two explicit choices
    (manual, address) the newer; between automatic ones the kept thread's — and move it
    onto ``keep_id``."""
    links = [*item_links(session, keep_id), *item_links(session, other_id)]
    if not links:
        return

    def rank(lk: Link) -> tuple[int, float, bool]:
        explicit = lk.how in ("manual", "address")
        return (_PRIORITY.get(lk.how, 9), -lk.created_at.timestamp() if explicit else 0.0,
                lk.thread_id != keep_id)

    best = min(links, key=rank)
    losers = [lk.id for lk in links if lk.id != best.id]
    if losers:
        session.execute(delete(Link).where(Link.id.in_(losers)))
    if best.thread_id != keep_id:
        session.execute(update(Link).where(Link.id == best.id).values(thread_id=keep_id))


def _apply_fresh(session: Session, thread: ThreadLike, owner: OwnerLike,
                 pinned: tuple[str, int] | None, persons: Sequence[int]) -> None:
    """``apply`` for a thread this copy created: no item link, no suggestion to replace."""
    if pinned is not None:
        _link_fresh(session, thread.id, pinned[0], pinned[1], "address")
        return
    found = candidates(session, owner, persons)
    if len(found) == 1 and owner.linking_mode == "auto" and not thread.manual_items:
        _link_fresh(session, thread.id, found[0].kind, found[0].id, "auto")
    elif found:
        insert_ignore(session, Suggestion, [{"thread_id": thread.id, "kind": i.kind,
                                             "entity_id": i.id} for i in found])


def _link_fresh(session: Session, thread_id: int, kind: str, item_id: int, how: str) -> None:
    events.item_linking(session, thread_id, kind, item_id, how)  # thread.linked, if new
    insert_ignore(session, Link, [{"thread_id": thread_id, "kind": kind, "entity_id": item_id,
                                   "how": how}])
