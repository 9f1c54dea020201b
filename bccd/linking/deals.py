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
   An ``automated`` thread (SPEC §5.10: only mail filed "unlinked") is never linked to an
   item automatically: a person linked to it by hand brings suggestions, and its state
   stays ``automated``.

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

Every run stores the thread's ``link_state`` (SPEC §5.12, ``linking.linkstate``) with the
links and suggestions it decided. On PostgreSQL the candidates are read under a share lock
on the persons they belong to, taken in an earlier statement than the read. ``apply``
locks the thread's row, then its persons, so two runs of the rule on one thread (a copy
joining it and a retroactive pass, say) take turns and each reads what the other wrote,
and nobody waits for a thread while holding a person's lock; for a thread a copy starts,
filing's one read took the persons' lock (``fresh_locked``), else ``candidates`` takes
it. A transaction that creates or changes an item of those persons locks the person
exclusively first (``crm.lock_person_items``), so either it waits for this one to commit
— and then its retroactive pass (``linking.retro``) finds this thread — or this one waits
for it and then reads its item. Without the lock, a copy filed while a deal is created
could miss the deal and be missed by the deal's pass, leaving the thread ``no_open_item``
beside an open deal. For the same reason PostgreSQL reads the candidates even when
filing's read found no open item. (SQLite has one writer at a time: the question does not
arise.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    exists,
    literal_column,
    null,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from bccd.linking import linkstate, visibility
from bccd.linking.records import OwnerLike, ThreadLike
from bccd.store import direct, events
from bccd.store.models import Item, Link, Person, Suggestion, Thread
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
_T = Thread.__table__
_THREAD_CANDIDATES_ALL = _THREAD_OPEN.order_by(_I.c.id).limit(MAX_CANDIDATES)
_THREAD_CANDIDATES_VISIBLE = _THREAD_OPEN.where(_VISIBLE).order_by(_I.c.id).limit(MAX_CANDIDATES)

_P = Person.__table__
# PostgreSQL: share locks on persons before their items are read (module docstring)
_LOCK_PERSONS = FixedIn(_P.c.id, "p", lambda in_: select(_P.c.id).where(in_)
                        .order_by(_P.c.id).with_for_update(read=True))
# ``apply``: the thread's row first (two runs of the rule on one thread take turns; nobody
# waits for a thread while holding person locks, so no cycle with an item change), then
# its persons
_LOCK_THREAD = select(_T.c.id).where(_T.c.id == bindparam("t")).with_for_update(key_share=True)
_LOCK_THREAD_PERSONS = (select(_P.c.id).join_from(_P, _L, and_(
    _L.c.thread_id == bindparam("t"), _L.c.kind == "person", _L.c.entity_id == _P.c.id))
    .order_by(_P.c.id).with_for_update(read=True, of=_P))

_S = Suggestion.__table__
_SUGGESTIONS = select(_S.c.id, _S.c.kind, _S.c.entity_id).where(_S.c.thread_id == bindparam("t"))
_CLEAR_SUGGESTIONS = delete(Suggestion).where(Suggestion.thread_id == bindparam("t"))
# ``set_item_link``: the thread's item links other than (:k, :e) go; (:k, :e) is made :h
_OTHER_ITEMS = delete(Link).where(
    Link.thread_id == bindparam("t"), Link.kind.in_(direct.literals(ITEM_KINDS)),
    ~((Link.kind == bindparam("k")) & (Link.entity_id == bindparam("e"))))
_RELINK = update(Link).where(
    Link.thread_id == bindparam("t"), Link.kind == bindparam("k"),
    Link.entity_id == bindparam("e"), Link.how != bindparam("h")).values(
    how=bindparam("h"), created_at=bindparam("at"))


def _state(candidates: Any) -> Any:
    """``apply``'s one read of a thread: its item links, its suggestions, the candidate
    items of its persons, whether it has a person, whether it is automated (SPEC §5.10),
    and its stored state (in ``kind``) — rows tagged ``link`` / ``suggestion`` /
    ``candidate`` / ``person`` / ``automated`` / ``state``."""
    cand = candidates.subquery()
    return union_all(
        select(literal_column("'link'").label("tag"), _L.c.id, _L.c.kind, _L.c.entity_id,
               _L.c.how, _L.c.created_at)
        .where(_L.c.thread_id == bindparam("t"), _L.c.kind.in_(direct.literals(ITEM_KINDS))),
        select(literal_column("'suggestion'"), _S.c.id, _S.c.kind, _S.c.entity_id, null(), null())
        .where(_S.c.thread_id == bindparam("t")),
        select(literal_column("'candidate'"), cand.c.id, cand.c.kind, null(), null(), null()),
        select(literal_column("'person'"), null(), null(), null(), null(), null())
        .where(exists().where(_L.c.thread_id == bindparam("t"), _L.c.kind == "person")),
        select(literal_column("'automated'"), null(), null(), null(), null(), null())
        .where(_T.c.id == bindparam("t"), _T.c.automated == true()),
        select(literal_column("'state'"), null(), _T.c.link_state, null(), null(), null())
        .where(_T.c.id == bindparam("t")),
    )


_STATE_ALL = _state(_THREAD_CANDIDATES_ALL)
_STATE_VISIBLE = _state(_THREAD_CANDIDATES_VISIBLE)


def item_links(session: Session, thread_id: int) -> list[Link]:
    return list(session.scalars(
        select(Link).where(Link.thread_id == thread_id, Link.kind.in_(ITEM_KINDS))
        .order_by(Link.id)
    ))


def candidates(session: Session, owner: OwnerLike, persons: Sequence[int], *,
               locked: bool = False) -> list[Any]:
    """Open items of ``persons`` the owner may see, oldest first (at most 50): rows with
    ``id`` and ``kind``. Read under the persons' share lock (taken here unless
    ``locked``: the caller's transaction holds it)."""
    if not persons:
        return []
    if not locked:
        lock_persons(session, persons)
    stmt, params = (_CANDIDATES_ALL if owner.is_admin else _CANDIDATES_VISIBLE)(persons)
    params["c"] = owner.company_id
    if not owner.is_admin:
        params["o"] = owner.id
    return direct.execute(session.connection(), stmt, params)


def postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_threads(session: Session, thread_ids: Sequence[int]) -> None:
    """PostgreSQL: lock these threads' rows (in id order) for a run of the rule over them
    — before any person's lock, as filing takes them (module docstring)."""
    if thread_ids and postgresql(session):
        session.execute(select(Thread.id).where(Thread.id.in_(sorted(set(thread_ids))))
                        .order_by(Thread.id).with_for_update(key_share=True))


def lock_persons(session: Session, persons: Sequence[int]) -> None:
    """PostgreSQL: share-lock these persons before their items are read (module
    docstring); nothing elsewhere."""
    if persons and postgresql(session):
        stmt, params = _LOCK_PERSONS(sorted(set(persons)))
        direct.execute(session.connection(), stmt, params)


def set_item_link(session: Session, thread_id: int, kind: str, item_id: int, how: str) -> None:
    """Make (kind, item_id) the thread's only item link, recorded as ``how`` (the thread
    is ``linked``). The link rows change through statements built once (``_OTHER_ITEMS``,
    ``_RELINK``) on the cursor — or, when the session holds ``Link`` objects, through the
    ORM, which keeps them in step."""
    events.item_linking(session, thread_id, kind, item_id, how)  # thread.linked, if new
    params = {"t": thread_id, "k": kind, "e": item_id, "h": how, "at": dt.datetime.now(dt.UTC)}
    if any(isinstance(o, Link) for o in session.identity_map.values()):
        def run(stmt: Any) -> None:
            session.execute(stmt, params, execution_options={"synchronize_session": "fetch"})
    else:
        def run(stmt: Any) -> None:
            direct.execute(session.connection(), stmt, params)
    run(_OTHER_ITEMS)
    # after the DELETE: the partial unique index allows one item link per thread
    insert_ignore(session, Link, [{"thread_id": thread_id, "kind": kind, "entity_id": item_id,
                                   "how": how}])
    run(_RELINK)
    clear_suggestions(session, thread_id)
    linkstate.store(session, thread_id, linkstate.LINKED)


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
    fresh_open_items: bool = True,
    fresh_locked: bool = False,
    thread_locked: bool = False,
) -> None:
    """``fresh_persons``: the thread was created by this copy, which linked it to these
    persons — so it has no item link nor suggestion yet and nothing needs reading back;
    ``fresh_open_items`` False: the caller read that none of them has an open item;
    ``fresh_locked``: the caller's transaction holds their share lock already;
    ``thread_locked``: it holds the thread's row (it has just written it)."""
    if fresh_persons is not None:
        _apply_fresh(session, thread, owner, pinned, fresh_persons, fresh_open_items,
                     fresh_locked)
        return
    session.flush()
    if postgresql(session):
        if not thread_locked:
            direct.execute(session.connection(), _LOCK_THREAD, {"t": thread.id})
        direct.execute(session.connection(), _LOCK_THREAD_PERSONS, {"t": thread.id})
    params: dict[str, Any] = {"c": owner.company_id, "t": thread.id}
    if owner.is_admin:
        stmt = _STATE_ALL
    else:
        stmt, params["o"] = _STATE_VISIBLE, owner.id
    existing: list[Any] = []
    current: list[Any] = []
    found: list[Any] = []
    has_person = automated = False
    stored = None
    for row in direct.execute(session.connection(), stmt, params):
        if row.tag == "person":
            has_person = True
            continue
        if row.tag == "automated":
            automated = True
            continue
        if row.tag == "state":
            stored = row.kind
            continue
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
        if stored != linkstate.LINKED:
            linkstate.store(session, thread.id, linkstate.LINKED)
        return
    if len(found) == 1 and owner.linking_mode == "auto" and not thread.manual_items \
            and not automated:
        set_item_link(session, thread.id, found[0].kind, found[0].id, "auto")
    else:
        set_suggestions(session, thread.id, found, current=current)
        state = _unlinked(owner, has_person, bool(found), automated)
        if state != stored:
            linkstate.store(session, thread.id, state)


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


def _unlinked(owner: OwnerLike, has_person: bool, suggestions: bool,
              automated: bool = False) -> str:
    """The state of a thread the rule left without an item link."""
    return linkstate.state(linkstate.Facts(
        item_linked=False, persons=has_person, manual_mode=owner.linking_mode == "manual",
        suggestions=suggestions, automated=automated))


def _apply_fresh(session: Session, thread: ThreadLike, owner: OwnerLike,
                 pinned: tuple[str, int] | None, persons: Sequence[int],
                 open_items: bool, locked: bool) -> None:
    """``apply`` for a thread this copy created: no item link, no suggestion to replace
    (its state is still ``linkstate.INITIAL``)."""
    if pinned is not None:
        _link_fresh(session, thread.id, pinned[0], pinned[1], "address")
        return
    # PostgreSQL reads them under the persons' lock even when the caller's earlier read
    # found no open item: one may have been committed since (module docstring)
    read = open_items or postgresql(session)
    found = candidates(session, owner, persons, locked=locked) if read else []
    if len(found) == 1 and owner.linking_mode == "auto" and not thread.manual_items:
        _link_fresh(session, thread.id, found[0].kind, found[0].id, "auto")
        return
    if found:
        insert_ignore(session, Suggestion, [{"thread_id": thread.id, "kind": i.kind,
                                             "entity_id": i.id} for i in found])
    state = _unlinked(owner, bool(persons), bool(found))
    if state != linkstate.INITIAL:
        linkstate.store(session, thread.id, state)


def _link_fresh(session: Session, thread_id: int, kind: str, item_id: int, how: str) -> None:
    events.item_linking(session, thread_id, kind, item_id, how)  # thread.linked, if new
    insert_ignore(session, Link, [{"thread_id": thread_id, "kind": kind, "entity_id": item_id,
                                   "how": how}])
    linkstate.store(session, thread_id, linkstate.LINKED)
