"""One conversation on a shared timeline (SPEC §5.14): an entity's timeline shows a
message once to a viewer who may see several users' copies of it.

When several users of a company filed the same message (same Message-ID), each keeps their
own copy, in their own thread, with its own visibility. A timeline — the threads linked to
a person, organization, deal, lead or project that the viewer may see (``mailstore.read``
builds that selection) — counts each message once: among the copies on the timeline the
**viewer's own** copy is shown, else the **earliest filed** (stored first; ties by id).
A thread of the timeline is listed with the messages it shows (``messages`` counts
them) and ``also_filed_by``, the other owners of those messages' copies on the timeline;
a thread all of whose messages are shown through other copies is left out. Messages
without a Message-ID are never merged.

Why the earliest copy: it never changes once a timeline has shown it — a colleague who
files the same message later adds their name to ``also_filed_by`` and moves nothing —
and it is the copy whose owner was on the conversation first.

The database does the collapsing, in one statement: a window (``row_number`` over the
copies of each Message-ID, the viewer's first, then by filing order) over the messages of
the timeline's threads, which the planner reaches through the entity's link index and the
messages' thread index — a deal's timeline reads that deal's messages, never the
company's (docs/performance.md has the plan for a company with a million messages). Paging
(``LIMIT``/``OFFSET`` over the collapsed threads, newest first) and counts are exact.

``page(s, viewer_id, threads, limit=…, offset=…)`` → ``Page`` (ids in order, the shown
count of each, ``also_filed_by`` of each, whether more follow).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from bccd.store.models import Message, Thread, User


@dataclass(slots=True)
class Page:
    ids: list[int]
    shown: dict[int, int]                                  # thread id → messages shown
    also_filed_by: dict[int, list[str]] = field(default_factory=dict)
    more: bool = False


def _ranked(viewer_id: int, threads: Any) -> Any:
    """The messages of ``threads`` with ``rn`` (1: the copy the viewer is shown) and
    ``rep`` (the thread of the shown copy of the same message)."""
    m = Message
    window: dict[str, Any] = {
        # every copy of one Message-ID together; a message without one alone
        "partition_by": (m.message_id, case((m.message_id.is_(None), m.id))),
        "order_by": (case((m.user_id == viewer_id, 0), else_=1), m.created_at, m.id),
    }
    return (select(m.id, m.thread_id, m.user_id,
                   func.row_number().over(**window).label("rn"),
                   func.first_value(m.thread_id).over(**window).label("rep"))
            .where(m.thread_id.in_(threads))
            .cte("ranked"))


def statement(viewer_id: int, threads: Any, *, limit: int | None, offset: int) -> Any:
    """The page's threads with the count of messages each shows, newest first."""
    ranked = _ranked(viewer_id, threads)
    shown = (select(ranked.c.thread_id, func.count().label("n"))
             .where(ranked.c.rn == 1).group_by(ranked.c.thread_id).subquery("shown"))
    q = (select(Thread.id, shown.c.n).join(shown, shown.c.thread_id == Thread.id)
         .order_by(Thread.last_message_at.desc(), Thread.id.desc()).offset(offset))
    return q.limit(limit + 1) if limit is not None else q


def page(s: Session, viewer_id: int, threads: Any, *, limit: int | None,
         offset: int) -> Page:
    rows = s.execute(statement(viewer_id, threads, limit=limit, offset=offset)).all()
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if limit is not None else rows
    out = Page([int(r[0]) for r in rows], {int(r[0]): int(r[1]) for r in rows}, more=more)
    if out.ids:
        ranked = _ranked(viewer_id, threads)
        owners = {int(t): int(o) for t, o in s.execute(
            select(Thread.id, Thread.owner_id).where(Thread.id.in_(out.ids)))}
        also: dict[int, set[str]] = defaultdict(set)
        for rep, uid, email in s.execute(
                select(ranked.c.rep, ranked.c.user_id, User.email).distinct()
                .join(User, User.id == ranked.c.user_id)
                .where(ranked.c.rn > 1, ranked.c.rep.in_(out.ids))):
            if int(uid) != owners.get(int(rep)):
                also[int(rep)].add(str(email))
        out.also_filed_by = {t: sorted(also[t]) for t in out.ids if t in also}
    return out
