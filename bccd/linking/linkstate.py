"""Why a thread is (not) linked (SPEC §5.12): every thread's ``link_state``.

The one rule, a function of what is stored about the thread (``Facts``), in this order:

1. ``linked`` — it has a deal, lead or project link (however made);
2. ``automated`` — its mail is automated (SPEC §5.10: ``auto_reply``/``bulk`` kept as
   ``unlinked``), which is never linked automatically nor "needs linking";
3. ``no_person`` — no person is linked (unknown counterparts not created, all blocked,
   internal mail …);
4. ``manual_mode`` — the owner's ``linking_mode`` is ``manual``: only persons are linked
   automatically, any candidates are suggestions the owner picks from;
5. ``needs_choice`` — candidates are kept as suggestions, awaiting a choice (several open
   items, or an item the user unlinked by hand and its fellow candidates);
6. ``no_open_item`` — persons are linked but none has an open item the owner may see.

``state(facts)`` is the rule in Python, ``state_sql(…)`` the same rule as a SQL ``CASE``
over boolean expressions; a test holds the two to the same answers for every input.

**Adding a cause** (as the ``automated`` one is: the input ``Facts.automated`` and the
``automated`` argument of ``state_sql``): give it from stored data in ``_facts_sql`` below
and wherever ``linking.deals`` builds ``Facts`` (its one read of a thread,
``deals._state``, and a fresh thread's ``_apply_fresh``). ``automated`` is the column
``threads.automated``: filing sets it on a thread its first message starts "unlinked"
(SPEC §5.10, ``ingest.triage``) — such a thread is created ``automated`` — and the first
message filed normally clears it (``linking.threading``).

**Upkeep.** The state is stored (``threads.link_state``, indexed with the company) so
listings filter on it; it is written in the same transaction as every change of its
inputs:

- ``linking.deals`` — every run of rule §5.6 (``_apply_fresh``, ``apply``,
  ``set_item_link``) stores the state it decided: so filing (Smart Bcc, IMAP, a
  duplicate that adds a source or a pinned address), retroactive linking (a person or an
  address added, an item created, closed or changed), linking and unlinking by hand, and
  deleting an entity, which all end in that rule;
- ``refresh(session, thread_ids)`` — recomputes from the stored facts after a change made
  outside the rule (threads merged, a person erased);
- ``mode_changed(session, user_id)`` — the owner's linking mode changed (the command that
  changes it calls this; ``accounts`` sits below the linking layer).

Under concurrency the state is as true as the links it describes: the candidates rule
§5.6 reads are read under a share lock on the persons (``linking.deals``) that an item
change takes exclusively (``crm.lock_person_items``), so a deal created while a copy is
being filed is either seen by the filing or finds the filed thread when it re-applies the
rule (docs/decisions.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    bindparam,
    case,
    exists,
    false,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from bccd.store import direct
from bccd.store.models import Link, Suggestion, Thread, User

LINKED = "linked"
AUTOMATED = "automated"
NO_PERSON = "no_person"
MANUAL_MODE = "manual_mode"
NEEDS_CHOICE = "needs_choice"
NO_OPEN_ITEM = "no_open_item"
STATES = (LINKED, NEEDS_CHOICE, NO_OPEN_ITEM, NO_PERSON, MANUAL_MODE, AUTOMATED)
INITIAL = NO_PERSON          # a thread as it is created, before its first copy is linked
ITEM_KINDS = ("deal", "lead", "project")


@dataclass(frozen=True, slots=True)
class Facts:
    """What the state of one thread is decided from."""

    item_linked: bool        # it has a deal/lead/project link
    persons: bool            # it has at least one person link
    manual_mode: bool        # its owner's linking_mode is manual
    suggestions: bool        # it has suggestions
    automated: bool = False  # its mail is automated (SPEC §5.10), see the module docstring


def state(f: Facts) -> str:
    """The thread's ``link_state`` (the module docstring gives the order)."""
    if f.item_linked:
        return LINKED
    if f.automated:
        return AUTOMATED
    if not f.persons:
        return NO_PERSON
    if f.manual_mode:
        return MANUAL_MODE
    if f.suggestions:
        return NEEDS_CHOICE
    return NO_OPEN_ITEM


def state_sql(*, item_linked: Any, persons: Any, manual_mode: Any, suggestions: Any,
              automated: Any = None) -> ColumnElement[str]:
    """``state`` as a SQL ``CASE`` over boolean SQL expressions (``automated``: false)."""
    return case(
        (item_linked, literal(LINKED)),
        (automated if automated is not None else false(), literal(AUTOMATED)),
        (~persons, literal(NO_PERSON)),
        (manual_mode, literal(MANUAL_MODE)),
        (suggestions, literal(NEEDS_CHOICE)),
        else_=literal(NO_OPEN_ITEM),
    )


def _facts_sql() -> ColumnElement[str]:
    """The state of the ``threads`` row in scope, from its stored facts."""
    return state_sql(
        item_linked=exists().where(Link.thread_id == Thread.id, Link.kind.in_(ITEM_KINDS)),
        persons=exists().where(Link.thread_id == Thread.id, Link.kind == "person"),
        manual_mode=exists().where(User.id == Thread.owner_id, User.linking_mode == "manual"),
        suggestions=exists().where(Suggestion.thread_id == Thread.id),
        automated=Thread.automated == true(),
    )


_T: Any = Thread.__table__
_STORE = (update(_T).where(_T.c.id == bindparam("t"), _T.c.link_state != bindparam("s"))
          .values(link_state=bindparam("s")))


def store(session: Session, thread_id: int, value: str) -> None:
    """Record the state a rule has just decided for one thread (a no-op when unchanged)."""
    direct.execute(session.connection(), _STORE, {"t": thread_id, "s": value})
    loaded = session.identity_map.get(session.identity_key(Thread, thread_id))
    if loaded is not None:
        session.expire(loaded, ["link_state"])


def refresh(session: Session, thread_ids: Sequence[int]) -> None:
    """Recompute the state of these threads from what is stored about them."""
    ids = sorted(set(thread_ids))
    if not ids:
        return
    session.flush()
    new = _facts_sql()
    for i in range(0, len(ids), 500):
        session.execute(update(Thread).where(Thread.id.in_(ids[i:i + 500]),
                                             Thread.link_state != new)
                        .values(link_state=new).execution_options(synchronize_session=False))
    wanted = set(ids)
    _expire(session, lambda t: t.id in wanted)


def mode_changed(session: Session, user_id: int) -> None:
    """The user's linking mode changed: the states that depend on it follow (one
    statement; ``linked``, ``automated`` and ``no_person`` do not depend on it)."""
    session.flush()
    session.execute(update(Thread).where(
        Thread.owner_id == user_id,
        Thread.link_state.in_((MANUAL_MODE, NEEDS_CHOICE, NO_OPEN_ITEM)),
        Thread.link_state != _facts_sql(),
    ).values(link_state=_facts_sql()).execution_options(synchronize_session=False))
    _expire(session, lambda t: t.owner_id == user_id)


def _expire(session: Session, which: Callable[[Thread], bool]) -> None:
    """Loaded ``Thread`` objects read their new state on next access."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Thread) and which(obj):
            session.expire(obj, ["link_state"])


def stale(session: Session, company_id: int | None = None) -> list[tuple[int, str, str]]:
    """Threads whose stored state differs from the rule applied to their stored facts:
    ``(thread id, stored, recomputed)`` — empty when the state is true everywhere."""
    new = _facts_sql().label("recomputed")
    q = select(Thread.id, Thread.link_state, new).where(Thread.link_state != _facts_sql())
    if company_id is not None:
        q = q.where(Thread.company_id == company_id)
    return [(int(i), str(s), str(r)) for i, s, r in session.execute(q.order_by(Thread.id))]
