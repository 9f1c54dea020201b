"""Read models of the mail store (SPEC §8 ``mail list``/``mail show``), shared by the CLI
and the HTTP API.

``list_threads(session, user, person=…, deal=…, …)`` → the threads ``user`` may see
(newest first) in the public JSON shape; ``get_visible_thread`` → one thread or
``NotFound`` (never revealing that a thread the user may not see exists);
``show_thread(session, thread, viewer=None)`` → one thread with its messages.

Every listing goes through ``linking.visibility`` — as a SQL filter, so a listing is one
indexed query plus one batch per related table, whatever the size of the company.
Suggestions are shown only when the viewer may see the suggested item.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from bccd.errors import NotFound
from bccd.linking import visibility
from bccd.store.models import (
    Attachment,
    Link,
    Message,
    MessageSource,
    Participant,
    Suggestion,
    Thread,
    User,
)


def links_of(session: Session, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if ids:
        rows = session.scalars(select(Link).where(Link.thread_id.in_(ids)).order_by(Link.id))
        for link in rows:
            out[link.thread_id].append({"kind": link.kind, "id": link.entity_id, "how": link.how})
    return out


def suggestions_of(session: Session, ids: list[int], viewer: User | None
                    ) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if ids:
        q = select(Suggestion).where(Suggestion.thread_id.in_(ids)).order_by(Suggestion.id)
        if viewer is not None:
            q = q.where(visibility.suggestion_visible_clause(viewer))
        for sug in session.scalars(q):
            out[sug.thread_id].append({"kind": sug.kind, "id": sug.entity_id})
    return out


def list_threads(
    session: Session,
    user: User,
    *,
    person: int | None = None,
    deal: int | None = None,
    lead: int | None = None,
    project: int | None = None,
    include_archived: bool = True,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    q = select(Thread).where(visibility.thread_visible_clause(user))
    for kind, entity_id in (("person", person), ("deal", deal), ("lead", lead),
                            ("project", project)):
        if entity_id is not None:
            q = q.where(exists().where(Link.thread_id == Thread.id, Link.kind == kind,
                                       Link.entity_id == entity_id))
    if not include_archived:
        q = q.where(Thread.archived.is_(False))
    q = q.order_by(Thread.last_message_at.desc(), Thread.id.desc())
    if limit is not None:
        q = q.limit(limit)
    threads = list(session.scalars(q))
    ids = [t.id for t in threads]
    links = links_of(session, ids)
    suggestions = suggestions_of(session, ids, user)
    counts: dict[int, int] = {}
    if ids:
        counts = {int(tid): int(n) for tid, n in session.execute(
            select(Message.thread_id, func.count()).where(Message.thread_id.in_(ids))
            .group_by(Message.thread_id))}
    owner_ids = sorted({t.owner_id for t in threads})
    owners = {int(uid): str(email) for uid, email in session.execute(
        select(User.id, User.email).where(User.id.in_(owner_ids)))} if owner_ids else {}
    return [{
        "thread_id": t.id,
        "subject": t.subject,
        "visibility": t.visibility,
        "owner": owners.get(t.owner_id),
        "archived": t.archived,
        "messages": counts.get(t.id, 0),
        "last_message_at": t.last_message_at.isoformat(),
        "links": links.get(t.id, []),
        "suggestions": suggestions.get(t.id, []),
    } for t in threads]


def get_visible_thread(session: Session, user: User, thread_id: int) -> Thread:
    t = session.get(Thread, thread_id)
    if t is None or not visibility.thread_visible(session, user, t):
        raise NotFound(f"no thread {thread_id}")  # never reveal that a private thread exists
    return t


def show_thread(session: Session, thread: Thread, viewer: User | None = None) -> dict[str, Any]:
    msgs = session.scalars(
        select(Message).where(Message.thread_id == thread.id).order_by(Message.date, Message.id)
    ).all()
    out_msgs = []
    for m in msgs:
        parts = session.scalars(select(Participant).where(Participant.message_id == m.id)
                                .order_by(Participant.id)).all()
        sources = session.scalars(select(MessageSource.source)
                                  .where(MessageSource.message_id == m.id)
                                  .order_by(MessageSource.id)).all()
        atts = session.scalars(select(Attachment).where(Attachment.message_id == m.id)
                               .order_by(Attachment.id)).all()
        auth = m.auth or {}
        out_msgs.append({
            "id": m.id,
            "message_id": m.message_id,
            "direction": m.direction,
            "from": m.from_addr,
            "from_name": m.from_name,
            "to": [p.email for p in parts if p.role == "to"],
            "cc": [p.email for p in parts if p.role == "cc"],
            "subject": m.subject,
            "date": m.date.isoformat() if m.date else None,
            "sources": list(sources),
            "text": m.text_body,
            "has_html": bool(m.html_body),
            "forwarded_by": m.forwarded_by,
            "attachments": [{"id": a.id, "filename": a.filename, "content_type": a.content_type,
                             "size": a.size, "sha256": a.sha256} for a in atts],
            "auth": {"dkim": auth.get("dkim", "none"), "spf": auth.get("spf", "none"),
                     "dmarc": auth.get("dmarc", "none"), "arc": auth.get("arc", "none"),
                     "verdict": auth.get("verdict", "none"),
                     "signing_domains": auth.get("dkim_domains", []),
                     "authentication_results": auth.get("results_header", "")},
        })
    owner = session.get(User, thread.owner_id)
    return {
        "thread_id": thread.id,
        "subject": thread.subject,
        "visibility": thread.visibility,
        "owner": owner.email if owner else None,
        "archived": thread.archived,
        "links": links_of(session, [thread.id]).get(thread.id, []),
        "suggestions": suggestions_of(session, [thread.id], viewer).get(thread.id, []),
        "manual_items": thread.manual_items,
        "messages": out_msgs,
    }
